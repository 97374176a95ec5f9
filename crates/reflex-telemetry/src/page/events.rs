//! [`EventStream`]: one client's server-sent events, from the witness's
//! broadcast of snapshots.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use reflex_witness::{Report, Snapshot, Witness};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Sleep};

use super::sse::{Chunk, EventName, Hello, KEEP_ALIVE};

/// The most snapshots a stream opens with, whatever the window and the
/// witness's history hold.
pub(crate) const MAX_BACKLOG: usize = 1_024;

/// The most reports a page keeps (told in `hello`), and so the most a
/// stream opens with: the newest.
pub(crate) const REPORTS_SHOWN: usize = 64;

/// The most recent snapshots whose gaps tell the witness's interval.
const INTERVAL_SAMPLE: usize = 32;

/// A receiver's wait for the next snapshot; it hands the receiver back.
type Next = Pin<
    Box<dyn Future<Output = (Result<Arc<Snapshot>, RecvError>, Receiver<Arc<Snapshot>>)> + Send>,
>;

/// One open stream, counted in the page's open streams until dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    /// Takes one of `max` places in `open`, or `None` when all are taken.
    pub(crate) fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(Arc::clone(open)))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One client's events: first the backlog (the opening `retry:` and
/// `hello`, then the snapshots of the window, then the newest kept
/// reports, one event a chunk), then each snapshot the witness publishes
/// with its reports, and a comment when idle for `keep_alive`. Ends once
/// it is `max_age` old (the browser reconnects after the `retry:` delay),
/// when the witness's broadcast closes, or when dropped (the client went
/// away).
pub(crate) struct EventStream {
    witness: Witness,
    window: Duration,
    keep_alive: Duration,
    /// When the stream ends.
    deadline: Instant,
    /// Subscribed when the stream was made, so that nothing published
    /// between the request and the first poll is missed.
    next: Option<Next>,
    /// The idle timer, made on the first poll (inside the runtime).
    idle: Option<Pin<Box<Sleep>>>,
    /// The age timer, made on the first poll.
    age: Option<Pin<Box<Sleep>>>,
    /// The backlog is read (on the first poll).
    opened: bool,
    /// What of the backlog is still to send.
    backlog: Backlog,
    /// The newest cycle sent: older snapshots are not sent again.
    last_cycle: u64,
    _slot: StreamSlot,
}

/// The backlog still to send: read at once, encoded one event at a time,
/// so that a stream holds at most one encoded snapshot.
#[derive(Default)]
struct Backlog {
    opening: Option<Chunk>,
    snapshots: VecDeque<Arc<Snapshot>>,
    reports: VecDeque<Arc<Report>>,
}

impl Backlog {
    /// The next chunk of the backlog, `None` once it is all sent.
    fn next_chunk(&mut self) -> Option<Chunk> {
        if let Some(opening) = self.opening.take() {
            return Some(opening);
        }
        let mut chunk = Chunk::default();
        if let Some(snapshot) = self.snapshots.pop_front() {
            chunk.event(EventName::Snapshot, &*snapshot);
        } else if let Some(report) = self.reports.pop_front() {
            chunk.report(&report);
        } else {
            return None;
        }
        Some(chunk)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("last_cycle", &self.last_cycle)
            .field("opened", &self.opened)
            .field("ended", &self.next.is_none())
            .finish_non_exhaustive()
    }
}

// === impl EventStream ===

impl EventStream {
    pub(crate) fn new(
        witness: &Witness,
        window: Duration,
        keep_alive: Duration,
        max_age: Duration,
        slot: StreamSlot,
    ) -> Self {
        Self {
            next: Some(next(witness.subscribe())),
            witness: witness.clone(),
            window,
            keep_alive,
            // At most a day (the builder's bound): never overflows.
            deadline: Instant::now() + max_age,
            idle: None,
            age: None,
            opened: false,
            backlog: Backlog::default(),
            last_cycle: 0,
            _slot: slot,
        }
    }

    /// `true` once the stream ended (its age, or the witness's broadcast
    /// closed).
    pub(crate) fn is_ended(&self) -> bool {
        self.next.is_none()
    }

    /// The next chunk to send, `Ready(None)` at the end.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.next.is_none() {
            return Poll::Ready(None);
        }
        let deadline = self.deadline;
        let age = self
            .age
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if age.as_mut().poll(cx).is_ready() {
            // Old enough: the browser reconnects, and gets a fresh backlog.
            self.next = None;
            self.backlog = Backlog::default();
            return Poll::Ready(None);
        }
        if !self.opened {
            self.opened = true;
            self.backlog = self.backlog();
        }
        if let Some(chunk) = self.backlog.next_chunk() {
            return Poll::Ready(Some(self.sent(chunk)));
        }
        loop {
            let Some(next_snapshot) = self.next.as_mut() else {
                return Poll::Ready(None);
            };
            let Poll::Ready((received, rx)) = next_snapshot.as_mut().poll(cx) else {
                break;
            };
            match received {
                Ok(snapshot) => {
                    self.next = Some(next(rx));
                    if snapshot.cycle <= self.last_cycle {
                        continue;
                    }
                    self.last_cycle = snapshot.cycle;
                    let mut chunk = Chunk::default();
                    chunk.snapshot(&snapshot);
                    return Poll::Ready(Some(self.sent(chunk)));
                }
                Err(RecvError::Lagged(_)) => {
                    // Skip what is still queued: a fresh receiver starts
                    // at the newest, and the catch-up says what matters.
                    self.next = Some(next(rx.resubscribe()));
                    let chunk = self.catch_up();
                    if !chunk.is_empty() {
                        return Poll::Ready(Some(self.sent(chunk)));
                    }
                }
                Err(RecvError::Closed) => {
                    self.next = None;
                    return Poll::Ready(None);
                }
            }
        }
        let keep_alive = self.keep_alive;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(keep_alive)));
        if idle.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(self.sent_keep_alive()));
        }
        Poll::Pending
    }

    /// `hello`, the kept snapshots of the window (and the latest, quiet
    /// or not), then the newest kept reports.
    fn backlog(&mut self) -> Backlog {
        let latest = self.witness.latest_snapshot();
        let history = self.witness.history();
        let mut opening = Chunk::opening();
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        opening.event(
            EventName::Hello,
            &Hello {
                cycle: latest.cycle,
                window_ms,
                interval_ms: interval_ms(&history),
                reports_shown: REPORTS_SHOWN,
            },
        );
        let since = latest.observed_at_ms.saturating_sub(window_ms);
        let recent: Vec<Arc<Snapshot>> = history
            .into_iter()
            .filter(|s| s.observed_at_ms >= since && s.cycle < latest.cycle)
            .collect();
        let skip = recent.len().saturating_sub(MAX_BACKLOG - 1);
        let snapshots = recent
            .into_iter()
            .skip(skip)
            .chain([Arc::clone(&latest)])
            .filter(|s| s.cycle > 0)
            .collect();
        // A cycle published since `latest` was read is sent with its
        // snapshot, reports included.
        let reports: Vec<Arc<Report>> = self
            .witness
            .reports()
            .into_iter()
            .filter(|r| r.cycle <= latest.cycle)
            .collect();
        let skip = reports.len().saturating_sub(REPORTS_SHOWN);
        self.last_cycle = latest.cycle;
        Backlog {
            opening: Some(opening),
            snapshots,
            reports: reports.into_iter().skip(skip).collect(),
        }
    }

    /// After falling behind: the latest snapshot and the kept reports of
    /// the cycles not sent.
    fn catch_up(&mut self) -> Chunk {
        let latest = self.witness.latest_snapshot();
        let mut chunk = Chunk::default();
        if latest.cycle <= self.last_cycle {
            return chunk;
        }
        chunk.event(EventName::Snapshot, &*latest);
        for report in self.witness.reports() {
            if (self.last_cycle + 1..=latest.cycle).contains(&report.cycle) {
                chunk.report(&report);
            }
        }
        self.last_cycle = latest.cycle;
        chunk
    }

    /// `chunk`, as sent now: the idle timer starts again.
    fn sent(&mut self, chunk: Chunk) -> Bytes {
        self.rearm_idle();
        chunk.freeze()
    }

    fn sent_keep_alive(&mut self) -> Bytes {
        self.rearm_idle();
        Bytes::from_static(KEEP_ALIVE)
    }

    fn rearm_idle(&mut self) {
        if let Some(idle) = self.idle.as_mut() {
            // At most a day (the builder's bound): never overflows.
            idle.as_mut().reset(Instant::now() + self.keep_alive);
        }
    }
}

/// The witness's interval as its recent snapshots tell it, in
/// milliseconds: the median of the time per cycle between each two of the
/// last ones (quiet cycles are not kept, and a `cycle_now` comes early:
/// the median is the runtime's). `None` with fewer than two.
fn interval_ms(history: &[Arc<Snapshot>]) -> Option<u64> {
    let recent = &history[history.len().saturating_sub(INTERVAL_SAMPLE)..];
    let mut gaps: Vec<u64> = recent
        .windows(2)
        .filter(|w| w[1].cycle > w[0].cycle && w[1].observed_at_ms >= w[0].observed_at_ms)
        .map(|w| (w[1].observed_at_ms - w[0].observed_at_ms) / (w[1].cycle - w[0].cycle))
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}

/// Waits on `rx` for the next snapshot.
fn next(mut rx: Receiver<Arc<Snapshot>>) -> Next {
    Box::pin(async move {
        let received = rx.recv().await;
        (received, rx)
    })
}
