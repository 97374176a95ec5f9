//! The [`HttpDedup`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use reflex_core::{BoxError, Classify, KeyFn, ServerErrorsAsFailures};
use tower_service::Service;

use super::body::{CallBody, ResponseBody};
use super::call::{HttpCall, shared_call};
use super::future::ResponseFuture;
use super::key::{HttpKey, RequestKey};
use super::share::HttpShare;
use crate::future::Kind;
use crate::shared::Shared;

/// What an [`HttpDedup`] service, its clones and their futures share.
pub(crate) type HttpShared<C> =
    Shared<RequestKey, HttpKey, HttpShare, C, HttpCall, Response<CallBody>>;

/// Shares one inner call among identical `http` requests in flight, and
/// their response bodies: built by [`HttpDedupLayer`](super::HttpDedupLayer).
///
/// It takes `Request<B>` for any body `B` its inner service takes, and
/// answers `Response<ResponseBody<RB>>` where `RB` is the inner service's
/// response body: the body of an answer that went through a shared call is
/// read up to the layer's limit, every other streams through.
///
/// # Clone
///
/// Clones, and every service of the same layer, share the calls in flight
/// and the cache: identical requests through any of them coalesce, keyed
/// by the URI each sees: not behind a router that strips a prefix (see
/// [`HttpDedupLayer`](super::HttpDedupLayer)).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Empty, Full};
/// use reflex_dedup::DedupLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = DedupLayer::builder().http().build()?;
/// let svc = layer.layer(service_fn(|req: Request<Empty<Bytes>>| async move {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(req.uri().to_string()))))
/// }));
/// let response = svc.oneshot(Request::get("/a").body(Empty::new())?).await?;
/// assert_eq!(response.into_body().collect().await?.to_bytes(), "/a");
/// # Ok(())
/// # }
/// ```
pub struct HttpDedup<S, C = ServerErrorsAsFailures> {
    inner: S,
    shared: Arc<HttpShared<C>>,
    body_limit: usize,
}

// === impl HttpDedup ===

impl<S, C> HttpDedup<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<HttpShared<C>>, body_limit: usize) -> Self {
        Self {
            inner,
            shared,
            body_limit,
        }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, C, B, RB> Service<Request<B>> for HttpDedup<S, C>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
    C: Classify<Response<CallBody>, BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, C>;

    /// Ready when the inner service is. A request that joins another's
    /// call does not use the readiness it was given.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture::new(match self.shared.key.key(&request) {
            None => Kind::direct(self.inner.call(request)),
            Some(key) => {
                let limit = self.body_limit;
                Kind::keyed(&self.shared, key, &mut self.inner, request, |call| {
                    shared_call(call, limit)
                })
            }
        })
    }
}

impl<S: Clone, C> Clone for HttpDedup<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            body_limit: self.body_limit,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for HttpDedup<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDedup")
            .field("inner", &self.inner)
            .field("component", &self.shared.stats.component)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
