//! The [`ResponseFuture`] of [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify, Outcome, RejectKind, Rejected, RetryReason, Signal};
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::error::TimedOut;
use crate::handle::Retrying;
use crate::policy::{Decision, Policy};
use crate::service::{Shared, after};

pin_project! {
    /// The response future of [`Retry`](crate::Retry): the first attempt's
    /// future, then, if it failed and may be retried, a wait, the inner
    /// service's readiness and the next attempt, until one is final. A named
    /// type, not a boxed one: a request that is not retried costs no
    /// allocation, unless it has a timer (an attempt timeout or a deadline)
    /// and is still running at its first poll, which allocates the timer's
    /// sleep once.
    ///
    /// # Cancel safety
    ///
    /// Dropping it stops everything: the attempt in flight is dropped, and
    /// no later attempt is made, also when it is dropped while waiting out
    /// a backoff.
    pub struct ResponseFuture<S, Request, P, C>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S::Future>,
        timer: Timer,
        attempts: Attempts<S, Request, P, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
        },
        // The timer holds the backoff.
        Waiting,
        // The timer holds the deadline, if any.
        Readying,
        Done,
    }
}

/// One timer for the attempt's time (or the deadline) while an attempt
/// runs, and for the backoff between attempts.
///
/// Its `Sleep` is on the heap, made the first time the timer has to be
/// polled and reset after that: a request with no timer, or one answered
/// at its first poll, allocates nothing, and the response future stays
/// smaller by a tokio `Sleep` (about 150 bytes), which every layer above
/// moves on every call.
struct Timer {
    at: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// What a request that may be retried keeps: the ready service, a copy of
/// the request, and the layer's shared state.
pub(crate) type Kept<S, Request, P, C> = (S, Request, Arc<Shared<P, C>>);

/// What the caller gets for a request.
type Answer<R> = Result<R, BoxError>;

/// Everything but the pinned parts: what a retry needs.
struct Attempts<S, Request, P, C>
where
    S: Service<Request>,
{
    /// What a request that may be retried keeps besides its copy; `None`
    /// when the request is sent once.
    retrier: Option<Retrier<S, S::Response, P, C>>,
    /// The copy of the request kept for the next attempt; `None` once no
    /// attempt is left to make.
    copy: Option<Request>,
    /// Attempts made so far.
    attempt: u32,
    deadline: Option<Instant>,
}

/// What a request that may be retried keeps besides its copy.
struct Retrier<S, R, P, C> {
    /// The ready service, moved out of the `Retry` that made the call.
    service: S,
    shared: Arc<Shared<P, C>>,
    /// What a request in a retry cycle carries: `None` until its first
    /// retry, so a request that is not retried drops one `None`.
    cycle: Option<Cycle<R>>,
}

/// The state of a retry cycle.
struct Cycle<R> {
    previous_delay: Duration,
    /// The last failed attempt's result, returned if the deadline passes
    /// before the next one ends.
    last: Option<Result<R, BoxError>>,
    /// Counts the request as retrying for as long as it lives.
    _retrying: Retrying,
}

// === impl ResponseFuture ===

impl<S, Request, P, C> ResponseFuture<S, Request, P, C>
where
    S: Service<Request>,
{
    #[inline]
    pub(crate) fn new(
        future: S::Future,
        retry: Option<Kept<S, Request, P, C>>,
        timer: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Self {
        let (retrier, copy) = match retry {
            Some((service, copy, shared)) => (
                Some(Retrier {
                    service,
                    shared,
                    cycle: None,
                }),
                Some(copy),
            ),
            None => (None, None),
        };
        Self {
            state: State::Calling { future },
            timer: Timer {
                at: timer,
                sleep: None,
            },
            attempts: Attempts {
                retrier,
                copy,
                attempt: 1,
                deadline,
            },
        }
    }
}

impl<S, Request, P, C> Future for ResponseFuture<S, Request, P, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    P: Policy<Request, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result.map_err(Into::into),
                        Poll::Pending => match this.timer.fired(cx) {
                            None => return Poll::Pending,
                            Some(at) if this.attempts.deadline.is_some_and(|d| at >= d) => {
                                this.state.set(State::Done);
                                return Poll::Ready(this.attempts.deadline_passed());
                            }
                            Some(_) => Err(TimedOut::attempt().into()),
                        },
                    };
                    match this.attempts.settle(result) {
                        ControlFlow::Break(result) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                        ControlFlow::Continue(until) => {
                            this.state.set(State::Waiting);
                            this.timer.at = Some(until);
                        }
                    }
                }
                StateProj::Waiting => {
                    ready!(this.timer.poll_sleep(cx));
                    this.state.set(State::Readying);
                    this.timer.at = this.attempts.deadline;
                }
                StateProj::Readying => {
                    match this.attempts.poll_next_attempt(cx, &mut this.timer.at) {
                        Poll::Ready(Ok(future)) => this.state.set(State::Calling { future }),
                        Poll::Ready(Err(result)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                        Poll::Pending => {
                            if this.timer.fired(cx).is_none() {
                                return Poll::Pending;
                            }
                            this.state.set(State::Done);
                            return Poll::Ready(this.attempts.deadline_passed());
                        }
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Request, P, C> fmt::Debug for ResponseFuture<S, Request, P, C>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Waiting => "waiting",
            State::Readying => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempt", &self.attempts.attempt)
            .finish()
    }
}

// === impl Timer ===

impl Timer {
    /// The sleep for `at`, made or reset.
    fn armed(&mut self, at: Instant) -> Pin<&mut Sleep> {
        match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
            }
            None => self.sleep = Some(Box::pin(sleep_until(at))),
        }
        let Some(sleep) = self.sleep.as_mut() else {
            unreachable!("armed just above")
        };
        sleep.as_mut()
    }

    /// When the timer fired, if it has.
    fn fired(&mut self, cx: &mut Context<'_>) -> Option<Instant> {
        let at = self.at?;
        self.armed(at).poll(cx).is_ready().then_some(at)
    }

    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.at {
            Some(at) => self.armed(at).poll(cx),
            None => Poll::Ready(()),
        }
    }
}

// === impl Attempts ===

impl<S, Request, P, C> Attempts<S, Request, P, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    P: Policy<Request, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    /// What follows an attempt that ended in `result`: the result for the
    /// caller, or a retry at the returned instant.
    ///
    /// The common case first: a request sent once, or a first attempt that
    /// succeeded, is handed back without the retry machinery.
    #[inline]
    fn settle(
        &mut self,
        result: Result<S::Response, BoxError>,
    ) -> ControlFlow<Result<S::Response, BoxError>, Instant> {
        let Some(retrier) = &mut self.retrier else {
            // Sent once.
            return ControlFlow::Break(result);
        };
        let mut outcome = None;
        if self.attempt == 1 && result.is_ok() {
            let first = retrier.shared.classifier.classify(result.as_ref());
            if !first.is_failure() {
                return ControlFlow::Break(result);
            }
            outcome = Some(first);
        }
        retrier.decide(
            self.copy.as_ref(),
            self.attempt,
            self.deadline,
            result,
            outcome,
        )
    }

    /// The deadline passed before the attempt in flight ended: the last
    /// attempt's result if there is one, else a deadline error.
    fn deadline_passed(&mut self) -> Result<S::Response, BoxError> {
        let Some(retrier) = &mut self.retrier else {
            // Sent once.
            return Err(TimedOut::deadline().into());
        };
        let result = retrier
            .cycle
            .as_mut()
            .and_then(|cycle| cycle.last.take())
            .unwrap_or_else(|| Err(TimedOut::deadline().into()));
        count_end(&retrier.shared, self.attempt, result, Outcome::Failure)
    }

    /// Drives the service to readiness for a retry, then calls it with the
    /// next attempt's request: the attempt's future, with `timer` set to
    /// when it times out, or, when the service failed to become ready, the
    /// request's result.
    fn poll_next_attempt(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut Option<Instant>,
    ) -> Poll<Result<S::Future, Answer<S::Response>>> {
        let Some(retrier) = &mut self.retrier else {
            unreachable!("only a request that may be retried waits to retry")
        };
        if let Err(err) = ready!(retrier.service.poll_ready(cx)) {
            let result = Err(err.into());
            return Poll::Ready(Err(count_end(
                &retrier.shared,
                self.attempt,
                result,
                Outcome::Failure,
            )));
        }
        let shared = &retrier.shared;
        self.attempt += 1;
        let copy = if self.attempt < shared.max_attempts {
            self.copy
                .as_ref()
                .and_then(|copy| shared.policy.clone_request(copy))
        } else {
            None
        };
        let request = match copy {
            Some(request) => request,
            // The last attempt (or the policy could not copy again): send
            // the kept copy itself.
            None => self.copy.take().expect("a retry always has its request"),
        };
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        *timer = if shared.attempt_timeout.is_none() {
            self.deadline
        } else {
            shared.attempt_end(Instant::now(), self.deadline)
        };
        Poll::Ready(Ok(retrier.service.call(request)))
    }
}

// === impl Retrier ===

impl<S, R, P, C> Retrier<S, R, P, C> {
    /// What follows an attempt beyond the fast path that ended in `result`
    /// (classified `outcome`, if it was already): the result for the
    /// caller, or a retry at the returned instant.
    #[inline(never)]
    fn decide<Request>(
        &mut self,
        copy: Option<&Request>,
        attempt: u32,
        deadline: Option<Instant>,
        result: Result<R, BoxError>,
        outcome: Option<Outcome>,
    ) -> ControlFlow<Result<R, BoxError>, Instant>
    where
        P: Policy<Request, R>,
        C: Classify<R, BoxError>,
    {
        let shared = &*self.shared;
        let (outcome, retry) = self.judge(copy, attempt, &result, outcome);
        let Some((delay, reason)) = retry else {
            return ControlFlow::Break(count_end(shared, attempt, result, outcome));
        };
        // No retry starts at or after the deadline, nor beyond the horizon
        // (a `Duration::MAX` cap lets any delay in).
        let until = after(Instant::now(), delay)
            .filter(|until| deadline.is_none_or(|deadline| *until < deadline));
        let Some(until) = until else {
            return ControlFlow::Break(count_end(shared, attempt, result, outcome));
        };
        let stats = &shared.stats;
        let next = attempt + 1;
        if let Some(budget) = &stats.budget {
            if !budget.withdraw(stats.now()) {
                stats.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                shared.sink.emit(
                    &stats.component,
                    Signal::RetryBudgetExhausted { attempt: next },
                );
                tracing::debug!(
                    component = %stats.component,
                    attempt = next,
                    "retry budget exhausted"
                );
                return ControlFlow::Break(count_end(shared, attempt, result, outcome));
            }
        }
        shared.sink.emit(
            &stats.component,
            Signal::RetryAttempt {
                attempt: next,
                delay,
                reason,
            },
        );
        tracing::debug!(
            component = %stats.component,
            attempt = next,
            ?delay,
            %reason,
            "retrying"
        );
        match &mut self.cycle {
            Some(cycle) => {
                cycle.previous_delay = delay;
                cycle.last = Some(result);
            }
            None => {
                self.cycle = Some(Cycle {
                    previous_delay: delay,
                    last: Some(result),
                    _retrying: Retrying::new(Arc::clone(stats)),
                });
            }
        }
        ControlFlow::Continue(until)
    }

    /// How the attempt that ended in `result` counts (`outcome`, if it was
    /// classified already), and whether (after how long, and why) it is
    /// retried.
    fn judge<Request>(
        &self,
        copy: Option<&Request>,
        attempt: u32,
        result: &Result<R, BoxError>,
        outcome: Option<Outcome>,
    ) -> (Outcome, Option<(Duration, RetryReason)>)
    where
        P: Policy<Request, R>,
        C: Classify<R, BoxError>,
    {
        let shared = &*self.shared;
        if let Err(err) = result {
            if let Some(rejected) = Rejected::find(&**err) {
                // Another layer refused: never retried, but for a breaker
                // below that said when it probes, when the layer was asked
                // to wait for it and the wait is within its bound (and the
                // request is not used up). The deadline is checked next.
                let wait = shared
                    .open_breaker_wait
                    .and_then(|max_wait| {
                        circuit_open_wait(rejected).filter(|after| *after <= max_wait)
                    })
                    .filter(|_| copy.is_some())
                    .map(|after| (after, RetryReason::CircuitOpen));
                return (Outcome::Ignored, wait);
            }
        }
        let outcome = outcome.unwrap_or_else(|| shared.classifier.classify(result.as_ref()));
        let Some(copy) = copy.filter(|_| outcome.is_failure()) else {
            return (outcome, None);
        };
        let reason = match result {
            Ok(_) => RetryReason::Response,
            Err(err) if err.downcast_ref::<TimedOut>().is_some() => RetryReason::AttemptTimeout,
            Err(_) => RetryReason::Error,
        };
        let retry = match shared.policy.retry(copy, result.as_ref()) {
            Decision::Stop => None,
            Decision::After(after) if after <= shared.delays.cap() => {
                Some((after, RetryReason::RetryAfter))
            }
            Decision::After(_) | Decision::Backoff => Some((
                shared.delays.delay(
                    attempt,
                    self.cycle
                        .as_ref()
                        .map_or(Duration::ZERO, |cycle| cycle.previous_delay),
                    &shared.stats,
                ),
                reason,
            )),
        };
        (outcome, retry)
    }
}

/// Counts how a request that was retried ended, and returns its result.
fn count_end<P, C, T>(shared: &Shared<P, C>, attempt: u32, result: T, outcome: Outcome) -> T {
    if attempt > 1 {
        let stats = &shared.stats;
        let counter = if outcome.is_success() {
            &stats.recovered
        } else {
            &stats.gave_up
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// How long a `CircuitOpen` rejection asks to wait, if it is one that says
/// (a breaker forced open does not).
fn circuit_open_wait(rejected: &Rejected) -> Option<Duration> {
    (rejected.kind() == RejectKind::CircuitOpen)
        .then(|| rejected.retry_after())
        .flatten()
}
