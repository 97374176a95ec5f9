//! The [`Dedup`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, DefaultClassifier, KeyFn};
use tower_service::Service;

use crate::future::{CallFuture, Kind, ResponseFuture, SharedOf};
use crate::share::Share;
use crate::{Inner, Key};

/// Shares one inner call among identical requests in flight. Built by
/// [`DedupLayer`](crate::DedupLayer).
///
/// # Clone
///
/// Clones share the calls in flight and the cache: identical requests
/// through any clone coalesce. Services made by separate `layer` calls
/// wrap separate inner services and never share calls (their counts add up
/// in the one handle).
///
/// # Examples
///
/// ```
/// use reflex_dedup::DedupLayer;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = DedupLayer::builder().key(|n: &u64| Some(*n)).build()?;
/// let mut svc = layer.layer(service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct Dedup<S, Req, K, KF, H, C = DefaultClassifier>
where
    S: Service<Req>,
    H: Share<S::Response>,
{
    inner: S,
    shared: Arc<SharedOf<S, Req, K, KF, H, C>>,
}

// === impl Dedup ===

impl<S, Req, K, KF, H, C> Dedup<S, Req, K, KF, H, C>
where
    S: Service<Req>,
    H: Share<S::Response>,
{
    pub(crate) fn new(inner: S, shared: SharedOf<S, Req, K, KF, H, C>) -> Self {
        Self {
            inner,
            shared: Arc::new(shared),
        }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, Req, K, KF, H, C> Service<Req> for Dedup<S, Req, K, KF, H, C>
where
    S: Inner<Req> + Clone,
    K: Key,
    KF: KeyFn<Req, K>,
    H: Share<S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, K, KF, H, C>;

    /// Ready when the inner service is. A request that joins another's
    /// call does not use the readiness it was given.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(match self.shared.key.key(&request) {
            None => Kind::direct(self.inner.call(request)),
            Some(key) => Kind::keyed(
                &self.shared,
                key,
                &mut self.inner,
                request,
                CallFuture::boxed,
            ),
        })
    }
}

impl<S, Req, K, KF, H, C> Clone for Dedup<S, Req, K, KF, H, C>
where
    S: Service<Req> + Clone,
    H: Share<S::Response>,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Req, K, KF, H, C> fmt::Debug for Dedup<S, Req, K, KF, H, C>
where
    S: Service<Req> + fmt::Debug,
    H: Share<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("inner", &self.inner)
            .field("component", &self.shared.stats.component)
            .finish_non_exhaustive()
    }
}
