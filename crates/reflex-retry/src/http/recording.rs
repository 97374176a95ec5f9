//! [`Reader`]: one copy of a recorded request body, and the [`Recording`]
//! its copies share: what was read of the body so far, and the rest of it.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use reflex_core::BoxError;

use super::wakers::{Wakers, Woken};
use crate::error::NotReplayable;

/// One copy of a recorded body.
pub(super) struct Reader<B> {
    recording: Arc<Mutex<Recording<B>>>,
    cursor: Cursor,
}

/// How far a copy has read.
struct Cursor {
    /// Tells this copy from the others.
    id: u64,
    /// Recorded chunks this copy has sent.
    chunks_sent: usize,
    /// Data bytes this copy has sent.
    bytes_sent: u64,
    trailers_sent: bool,
    /// It sent its last frame, or an error.
    ended: bool,
    /// The body's size hint when it came: every copy sends the same bytes.
    size_hint: SizeHint,
}

/// A body as far as its copies read it, and the rest of it.
struct Recording<B> {
    body: Pin<Box<B>>,
    limit: usize,
    chunks: Vec<Bytes>,
    /// Data bytes in `chunks`.
    bytes: usize,
    trailers: Option<HeaderMap>,
    progress: Progress,
    /// The copy that read past the limit: the only one that reads on.
    sole_reader: Option<u64>,
    next_id: u64,
    /// Copies alive.
    copies: usize,
    /// The copy that polled the body with its own waker, alone, and waits.
    alone: Option<(u64, Waker)>,
    /// Copies at the end of what was read, waiting for the body, once there
    /// may be more than one: the body is then polled with a waker that
    /// wakes them all, whichever copy polled it last.
    wakers: Option<Arc<Wakers>>,
}

/// How far the body itself was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Reading,
    /// It ended (with its trailers, if any).
    Ended,
    /// It failed, or a poll of it panicked: it cannot be read again.
    Failed,
}

/// What a copy's poll gives.
pub(super) type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// What a poll of the body gives.
type BodyPolled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

// === impl Reader ===

impl<B> Reader<B> {
    /// The first copy of `body`, recorded up to `limit` bytes of data.
    pub(super) fn new(body: B, limit: usize, size_hint: SizeHint) -> Self {
        let recording = Recording {
            body: Box::pin(body),
            limit,
            chunks: Vec::new(),
            bytes: 0,
            trailers: None,
            progress: Progress::Reading,
            sole_reader: None,
            next_id: 1,
            copies: 1,
            alone: None,
            wakers: None,
        };
        Self {
            recording: Arc::new(Mutex::new(recording)),
            cursor: Cursor::new(0, size_hint),
        }
    }

    /// Another copy, from the start; `None` when the body cannot be sent
    /// again.
    pub(super) fn try_clone(&self) -> Option<Self> {
        let mut recording = lock(&self.recording);
        if !recording.is_replayable() {
            return None;
        }
        let id = recording.next_id;
        recording.next_id += 1;
        recording.copies += 1;
        drop(recording);
        Some(Self {
            recording: Arc::clone(&self.recording),
            cursor: Cursor::new(id, self.cursor.size_hint),
        })
    }

    /// `true` while a copy of the body can be sent whole.
    pub(super) fn is_replayable(&self) -> bool {
        lock(&self.recording).is_replayable()
    }

    /// The body's size hint, less what this copy sent.
    pub(super) fn size_hint(&self) -> SizeHint {
        self.cursor.size_hint()
    }
}

impl<B> Reader<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(super) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Polled {
        if self.cursor.ended {
            return Poll::Ready(None);
        }
        let mut recording = lock(&self.recording);
        let mut moved_on = false;
        let polled = self.cursor.next_frame(&mut recording, cx, &mut moved_on);
        // The body moved on: the copies waiting for it read on too.
        let woken = if moved_on {
            recording.take_waiting(self.cursor.id)
        } else {
            Vec::new()
        };
        drop(recording);
        wake(woken, self.cursor.id);
        polled
    }

    pub(super) fn is_end_stream(&self) -> bool {
        let cursor = &self.cursor;
        if cursor.ended {
            return true;
        }
        let recording = lock(&self.recording);
        if recording.sole_reader.is_some_and(|id| id != cursor.id)
            || cursor.chunks_sent < recording.chunks.len()
        {
            return false;
        }
        match recording.progress {
            Progress::Reading => recording.body.is_end_stream(),
            Progress::Ended => cursor.trailers_sent || recording.trailers.is_none(),
            Progress::Failed => false,
        }
    }
}

impl<B> fmt::Debug for Reader<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("copy", &self.cursor.id)
            .field("bytes_sent", &self.cursor.bytes_sent)
            .field("ended", &self.cursor.ended)
            .finish_non_exhaustive()
    }
}

// === impl Cursor ===

impl Cursor {
    fn new(id: u64, size_hint: SizeHint) -> Self {
        Self {
            id,
            chunks_sent: 0,
            bytes_sent: 0,
            trailers_sent: false,
            ended: false,
            size_hint,
        }
    }

    /// The next frame of this copy: recorded, or read from the body
    /// (`moved_on` then).
    fn next_frame<B>(
        &mut self,
        recording: &mut Recording<B>,
        cx: &mut Context<'_>,
        moved_on: &mut bool,
    ) -> Polled
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        if recording.sole_reader.is_some_and(|id| id != self.id) {
            return self.end(Some(Err(NotReplayable.into())));
        }
        if let Some(chunk) = recording.chunks.get(self.chunks_sent) {
            self.chunks_sent += 1;
            self.bytes_sent += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        match recording.progress {
            Progress::Reading => {}
            Progress::Ended => {
                if let Some(trailers) = recording.trailers.as_ref().filter(|_| !self.trailers_sent)
                {
                    self.trailers_sent = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                }
                return self.end(None);
            }
            Progress::Failed => return self.end(Some(Err(NotReplayable.into()))),
        }
        // At the end of what was read: read on.
        let polled = ready!(recording.poll_body(self.id, cx));
        *moved_on = true;
        let frame = match polled {
            None => {
                recording.progress = Progress::Ended;
                return self.end(None);
            }
            Some(Err(err)) => {
                recording.progress = Progress::Failed;
                return self.end(Some(Err(err.into())));
            }
            Some(Ok(frame)) => frame.map_data(into_bytes),
        };
        let recorded = recording.sole_reader.is_none();
        if let Some(data) = frame.data_ref() {
            self.bytes_sent += data.len() as u64;
            if !recorded || data.is_empty() {
                // The sole reader, past the limit, or an empty frame:
                // nothing is kept.
            } else if recording.bytes.saturating_add(data.len()) > recording.limit {
                // Past the limit: the record goes, and this copy reads on
                // alone.
                recording.chunks = Vec::new();
                recording.bytes = 0;
                recording.sole_reader = Some(self.id);
                self.chunks_sent = 0;
            } else {
                recording.chunks.push(data.clone());
                recording.bytes += data.len();
                self.chunks_sent += 1;
            }
        } else if let Some(trailers) = frame.trailers_ref() {
            // Trailers end a body.
            recording.progress = Progress::Ended;
            if recorded {
                recording.trailers = Some(trailers.clone());
            }
            self.trailers_sent = true;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn end(&mut self, last: Option<Result<Frame<Bytes>, BoxError>>) -> Polled {
        self.ended = true;
        Poll::Ready(last)
    }

    /// The body's size hint, less what this copy sent.
    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        let mut hint = SizeHint::new();
        hint.set_lower(self.size_hint.lower().saturating_sub(self.bytes_sent));
        if let Some(upper) = self.size_hint.upper() {
            // Never below the lower bound: both are taken down by as much,
            // and both stop at zero.
            hint.set_upper(upper.saturating_sub(self.bytes_sent));
        }
        hint
    }
}

/// A copy that goes wakes the copies waiting for the body: it may have
/// gone in a poll of the body that panicked, which they must read.
impl<B> Drop for Reader<B> {
    fn drop(&mut self) {
        let mut recording = lock(&self.recording);
        recording.copies -= 1;
        let woken = recording.take_waiting(self.cursor.id);
        drop(recording);
        wake(woken, self.cursor.id);
    }
}

// === impl Recording ===

impl<B> Recording<B> {
    fn is_replayable(&self) -> bool {
        self.sole_reader.is_none() && self.progress != Progress::Failed
    }

    /// The copies waiting for the body, but copy `id`, to be woken outside
    /// the lock; none waits after.
    fn take_waiting(&mut self, id: u64) -> Woken {
        let mut woken = self
            .wakers
            .as_ref()
            .map_or_else(Vec::new, |wakers| wakers.take());
        if let Some(alone) = self.alone.take().filter(|(copy, _)| *copy != id) {
            woken.push(alone);
        }
        woken
    }
}

impl<B: Body> Recording<B> {
    /// Polls the body for copy `id`. A copy alone polls it with its own
    /// waker; once other copies may wait for it too, every copy polls it
    /// with the waker of all the copies waiting, so that each is woken when
    /// the body moves on, not only the copy that polled it last (whose
    /// owner may never poll it again).
    fn poll_body(&mut self, id: u64, cx: &mut Context<'_>) -> BodyPolled<B> {
        if self.wakers.is_none() {
            let polled = self.body.as_mut().poll_frame(cx);
            if polled.is_ready() {
                return polled;
            }
            if self.copies == 1 {
                // Kept for the copies to come, which wake it when they
                // read on.
                match &mut self.alone {
                    Some((copy, waker)) if *copy == id && waker.will_wake(cx.waker()) => {}
                    alone => *alone = Some((id, cx.waker().clone())),
                }
                return Poll::Pending;
            }
        }
        // Another copy may wait too: the body must wake them all.
        let wakers = self.wakers.get_or_insert_with(|| {
            let wakers = Arc::new(Wakers::default());
            if let Some((copy, waker)) = self.alone.take() {
                wakers.register(copy, &waker);
            }
            wakers
        });
        // Registered before the body is polled: no wake-up is lost between.
        wakers.register(id, cx.waker());
        let waker = Waker::from(Arc::clone(wakers));
        self.body
            .as_mut()
            .poll_frame(&mut Context::from_waker(&waker))
    }
}

/// Wakes the copies `woken`, but copy `id`.
fn wake(woken: Woken, id: u64) {
    for (copy, waker) in woken {
        if copy != id {
            waker.wake();
        }
    }
}

/// The recording, locked. A poll of the body that panicked left it
/// poisoned: the body is then failed.
fn lock<B>(recording: &Mutex<Recording<B>>) -> MutexGuard<'_, Recording<B>> {
    recording.lock().unwrap_or_else(|poisoned| {
        let mut recording = poisoned.into_inner();
        recording.progress = Progress::Failed;
        recording
    })
}

/// A frame's data as [`Bytes`]: free when it is `Bytes` already.
fn into_bytes(mut data: impl Buf) -> Bytes {
    data.copy_to_bytes(data.remaining())
}
