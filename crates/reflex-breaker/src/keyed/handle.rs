//! [`KeyedBreakerHandle`] and its [`KeyedBreakerMetrics`]: the breakers of
//! a keyed layer, read and steered one key at a time.

use std::fmt;
use std::sync::Arc;

use reflex_core::Component;

use crate::handle::BreakerHandle;
use crate::metrics::BreakerMetrics;

/// What a handle reads of a keyed layer's breakers, whatever its key
/// function and classifier.
pub(crate) trait View<K>: Send + Sync {
    fn get(&self, key: &K) -> Option<BreakerHandle>;
    fn default_breaker(&self) -> BreakerHandle;
    fn len(&self) -> usize;
    fn keys(&self) -> Vec<K>;
    fn component(&self) -> &Component;
    fn metrics(&self) -> KeyedBreakerMetrics;
}

/// Reads and steers the breakers of a
/// [`KeyedCircuitBreakLayer`](crate::KeyedCircuitBreakLayer), from its
/// `handle()`.
///
/// # Clone
///
/// Clones read the same breakers.
///
/// # Examples
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
///
/// let layer = CircuitBreakLayer::builder()
///     .component("upstream")
///     .key(|host: &String| Some(host.clone()))
///     .build()?;
/// let handle = layer.handle();
/// assert!(handle.is_empty());
/// assert_eq!(handle.component().as_str(), "upstream");
/// assert_eq!(handle.metrics().max_keys, 1024);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct KeyedBreakerHandle<K> {
    view: Arc<dyn View<K>>,
}

/// The live numbers of a keyed layer: its keys, what making room for them
/// cost, and its default breaker's numbers. From
/// [`KeyedBreakerHandle::metrics`]; each key's own numbers are its
/// breaker's ([`KeyedBreakerHandle::get`]).
///
/// # Examples
///
/// ```
/// use reflex_breaker::{CircuitBreakLayer, KeyedBreakerMetrics};
///
/// let layer = CircuitBreakLayer::builder().key(|n: &u32| Some(*n)).max_keys(8).build()?;
/// let metrics: KeyedBreakerMetrics = layer.handle().metrics();
/// assert_eq!((metrics.keys, metrics.max_keys, metrics.evictions_total), (0, 8, 0));
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct KeyedBreakerMetrics {
    /// Keys with a breaker of their own now.
    pub keys: usize,
    /// The most keys kept at once (the builder's `max_keys`).
    pub max_keys: usize,
    /// Idle breakers forgotten to make room for a new key, since the layer
    /// was built.
    pub evictions_total: u64,
    /// Requests whose key had no breaker and found no room (every kept
    /// breaker busy, open or set by hand), so went through the default
    /// breaker, since the layer was built.
    pub overflowed_total: u64,
    /// The default breaker's numbers: requests without a key, and keys
    /// that found no room.
    pub default_breaker: BreakerMetrics,
}

// === impl KeyedBreakerHandle ===

impl<K> KeyedBreakerHandle<K> {
    pub(crate) fn new(view: Arc<dyn View<K>>) -> Self {
        Self { view }
    }

    /// The breaker kept for `key`, if any. Its
    /// [`component`](BreakerHandle::component) is the layer's.
    pub fn get(&self, key: &K) -> Option<BreakerHandle> {
        self.view.get(key)
    }

    /// The breaker shared by requests with no key and by keys that found
    /// no room.
    pub fn default_breaker(&self) -> BreakerHandle {
        self.view.default_breaker()
    }

    /// How many keys have a breaker now.
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// `true` when no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys that have a breaker now, in no order.
    pub fn keys(&self) -> Vec<K> {
        self.view.keys()
    }

    /// The component every breaker of the layer speaks as.
    pub fn component(&self) -> &Component {
        self.view.component()
    }

    /// The layer's numbers now: keys kept, evictions, overflows and the
    /// default breaker's numbers.
    pub fn metrics(&self) -> KeyedBreakerMetrics {
        self.view.metrics()
    }
}

impl<K> Clone for KeyedBreakerHandle<K> {
    fn clone(&self) -> Self {
        Self {
            view: Arc::clone(&self.view),
        }
    }
}

reflex_core::layer_handle!(
    /// The same numbers as the inherent [`metrics`](KeyedBreakerHandle::metrics).
    impl<K: 'static> KeyedBreakerHandle<K> => KeyedBreakerMetrics
);

impl<K> fmt::Debug for KeyedBreakerHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerHandle")
            .field("component", self.view.component())
            .finish_non_exhaustive()
    }
}
