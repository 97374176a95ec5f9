//! [`KeyedCircuitBreakLayer`]: one breaker per key.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use reflex_core::{DefaultClassifier, Handled};
use tower_layer::Layer;

use super::handle::KeyedBreakerHandle;
use super::service::KeyedCircuitBreak;
use super::table::Table;
use crate::config::BreakerConfig;

/// One breaker per key (host, route, tenant…), at most `max_keys` of them.
///
/// Built by a [`CircuitBreakBuilder`](crate::CircuitBreakBuilder) given a
/// [`key`](crate::CircuitBreakBuilder::key). Each key's breaker has the
/// builder's configuration and its own state: one key tripping leaves the
/// others closed. Requests whose key function returns `None`, and new keys
/// when `max_keys` are kept and none can be evicted, share one default
/// breaker.
///
/// # Component and signals
///
/// Keys are request data, not components: every breaker of the layer, the
/// default one included, speaks as the layer's
/// [`component`](crate::CircuitBreakBuilder::component). Its rejections
/// name that component, and its transitions are reported as
/// [`Signal::KeyedBreakerTransition`](reflex_core::Signal::KeyedBreakerTransition)
/// under it (never [`Signal::BreakerTransition`](reflex_core::Signal::BreakerTransition),
/// which is the component's own breaker), so however many keys come and go
/// they take no place among a witness's components. A key is request data:
/// it is a field (`key`, absent for the default breaker) of the `DEBUG`
/// event of a transition only; the `WARN`/`INFO` line of a transition
/// (rate-limited for the whole layer) names the component alone. The
/// layer offers no [`Control`](reflex_core::Control): a
/// witness's reflexes steer a component's own breaker, not its keys'.
///
/// # Memory
///
/// Every key up to [`max_keys`](crate::CircuitBreakBuilder::max_keys) gets
/// a breaker of its own, whatever shard it hashes to: the bound is one
/// count for the whole layer. A new key beyond it evicts one breaker that
/// is idle: no call in flight, and Closed, or Open with its open duration
/// over. It is the least recently used idle breaker of the new key's shard
/// or, if that shard has none, of the first other shard that has one
/// (least recently used within a shard, not across shards). A breaker open
/// within its open duration is never evicted, so forgetting keys never
/// reopens the way to a failing one early; half-open breakers and states
/// set by hand are kept. So at most `max_keys` breakers are kept, plus the
/// default one.
///
/// A request for a kept key takes one shard lock (of up to 16) and
/// allocates nothing. A new key builds its breaker outside any lock. When
/// the bound is reached and nothing is idle, the new key goes to the
/// default breaker without allocating, after a search of every shard for
/// an idle breaker; a search that found nothing is not made again for the
/// next new keys until one of the layer's breakers closes or 10 ms have
/// passed (calls in flight end, open durations run out), so a layer full of
/// busy breakers does not search every shard for each new key.
/// [`KeyedBreakerMetrics`](crate::KeyedBreakerMetrics) counts evictions
/// and the requests that found no room.
///
/// # Clone
///
/// Clones share the breakers.
///
/// # Examples
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
///
/// // One breaker per upstream host, at most 1024 hosts.
/// let layer = CircuitBreakLayer::builder()
///     .consecutive_failures(5)
///     .key(|host: &String| Some(host.clone()))
///     .max_keys(1024)
///     .build()?;
/// assert_eq!(layer.handle().len(), 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
///
/// One host failing opens its breaker only; the rejection names the
/// layer's component, not the host:
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
/// use reflex_core::{BreakerState, Rejected};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = CircuitBreakLayer::builder()
///     .component("upstream")
///     .consecutive_failures(1)
///     .key(|host: &&'static str| Some(*host))
///     .build()?;
/// let handle = layer.handle();
/// let mut svc = layer.layer(service_fn(|host: &'static str| async move {
///     if host == "down.example" { Err(std::io::Error::other("refused")) } else { Ok(host) }
/// }));
///
/// assert!(svc.ready().await?.call("down.example").await.is_err());
/// let err = svc.ready().await?.call("down.example").await.unwrap_err();
/// assert_eq!(Rejected::find(&*err).unwrap().component().as_str(), "upstream");
/// assert_eq!(svc.ready().await?.call("up.example").await?, "up.example");
/// assert_eq!(handle.get(&"down.example").unwrap().state(), BreakerState::Open);
/// assert_eq!(handle.get(&"up.example").unwrap().state(), BreakerState::Closed);
/// # Ok(())
/// # }
/// ```
pub struct KeyedCircuitBreakLayer<K, KF, C = DefaultClassifier> {
    key: Arc<KF>,
    table: Arc<Table<K, C>>,
}

// === impl KeyedCircuitBreakLayer ===

impl<K, KF, C> KeyedCircuitBreakLayer<K, KF, C>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    C: Clone,
{
    pub(crate) fn new(key: KF, config: BreakerConfig, classifier: C, max_keys: usize) -> Self {
        Self {
            key: Arc::new(key),
            table: Arc::new(Table::new(config, classifier, max_keys)),
        }
    }
}

impl<K, KF, C> KeyedCircuitBreakLayer<K, KF, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// A handle to the breakers.
    pub fn handle(&self) -> KeyedBreakerHandle<K> {
        KeyedBreakerHandle::new(Arc::clone(&self.table) as _)
    }
}

impl<K, KF, C> Clone for KeyedCircuitBreakLayer<K, KF, C> {
    fn clone(&self) -> Self {
        Self {
            key: Arc::clone(&self.key),
            table: Arc::clone(&self.table),
        }
    }
}

impl<S, K, KF, C> Layer<S> for KeyedCircuitBreakLayer<K, KF, C> {
    type Service = KeyedCircuitBreak<S, K, KF, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreak::new(inner, Arc::clone(&self.key), Arc::clone(&self.table))
    }
}

/// The handle is a [`KeyedBreakerHandle`]; no control (keys are not
/// components).
impl<K, KF, C> Handled for KeyedCircuitBreakLayer<K, KF, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    type Handle = KeyedBreakerHandle<K>;

    fn handle(&self) -> KeyedBreakerHandle<K> {
        Self::handle(self)
    }
}

impl<K: Hash + Eq + Clone, KF, C> fmt::Debug for KeyedCircuitBreakLayer<K, KF, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakLayer")
            .field("component", self.table.component())
            .finish_non_exhaustive()
    }
}
