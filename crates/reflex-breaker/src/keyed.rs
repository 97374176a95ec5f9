//! Per-key breakers: [`KeyedCircuitBreakLayer`].

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify};
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::Backend;
use crate::config::BreakerConfig;
use crate::future::ResponseFuture;
use crate::handle::BreakerHandle;
use crate::memory::{MemoryBackend, Scope};
use crate::service::{Shared, admit};

const MAX_SHARDS: usize = 16;

type Breaker<C> = Arc<Shared<C, MemoryBackend>>;

/// One breaker per key (host, route, tenant…), at most `max_keys` of them.
///
/// Built by [`CircuitBreakBuilder::build_keyed`](crate::CircuitBreakBuilder::build_keyed).
/// Each key's breaker has the builder's configuration and its own state:
/// one key tripping leaves the others closed. Requests whose key function
/// returns `None`, and new keys when `max_keys` are kept and none can be
/// evicted, share one default breaker.
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
/// they take no place among a witness's components. The `tracing` events
/// of a transition carry the key as a field (`key`, absent for the default
/// breaker).
///
/// # Memory
///
/// Every key up to `max_keys` gets a breaker of its own, whatever shard it
/// hashes to: the bound is one count for the whole layer. A new key beyond
/// it evicts one breaker that is idle: no call in flight, and Closed, or
/// Open with its open duration over. It is the least recently used idle
/// breaker of the new key's shard or, if that shard has none, of the first
/// other shard that has one (least recently used within a shard, not across
/// shards). A breaker open within its open duration is never evicted, so
/// forgetting keys never reopens the way to a failing one early; half-open
/// breakers and states set by hand are kept. So at most `max_keys` breakers
/// are kept, plus the default one.
///
/// A request for a kept key takes one shard lock (of up to 16) and
/// allocates nothing. A new key builds its breaker outside any lock; when
/// the bound is reached and nothing is idle, it goes to the default breaker
/// without allocating, after looking through every shard for an idle
/// breaker.
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
///     .no_failure_rate()
///     .consecutive_failures(1)
///     .build_keyed(|host: &&'static str| Some(*host), 1024)?;
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
pub struct KeyedCircuitBreakLayer<K, F, C> {
    shared: Arc<Keyed<K, F, C>>,
}

struct Keyed<K, F, C> {
    key_fn: F,
    config: BreakerConfig,
    classifier: C,
    default: Breaker<C>,
    shards: Box<[Mutex<Shard<K, C>>]>,
    max_keys: usize,
    /// Places taken: breakers kept in all shards, plus places reserved for
    /// new keys whose breakers are being built. Never above `max_keys`.
    places: AtomicUsize,
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

impl<K: Hash + Eq + Clone, F, C> Keyed<K, F, C> {
    fn shard_index(&self, key: &K) -> usize {
        // Truncating the hash on 32-bit targets only drops bits of it.
        self.hasher.hash_one(key) as usize % self.shards.len()
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard<K, C>> {
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a free place for a new key, if any is left.
    fn reserve(&self) -> bool {
        self.places
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.max_keys).then(|| taken + 1)
            })
            .is_ok()
    }

    /// A place taken for a new key, given back unless [`Place::keep`] is
    /// called: when another call kept the key first, and when building the
    /// breaker (the key's and the classifier's `Clone`, user code) panics.
    fn place(&self) -> Place<'_, K, F, C> {
        Place {
            keyed: self,
            kept: false,
        }
    }

    /// Evicts an idle breaker from a shard other than `index`, the first
    /// that has one; its place is the caller's. `false` when none has.
    fn evict_elsewhere(&self, index: usize) -> bool {
        (1..self.shards.len()).any(|offset| {
            let mut shard = self.lock((index + offset) % self.shards.len());
            let evicted = evict_one(&mut shard.breakers);
            drop(shard);
            // Dropped outside the lock: its classifier is user code.
            evicted.is_some()
        })
    }
}

impl<K, F, C> Keyed<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    C: Clone,
{
    pub(crate) fn new(key_fn: F, config: BreakerConfig, classifier: C, max_keys: usize) -> Self {
        let shards = max_keys.min(MAX_SHARDS);
        let default = Arc::new(Shared::new(
            Arc::new(MemoryBackend::with_scope(
                config.clone(),
                Scope::Keyed(None),
            )),
            classifier.clone(),
            config.component().clone(),
            config.count_echoes(),
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
            max_keys,
            places: AtomicUsize::new(0),
            hasher: RandomState::new(),
        }
    }

    /// The breaker for `key`, made if need be.
    fn breaker(&self, key: Option<K>) -> Breaker<C> {
        let Some(key) = key else {
            return Arc::clone(&self.default);
        };
        let index = self.shard_index(&key);
        let mut shard = self.lock(index);
        shard.tick += 1;
        let tick = shard.tick;
        if let Some(entry) = shard.breakers.get_mut(&key) {
            entry.last_used = tick;
            return Arc::clone(&entry.breaker);
        }
        // A new key needs a place: a free one, or an idle breaker's, of
        // this shard first.
        let (placed, evicted) = if self.reserve() {
            (true, None)
        } else {
            let evicted = evict_one(&mut shard.breakers);
            (evicted.is_some(), evicted)
        };
        drop(shard);
        // The evicted breaker (and whatever its classifier holds) is dropped
        // outside the lock, and the new one built outside it (the key's
        // Clone, the classifier's Clone and the window's allocation are not
        // ours to run under it).
        drop(evicted);
        if !(placed || self.evict_elsewhere(index) || self.reserve()) {
            // Every kept breaker is busy, open or set by hand: building one
            // only to drop it would cost an allocation per request.
            return Arc::clone(&self.default);
        }
        let place = self.place();
        let breaker = Arc::new(Shared::new(
            Arc::new(MemoryBackend::with_scope(
                self.config.clone(),
                Scope::Keyed(Some(Box::new(key.clone()))),
            )),
            self.classifier.clone(),
            self.config.component().clone(),
            self.config.count_echoes(),
        ));
        let mut shard = self.lock(index);
        shard.tick += 1;
        let tick = shard.tick;
        if let Some(entry) = shard.breakers.get_mut(&key) {
            // Another call kept it meanwhile: ours goes, and its place
            // (dropping `place`).
            entry.last_used = tick;
            return Arc::clone(&entry.breaker);
        }
        shard.breakers.insert(
            key,
            Entry {
                breaker: Arc::clone(&breaker),
                last_used: tick,
            },
        );
        place.keep();
        breaker
    }
}

/// A place reserved among `max_keys`, until kept by an inserted breaker.
struct Place<'a, K, F, C> {
    keyed: &'a Keyed<K, F, C>,
    kept: bool,
}

impl<K, F, C> Place<'_, K, F, C> {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl<K, F, C> Drop for Place<'_, K, F, C> {
    fn drop(&mut self) {
        if !self.kept {
            self.keyed.places.fetch_sub(1, Ordering::AcqRel);
        }
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
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
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
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
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
    /// The breaker kept for `key`, if any. Its
    /// [`component`](BreakerHandle::component) is the layer's.
    pub fn get(&self, key: &K) -> Option<BreakerHandle> {
        let shard = self.shared.lock(self.shared.shard_index(key));
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
        (0..self.shared.shards.len())
            .map(|index| self.shared.lock(index).breakers.len())
            .sum()
    }

    /// `true` when no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys that have a breaker now, in no order.
    pub fn keys(&self) -> Vec<K> {
        (0..self.shared.shards.len())
            .flat_map(|index| {
                let shard = self.shared.lock(index);
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
