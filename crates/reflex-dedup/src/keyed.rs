//! Where a keyed request goes first: a copy of a cached answer, a
//! refusal, or a wait on a shared call, as the leader that makes it or as
//! a follower.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reflex_core::{BoxError, RejectKind, Signal};
use tokio::time::Instant;

use crate::cache::Lookup;
use crate::logs::Logs;
use crate::share::{Share, Sharing};
use crate::shared::Shared;
use crate::table::{IfLive, Joined};
use crate::wait::{Waiter, Waiting};
use crate::{Call, Key};

/// What a keyed request comes to, before any inner call.
pub(crate) enum Begun<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    /// Answered at once: a copy of a cached answer (marked), or a refusal.
    Ready(Result<Res, BoxError>),
    /// This request makes the call: hand it over with [`Waiter::start`]
    /// (the waiter exists before the inner call, so that a panic in `call`
    /// drops it, which abandons the flight and frees the key), then wait.
    Leader(Waiter<K, KF, H, C, Fut, Res>, Option<Instant>),
    /// This request waits on the call of another.
    Follower(Waiting<K, KF, H, C, Fut, Res>),
}

/// Where a request with `key` goes, through the state `shared`.
pub(crate) fn begin<K, KF, H, C, Fut, Res>(
    shared: &Arc<Shared<K, KF, H, C, Fut, Res>>,
    key: K,
) -> Begun<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    let stats = &shared.stats;
    let mut stale = None;
    if let Some(cache) = &shared.cache {
        match cache.get(&key, stats) {
            Lookup::Fresh(answer) => {
                return Begun::Ready(Ok(shared.cached(&answer, Sharing::Cached)));
            }
            Lookup::Stale(answer) => stale = Some(answer),
            Lookup::Miss => {}
        }
    }
    let if_live = if stale.is_some() {
        IfLive::Skip
    } else if shared.refuse_duplicates {
        IfLive::Refuse
    } else {
        IfLive::Wait
    };
    // A wait timeout too long to be an instant is no timeout.
    let until = shared
        .wait_timeout
        .and_then(|t| Instant::now().checked_add(t));
    let refused = match shared.table.join(&key, if_live, stats) {
        Joined::Leader(flight) => {
            let waiter = Waiter::new(flight, crate::flight::LEADER, key, Arc::clone(shared));
            return Begun::Leader(waiter, until);
        }
        Joined::Follower {
            flight,
            id,
            waiters,
        } => {
            stats.coalesced.fetch_add(1, Ordering::Relaxed);
            stats.emit(Signal::Coalesced { waiters });
            Logs::coalesced(&stats.component, waiters);
            let waiter = Waiter::new(flight, id, key, Arc::clone(shared));
            return Begun::Follower(Waiting::new(waiter, until));
        }
        // A refresh is running: the stale answer meanwhile.
        Joined::InProgress => RejectKind::InProgress,
        // No room for a new key: a stale answer beats a refusal.
        Joined::Full => RejectKind::DedupFull,
    };
    Begun::Ready(match &stale {
        Some(answer) => Ok(shared.cached(answer, Sharing::Stale)),
        None => Err(shared.refuse(refused)),
    })
}
