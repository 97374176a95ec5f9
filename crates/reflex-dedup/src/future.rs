//! The [`ResponseFuture`] of [`Dedup`](crate::Dedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify};
use tower_service::Service;

use crate::keyed::{Begun, begin};
use crate::share::{Share, Sharing};
use crate::shared::Shared;
use crate::wait::{Waited, Waiting};
use crate::{Call, Inner, Key};

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

/// Where the future of a request through a [`Dedup`](crate::Dedup) over
/// `S` is.
type KindOf<S, Req, K, KF, H, C> =
    Kind<S, Req, K, KF, H, C, BoxedCall<S, Req>, <S as Service<Req>>::Response>;

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
        kind: KindOf<S, Req, K, KF, H, C>,
    }
}

pin_project! {
    /// Where a response future is, plain or `http`: the inner future of a
    /// request without a key, an answer ready at once, a wait on a shared
    /// call, or a follower's own call when the answer was not shareable.
    #[project = KindProj]
    pub(crate) enum Kind<S, Req, K, KF, H, C, Fut, Res>
    where
        S: Service<Req>,
        K: Key,
        H: Share<Res>,
        Fut: Call<Res>,
        Res: Send,
        Res: 'static,
    {
        Direct {
            #[pin]
            future: S::Future,
        },
        Ready {
            result: Option<Result<Res, BoxError>>,
        },
        Waiting {
            #[pin]
            waiting: Waiting<K, KF, H, C, Fut, Res>,
            // A follower's own request, and a service to send it with,
            // should the answer turn out not shareable; the clone is
            // polled ready before it is used.
            fallback: Option<(S, Req)>,
        },
        // The answer was not shareable: this follower makes its own call.
        FallBack {
            service: S,
            request: Option<Req>,
            shared: Arc<Shared<K, KF, H, C, Fut, Res>>,
        },
        // That call, whose answer is marked `Own`.
        OwnCall {
            #[pin]
            future: S::Future,
            shared: Arc<Shared<K, KF, H, C, Fut, Res>>,
        },
    }
}

/// How a response future hands over what it got: the one part in which
/// the plain future and the `http` one differ. `Inner` is the inner
/// service's response, `Res` an answer as a shared call holds it, `H` what
/// marks answers.
pub(crate) trait Deliver<Inner, Res, H> {
    /// What the future resolves to.
    type Output;

    /// The inner service's response to a request without a key.
    fn direct(response: Inner) -> Self::Output;

    /// An answer of a shared call or of the cache, marked, as it is.
    fn answer(answer: Res) -> Self::Output;

    /// The response of a follower's own call, to be marked
    /// [`Sharing::Own`] with `share`.
    fn own(response: Inner, share: &H) -> Self::Output;
}

/// The plain future's answers: as they are, marked by the layer's
/// [`Share`].
pub(crate) struct AsIs;

impl<Res, H: Share<Res>> Deliver<Res, Res, H> for AsIs {
    type Output = Res;

    #[inline]
    fn direct(response: Res) -> Res {
        response
    }

    fn answer(answer: Res) -> Res {
        answer
    }

    fn own(mut response: Res, share: &H) -> Res {
        share.mark(&mut response, Sharing::Own);
        response
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
    pub(crate) fn new(kind: KindOf<S, Req, K, KF, H, C>) -> Self {
        Self { kind }
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
        self.project().kind.poll_with::<AsIs>(cx)
    }
}

impl<S, Req, K, KF, H, C> fmt::Debug for ResponseFuture<S, Req, K, KF, H, C>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("kind", &self.kind.name())
            .finish()
    }
}

// === impl Kind ===

impl<S, Req, K, KF, H, C, Fut, Res> Kind<S, Req, K, KF, H, C, Fut, Res>
where
    S: Service<Req>,
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    /// The future of a request without a key: the inner call's.
    #[inline]
    pub(crate) fn direct(future: S::Future) -> Self {
        Self::Direct { future }
    }

    /// The future of a request with `key`, through the state `shared`: a
    /// copy of a cached answer or a refusal, or a wait on a shared call. A
    /// leader makes the call with `inner`, and `into_call` turns it into
    /// the shared call; a follower keeps its request and a clone of
    /// `inner`, should the answer not be shareable.
    pub(crate) fn keyed(
        shared: &Arc<Shared<K, KF, H, C, Fut, Res>>,
        key: K,
        inner: &mut S,
        request: Req,
        into_call: impl FnOnce(S::Future) -> Fut,
    ) -> Self
    where
        S: Clone,
    {
        match begin(shared, key) {
            Begun::Ready(result) => Self::Ready {
                result: Some(result),
            },
            Begun::Leader(waiter, until) => {
                waiter.start(into_call(inner.call(request)));
                Self::Waiting {
                    waiting: Waiting::new(waiter, until),
                    fallback: None,
                }
            }
            Begun::Follower(waiting) => Self::Waiting {
                waiting,
                fallback: Some((inner.clone(), request)),
            },
        }
    }

    /// Where the future is, for its `Debug`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Direct { .. } => "direct",
            Self::Ready { .. } => "ready",
            Self::Waiting { waiting, .. } if waiting.is_over() => "complete",
            Self::Waiting { .. } => "waiting",
            Self::FallBack { .. } | Self::OwnCall { .. } => "fall_back",
        }
    }
}

impl<S, Req, K, KF, H, C, Fut, Res> Kind<S, Req, K, KF, H, C, Fut, Res>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Key,
    H: Share<Res>,
    C: Classify<Res, BoxError>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    /// Polls the future, handing over what it gets as `D` says.
    #[inline]
    pub(crate) fn poll_with<D: Deliver<S::Response, Res, H>>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<D::Output, BoxError>> {
        // A request without a key: nothing but the inner future.
        if let KindProj::Direct { future } = self.as_mut().project() {
            return future
                .poll(cx)
                .map(|result| result.map(D::direct).map_err(Into::into));
        }
        self.poll_keyed::<D>(cx)
    }

    /// The rest of [`poll_with`](Self::poll_with): waiting, falling back,
    /// ready.
    #[inline(never)]
    fn poll_keyed<D: Deliver<S::Response, Res, H>>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<D::Output, BoxError>> {
        loop {
            match self.as_mut().project() {
                KindProj::Direct { future } => {
                    return future
                        .poll(cx)
                        .map(|result| result.map(D::direct).map_err(Into::into));
                }
                KindProj::Ready { result } => {
                    let result = result
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(result.map(D::answer));
                }
                KindProj::Waiting { waiting, fallback } => match ready!(waiting.poll_wait(cx)) {
                    Waited::Answer(result) => return Poll::Ready(result.map(D::answer)),
                    Waited::FallBack(shared) => {
                        let Some((service, request)) = fallback.take() else {
                            return Poll::Ready(Err(shared.aborted()));
                        };
                        self.set(Self::FallBack {
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
                    self.set(Self::OwnCall { future, shared });
                }
                KindProj::OwnCall { future, shared } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    return Poll::Ready(Ok(D::own(response, &shared.share)));
                }
            }
        }
    }
}
