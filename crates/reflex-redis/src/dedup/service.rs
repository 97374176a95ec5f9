//! The [`FleetDedup`] service and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, KeyFn};
use tower_service::Service;

use super::codec::Codec;
use super::flow::{self, Core};

/// Shares one inner call among identical requests in flight across the
/// fleet. Built by [`FleetDedupLayer`](super::FleetDedupLayer).
///
/// # Clone
///
/// Clones share the layer's counts; the calls they share are the fleet's.
///
/// # Examples
///
/// ```no_run
/// use reflex_redis::Fleet;
/// use reflex_redis::dedup::{FleetDedupLayer, RawCodec};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
/// let layer = FleetDedupLayer::builder(&fleet)
///     .key(|n: &u64| Some(n.to_string()))
///     .codec(RawCodec)
///     .build()?;
/// let svc = layer.layer(service_fn(|n: u64| async move {
///     Ok::<_, std::io::Error>(format!("{}", n * 2))
/// }));
/// assert_eq!(svc.clone().oneshot(21).await?, "42");
/// let _inner = svc.into_inner();
/// # Ok(()) }
/// ```
pub struct FleetDedup<S, Req, K, KF, Co> {
    inner: S,
    key: Arc<KF>,
    core: Arc<Core<Co>>,
    _request: PhantomData<fn(&Req) -> K>,
}

// === impl FleetDedup ===

impl<S, Req, K, KF, Co> FleetDedup<S, Req, K, KF, Co> {
    pub(crate) fn new(inner: S, key: Arc<KF>, core: Arc<Core<Co>>) -> Self {
        Self {
            inner,
            key,
            core,
            _request: PhantomData,
        }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, Req, K, KF, Co> Service<Req> for FleetDedup<S, Req, K, KF, Co>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    Req: Send + 'static,
    KF: KeyFn<Req, K>,
    K: AsRef<str>,
    Co: Codec<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    /// Ready when the inner service is. A request that receives another's
    /// result does not use the readiness it was given.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.key.key(&request) {
            None => ResponseFuture {
                kind: Kind::Direct {
                    future: self.inner.call(request),
                },
            },
            Some(key) => {
                let target = self.core.target(key.as_ref());
                // The ready service goes with the request; this one keeps
                // a clone that must be made ready again.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                let core = Arc::clone(&self.core);
                ResponseFuture {
                    kind: Kind::Fleet {
                        future: Box::pin(flow::run(core, ready, request, target)),
                    },
                }
            }
        }
    }
}

impl<S: Clone, Req, K, KF, Co> Clone for FleetDedup<S, Req, K, KF, Co> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key: Arc::clone(&self.key),
            core: Arc::clone(&self.core),
            _request: PhantomData,
        }
    }
}

impl<S: fmt::Debug, Req, K, KF, Co> fmt::Debug for FleetDedup<S, Req, K, KF, Co> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetDedup")
            .field("inner", &self.inner)
            .field("component", &self.core.settings.component)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project_lite::pin_project! {
    /// The future of a [`FleetDedup`] call: the inner call's, for a
    /// request with no key; the fleet's way otherwise.
    pub struct ResponseFuture<F, Res> {
        #[pin]
        kind: Kind<F, Res>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, Res> {
        Direct { #[pin] future: F },
        Fleet { future: BoxFuture<Result<Res, BoxError>> },
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future } => future.poll(cx).map_err(Into::into),
            KindProj::Fleet { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, Res> fmt::Debug for ResponseFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Direct { .. } => "direct",
            Kind::Fleet { .. } => "fleet",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
