//! The [`ResponseFuture`] of [`HttpDedup`](super::HttpDedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify};
use tower_service::Service;

use super::body::{CallBody, ResponseBody};
use super::call::HttpCall;
use super::key::{HttpKey, RequestKey};
use super::share::HttpShare;
use crate::share::Sharing;
use crate::wait::{Waited, Waiting};

/// The wait of a keyed `http` request on a shared call.
pub(crate) type HttpWaiting<C> =
    Waiting<RequestKey, HttpKey, HttpShare, C, HttpCall, Response<CallBody>>;

pin_project! {
    /// The response future of [`HttpDedup`](super::HttpDedup): the inner
    /// future of a request without a key; a wait on a shared call; or an
    /// answer ready at once (cached, or refused). A request without a key
    /// costs no allocation.
    ///
    /// # Cancel safety
    ///
    /// Dropping it leaves the shared call it waited on; the call goes on
    /// for the other waiters, and is dropped with the last of them.
    pub struct ResponseFuture<S, B, C>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B, C>
    where
        S: Service<Request<B>>,
    {
        Direct {
            #[pin]
            future: S::Future,
        },
        Ready {
            result: Option<Result<Response<CallBody>, BoxError>>,
        },
        Waiting {
            #[pin]
            waiting: HttpWaiting<C>,
            // A follower's own request, and a service to send it with,
            // should the answer turn out not shareable.
            fallback: Option<(S, Request<B>)>,
        },
        // The answer was not shareable: this follower makes its own call.
        FallBack {
            service: S,
            request: Option<Request<B>>,
        },
        // That call, whose answer is marked `Own` and streamed through.
        OwnCall {
            #[pin]
            future: S::Future,
        },
    }
}

// === impl ResponseFuture ===

impl<S, B, C> ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn direct(future: S::Future) -> Self {
        Self {
            kind: Kind::Direct { future },
        }
    }

    pub(crate) fn ready(result: Result<Response<CallBody>, BoxError>) -> Self {
        Self {
            kind: Kind::Ready {
                result: Some(result),
            },
        }
    }

    /// A wait on a shared call; `fallback` is a follower's own request and
    /// service.
    pub(crate) fn waiting(waiting: HttpWaiting<C>, fallback: Option<(S, Request<B>)>) -> Self {
        Self {
            kind: Kind::Waiting { waiting, fallback },
        }
    }
}

impl<S, B, C, RB> Future for ResponseFuture<S, B, C>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    C: Classify<Response<CallBody>, BoxError>,
{
    type Output = Result<Response<ResponseBody<RB>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        // A request without a key: its response streams through, unmarked
        // (an extension would be its only allocation).
        if let KindProj::Direct { future } = kind.as_mut().project() {
            let response = ready!(future.poll(cx)).map_err(Into::into)?;
            return Poll::Ready(Ok(response.map(ResponseBody::inner)));
        }
        poll_keyed(kind, cx)
    }
}

/// The rest of [`ResponseFuture::poll`]: waiting, falling back, ready.
#[inline(never)]
fn poll_keyed<S, B, C, RB>(
    mut kind: Pin<&mut Kind<S, B, C>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResponseBody<RB>>, BoxError>>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    C: Classify<Response<CallBody>, BoxError>,
{
    loop {
        match kind.as_mut().project() {
            KindProj::Direct { future } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                return Poll::Ready(Ok(response.map(ResponseBody::inner)));
            }
            KindProj::Ready { result } => {
                let result = result
                    .take()
                    .expect("ResponseFuture polled after completion");
                return Poll::Ready(result.map(|response| response.map(ResponseBody::call)));
            }
            KindProj::Waiting { waiting, fallback } => match ready!(waiting.poll_wait(cx)) {
                Waited::Answer(result) => {
                    return Poll::Ready(result.map(|response| response.map(ResponseBody::call)));
                }
                Waited::FallBack(shared) => {
                    let Some((service, request)) = fallback.take() else {
                        return Poll::Ready(Err(shared.aborted()));
                    };
                    kind.set(Kind::FallBack {
                        service,
                        request: Some(request),
                    });
                }
            },
            KindProj::FallBack { service, request } => {
                if let Err(err) = ready!(service.poll_ready(cx)) {
                    return Poll::Ready(Err(err.into()));
                }
                let request = request
                    .take()
                    .expect("ResponseFuture polled after completion");
                let future = service.call(request);
                kind.set(Kind::OwnCall { future });
            }
            KindProj::OwnCall { future } => {
                let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                response.extensions_mut().insert(Sharing::Own);
                return Poll::Ready(Ok(response.map(ResponseBody::inner)));
            }
        }
    }
}

impl<S, B, C> fmt::Debug for ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
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
