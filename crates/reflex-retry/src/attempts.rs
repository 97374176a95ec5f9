//! [`Attempts`]: the attempts of one request, and the decision after each
//! (the caller's answer, or a retry at an instant).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use reflex_core::{BoxError, Classify, Outcome, RejectKind, Rejected, RetryReason, Signal};
use tokio::time::Instant;
use tower_service::Service;

use crate::error::TimedOut;
use crate::logs;
use crate::policy::{Decision, Policy};
use crate::shared::Shared;
use crate::stats::Retrying;
use crate::timer::after;

/// What the caller gets for a request.
pub(crate) type Answer<R> = Result<R, BoxError>;

/// The attempts of one request: how many were made, its deadline, and,
/// when it may be retried, what a retry needs.
pub(crate) struct Attempts<S, Req, P, C>
where
    S: Service<Req>,
{
    /// `None` when the request is sent once.
    retryable: Option<Retryable<S, Req, S::Response, P, C>>,
    /// Attempts made so far.
    pub(crate) attempt: u32,
    pub(crate) deadline: Option<Instant>,
}

/// A request that may be retried: what its next attempt needs.
pub(crate) struct Retryable<S, Req, R, P, C> {
    /// The ready service, moved out of the service that made the call.
    service: S,
    /// The copy of the request kept for the next attempt; `None` once the
    /// last attempt took it.
    copy: Option<Req>,
    shared: Arc<Shared<P, C>>,
    /// `None` until its first retry, so that a request that is not retried
    /// drops one `None`.
    cycle: Option<Cycle<R>>,
}

/// The retries of a request so far.
struct Cycle<R> {
    previous_delay: Duration,
    /// The last failed attempt's result, returned if the deadline passes
    /// before the next one ends.
    last: Option<Answer<R>>,
    /// Counts the request as retrying for as long as it lives.
    _retrying: Retrying,
}

/// A retry the classifier and the policy (or a breaker below) ask for.
struct Wait {
    delay: Duration,
    reason: RetryReason,
}

// === impl Attempts ===

impl<S, Req, P, C> Attempts<S, Req, P, C>
where
    S: Service<Req>,
{
    /// The first attempt of a request, `retryable` or sent once.
    #[inline]
    pub(crate) fn new(
        retryable: Option<Retryable<S, Req, S::Response, P, C>>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            retryable,
            attempt: 1,
            deadline,
        }
    }
}

impl<S, Req, P, C> Attempts<S, Req, P, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: Policy<Req, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    /// Decides what follows an attempt that ended in `result`: the answer
    /// for the caller, or a retry at the returned instant.
    ///
    /// The common case first: a request sent once, or a first attempt that
    /// succeeded, is answered without the retry machinery.
    #[inline]
    pub(crate) fn decide(
        &mut self,
        result: Answer<S::Response>,
    ) -> ControlFlow<Answer<S::Response>, Instant> {
        let Some(retryable) = &mut self.retryable else {
            // Sent once.
            return ControlFlow::Break(result);
        };
        let mut outcome = None;
        if self.attempt == 1 && result.is_ok() {
            let first = retryable.shared.classifier.classify(result.as_ref());
            if !first.is_failure() {
                return ControlFlow::Break(result);
            }
            outcome = Some(first);
        }
        retryable.decide(self.attempt, self.deadline, result, outcome)
    }

    /// The deadline passed before the attempt in flight ended: the last
    /// attempt's result if there is one, else a deadline error.
    pub(crate) fn deadline_passed(&mut self) -> Answer<S::Response> {
        let Some(retryable) = &mut self.retryable else {
            // Sent once.
            return Err(TimedOut::deadline().into());
        };
        let result = retryable
            .cycle
            .as_mut()
            .and_then(|cycle| cycle.last.take())
            .unwrap_or_else(|| Err(TimedOut::deadline().into()));
        count_end(&retryable.shared, self.attempt, result, Outcome::Failure)
    }

    /// Drives the service to readiness for a retry, then calls it with the
    /// next attempt's request: the attempt's future, with `timer` set to
    /// when it times out, or, when the service failed to become ready, the
    /// caller's answer.
    pub(crate) fn poll_next_attempt(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut Option<Instant>,
    ) -> Poll<Result<S::Future, Answer<S::Response>>> {
        let Some(retryable) = &mut self.retryable else {
            unreachable!("only a request that may be retried waits to retry")
        };
        if !retryable.can_send() {
            // No need to wait for the service: the kept copy can only fail.
            return Poll::Ready(Err(retryable.give_up(self.attempt)));
        }
        if let Err(err) = ready!(retryable.service.poll_ready(cx)) {
            let result = Err(err.into());
            return Poll::Ready(Err(count_end(
                &retryable.shared,
                self.attempt,
                result,
                Outcome::Failure,
            )));
        }
        let shared = &retryable.shared;
        let copy = if self.attempt + 1 < shared.max_attempts {
            retryable
                .copy
                .as_ref()
                .and_then(|copy| shared.policy.clone_request(copy))
        } else {
            None
        };
        let request = match copy {
            Some(request) => request,
            // The last attempt (or the policy could not copy again): send
            // the kept copy itself, if it can still be sent (its body may
            // have gone past its limit while the service got ready).
            None if retryable.can_send() => retryable
                .copy
                .take()
                .expect("a retry always has its request"),
            None => return Poll::Ready(Err(retryable.give_up(self.attempt))),
        };
        self.attempt += 1;
        let shared = &retryable.shared;
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        *timer = if shared.attempt_timeout.is_none() {
            self.deadline
        } else {
            shared.attempt_end(Instant::now(), self.deadline)
        };
        Poll::Ready(Ok(retryable.service.call(request)))
    }
}

// === impl Retryable ===

impl<S, Req, R, P, C> Retryable<S, Req, R, P, C> {
    /// A request whose `copy` is kept for its next attempt on the ready
    /// `service`.
    #[inline]
    pub(crate) fn new(service: S, copy: Req, shared: Arc<Shared<P, C>>) -> Self {
        Self {
            service,
            copy: Some(copy),
            shared,
            cycle: None,
        }
    }

    /// `true` while the kept copy can be sent: the policy says so.
    fn can_send(&self) -> bool
    where
        P: Policy<Req, R>,
    {
        self.copy
            .as_ref()
            .is_some_and(|copy| self.shared.policy.can_send(copy))
    }

    /// Ends a request whose kept copy cannot be sent, after `attempt`
    /// attempts: the last attempt's result, counted as given up (the
    /// request is in a retry cycle, even when only its first attempt was
    /// made).
    #[cold]
    fn give_up(&mut self, attempt: u32) -> Answer<R> {
        let result = self
            .cycle
            .as_mut()
            .and_then(|cycle| cycle.last.take())
            .expect("a retry keeps the result of the attempt before it");
        let stats = &self.shared.stats;
        stats.gave_up.fetch_add(1, Ordering::Relaxed);
        logs::ended(stats, attempt, false);
        result
    }

    /// Decides what follows an attempt, beyond the fast path, that ended
    /// in `result` (classified `outcome`, if it was already): the answer
    /// for the caller, or a retry at the returned instant.
    #[inline(never)]
    fn decide(
        &mut self,
        attempt: u32,
        deadline: Option<Instant>,
        result: Answer<R>,
        outcome: Option<Outcome>,
    ) -> ControlFlow<Answer<R>, Instant>
    where
        P: Policy<Req, R>,
        C: Classify<R, BoxError>,
    {
        let shared = &*self.shared;
        let (outcome, wait) = self.wanted_retry(attempt, &result, outcome);
        let Some(Wait { delay, reason }) = wait else {
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
                logs::budget_exhausted(stats, next);
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
        logs::retrying(stats, next, delay, reason);
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
    /// classified already), and the retry the classifier and the policy, or
    /// a breaker below, want for it, if any. The deadline and the budget
    /// have their say after.
    fn wanted_retry(
        &self,
        attempt: u32,
        result: &Answer<R>,
        outcome: Option<Outcome>,
    ) -> (Outcome, Option<Wait>)
    where
        P: Policy<Req, R>,
        C: Classify<R, BoxError>,
    {
        let shared = &*self.shared;
        if let Err(err) = result {
            if let Some(rejected) = Rejected::find(&**err) {
                // Another layer refused: never retried, but for a breaker
                // below that said when it probes, when the layer was asked
                // to wait for it and the wait is within its bound (and the
                // request is not used up).
                let wait = shared
                    .open_breaker_wait
                    .and_then(|max_wait| {
                        circuit_open_wait(rejected).filter(|after| *after <= max_wait)
                    })
                    .filter(|_| self.copy.is_some())
                    .map(|delay| Wait {
                        delay,
                        reason: RetryReason::CircuitOpen,
                    });
                return (Outcome::Ignored, wait);
            }
        }
        let outcome = outcome.unwrap_or_else(|| shared.classifier.classify(result.as_ref()));
        let Some(copy) = self.copy.as_ref().filter(|_| outcome.is_failure()) else {
            return (outcome, None);
        };
        let reason = match result {
            Ok(_) => RetryReason::Response,
            Err(err) if err.downcast_ref::<TimedOut>().is_some() => RetryReason::AttemptTimeout,
            Err(_) => RetryReason::Error,
        };
        let wait = match shared.policy.retry(copy, result.as_ref()) {
            Decision::Stop => None,
            Decision::After(delay) if delay <= shared.delays.cap() => Some(Wait {
                delay,
                reason: RetryReason::RetryAfter,
            }),
            Decision::After(_) | Decision::Backoff => {
                let previous = self
                    .cycle
                    .as_ref()
                    .map_or(Duration::ZERO, |cycle| cycle.previous_delay);
                Some(Wait {
                    delay: shared
                        .delays
                        .delay(attempt, previous, || shared.stats.unit()),
                    reason,
                })
            }
        };
        (outcome, wait)
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
        logs::ended(stats, attempt, outcome.is_success());
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
