//! The [`ResponseFuture`] of [`CircuitBreak`](crate::CircuitBreak).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify, Outcome, Rejected, origin};
use std::time::Duration;

use crate::backend::{Backend, Ticket};
use crate::service::Shared;

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

    fn report<T>(&mut self, result: &Result<T, BoxError>)
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

pin_project! {
    /// The response future of [`CircuitBreak`](crate::CircuitBreak): the
    /// inner future of an admitted call, or a refusal ready at once. A named
    /// type, not a boxed one: the layer adds no `Send` or `'static` bound of
    /// its own.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes cancels the inner call, which then
    /// counts as neither success nor failure, and gives back the half-open
    /// probe slot it held, if any. The same holds when the inner future
    /// panics and its owner drops this one.
    pub struct ResponseFuture<F, C, B: Backend> {
        #[pin]
        state: State<F, C, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, B: Backend> {
        Admitted {
            #[pin]
            future: F,
            guard: Option<Guard<C, B>>,
        },
        Refused {
            // Boxed when refused (the refusal allocates either way): keeps
            // the future small for the admitted path.
            rejected: Option<BoxError>,
        },
    }
}

// === impl ResponseFuture ===

impl<F, C, B: Backend> ResponseFuture<F, C, B> {
    pub(crate) fn admitted(future: F, guard: Guard<C, B>) -> Self {
        Self {
            state: State::Admitted {
                future,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn refused(rejected: Rejected) -> Self {
        Self {
            state: State::Refused {
                rejected: Some(rejected.into()),
            },
        }
    }
}

impl<F, C, B, T, E> Future for ResponseFuture<F, C, B>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
    B: Backend,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { future, guard } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(mut guard) = guard.take() {
                    guard.report(&result);
                }
                Poll::Ready(result)
            }
            StateProj::Refused { rejected } => Poll::Ready(Err(rejected
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F, C, B: Backend> fmt::Debug for ResponseFuture<F, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitted { guard: Some(_), .. } => "admitted",
            State::Refused { rejected: Some(_) } => "refused",
            _ => "complete",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
