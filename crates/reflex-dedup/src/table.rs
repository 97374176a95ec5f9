//! The table of flights in progress, sharded by key, and the optional
//! cache of answers.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use foldhash::fast::RandomState;
use reflex_core::BoxError;
use tokio::time::Instant;

use crate::flight::Flight;
use crate::handle::Stats;

const SHARDS: usize = 16;

type Flights<K, Fut, Res, V> = HashMap<K, Arc<Flight<Fut, Res, V>>, RandomState>;
type Shard<K, Fut, Res, V> = Mutex<Flights<K, Fut, Res, V>>;

/// Flights in progress, one per key.
pub(crate) struct Table<K, Fut, Res, V> {
    shards: Box<[Shard<K, Fut, Res, V>]>,
    hasher: RandomState,
    max_keys: usize,
}

/// What [`Table::join`] does when the key has a call in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfLive {
    /// Wait on it.
    Wait,
    /// Refuse the request (`InProgress`).
    Refuse,
    /// Do not join: the caller has a stale answer to serve.
    Skip,
}

/// What [`Table::join`] decided.
pub(crate) enum Joined<Fut, Res, V> {
    /// No call for this key: start one (waiter id 0).
    Leader(Arc<Flight<Fut, Res, V>>),
    /// A call is in progress: wait on it as waiter `id`, one of `waiters`.
    Follower {
        flight: Arc<Flight<Fut, Res, V>>,
        id: usize,
        waiters: usize,
    },
    /// A call is in progress and duplicates are refused, or (with
    /// [`IfLive::Skip`]) are not to join it.
    InProgress,
    /// As many keys are in flight as allowed.
    Full,
}

// === impl Table ===

impl<K, Fut, Res, V> Table<K, Fut, Res, V>
where
    K: Hash + Eq + Clone,
    Fut: Future<Output = Result<Res, BoxError>> + Send + 'static,
    Res: Send + 'static,
    V: Clone + Send + 'static,
{
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            hasher: RandomState::default(),
            max_keys,
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Flights<K, Fut, Res, V>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the flight of `key`, or starts one.
    pub(crate) fn join(&self, key: &K, if_live: IfLive, stats: &Stats) -> Joined<Fut, Res, V> {
        let mut shard = self.shard(key);
        let mut ended = None;
        if let Some(flight) = shard.get(key) {
            if if_live != IfLive::Wait {
                if flight.is_live() {
                    return Joined::InProgress;
                }
            } else if let Some((id, waiters)) = flight.join() {
                return Joined::Follower {
                    flight: Arc::clone(flight),
                    id,
                    waiters,
                };
            }
            // It ended and its waiters have not removed it yet: replace it.
            ended = shard.remove(key);
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            if ended.as_ref().is_some_and(|f| f.panicked()) {
                stats.aborted.fetch_add(1, Ordering::Relaxed);
            }
        }
        if stats.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_keys {
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            drop(ended);
            return Joined::Full;
        }
        let flight = Flight::new();
        shard.insert(key.clone(), Arc::clone(&flight));
        drop(shard);
        drop(ended);
        Joined::Leader(flight)
    }

    /// Removes `flight` from the table, if it is still `key`'s.
    pub(crate) fn remove(&self, key: &K, flight: &Arc<Flight<Fut, Res, V>>, stats: &Stats) {
        let mut shard = self.shard(key);
        if shard.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            let removed = shard.remove(key);
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            if flight.panicked() {
                stats.aborted.fetch_add(1, Ordering::Relaxed);
            }
            // Dropped outside the lock: it may hold the inner call.
            drop(removed);
        }
    }
}

/// What the cache holds for a key.
pub(crate) enum Lookup<Res> {
    Fresh(Res),
    /// Past its TTL, within the stale window.
    Stale(Res),
    Miss,
}

/// A bounded cache of successful answers, each kept for a TTL, the oldest
/// evicted first.
pub(crate) struct Cache<K, Res> {
    inner: Mutex<CacheInner<K, Res>>,
    ttl: Duration,
    /// How long past its TTL an answer may still be served while a
    /// refresh runs.
    stale: Duration,
    max_entries: usize,
    max_bytes: usize,
}

struct CacheInner<K, Res> {
    entries: HashMap<K, Cached<Res>, RandomState>,
    /// Keys in insertion order, with the sequence number of the insertion
    /// (an entry replaced since leaves a stale line, skipped and compacted).
    order: VecDeque<(K, u64)>,
    bytes: usize,
    next: u64,
}

struct Cached<Res> {
    response: Res,
    /// Fresh until then (`None`: for ever, a TTL too long to be an
    /// instant); stale (served only while a refresh runs) until
    /// `expires + stale` (saturating the same way).
    expires: Option<Instant>,
    weight: usize,
    seq: u64,
}

// === impl Cache ===

impl<K: Hash + Eq + Clone, Res: Clone> Cache<K, Res> {
    pub(crate) fn new(
        ttl: Duration,
        stale: Duration,
        max_entries: usize,
        max_bytes: usize,
    ) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                entries: HashMap::with_hasher(RandomState::default()),
                order: VecDeque::new(),
                bytes: 0,
                next: 0,
            }),
            ttl,
            stale,
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner<K, Res>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer kept for `key`, fresh or stale; one past its stale
    /// window is dropped.
    pub(crate) fn get(&self, key: &K, stats: &Stats) -> Lookup<Res> {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(cached) = inner.entries.get(key) else {
            return Lookup::Miss;
        };
        let Some(expires) = cached.expires else {
            return Lookup::Fresh(cached.response.clone());
        };
        if expires > now {
            return Lookup::Fresh(cached.response.clone());
        }
        if expires.checked_add(self.stale).is_none_or(|end| end > now) {
            return Lookup::Stale(cached.response.clone());
        }
        let before = (inner.entries.len(), inner.bytes);
        let expired = inner.remove(key);
        stats.cache_changed((before.0, inner.entries.len()), (before.1, inner.bytes));
        drop(inner);
        drop(expired);
        Lookup::Miss
    }

    /// Keeps `response`, of `weight`, for `key`, for the layer's TTL or
    /// `max_age` if that is shorter (not at all if it is zero); evicts the
    /// oldest answers beyond the bounds. An answer heavier than the byte
    /// bound is not kept.
    pub(crate) fn insert(
        &self,
        key: K,
        response: Res,
        weight: usize,
        max_age: Option<Duration>,
        stats: &Stats,
    ) {
        let ttl = max_age.map_or(self.ttl, |age| age.min(self.ttl));
        if weight > self.max_bytes || ttl.is_zero() {
            return;
        }
        let expires = Instant::now().checked_add(ttl);
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        let before = (inner.entries.len(), inner.bytes);
        evicted.extend(inner.remove(&key));
        // Room first, so the sum of weights never exceeds the bound (and
        // cannot overflow): `weight <= max_bytes` was checked above.
        while inner.entries.len() >= self.max_entries || inner.bytes > self.max_bytes - weight {
            let Some((oldest, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&oldest).is_some_and(|c| c.seq == seq) {
                evicted.extend(inner.remove(&oldest));
            }
        }
        let seq = inner.next;
        inner.next = inner.next.wrapping_add(1);
        inner.bytes += weight;
        inner.order.push_back((key.clone(), seq));
        inner.entries.insert(
            key,
            Cached {
                response,
                expires,
                weight,
                seq,
            },
        );
        // Stale lines of replaced entries: keep the order at most twice
        // the entries (plus a little), so updates cannot grow it.
        if inner.order.len() > 2 * inner.entries.len() + 16 {
            let CacheInner { entries, order, .. } = &mut *inner;
            order.retain(|(key, seq)| entries.get(key).is_some_and(|c| c.seq == *seq));
        }
        stats.cache_changed((before.0, inner.entries.len()), (before.1, inner.bytes));
        drop(inner);
        drop(evicted);
    }
}

impl<K: Hash + Eq, Res> CacheInner<K, Res> {
    fn remove(&mut self, key: &K) -> Option<Res> {
        let cached = self.entries.remove(key)?;
        self.bytes -= cached.weight;
        Some(cached.response)
    }
}

#[cfg(test)]
mod tests {
    use reflex_core::{Component, Sink};

    use super::*;

    #[test]
    fn replacing_the_same_keys_keeps_the_eviction_order_bounded() {
        let stats = Stats::new(Component::new("t"), Sink::none());
        let cache = Cache::new(Duration::from_secs(60), Duration::ZERO, 3, usize::MAX);
        for round in 0..1_000_u32 {
            cache.insert(round % 2, round, 0, None, &stats);
            let inner = cache.lock();
            assert!(inner.entries.len() <= 3);
            assert!(
                inner.order.len() <= 2 * inner.entries.len() + 17,
                "round {round}: {} lines for {} entries",
                inner.order.len(),
                inner.entries.len()
            );
        }
        assert!(matches!(cache.get(&1, &stats), Lookup::Fresh(999)));
    }

    #[test]
    fn weights_near_the_largest_byte_bound_evict_instead_of_overflowing() {
        let stats = Stats::new(Component::new("t"), Sink::none());
        let cache = Cache::new(Duration::MAX, Duration::MAX, usize::MAX, usize::MAX);
        let heavy = usize::MAX / 2 + 1;
        cache.insert(1, 1, heavy, None, &stats);
        cache.insert(2, 2, heavy, None, &stats);
        let inner = cache.lock();
        assert_eq!(
            (inner.entries.len(), inner.bytes),
            (1, heavy),
            "the oldest went"
        );
        drop(inner);
        assert!(matches!(cache.get(&2, &stats), Lookup::Fresh(2)));
        assert!(matches!(cache.get(&1, &stats), Lookup::Miss));
    }
}
