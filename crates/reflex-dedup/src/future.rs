//! The [`ResponseFuture`] of [`Dedup`](crate::Dedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, RejectKind, Rejected};
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::error::{SharedError, WaitTimedOut};
use crate::flight::{Delivery, Flight, Received};
use crate::service::Shared;
use crate::share::{Share, Sharing};

pin_project! {
    /// The inner service's future with its error made a [`BoxError`]: what
    /// a shared call runs.
    pub(crate) struct CallFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CallFuture<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F, T, E> Future for CallFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

/// The flight type of a service.
pub(crate) type FlightOf<S, Req> =
    Flight<CallFuture<<S as Service<Req>>::Future>, <S as Service<Req>>::Response>;

/// A request waiting on a shared call. Dropped (answered, timed out, or
/// its future dropped), it leaves the call, which ends with its last
/// waiter.
pub(crate) struct Waiter<S, Req, K, KF, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Clone + Send + 'static,
    K: std::hash::Hash + Eq + Clone,
{
    pub(crate) flight: Arc<FlightOf<S, Req>>,
    pub(crate) id: usize,
    pub(crate) key: K,
    pub(crate) shared: Arc<Shared<S, Req, K, KF, H>>,
}

impl<S, Req, K, KF, H> Drop for Waiter<S, Req, K, KF, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Clone + Send + 'static,
    K: std::hash::Hash + Eq + Clone,
{
    fn drop(&mut self) {
        if self.flight.leave(self.id) {
            self.shared
                .table
                .remove(&self.key, &self.flight, &self.shared.stats);
        }
    }
}

pin_project! {
    /// The response future of [`Dedup`](crate::Dedup): the inner future of
    /// a request without a key; a wait on a shared call; or an answer ready
    /// at once (cached, or refused). A named type: a request without a key
    /// costs no allocation.
    ///
    /// # Cancel safety
    ///
    /// Dropping it leaves the shared call it waited on; the call goes on
    /// for the other waiters, and is dropped with the last of them.
    pub struct ResponseFuture<S, Req, K, KF, H>
    where
        S: Service<Req>,
        S::Future: Send,
        S::Future: 'static,
        S::Response: Clone,
        S::Response: Send,
        S::Response: 'static,
        S::Error: Into<BoxError>,
        K: std::hash::Hash,
        K: Eq,
        K: Clone,
    {
        #[pin]
        kind: Kind<S, Req, K, KF, H>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, K, KF, H>
    where
        S: Service<Req>,
        S::Future: Send,
        S::Future: 'static,
        S::Response: Clone,
        S::Response: Send,
        S::Response: 'static,
        S::Error: Into<BoxError>,
        K: std::hash::Hash,
        K: Eq,
        K: Clone,
    {
        Direct {
            #[pin]
            future: S::Future,
        },
        Ready {
            result: Option<Result<S::Response, BoxError>>,
        },
        Waiting {
            waiter: Option<Waiter<S, Req, K, KF, H>>,
            #[pin]
            timer: Option<Sleep>,
        },
    }
}

// === impl ResponseFuture ===

impl<S, Req, K, KF, H> ResponseFuture<S, Req, K, KF, H>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Clone + Send + 'static,
    S::Error: Into<BoxError>,
    K: std::hash::Hash + Eq + Clone,
{
    #[inline]
    pub(crate) fn direct(future: S::Future) -> Self {
        Self {
            kind: Kind::Direct { future },
        }
    }

    pub(crate) fn ready(result: Result<S::Response, BoxError>) -> Self {
        Self {
            kind: Kind::Ready {
                result: Some(result),
            },
        }
    }

    pub(crate) fn waiting(waiter: Waiter<S, Req, K, KF, H>, until: Option<Instant>) -> Self {
        Self {
            kind: Kind::Waiting {
                waiter: Some(waiter),
                timer: until.map(sleep_until),
            },
        }
    }
}

impl<S, Req, K, KF, H> Future for ResponseFuture<S, Req, K, KF, H>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Clone + Send + 'static,
    S::Error: Into<BoxError>,
    K: std::hash::Hash + Eq + Clone,
    H: Share<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future } => future.poll(cx).map_err(Into::into),
            KindProj::Ready { result } => Poll::Ready(
                result
                    .take()
                    .expect("ResponseFuture polled after completion"),
            ),
            KindProj::Waiting { waiter, timer } => {
                let Some(w) = waiter.as_ref() else {
                    panic!("ResponseFuture polled after completion")
                };
                match w.flight.poll(w.id, cx) {
                    Poll::Ready(delivery) => {
                        let w = waiter.take().expect("checked above");
                        Poll::Ready(deliver(&w, delivery))
                    }
                    Poll::Pending => match timer.as_pin_mut().map(|t| t.poll(cx)) {
                        Some(Poll::Ready(())) => {
                            // Leaves the call; the others wait on.
                            drop(waiter.take());
                            Poll::Ready(Err(WaitTimedOut.into()))
                        }
                        _ => Poll::Pending,
                    },
                }
            }
        }
    }
}

/// What waiter `w` hands its caller, from the call's outcome; the waiter
/// that ended the call also caches a successful answer.
fn deliver<S, Req, K, KF, H>(
    w: &Waiter<S, Req, K, KF, H>,
    delivery: Delivery<S::Response>,
) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Clone + Send + 'static,
    S::Error: Into<BoxError>,
    K: std::hash::Hash + Eq + Clone,
    H: Share<S::Response>,
{
    let shared = &w.shared;
    let result = match delivery.received {
        Received::Owned(result) => result,
        Received::Shared(result) => result.map_err(|err| SharedError::new(err).into()),
        Received::Aborted => {
            return Err(
                Rejected::new(RejectKind::DedupAborted, shared.stats.component.clone()).into(),
            );
        }
    };
    let mut response = result?;
    if delivery.ended_here {
        if let Some(cache) = &shared.cache {
            let weight = shared.share.weight(&response);
            cache.insert(w.key.clone(), response.clone(), weight, &shared.stats);
        }
    }
    let sharing = if delivery.shared {
        Sharing::Shared
    } else {
        Sharing::Own
    };
    shared.share.mark(&mut response, sharing);
    Ok(response)
}

impl<S, Req, K, KF, H> fmt::Debug for ResponseFuture<S, Req, K, KF, H>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Clone + Send + 'static,
    S::Error: Into<BoxError>,
    K: std::hash::Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Direct { .. } => "direct",
            Kind::Ready { .. } => "ready",
            Kind::Waiting {
                waiter: Some(_), ..
            } => "waiting",
            Kind::Waiting { .. } => "complete",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
