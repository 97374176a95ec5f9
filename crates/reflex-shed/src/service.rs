//! The [`ConcurrencyShed`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::classes::{CriticalKey, KeyFns, NoCritical, PartitionKey, Unpartitioned};
use crate::future::{ResponseFuture, Sampler};
use crate::partition::Class;
use crate::shared::Shared;

/// Caps the requests in flight in the inner service and refuses the rest at
/// once with [`Rejected`](reflex_core::Rejected) of kind
/// [`Shed`](reflex_core::RejectKind::Shed).
///
/// Built by [`ConcurrencyShedLayer`](crate::ConcurrencyShedLayer), or
/// [`ConcurrencyShed::layer`] for the defaults; see the [crate docs](crate) for what it
/// guarantees. `C` is the stack's classifier (read by an adaptive limit),
/// `P` and `Cr` the partition and critical keys.
///
/// # Clone
///
/// Clones share the layer's permits: the limit is one budget for every clone
/// and every service the same layer wrapped. A service holds no permit and no
/// readiness of its own, so a clone taken before `poll_ready` is as good as
/// the original.
///
/// # Examples
///
/// ```
/// use reflex_shed::{ConcurrencyShed, ConcurrencyShedLayer};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = ConcurrencyShedLayer::builder().hard_limit(2).build()?;
/// let mut svc: ConcurrencyShed<_> =
///     layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct ConcurrencyShed<S, C = DefaultClassifier, P = Unpartitioned, Cr = NoCritical> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    keys: Arc<KeyFns<P, Cr>>,
}

// === impl ConcurrencyShed ===

impl<S, C, P, Cr> ConcurrencyShed<S, C, P, Cr> {
    pub(crate) fn new(
        inner: S,
        shared: Arc<Shared>,
        classifier: C,
        keys: Arc<KeyFns<P, Cr>>,
    ) -> Self {
        Self {
            inner,
            shared,
            classifier,
            keys,
        }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, C, P, Cr, Request> Service<Request> for ConcurrencyShed<S, C, P, Cr>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
    P: PartitionKey<Request>,
    Cr: CriticalKey<Request>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    /// Ready when the inner service is. The shed layer never waits for its
    /// own reasons: a request over the limit is refused by `call`.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        let (class, admitted) = if P::PARTITIONED || Cr::MARKS {
            let class = Class::new(
                P::PARTITIONED.then(|| self.keys.partitions.partition(&request)),
                Cr::MARKS && self.keys.critical.is_critical(&request),
            );
            (class, self.shared.acquire_classed(class))
        } else {
            (Class::PLAIN, self.shared.acquire())
        };
        match admitted {
            // The permit is taken before the inner call: if `call` itself
            // panics, unwinding drops the permit and gives it back.
            Ok(()) => {
                let permit = self.shared.permit(class);
                let sampler = self
                    .shared
                    .admitted_at()
                    .map(|at| Sampler::new(self.classifier.clone(), at));
                ResponseFuture::admitted(self.inner.call(request), permit, sampler)
            }
            Err(rejected) => ResponseFuture::shed(rejected),
        }
    }
}

impl<S: Clone, C: Clone, P, Cr> Clone for ConcurrencyShed<S, C, P, Cr> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
            keys: Arc::clone(&self.keys),
        }
    }
}

impl<S: fmt::Debug, C, P, Cr> fmt::Debug for ConcurrencyShed<S, C, P, Cr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyShed")
            .field("inner", &self.inner)
            .field("component", self.shared.component())
            .field("in_flight", &self.shared.counter.in_flight())
            .field("hard_limit", &self.shared.counter.hard_limit())
            .finish()
    }
}
