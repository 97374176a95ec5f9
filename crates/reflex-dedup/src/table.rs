//! The table of flights in progress: one per key, sharded by key, at most
//! `max_keys` of them.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use reflex_core::BoxError;
use reflex_core::shard::{ShardMap, Shards};

use crate::flight::Flight;
use crate::handle::Stats;

/// Shards of the table: enough that requests for different keys seldom
/// wait on each other.
const SHARDS: usize = 16;

/// Flights in progress, one per key.
pub(crate) struct Table<K, Fut, Res, V> {
    flights: ShardMap<K, Arc<Flight<Fut, Res, V>>>,
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
    Fut: Future<Output = Result<Res, BoxError>> + Unpin + Send + 'static,
    Res: Send + 'static,
    V: Clone + Send + 'static,
{
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            flights: Shards::maps(SHARDS),
            max_keys,
        }
    }

    /// Joins the flight of `key`, or starts one.
    pub(crate) fn join(&self, key: &K, if_live: IfLive, stats: &Stats) -> Joined<Fut, Res, V> {
        let mut shard = self.flights.lock_key(key);
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
        let mut shard = self.flights.lock_key(key);
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
