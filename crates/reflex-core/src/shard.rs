//! [`Shards`]: per-key state split over a few locks, so that requests for
//! different keys seldom wait on each other. The dedup table, the slot
//! table and the keyed breaker keep their keys in one.
//!
//! Keys come from requests, so they are hashed with a hasher seeded per
//! process (foldhash: a few nanoseconds where SipHash takes tens; its
//! quality variant picks the shard, since the fast one's low bits cluster
//! for integer keys under some seeds). A lock
//! poisoned by a panic elsewhere is taken over: the state behind it is kept
//! consistent by its owner at every step, never left half-changed across a
//! call that may panic.
//!
//! # Examples
//!
//! ```
//! use reflex_core::shard::{Shards, ShardMap};
//!
//! let map: ShardMap<String, u32> = Shards::maps(16);
//! map.lock_key("a").insert("a".to_owned(), 1);
//! assert_eq!(map.lock_key("a").get("a"), Some(&1));
//! assert_eq!(map.len(), 16);
//! assert_eq!((0..map.len()).map(|i| map.lock(i).len()).sum::<usize>(), 1);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::PoisonError;

pub use foldhash::fast::RandomState;

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// A `HashMap` keyed by request data, with the per-process seeded hasher.
pub type KeyMap<K, V> = HashMap<K, V, RandomState>;

/// [`Shards`] of [`KeyMap`]s: a sharded map.
pub type ShardMap<K, V> = Shards<KeyMap<K, V>>;

/// `T`, once per shard, each behind its own lock; a key picks its shard by
/// its hash.
pub struct Shards<T> {
    shards: Box<[Mutex<T>]>,
    /// foldhash's quality variant: its fast one, taken modulo a few shards,
    /// left two of eight empty for 1 000 integer keys under one seed in 50.
    hasher: foldhash::quality::RandomState,
}

// === impl Shards ===

impl<T> Shards<T> {
    /// `count` shards (at least one), each starting as `make()`.
    pub fn new(count: usize, mut make: impl FnMut() -> T) -> Self {
        Self {
            shards: (0..count.max(1)).map(|_| Mutex::new(make())).collect(),
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// The number of shards.
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// The shard `key` lives in.
    #[inline]
    pub fn index<K: Hash + ?Sized>(&self, key: &K) -> usize {
        // The remainder of a u64 by a usize fits a usize.
        (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
    }

    /// Locks shard `index` (taken modulo the number of shards).
    #[inline]
    pub fn lock(&self, index: usize) -> MutexGuard<'_, T> {
        self.shards[index % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the shard `key` lives in.
    #[inline]
    pub fn lock_key<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        self.lock(self.index(key))
    }
}

impl<K, V> Shards<KeyMap<K, V>> {
    /// `count` empty maps.
    pub fn maps(count: usize) -> Self {
        Self::new(count, || HashMap::with_hasher(RandomState::default()))
    }
}

impl<T> fmt::Debug for Shards<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shards")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_lands_in_the_same_shard_and_zero_shards_means_one() {
        let map: ShardMap<u64, u64> = Shards::maps(0);
        assert_eq!(map.len(), 1);
        let map: ShardMap<u64, u64> = Shards::maps(8);
        for key in 0..1000u64 {
            let index = map.index(&key);
            assert!(index < 8);
            assert_eq!(map.index(&key), index);
            map.lock(index).insert(key, key);
        }
        let spread: Vec<usize> = (0..8).map(|i| map.lock(i).len()).collect();
        assert_eq!(spread.iter().sum::<usize>(), 1000);
        assert!(
            spread.iter().all(|&n| n > 50),
            "keys spread over the shards: {spread:?}"
        );
    }

    #[test]
    fn a_poisoned_shard_is_taken_over() {
        let map: ShardMap<u32, u32> = Shards::maps(1);
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = map.lock(0);
            panic!("a panic while the shard is held");
        }));
        assert!(poisoned.is_err());
        map.lock_key(&1).insert(1, 2);
        assert_eq!(map.lock_key(&1).get(&1), Some(&2));
    }
}
