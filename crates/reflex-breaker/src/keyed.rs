//! Per-key breakers: [`KeyedCircuitBreakLayer`].

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, Component};
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::Backend;
use crate::config::BreakerConfig;
use crate::future::ResponseFuture;
use crate::handle::BreakerHandle;
use crate::memory::MemoryBackend;
use crate::service::{Shared, admit};

const MAX_SHARDS: usize = 16;

type Breaker<C> = Arc<Shared<C, MemoryBackend>>;

/// One breaker per key (host, route, tenant…), at most `max_keys` of them.
///
/// Built by [`CircuitBreakBuilder::build_keyed`](crate::CircuitBreakBuilder::build_keyed).
/// Each key's breaker has the builder's configuration and is named
/// `"{component}/{key}"` in rejections, signals and logs. Requests whose key
/// function returns `None`, and new keys when every kept key is busy or not
/// Closed, share one default breaker named after the component.
///
/// # Memory
///
/// At most `max_keys` breakers are kept. A new key beyond that evicts the
/// least recently used breaker that is idle: no call in flight, and Closed,
/// or Open with its open duration over. A breaker open within its open
/// duration is never evicted, so forgetting keys never reopens the way to a
/// failing one early; half-open breakers and states set by hand are kept.
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
///     .build_keyed(|host: &String| Some(host.clone()), 1024)?;
/// assert_eq!(layer.handle().len(), 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct KeyedCircuitBreakLayer<K, F, C> {
    shared: Arc<Keyed<K, F, C>>,
}

struct Keyed<K, F, C> {
    key_fn: F,
    config: BreakerConfig,
    classifier: C,
    default: Breaker<C>,
    shards: Box<[Mutex<Shard<K, C>>]>,
    shard_capacity: usize,
    hasher: RandomState,
}

struct Shard<K, C> {
    breakers: HashMap<K, Entry<C>>,
    tick: u64,
}

struct Entry<C> {
    breaker: Breaker<C>,
    last_used: u64,
}

/// The service of a [`KeyedCircuitBreakLayer`].
pub struct KeyedCircuitBreak<S, K, F, C> {
    inner: S,
    shared: Arc<Keyed<K, F, C>>,
}

/// Reads and steers the breakers of a [`KeyedCircuitBreakLayer`].
///
/// # Clone
///
/// Clones read the same breakers.
pub struct KeyedBreakerHandle<K, F, C> {
    shared: Arc<Keyed<K, F, C>>,
}

// === impl Keyed ===

impl<K: Hash, F, C> Keyed<K, F, C> {
    fn shard(&self, key: &K) -> &Mutex<Shard<K, C>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[index]
    }
}

impl<K, F, C> Keyed<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Display,
    C: Clone,
{
    pub(crate) fn new(key_fn: F, config: BreakerConfig, classifier: C, max_keys: usize) -> Self {
        let shards = max_keys.min(MAX_SHARDS);
        let default = Arc::new(Shared::new(
            Arc::new(MemoryBackend::new(config.clone())),
            classifier.clone(),
            config.component().clone(),
        ));
        Self {
            key_fn,
            config,
            classifier,
            default,
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        breakers: HashMap::new(),
                        tick: 0,
                    })
                })
                .collect(),
            shard_capacity: max_keys / shards,
            hasher: RandomState::new(),
        }
    }

    /// The breaker for `key`, made if need be.
    fn breaker(&self, key: Option<K>) -> Breaker<C> {
        let Some(key) = key else {
            return Arc::clone(&self.default);
        };
        {
            let mut shard = self.lock(&key);
            shard.tick += 1;
            let tick = shard.tick;
            if let Some(entry) = shard.breakers.get_mut(&key) {
                entry.last_used = tick;
                return Arc::clone(&entry.breaker);
            }
            if shard.breakers.len() >= self.shard_capacity && !shard.breakers.values().any(idle) {
                // No room and nothing to evict: building a breaker only to
                // drop it would cost an allocation per request.
                return Arc::clone(&self.default);
            }
        }
        // A new key: build its breaker outside the lock (the key's Display,
        // the classifier's Clone and the window's allocation are not ours
        // to run under it).
        let mut config = self.config.clone();
        config.component = Component::new(format!("{}/{key}", self.config.component()));
        let component = config.component().clone();
        let breaker = Arc::new(Shared::new(
            Arc::new(MemoryBackend::new(config)),
            self.classifier.clone(),
            component,
        ));
        let mut shard = self.lock(&key);
        shard.tick += 1;
        let tick = shard.tick;
        if let Some(entry) = shard.breakers.get_mut(&key) {
            // Another call made it meanwhile.
            entry.last_used = tick;
            return Arc::clone(&entry.breaker);
        }
        let mut evicted = None;
        if shard.breakers.len() >= self.shard_capacity {
            evicted = evict_one(&mut shard.breakers);
            if evicted.is_none() {
                // Every kept breaker is busy, open or set by hand.
                return Arc::clone(&self.default);
            }
        }
        shard.breakers.insert(
            key,
            Entry {
                breaker: Arc::clone(&breaker),
                last_used: tick,
            },
        );
        drop(shard);
        // The evicted breaker (and whatever its classifier holds) is dropped
        // here, outside the lock.
        drop(evicted);
        breaker
    }

    fn lock(&self, key: &K) -> std::sync::MutexGuard<'_, Shard<K, C>> {
        self.shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes the least recently used idle breaker and returns it; `None` if
/// none is idle. Idle: no call in flight (only this map holds it), and
/// Closed, or Open with its open duration over (nobody came back to probe).
/// Half-open breakers and the states set by hand are never evicted.
fn evict_one<K: Hash + Eq + Clone, C>(breakers: &mut HashMap<K, Entry<C>>) -> Option<Entry<C>> {
    let oldest = breakers
        .iter()
        .filter(|(_, entry)| idle(entry))
        .min_by_key(|(_, entry)| entry.last_used)
        .map(|(key, _)| key.clone())?;
    breakers.remove(&oldest)
}

/// No call in flight (only the map holds it) and evictable by state.
fn idle<C>(entry: &Entry<C>) -> bool {
    Arc::strong_count(&entry.breaker) == 1 && entry.breaker.backend.evictable()
}

// === impl KeyedCircuitBreakLayer ===

impl<K, F, C> KeyedCircuitBreakLayer<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Display,
    C: Clone,
{
    pub(crate) fn new(key_fn: F, config: BreakerConfig, classifier: C, max_keys: usize) -> Self {
        Self {
            shared: Arc::new(Keyed::new(key_fn, config, classifier, max_keys)),
        }
    }

    /// A handle to the breakers.
    pub fn handle(&self) -> KeyedBreakerHandle<K, F, C> {
        KeyedBreakerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, F, C> Clone for KeyedCircuitBreakLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, K, F, C> Layer<S> for KeyedCircuitBreakLayer<K, F, C> {
    type Service = KeyedCircuitBreak<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreak {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedCircuitBreakLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakLayer")
            .field("component", self.shared.config.component())
            .finish_non_exhaustive()
    }
}

// === impl KeyedCircuitBreak ===

impl<S, K, F, C> KeyedCircuitBreak<S, K, F, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, C, Request> Service<Request> for KeyedCircuitBreak<S, K, F, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + fmt::Display,
    F: Fn(&Request) -> Option<K>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, MemoryBackend>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let breaker = self.shared.breaker((self.shared.key_fn)(&request));
        let inner = &mut self.inner;
        admit(&breaker, || inner.call(request))
    }
}

impl<S: Clone, K, F, C> Clone for KeyedCircuitBreak<S, K, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedCircuitBreak<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreak")
            .field("inner", &self.inner)
            .field("component", self.shared.config.component())
            .finish_non_exhaustive()
    }
}

// === impl KeyedBreakerHandle ===

impl<K, F, C> KeyedBreakerHandle<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// The breaker kept for `key`, if any.
    pub fn get(&self, key: &K) -> Option<BreakerHandle> {
        let shard = self
            .shared
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.breakers.get(key).map(|entry| {
            BreakerHandle::new(
                Arc::clone(&entry.breaker.backend) as Arc<dyn Backend>,
                entry.breaker.component.clone(),
            )
        })
    }

    /// The breaker shared by requests with no key and by keys over the
    /// bound.
    pub fn default_breaker(&self) -> BreakerHandle {
        BreakerHandle::new(
            Arc::clone(&self.shared.default.backend) as Arc<dyn Backend>,
            self.shared.default.component.clone(),
        )
    }

    /// How many keys have a breaker now.
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .breakers
                    .len()
            })
            .sum()
    }

    /// `true` when no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys that have a breaker now, in no order.
    pub fn keys(&self) -> Vec<K> {
        self.shared
            .shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.breakers.keys().cloned().collect::<Vec<_>>()
            })
            .collect()
    }
}

impl<K, F, C> Clone for KeyedBreakerHandle<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedBreakerHandle<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerHandle")
            .field("component", self.shared.config.component())
            .finish_non_exhaustive()
    }
}
