//! The [`ResponseFuture`] of [`Dedup`](crate::Dedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify};
use tower_service::Service;

use crate::share::{Share, Sharing};
use crate::shared::Shared;
use crate::wait::{Waited, Waiting};
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
    /// `inner`, boxed for the flight that runs it.
    pub(crate) fn boxed(inner: F) -> Pin<Box<Self>> {
        Box::pin(Self { inner })
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

/// The shared call of a service `S` for `Req`, as its flight holds it.
pub(crate) type BoxedCall<S, Req> = Pin<Box<CallFuture<<S as Service<Req>>::Future>>>;

/// What a [`Dedup`](crate::Dedup) over `S` and its futures share.
pub(crate) type SharedOf<S, Req, K, KF, H, C> =
    Shared<K, KF, H, C, BoxedCall<S, Req>, <S as Service<Req>>::Response>;

/// The wait of a keyed request through a [`Dedup`](crate::Dedup) over `S`.
pub(crate) type WaitingOf<S, Req, K, KF, H, C> =
    Waiting<K, KF, H, C, BoxedCall<S, Req>, <S as Service<Req>>::Response>;

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
            #[pin]
            waiting: WaitingOf<S, Req, K, KF, H, C>,
            // A follower's own request, and a service to send it with,
            // should the answer turn out not shareable; the clone is
            // polled ready before it is used.
            fallback: Option<(S, Req)>,
        },
        // The answer was not shareable: this follower makes its own call.
        FallBack {
            service: S,
            request: Option<Req>,
            shared: Arc<SharedOf<S, Req, K, KF, H, C>>,
        },
        // That call, whose answer is marked `Own`.
        OwnCall {
            #[pin]
            future: S::Future,
            shared: Arc<SharedOf<S, Req, K, KF, H, C>>,
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

    /// A wait on a shared call; `fallback` is a follower's own request and
    /// service.
    pub(crate) fn waiting(
        waiting: WaitingOf<S, Req, K, KF, H, C>,
        fallback: Option<(S, Req)>,
    ) -> Self {
        Self {
            kind: Kind::Waiting { waiting, fallback },
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
            KindProj::Waiting { waiting, fallback } => match ready!(waiting.poll_wait(cx)) {
                Waited::Answer(result) => return Poll::Ready(result),
                Waited::FallBack(shared) => {
                    let Some((service, request)) = fallback.take() else {
                        return Poll::Ready(Err(shared.aborted()));
                    };
                    kind.set(Kind::FallBack {
                        service,
                        request: Some(request),
                        shared,
                    });
                }
            },
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
            Kind::Waiting { waiting, .. } if waiting.is_over() => "complete",
            Kind::Waiting { .. } => "waiting",
            Kind::FallBack { .. } | Kind::OwnCall { .. } => "fall_back",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
