//! [`KeyedCircuitBreak`]: the service of a keyed layer, which finds each
//! request's breaker by its key.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, DefaultClassifier, KeyFn};
use tower_service::Service;

use super::table::Table;
use crate::admit::admit;
use crate::future::ResponseFuture;
use crate::memory::MemoryBackend;

/// The service of a [`KeyedCircuitBreakLayer`](crate::KeyedCircuitBreakLayer):
/// each request goes through its key's breaker.
///
/// # Clone
///
/// Clones share the breakers, and hold no readiness of their own.
///
/// # Examples
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = CircuitBreakLayer::builder().key(|n: &u32| Some(n % 2)).build()?;
/// let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(svc.ready().await?.call(3).await?, 3);
/// assert_eq!(layer.handle().keys(), vec![1]);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct KeyedCircuitBreak<S, K, KF, C = DefaultClassifier> {
    inner: S,
    key: Arc<KF>,
    table: Arc<Table<K, C>>,
}

// === impl KeyedCircuitBreak ===

impl<S, K, KF, C> KeyedCircuitBreak<S, K, KF, C> {
    pub(crate) fn new(inner: S, key: Arc<KF>, table: Arc<Table<K, C>>) -> Self {
        Self { inner, key, table }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, K, KF, C, Req> Service<Req> for KeyedCircuitBreak<S, K, KF, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    KF: KeyFn<Req, K>,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, MemoryBackend>;

    /// Ready when the inner service is: an open breaker refuses from
    /// `call`, at once, and never waits.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let breaker = match self.key.key(&request) {
            Some(key) => self.table.breaker(key),
            None => self.table.default_breaker(),
        };
        let inner = &mut self.inner;
        admit(&breaker, || inner.call(request))
    }
}

impl<S: Clone, K, KF, C> Clone for KeyedCircuitBreak<S, K, KF, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key: Arc::clone(&self.key),
            table: Arc::clone(&self.table),
        }
    }
}

impl<S: fmt::Debug, K: Hash + Eq + Clone, KF, C> fmt::Debug for KeyedCircuitBreak<S, K, KF, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreak")
            .field("inner", &self.inner)
            .field("component", self.table.component())
            .finish_non_exhaustive()
    }
}
