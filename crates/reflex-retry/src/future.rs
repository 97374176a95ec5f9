//! The [`ResponseFuture`] of [`Retry`](crate::Retry) (and of the http
//! retry service).

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify};
use tokio::time::Instant;
use tower_service::Service;

use crate::attempts::{Attempts, Retryable};
use crate::error::TimedOut;
use crate::policy::Policy;
use crate::timer::Timer;

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

// === impl ResponseFuture ===

impl<S, Request, P, C> ResponseFuture<S, Request, P, C>
where
    S: Service<Request>,
{
    /// The first attempt's `future`, of a request that is `retryable` or
    /// sent once; `timer` is when the attempt times out, `deadline` when
    /// the request does.
    #[inline]
    pub(crate) fn new(
        future: S::Future,
        retryable: Option<Retryable<S, Request, S::Response, P, C>>,
        timer: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Calling { future },
            timer: Timer::new(timer),
            attempts: Attempts::new(retryable, deadline),
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
                    match this.attempts.decide(result) {
                        ControlFlow::Break(answer) => {
                            this.state.set(State::Done);
                            return Poll::Ready(answer);
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
                        Poll::Ready(Err(answer)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(answer);
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
