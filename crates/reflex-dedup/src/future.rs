//! The [`ResponseFuture`] of [`Dedup`](crate::Dedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify, RejectKind, Rejected};
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::error::{SharedError, WaitTimedOut};
use crate::flight::{Delivery, Flight, Received};
use crate::service::Shared;
use crate::share::{Share, Sharing};
use crate::table::Cache;
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
pub(crate) struct Waiter<S, Req, K, KF, H, C>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    pub(crate) flight: Arc<FlightOf<S, Req, H>>,
    pub(crate) id: usize,
    pub(crate) key: K,
    pub(crate) shared: Arc<Shared<S, Req, K, KF, H, C>>,
    /// A follower's own request, and a service to send it with, should the
    /// answer turn out not shareable.
    pub(crate) fallback: Option<(S, Req)>,
}

impl<S, Req, K, KF, H, C> Drop for Waiter<S, Req, K, KF, H, C>
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
    pub struct ResponseFuture<S, Req, K, KF, H, C>
    where
        S: Inner<Req>,
        K: Key,
        H: Share<S::Response>,
    {
        #[pin]
        kind: Kind<S, Req, K, KF, H, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, K, KF, H, C>
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
            waiter: Option<Waiter<S, Req, K, KF, H, C>>,
            #[pin]
            timer: Option<Sleep>,
        },
        // The answer was not shareable: this follower makes its own call.
        FallBack {
            service: S,
            request: Option<Req>,
            shared: Arc<Shared<S, Req, K, KF, H, C>>,
        },
        // That call, whose answer is marked `Own`.
        OwnCall {
            #[pin]
            future: S::Future,
            shared: Arc<Shared<S, Req, K, KF, H, C>>,
        },
    }
}

// === impl ResponseFuture ===

impl<S, Req, K, KF, H, C> ResponseFuture<S, Req, K, KF, H, C>
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

    pub(crate) fn waiting(waiter: Waiter<S, Req, K, KF, H, C>, until: Option<Instant>) -> Self {
        Self {
            kind: Kind::Waiting {
                waiter: Some(waiter),
                timer: until.map(sleep_until),
            },
        }
    }
}

impl<S, Req, K, KF, H, C> Future for ResponseFuture<S, Req, K, KF, H, C>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
    C: Classify<S::Response, BoxError>,
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
fn poll_keyed<S, Req, K, KF, H, C>(
    mut kind: Pin<&mut Kind<S, Req, K, KF, H, C>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
    C: Classify<S::Response, BoxError>,
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
                let shared = &w.shared;
                // Whether the answer may be cached, decided by the waiter
                // that ends the call, before the answer is shared.
                let mut success = false;
                let polled = w.flight.poll(w.id, cx, |answer| {
                    success = shared.cache.is_some() && is_success(&shared.classifier, &answer);
                    shared.share.share(answer)
                });
                match polled {
                    Poll::Ready(delivery) => {
                        let mut w = waiter.take().expect("checked above");
                        match deliver(&w, delivery, success) {
                            Delivered::Answer(result) => return Poll::Ready(result),
                            Delivered::FallBack => {
                                let Some((service, request)) = w.fallback.take() else {
                                    // The leader's request went into the
                                    // call it no longer has.
                                    return Poll::Ready(Err(aborted(&w)));
                                };
                                let shared = Arc::clone(&w.shared);
                                drop(w);
                                kind.set(Kind::FallBack {
                                    service,
                                    request: Some(request),
                                    shared,
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
            KindProj::FallBack {
                service,
                request,
                shared,
            } => {
                if let Err(err) = ready!(service.poll_ready(cx)) {
                    return Poll::Ready(Err(err.into()));
                }
                let request = request
                    .take()
                    .expect("ResponseFuture polled after completion");
                let future = service.call(request);
                let shared = Arc::clone(shared);
                kind.set(Kind::OwnCall { future, shared });
            }
            KindProj::OwnCall { future, shared } => {
                let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                shared.share.mark(&mut response, Sharing::Own);
                return Poll::Ready(Ok(response));
            }
        }
    }
}

/// `true` when `classifier` calls `response` a success.
fn is_success<C, Res>(classifier: &C, response: &Res) -> bool
where
    C: Classify<Res, BoxError>,
{
    classifier.classify(Ok(response)).is_success()
}

/// What a waiter's delivery comes to.
enum Delivered<Res> {
    Answer(Result<Res, BoxError>),
    FallBack,
}

/// What waiter `w` hands its caller, from what it received. The waiter
/// that ended the call also caches the answer, if it is shareable and
/// `success` (its classifier said so; for an answer nobody else waited on,
/// it is asked here).
fn deliver<S, Req, K, KF, H, C>(
    w: &Waiter<S, Req, K, KF, H, C>,
    delivery: Delivery<S::Response, H::Shared>,
    success: bool,
) -> Delivered<S::Response>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
    C: Classify<S::Response, BoxError>,
{
    let shared = &w.shared;
    let cache = shared.cache.as_ref().filter(|_| delivery.ended_here);
    let (mut response, sharing) = match delivery.received {
        // Nobody else got this answer (alone on the call, or the answer
        // was not shareable and this is the leader).
        Received::Owned(Ok(response)) => match cache {
            Some(cache) if is_success(&shared.classifier, &response) => {
                match shared.share.share(response) {
                    Ok(answer) => {
                        let response = shared.share.unshare(&answer);
                        keep(w, cache, answer);
                        (response, Sharing::Own)
                    }
                    Err(response) => (response, Sharing::Own),
                }
            }
            _ => (response, Sharing::Own),
        },
        Received::Owned(Err(err)) => return Delivered::Answer(Err(err)),
        Received::Shared(Ok(answer)) => {
            let response = shared.share.unshare(&answer);
            if let Some(cache) = cache.filter(|_| success) {
                keep(w, cache, answer);
            }
            (response, Sharing::Shared)
        }
        Received::Shared(Err(err)) => {
            return Delivered::Answer(Err(SharedError::new(err).into()));
        }
        Received::FallBack => return Delivered::FallBack,
        Received::Aborted => return Delivered::Answer(Err(aborted(w))),
    };
    shared.share.mark(&mut response, sharing);
    Delivered::Answer(Ok(response))
}

/// Keeps `answer` in `cache` under `w`'s key, for as long as the answer
/// allows ([`Share::max_age`]) within the cache's TTL.
fn keep<S, Req, K, KF, H, C>(
    w: &Waiter<S, Req, K, KF, H, C>,
    cache: &Cache<K, H::Shared>,
    answer: H::Shared,
) where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    let share = &w.shared.share;
    let weight = share.weight(&answer);
    let max_age = share.max_age(&answer);
    cache.insert(w.key.clone(), answer, weight, max_age, &w.shared.stats);
}

fn aborted<S, Req, K, KF, H, C>(w: &Waiter<S, Req, K, KF, H, C>) -> BoxError
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    Rejected::new(RejectKind::DedupAborted, w.shared.stats.component.clone()).into()
}

impl<S, Req, K, KF, H, C> fmt::Debug for ResponseFuture<S, Req, K, KF, H, C>
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
            Kind::FallBack { .. } | Kind::OwnCall { .. } => "fall_back",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
