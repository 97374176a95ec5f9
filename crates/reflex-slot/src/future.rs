//! The [`ResponseFuture`] of [`SlotAdmission`](crate::SlotAdmission).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, RejectKind, Rejected};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower_service::Service;

use crate::table::{Grant, SlotGuard, WaiterGuard};

pin_project! {
    /// The response future of [`SlotAdmission`](crate::SlotAdmission).
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting, the request leaves its slot's queue (signalled
    /// as `SlotAbandoned`), also when its grant was on its way. Dropped
    /// while running (or when the inner service panics and its owner drops
    /// it), the inner future is dropped first and then the slot is handed to
    /// the next waiter. A running request replaced by a newer one drops its
    /// inner future and resolves to `Rejected { Replaced }`.
    pub struct ResponseFuture<S, Request, K>
    where
        S: Service<Request>,
        K: Hash,
        K: Eq,
        K: Clone,
    {
        #[pin]
        state: State<S, Request, K>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Request, K>
    where
        S: Service<Request>,
        K: Hash,
        K: Eq,
        K: Clone,
    {
        Refused {
            error: Option<BoxError>,
        },
        Passthrough {
            #[pin]
            future: S::Future,
        },
        Waiting {
            grant: oneshot::Receiver<Grant<K>>,
            waiter: Option<WaiterGuard<K>>,
            service: Option<S>,
            request: Option<Request>,
        },
        Running {
            // Declared first: a cancelled or dropped request's inner future
            // is dropped before its guard, so the next request starts only
            // once it is gone. (On completion the guard is released at once:
            // the finished future does nothing more.)
            #[pin]
            future: S::Future,
            guard: Option<SlotGuard<K>>,
            #[pin]
            cancelled: Option<WaitForCancellationFutureOwned>,
        },
    }
}

// === impl ResponseFuture ===

impl<S, Request, K> ResponseFuture<S, Request, K>
where
    S: Service<Request>,
    K: Hash + Eq + Clone,
{
    pub(crate) fn refused(error: BoxError) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }

    pub(crate) fn passthrough(future: S::Future) -> Self {
        Self {
            state: State::Passthrough { future },
        }
    }

    pub(crate) fn running(
        future: S::Future,
        guard: SlotGuard<K>,
        cancel: Option<CancellationToken>,
    ) -> Self {
        Self {
            state: State::Running {
                future,
                guard: Some(guard),
                cancelled: cancel.map(CancellationToken::cancelled_owned),
            },
        }
    }

    pub(crate) fn waiting(
        grant: oneshot::Receiver<Grant<K>>,
        waiter: WaiterGuard<K>,
        service: S,
        request: Request,
    ) -> Self {
        Self {
            state: State::Waiting {
                grant,
                waiter: Some(waiter),
                service: Some(service),
                request: Some(request),
            },
        }
    }
}

impl<S, Request, K> Future for ResponseFuture<S, Request, K>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
                StateProj::Passthrough { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Waiting {
                    grant,
                    waiter,
                    service,
                    request,
                } => {
                    let granted = ready!(Pin::new(grant).poll(cx));
                    let waiter = waiter
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match granted {
                        // Granted, then replaced before it could run: it
                        // never reaches the inner service, and hands the
                        // slot on (dropping the guard) to its replacement.
                        Ok(Grant::Start(guard, Some(cancel))) if cancel.is_cancelled() => {
                            let rejected =
                                Rejected::new(RejectKind::Replaced, guard.component().clone());
                            drop(guard);
                            waiter.answered();
                            state.set(State::Refused { error: None });
                            return Poll::Ready(Err(rejected.into()));
                        }
                        Ok(Grant::Start(guard, cancel)) => {
                            let mut service =
                                service.take().expect("a waiting request keeps its service");
                            let request =
                                request.take().expect("a waiting request keeps its request");
                            waiter.answered();
                            // `guard` is held across the call: a panic in it
                            // drops the guard and hands the slot on.
                            let future = service.call(request);
                            state.set(State::Running {
                                future,
                                guard: Some(guard),
                                cancelled: cancel.map(CancellationToken::cancelled_owned),
                            });
                        }
                        // Replaced while waiting.
                        Ok(Grant::Replaced) => {
                            let rejected =
                                Rejected::new(RejectKind::Replaced, waiter.component().clone());
                            waiter.answered();
                            state.set(State::Refused { error: None });
                            return Poll::Ready(Err(rejected.into()));
                        }
                        // Taken out of the queue without a word: only a
                        // panic of the key's `Clone` while the slot was
                        // handed on does that. It never runs, and its
                        // caller is told it was displaced.
                        Err(_) => {
                            let rejected =
                                Rejected::new(RejectKind::Replaced, waiter.component().clone());
                            waiter.dropped_unanswered();
                            state.set(State::Refused { error: None });
                            return Poll::Ready(Err(rejected.into()));
                        }
                    }
                }
                StateProj::Running {
                    future,
                    guard,
                    cancelled,
                } => {
                    if cancelled
                        .as_pin_mut()
                        .is_some_and(|cancelled| cancelled.poll(cx).is_ready())
                    {
                        let component = guard
                            .as_ref()
                            .expect("ResponseFuture polled after completion")
                            .component()
                            .clone();
                        // Drops the inner future, then frees the slot.
                        state.set(State::Refused { error: None });
                        return Poll::Ready(Err(
                            Rejected::new(RejectKind::Replaced, component).into()
                        ));
                    }
                    let output = ready!(future.poll(cx));
                    drop(guard.take());
                    return Poll::Ready(output.map_err(Into::into));
                }
            }
        }
    }
}

impl<S, Request, K> fmt::Debug for ResponseFuture<S, Request, K>
where
    S: Service<Request>,
    K: Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Refused { .. } => "refused",
            State::Passthrough { .. } => "passthrough",
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
