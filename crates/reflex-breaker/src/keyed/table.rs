//! [`Table`]: the breakers of a keyed layer, one per key, at most
//! `max_keys`, in [`Shards`]; how a key finds its breaker, and which
//! breaker makes room for a new one.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reflex_core::Component;
use reflex_core::shard::{KeyMap, Shards};

use super::handle::{KeyedBreakerMetrics, View};
use super::room::Room;
use crate::backend::Backend;
use crate::config::BreakerConfig;
use crate::handle::BreakerHandle;
use crate::memory::{MemoryBackend, Scope};
use crate::shared::Shared;

const MAX_SHARDS: usize = 16;

/// One key's breaker, as the services use it.
pub(crate) type Breaker<C> = Arc<Shared<C, MemoryBackend>>;

/// The breakers of a keyed layer.
pub(crate) struct Table<K, C> {
    config: BreakerConfig,
    classifier: C,
    default: Breaker<C>,
    shards: Shards<Shard<K, C>>,
    max_keys: usize,
    /// Places taken: breakers kept in all shards, plus places reserved for
    /// new keys whose breakers are being built. Never above `max_keys`.
    places: AtomicUsize,
    pub(super) room: Room,
    evictions: AtomicU64,
    overflowed: AtomicU64,
}

struct Shard<K, C> {
    breakers: KeyMap<K, Entry<C>>,
    tick: u64,
}

struct Entry<C> {
    breaker: Breaker<C>,
    last_used: u64,
}

// === impl Table ===

impl<K, C> Table<K, C>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    C: Clone,
{
    pub(crate) fn new(config: BreakerConfig, classifier: C, max_keys: usize) -> Self {
        let room = Room::new();
        let default = make::<K, C>(&config, &classifier, None, &room);
        Self {
            default,
            shards: Shards::new(max_keys.min(MAX_SHARDS), || Shard {
                breakers: KeyMap::default(),
                tick: 0,
            }),
            config,
            classifier,
            max_keys,
            places: AtomicUsize::new(0),
            room,
            evictions: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    /// The breaker for `key`, made if need be; the default one when there
    /// is no room for it.
    pub(crate) fn breaker(&self, key: K) -> Breaker<C> {
        let index = self.shards.index(&key);
        let mut shard = self.shards.lock(index);
        if let Some(breaker) = shard.touch(&key) {
            return breaker;
        }
        // A new key needs a place: a free one, or an idle breaker's, of
        // this shard first, unless the last search found nothing idle.
        let mut placed = self.reserve();
        let mut search = None;
        let mut evicted = None;
        if !placed {
            search = self.room.search();
            if search.is_some() {
                evicted = self.evict_one(&mut shard);
                placed = evicted.is_some();
            }
        }
        drop(shard);
        // The evicted breaker (and whatever its classifier holds) is dropped
        // outside the lock, and the new one built outside it (the key's
        // Clone, the classifier's Clone and the window's allocation are not
        // ours to run under it).
        drop(evicted);
        placed = placed || (search.is_some() && self.evict_elsewhere(index)) || self.reserve();
        if !placed {
            // Every kept breaker is busy, open or set by hand: building one
            // only to drop it would cost an allocation per request.
            if let Some(search) = search {
                self.room.found_nothing(search);
            }
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return self.default_breaker();
        }
        let place = Place {
            places: &self.places,
            kept: false,
        };
        let breaker = make(&self.config, &self.classifier, Some(&key), &self.room);
        let mut shard = self.shards.lock(index);
        if let Some(kept) = shard.touch(&key) {
            // Another call kept it meanwhile: ours goes, and its place
            // (dropping `place`).
            return kept;
        }
        let tick = shard.tick;
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

impl<K: Hash + Eq + Clone, C> Table<K, C> {
    /// The breaker of requests without a key, and of keys over the bound.
    pub(crate) fn default_breaker(&self) -> Breaker<C> {
        Arc::clone(&self.default)
    }

    /// The component every breaker of the layer speaks as.
    pub(crate) fn component(&self) -> &Component {
        self.config.component()
    }

    /// Takes a free place for a new key, if any is left.
    fn reserve(&self) -> bool {
        self.places
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.max_keys).then(|| taken + 1)
            })
            .is_ok()
    }

    /// Removes the least recently used idle breaker of `shard` and returns
    /// it; `None` if none is idle. Idle: no call in flight (only the table
    /// holds it), and Closed, or Open with its open duration over (nobody
    /// came back to probe). Half-open breakers and the states set by hand
    /// are never evicted.
    fn evict_one(&self, shard: &mut Shard<K, C>) -> Option<Entry<C>> {
        let oldest = shard
            .breakers
            .iter()
            .filter(|(_, entry)| {
                Arc::strong_count(&entry.breaker) == 1 && entry.breaker.backend.evictable()
            })
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| key.clone())?;
        self.evictions.fetch_add(1, Ordering::Relaxed);
        shard.breakers.remove(&oldest)
    }

    /// Evicts an idle breaker from a shard other than `index`, the first
    /// that has one; its place is the caller's. `false` when none has.
    fn evict_elsewhere(&self, index: usize) -> bool {
        (1..self.shards.len()).any(|offset| {
            let mut shard = self.shards.lock(index + offset);
            let evicted = self.evict_one(&mut shard);
            drop(shard);
            // Dropped outside the lock: its classifier is user code.
            evicted.is_some()
        })
    }

    fn handle_of(breaker: &Breaker<C>) -> BreakerHandle {
        BreakerHandle::new(
            Arc::clone(&breaker.backend) as Arc<dyn Backend>,
            breaker.component.clone(),
        )
    }
}

impl<K, C> View<K> for Table<K, C>
where
    K: Hash + Eq + Clone + Send + Sync,
    C: Send + Sync,
{
    fn get(&self, key: &K) -> Option<BreakerHandle> {
        let shard = self.shards.lock_key(key);
        shard
            .breakers
            .get(key)
            .map(|entry| Self::handle_of(&entry.breaker))
    }

    fn default_breaker(&self) -> BreakerHandle {
        Self::handle_of(&self.default)
    }

    fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|index| self.shards.lock(index).breakers.len())
            .sum()
    }

    fn keys(&self) -> Vec<K> {
        (0..self.shards.len())
            .flat_map(|index| {
                let shard = self.shards.lock(index);
                shard.breakers.keys().cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    fn component(&self) -> &Component {
        self.config.component()
    }

    fn metrics(&self) -> KeyedBreakerMetrics {
        KeyedBreakerMetrics {
            keys: self.len(),
            max_keys: self.max_keys,
            evictions_total: self.evictions.load(Ordering::Relaxed),
            overflowed_total: self.overflowed.load(Ordering::Relaxed),
            default_breaker: self.default.backend.metrics(),
        }
    }
}

impl<K: Hash + Eq, C> Shard<K, C> {
    /// The breaker kept for `key`, now its most recently used.
    fn touch(&mut self, key: &K) -> Option<Breaker<C>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.breakers.get_mut(key)?;
        entry.last_used = tick;
        Some(Arc::clone(&entry.breaker))
    }
}

/// A breaker with the table's settings, for `key` (`None`: the default).
fn make<K, C>(config: &BreakerConfig, classifier: &C, key: Option<&K>, room: &Room) -> Breaker<C>
where
    K: Clone + fmt::Display + Send + Sync + 'static,
    C: Clone,
{
    let key = key.map(|key| Box::new(key.clone()) as Box<dyn fmt::Display + Send + Sync>);
    let scope = Scope::Keyed {
        key,
        closes: room.closes(),
    };
    Arc::new(Shared::new(
        Arc::new(MemoryBackend::with_scope(config.clone(), scope)),
        classifier.clone(),
        config.component().clone(),
        config.count_echoes(),
        Arc::clone(&config.logs),
    ))
}

/// A place reserved among `max_keys`, given back unless [`Place::keep`] is
/// called: when another call kept the key first, and when building the
/// breaker (the key's and the classifier's `Clone`, user code) panics.
struct Place<'a> {
    places: &'a AtomicUsize,
    kept: bool,
}

impl Place<'_> {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.places.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use reflex_core::{BreakerState, DefaultClassifier, Outcome};

    use super::*;
    use crate::CircuitBreakLayer;
    use crate::keyed::room::QUIET;

    fn table(max_keys: usize) -> Table<u32, DefaultClassifier> {
        let config = CircuitBreakLayer::builder()
            .consecutive_failures(1)
            .config()
            .expect("valid");
        Table::new(config, DefaultClassifier, max_keys)
    }

    fn on_paused_clock(test: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
            .block_on(test);
    }

    fn is_default(
        table: &Table<u32, DefaultClassifier>,
        breaker: &Breaker<DefaultClassifier>,
    ) -> bool {
        Arc::ptr_eq(breaker, &table.default)
    }

    #[test]
    fn a_full_table_with_nothing_idle_searches_once_not_once_per_new_key() {
        on_paused_clock(async {
            let table = table(32);
            // A call in flight on every kept breaker: none is idle.
            let mut busy: Vec<_> = (0..32).map(|key| table.breaker(key)).collect();
            assert!(busy.iter().all(|breaker| !is_default(&table, breaker)));
            for key in 32..10_032 {
                assert!(is_default(&table, &table.breaker(key)), "key {key}");
            }
            assert_eq!(
                table.room.searches(),
                1,
                "one search found nothing, the rest skipped it"
            );
            let metrics = table.metrics();
            assert_eq!((metrics.keys, metrics.evictions_total), (32, 0));
            assert_eq!(metrics.overflowed_total, 10_000);

            // A call ends: its breaker is idle, but nobody says so. The next
            // new keys still skip the search, until the quiet time is over.
            drop(busy.swap_remove(0));
            assert!(is_default(&table, &table.breaker(20_000)));
            assert_eq!(table.room.searches(), 1);
            tokio::time::advance(QUIET).await;
            let kept = table.breaker(20_001);
            assert!(!is_default(&table, &kept), "the idle breaker made room");
            assert_eq!(table.room.searches(), 2);
            assert_eq!(table.metrics().evictions_total, 1);
            assert!(table.get(&0).is_none(), "key 0 was evicted");
            // The other kept keys are still found at once, with no search.
            assert!(!is_default(&table, &table.breaker(5)));
            assert_eq!(table.room.searches(), 2);
        });
    }

    #[test]
    fn a_breaker_that_closes_ends_the_quiet_at_once() {
        on_paused_clock(async {
            let table = table(2);
            let _busy = table.breaker(0);
            // Key 1 trips (one failure) and is left open: not idle for 30 s.
            let one = table.breaker(1);
            let ticket = one.backend.admit().expect("closed");
            one.backend.record(ticket, Outcome::Failure, None);
            drop(one);
            assert_eq!(table.get(&1).unwrap().state(), BreakerState::Open);

            assert!(is_default(&table, &table.breaker(2)));
            assert!(is_default(&table, &table.breaker(3)));
            assert_eq!(table.room.searches(), 1);

            // Reset by hand, key 1's breaker closes: the next new key
            // searches again without waiting, and takes its place.
            table.get(&1).unwrap().reset();
            assert!(!is_default(&table, &table.breaker(4)));
            assert_eq!(table.room.searches(), 2);
            let mut keys = table.keys();
            keys.sort_unstable();
            assert_eq!(keys, vec![0, 4]);
        });
    }
}
