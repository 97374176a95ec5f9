//! The [`ResponseFuture`] of [`HttpDedup`](super::HttpDedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify};
use tower_service::Service;

use super::body::{CallBody, ResponseBody};
use super::call::HttpCall;
use super::key::{HttpKey, RequestKey};
use super::share::HttpShare;
use crate::future::{Deliver, Kind};
use crate::share::Sharing;

/// Where the future of an `http` request is.
pub(crate) type HttpKind<S, B, C> =
    Kind<S, Request<B>, RequestKey, HttpKey, HttpShare, C, HttpCall, Response<CallBody>>;

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
        kind: HttpKind<S, B, C>,
    }
}

/// The `http` future's answers: a response of the inner service streamed
/// through, marked with an extension (a request without a key's is not
/// marked: an extension would be its only allocation); an answer of a
/// shared call or of the cache with its body as the call holds it.
struct Bodies;

impl<RB> Deliver<Response<RB>, Response<CallBody>, HttpShare> for Bodies {
    type Output = Response<ResponseBody<RB>>;

    #[inline]
    fn direct(response: Response<RB>) -> Self::Output {
        response.map(ResponseBody::inner)
    }

    fn answer(answer: Response<CallBody>) -> Self::Output {
        answer.map(ResponseBody::call)
    }

    fn own(mut response: Response<RB>, _: &HttpShare) -> Self::Output {
        response.extensions_mut().insert(Sharing::Own);
        response.map(ResponseBody::inner)
    }
}

// === impl ResponseFuture ===

impl<S, B, C> ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn new(kind: HttpKind<S, B, C>) -> Self {
        Self { kind }
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
        self.project().kind.poll_with::<Bodies>(cx)
    }
}

impl<S, B, C> fmt::Debug for ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("kind", &self.kind.name())
            .finish()
    }
}
