//! The [`ResponseFuture`] of [`Dedup`](crate::Dedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, RejectKind, Rejected};
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::error::{SharedError, WaitTimedOut};
use crate::flight::{Delivery, Flight, Received};
use crate::service::Shared;
use crate::share::{Share, Sharing};
use crate::{Inner, Key};

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
pub(crate) type FlightOf<S, Req, H> = Flight<
    CallFuture<<S as Service<Req>>::Future>,
    <S as Service<Req>>::Response,
    <H as Share<<S as Service<Req>>::Response>>::Shared,
>;

/// A request waiting on a shared call. Dropped (answered, timed out, or
/// its future dropped), it leaves the call, which ends with its last
/// waiter.
pub(crate) struct Waiter<S, Req, K, KF, H>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    pub(crate) flight: Arc<FlightOf<S, Req, H>>,
    pub(crate) id: usize,
    pub(crate) key: K,
    pub(crate) shared: Arc<Shared<S, Req, K, KF, H>>,
    /// A follower's own request, and a service to send it with, should the
    /// answer turn out not shareable.
    pub(crate) fallback: Option<(S, Req)>,
}

impl<S, Req, K, KF, H> Drop for Waiter<S, Req, K, KF, H>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
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
        S: Inner<Req>,
        K: Key,
        H: Share<S::Response>,
    {
        #[pin]
        kind: Kind<S, Req, K, KF, H>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, K, KF, H>
    where
        S: Inner<Req>,
        K: Key,
        H: Share<S::Response>,
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
        // The answer was not shareable: this follower makes its own call.
        FallBack {
            service: S,
            request: Option<Req>,
        },
    }
}

// === impl ResponseFuture ===

impl<S, Req, K, KF, H> ResponseFuture<S, Req, K, KF, H>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
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
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        // A request without a key: nothing but the inner future.
        if let KindProj::Direct { future } = kind.as_mut().project() {
            return future.poll(cx).map_err(Into::into);
        }
        poll_keyed(kind, cx)
    }
}

/// The rest of [`ResponseFuture::poll`]: waiting, falling back, ready.
#[inline(never)]
fn poll_keyed<S, Req, K, KF, H>(
    mut kind: Pin<&mut Kind<S, Req, K, KF, H>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    {
        loop {
            match kind.as_mut().project() {
                KindProj::Direct { future } => return future.poll(cx).map_err(Into::into),
                KindProj::Ready { result } => {
                    return Poll::Ready(
                        result
                            .take()
                            .expect("ResponseFuture polled after completion"),
                    );
                }
                KindProj::Waiting { waiter, timer } => {
                    let Some(w) = waiter.as_ref() else {
                        panic!("ResponseFuture polled after completion")
                    };
                    let share = &w.shared.share;
                    match w.flight.poll(w.id, cx, |answer| share.share(answer)) {
                        Poll::Ready(delivery) => {
                            let mut w = waiter.take().expect("checked above");
                            match deliver(&w, delivery) {
                                Delivered::Answer(result) => return Poll::Ready(result),
                                Delivered::FallBack => {
                                    let Some((service, request)) = w.fallback.take() else {
                                        // The leader's request went into
                                        // the call it no longer has.
                                        return Poll::Ready(Err(aborted(&w)));
                                    };
                                    drop(w);
                                    kind.set(Kind::FallBack {
                                        service,
                                        request: Some(request),
                                    });
                                }
                            }
                        }
                        Poll::Pending => {
                            return match timer.as_pin_mut().map(|t| t.poll(cx)) {
                                Some(Poll::Ready(())) => {
                                    // Leaves the call; the others wait on.
                                    drop(waiter.take());
                                    Poll::Ready(Err(WaitTimedOut.into()))
                                }
                                _ => Poll::Pending,
                            };
                        }
                    }
                }
                KindProj::FallBack { service, request } => {
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(err.into()));
                    }
                    let request = request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let future = service.call(request);
                    kind.set(Kind::Direct { future });
                }
            }
        }
    }
}

/// What a waiter's delivery comes to.
enum Delivered<Res> {
    Answer(Result<Res, BoxError>),
    FallBack,
}

/// What waiter `w` hands its caller, from what it received; the waiter
/// that ended the call also caches a shared answer.
fn deliver<S, Req, K, KF, H>(
    w: &Waiter<S, Req, K, KF, H>,
    delivery: Delivery<S::Response, H::Shared>,
) -> Delivered<S::Response>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    let shared = &w.shared;
    let mut response = match delivery.received {
        Received::Owned(Ok(response)) => match &shared.cache {
            // Nobody else waited, but the cache keeps a copy.
            Some(cache) if delivery.ended_here => match shared.share.share(response) {
                Ok(answer) => {
                    let weight = shared.share.weight(&answer);
                    let response = shared.share.unshare(&answer);
                    cache.insert(w.key.clone(), answer, weight, &shared.stats);
                    response
                }
                Err(response) => response,
            },
            _ => response,
        },
        Received::Owned(Err(err)) => return Delivered::Answer(Err(err)),
        Received::Shared(Ok(answer)) => {
            if delivery.ended_here {
                if let Some(cache) = &shared.cache {
                    let weight = shared.share.weight(&answer);
                    cache.insert(w.key.clone(), answer.clone(), weight, &shared.stats);
                }
            }
            shared.share.unshare(&answer)
        }
        Received::Shared(Err(err)) => {
            return Delivered::Answer(Err(SharedError::new(err).into()));
        }
        Received::FallBack => return Delivered::FallBack,
        Received::Aborted => return Delivered::Answer(Err(aborted(w))),
    };
    let sharing = if delivery.shared {
        Sharing::Shared
    } else {
        Sharing::Own
    };
    shared.share.mark(&mut response, sharing);
    Delivered::Answer(Ok(response))
}

fn aborted<S, Req, K, KF, H>(w: &Waiter<S, Req, K, KF, H>) -> BoxError
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    Rejected::new(RejectKind::DedupAborted, w.shared.stats.component.clone()).into()
}

impl<S, Req, K, KF, H> fmt::Debug for ResponseFuture<S, Req, K, KF, H>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Direct { .. } => "direct",
            Kind::Ready { .. } => "ready",
            Kind::Waiting {
                waiter: Some(_), ..
            } => "waiting",
            Kind::Waiting { .. } => "complete",
            Kind::FallBack { .. } => "fall_back",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
