//! [`ConcurrencyShedLayer`]: what a built configuration is.

use std::fmt;
use std::sync::Arc;

use reflex_core::{Control, DefaultClassifier, Handled};
use tower_layer::Layer;

use crate::classes::{KeyFns, NoCritical, Unpartitioned};
use crate::handle::ShedHandle;
use crate::service::ConcurrencyShed;
use crate::shared::Shared;

/// Caps the requests in flight in the services it wraps and sheds the rest
/// at once. See the [crate docs](crate); built by
/// [`ConcurrencyShedLayer::builder`].
///
/// `C` is the stack's classifier (what an adaptive limit counts as a drop),
/// `P` the partitions and `Cr` the critical key; the defaults are a layer
/// without them.
///
/// # Clone
///
/// A layer holds one budget of permits: its clones, and every service it
/// wraps, draw on the same one (and share one adaptive limit, one set of
/// partitions). Build one layer per budget.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_shed::ConcurrencyShedLayer;
///
/// let layer = ConcurrencyShedLayer::builder()
///     .hard_limit(256)
///     .soft_limit(192)
///     .retry_after(Duration::from_secs(1))
///     .component("payments")
///     .build()?;
/// assert_eq!(layer.handle().metrics().hard_limit, 256);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct ConcurrencyShedLayer<C = DefaultClassifier, P = Unpartitioned, Cr = NoCritical> {
    shared: Arc<Shared>,
    classifier: C,
    keys: Arc<KeyFns<P, Cr>>,
}

// === impl ConcurrencyShedLayer ===

impl<C, P, Cr> ConcurrencyShedLayer<C, P, Cr> {
    pub(crate) fn new(shared: Shared, classifier: C, keys: KeyFns<P, Cr>) -> Self {
        Self {
            shared: Arc::new(shared),
            classifier,
            keys: Arc::new(keys),
        }
    }

    /// A handle to read this layer's live state and steer its limit,
    /// shared by every service the layer wraps.
    pub fn handle(&self) -> ShedHandle {
        ShedHandle::new(Arc::clone(&self.shared))
    }
}

impl<S, C: Clone, P, Cr> Layer<S> for ConcurrencyShedLayer<C, P, Cr> {
    type Service = ConcurrencyShed<S, C, P, Cr>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyShed::new(
            inner,
            Arc::clone(&self.shared),
            self.classifier.clone(),
            Arc::clone(&self.keys),
        )
    }
}

/// The handle, and the limit for a witness's reflexes to steer.
impl<C, P, Cr> Handled for ConcurrencyShedLayer<C, P, Cr> {
    type Handle = ShedHandle;

    fn handle(&self) -> ShedHandle {
        Self::handle(self)
    }

    fn control(&self) -> Option<Control> {
        Some(Control::Shed(Arc::new(Self::handle(self))))
    }
}

impl<C: Clone, P, Cr> Clone for ConcurrencyShedLayer<C, P, Cr> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
            keys: Arc::clone(&self.keys),
        }
    }
}

impl<C, P, Cr> fmt::Debug for ConcurrencyShedLayer<C, P, Cr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyShedLayer")
            .field("component", self.shared.component())
            .field("hard_limit", &self.shared.counter.hard_limit())
            .field("soft_limit", &self.shared.soft_limit())
            .field("adaptive", &self.shared.estimator_view().is_some())
            .field("retry_after", &self.shared.retry_after())
            .finish()
    }
}
