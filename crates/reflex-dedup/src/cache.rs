//! The optional cache of answers: bounded by entries and by weight, each
//! answer kept for a TTL, then served stale for a window, the oldest
//! evicted first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reflex_core::shard::{KeyMap, RandomState};
use tokio::time::Instant;

use crate::handle::Stats;
use crate::logs::Logs;
use crate::settings::CacheSettings;

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
    entries: KeyMap<K, Cached<Res>>,
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
    /// A cache with these bounds, serving answers up to `stale` past their
    /// TTL.
    pub(crate) fn new(settings: CacheSettings, stale: Duration) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                entries: HashMap::with_hasher(RandomState::default()),
                order: VecDeque::new(),
                bytes: 0,
                next: 0,
            }),
            ttl: settings.ttl,
            stale,
            max_entries: settings.max_entries,
            max_bytes: settings.max_bytes,
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
    /// `max_age` if that is shorter; evicts the oldest answers beyond the
    /// bounds. An answer that may not be kept (heavier than the byte bound,
    /// or a `max_age` of zero) removes the one kept before it: after a call
    /// for a key ends, the cache holds its answer or nothing.
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
            Logs::not_kept(&stats.component, weight, self.max_bytes, ttl);
            self.remove(&key, stats);
            return;
        }
        let expires = Instant::now().checked_add(ttl);
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        let before = (inner.entries.len(), inner.bytes);
        evicted.extend(inner.remove(&key));
        let replaced = evicted.len();
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
        let evictions = evicted.len() - replaced;
        drop(evicted);
        if evictions > 0 {
            Logs::evicted(&stats.component, evictions);
        }
    }

    /// Forgets the answer kept for `key`, if any.
    pub(crate) fn remove(&self, key: &K, stats: &Stats) {
        let mut inner = self.lock();
        let before = (inner.entries.len(), inner.bytes);
        let removed = inner.remove(key);
        stats.cache_changed((before.0, inner.entries.len()), (before.1, inner.bytes));
        drop(inner);
        // Dropped outside the lock.
        drop(removed);
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

    fn settings(ttl: Duration, max_entries: usize, max_bytes: usize) -> CacheSettings {
        CacheSettings {
            ttl,
            max_entries,
            max_bytes,
        }
    }

    #[test]
    fn replacing_the_same_keys_keeps_the_eviction_order_bounded() {
        let stats = Stats::new(Component::new("t"), Sink::none());
        let cache = Cache::new(
            settings(Duration::from_secs(60), 3, usize::MAX),
            Duration::ZERO,
        );
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
        let cache = Cache::new(
            settings(Duration::MAX, usize::MAX, usize::MAX),
            Duration::MAX,
        );
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

    #[test]
    fn an_answer_that_may_not_be_kept_removes_the_one_before_it() {
        let stats = Stats::new(Component::new("t"), Sink::none());
        let cache = Cache::new(settings(Duration::from_secs(60), 10, 10), Duration::ZERO);
        for (weight, max_age) in [(11, None), (1, Some(Duration::ZERO))] {
            cache.insert("k", 1, 1, None, &stats);
            assert!(matches!(cache.get(&"k", &stats), Lookup::Fresh(1)));
            cache.insert("k", 2, weight, max_age, &stats);
            assert!(
                matches!(cache.get(&"k", &stats), Lookup::Miss),
                "{weight} {max_age:?}"
            );
            let inner = cache.lock();
            assert_eq!((inner.entries.len(), inner.bytes), (0, 0));
        }
    }
}
