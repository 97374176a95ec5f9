//! [`Guard`]: what an admitted call holds until it reports its outcome,
//! and how it tells an echo of a failure below from a failure of its own.

use std::sync::Arc;
use std::time::Duration;

use reflex_core::{BoxError, Classify, Outcome, Rejected, origin};

use crate::backend::{Backend, Ticket};
use crate::shared::Shared;

/// What an admitted call holds until it reports: its ticket, and with it a
/// half-open probe slot if it is a probe. Dropped unreported (the future
/// was dropped, or the inner service panicked), it gives the slot back and
/// counts for nothing.
///
/// Five words: the start time is nanoseconds since the layer's base
/// instant, with two reserved values, so the response future stays small
/// and plain on the request path.
pub(crate) struct Guard<C, B: Backend> {
    shared: Arc<Shared<C, B>>,
    ticket: Ticket,
    started: u64,
    below: Below,
}

/// What the request the call was made in knew of its calls below when
/// the call started: a failure of the call is an echo if, when it ends in
/// the same request, more of them have failed.
#[derive(Clone, Copy)]
struct Below {
    /// The request's id; 0 outside any request's frame, or when echoes
    /// count.
    request: u64,
    /// Its calls below that had failed.
    failed: u32,
}

impl Below {
    const UNTRACKED: Self = Self {
        request: 0,
        failed: 0,
    };

    #[inline]
    fn now() -> Self {
        match origin::current_failed_below() {
            Some((request, failed)) => Self { request, failed },
            None => Self::UNTRACKED,
        }
    }

    /// `true` when, in the request the call started in, a call below
    /// failed since.
    #[cold]
    fn failed_since(self) -> bool {
        self.request != 0
            && origin::current_failed_below()
                .is_some_and(|(request, failed)| request == self.request && failed > self.failed)
    }
}

/// `started` when the latency is not wanted.
const NOT_MEASURED: u64 = u64::MAX;
/// `started` once the outcome is recorded.
const REPORTED: u64 = u64::MAX - 1;

impl<C, B: Backend> Guard<C, B> {
    /// Reads the clock only when the backend wants the call's latency, and
    /// the request's frame unless echoes count. Made before the inner
    /// call, so that a failure below during it is seen.
    pub(crate) fn new(shared: Arc<Shared<C, B>>, ticket: Ticket) -> Self {
        let started = if shared.backend.needs_latency() {
            shared.since_base()
        } else {
            NOT_MEASURED
        };
        let below = if shared.count_echoes {
            Below::UNTRACKED
        } else {
            Below::now()
        };
        Self {
            shared,
            ticket,
            started,
            below,
        }
    }

    pub(crate) fn report<T>(&mut self, result: &Result<T, BoxError>)
    where
        C: Classify<T, BoxError>,
    {
        let outcome = match result {
            // A layer inside the breaker refused: that says nothing of the
            // dependency's health.
            Err(err) if Rejected::find(&**err).is_some() => Outcome::Ignored,
            result => match self.shared.classifier.classify(result.as_ref()) {
                // A call below failed meanwhile: the echo of its failure.
                // The component's own part of the call worked: it counts
                // as such, so that the rate of its own failures stays a
                // rate over all its calls (with echoes ignored instead, a
                // dependency's outage left only the component's few own
                // failures in the window, a rate of 100%, and tripped it).
                Outcome::Failure if self.below.failed_since() => Outcome::Success,
                outcome => outcome,
            },
        };
        let elapsed = (self.started != NOT_MEASURED)
            .then(|| Duration::from_nanos(self.shared.since_base().saturating_sub(self.started)));
        self.started = REPORTED;
        self.shared.backend.record(self.ticket, outcome, elapsed);
    }
}

impl<C, B: Backend> Drop for Guard<C, B> {
    fn drop(&mut self) {
        if self.started != REPORTED {
            self.shared.backend.abandon(self.ticket);
        }
    }
}
