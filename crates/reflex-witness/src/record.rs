//! Recording one request: its start in its component's counters and its
//! frame, and its end (succeeded, failed, ignored, refused or cancelled)
//! exactly once, whichever way it ends.

use std::fmt;
use std::sync::atomic::Ordering;

use reflex_core::origin::{Below, Caller, Frame};
use reflex_core::{BoxError, Classify, Outcome, Rejected};

use crate::events::{FAILED, FAILED_BELOW};
use crate::witness::Witness;

/// Where a component's requests are recorded: its cell of the witness, and
/// what counts as a failure.
#[derive(Clone)]
pub(crate) struct Recorder<C> {
    pub(crate) witness: Witness,
    /// The component's place in the witness.
    pub(crate) index: usize,
    pub(crate) classifier: C,
}

// === impl Recorder ===

impl<C: Clone> Recorder<C> {
    /// Starts a request: its frame, below the request whose frame is
    /// current (a caller's, in this task), which counts it as a call below;
    /// and its guard, which ends it. The guard exists before the inner
    /// call: a panic in `call` drops it, which ends the request as
    /// cancelled.
    #[inline(always)]
    pub(crate) fn start(&self) -> (Frame, Guard<C>) {
        let witness = &self.witness;
        let index = self.index;
        let started = witness.now_ns();
        let frame = Frame::start(u32::try_from(index).unwrap_or(u32::MAX), started);
        let caller = frame.caller();
        let edge = frame
            .parent_tag()
            .and_then(|caller| witness.edge(caller as usize, index));
        witness
            .cell(index)
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            recorder: self.clone(),
            started,
            caller,
            edge,
            ended: false,
        };
        (frame, guard)
    }
}

impl<C> fmt::Debug for Recorder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.witness.cell(self.index).name.get())
            .finish_non_exhaustive()
    }
}

/// A request in flight: ends it in its component's counters, and in its
/// caller's frame.
pub(crate) struct Guard<C> {
    recorder: Recorder<C>,
    /// On the witness's clock.
    started: u64,
    /// Its caller, told at its end.
    caller: Caller,
    /// The edge from its caller's component to its own, if it has a caller.
    edge: Option<u32>,
    ended: bool,
}

// === impl Guard ===

impl<C> Guard<C> {
    /// `true` once the request has ended with a result.
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// Ends the request with `result`, its `frame` and what its calls
    /// `below` did.
    pub(crate) fn end<T>(&mut self, result: &Result<T, BoxError>, frame: &Frame, below: Below)
    where
        C: Classify<T, BoxError>,
    {
        let witness = &self.recorder.witness;
        let index = self.recorder.index;
        let cell = witness.cell(index);
        let now = witness.now_ns();
        let elapsed = now.saturating_sub(self.started);
        let own_time = elapsed.saturating_sub(below.waited_ns(now));
        // A refusal by a layer of this component's own stack counts as a
        // refusal. One that another component's stack made below, handed
        // up by a handler, is an error like any other: an echo.
        let refused = result
            .as_ref()
            .err()
            .and_then(|err| Rejected::find(&**err))
            .filter(|rejected| {
                below.failed() == 0 || cell.name.get() == Some(rejected.component())
            });
        let failed = if let Some(rejected) = refused {
            let code = cell.reject(rejected.kind());
            witness.note(index, now, code);
            true
        } else {
            // Successes and failures are counted by their latency
            // histograms: one `fetch_add` for both.
            match self.recorder.classifier.classify(result.as_ref()) {
                Outcome::Success => {
                    cell.latency.record(elapsed);
                    if own_time < elapsed {
                        // It waited on calls below: its self time apart,
                        // and its latency again to take out of the
                        // successes' at the cycle. (A success that waited
                        // on nothing has its latency for self time: one
                        // record, no more.)
                        cell.self_time.record(own_time);
                        cell.waited_latency.record(elapsed);
                    }
                    false
                }
                Outcome::Failure => {
                    cell.failed_latency.record(elapsed);
                    if below.failed() > 0 {
                        // An echo of a failure below: not its own.
                        cell.propagated.fetch_add(1, Ordering::Relaxed);
                        witness.note(index, now, FAILED_BELOW);
                    } else {
                        cell.self_time.record(own_time);
                        witness.note(index, now, FAILED);
                    }
                    true
                }
                Outcome::Ignored => {
                    cell.ignored.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        };
        witness.record_call(frame, index, elapsed, failed);
        self.finish(now, failed);
        self.ended = true;
    }

    /// Tells the caller's frame (current when this ends in its task) and
    /// the edge from the caller how the call went.
    fn finish(&self, now: u64, failed: bool) {
        self.caller.end(now, failed);
        if let Some(edge) = self.edge {
            self.recorder.witness.count_edge(edge, failed);
        }
    }
}

impl<C> Drop for Guard<C> {
    fn drop(&mut self) {
        let witness = &self.recorder.witness;
        let cell = witness.cell(self.recorder.index);
        if !self.ended {
            cell.cancelled.fetch_add(1, Ordering::Relaxed);
            // A call dropped before its end failed its caller.
            self.finish(witness.now_ns(), true);
        }
        cell.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
