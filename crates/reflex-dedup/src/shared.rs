//! [`Shared`]: what a service made by a dedup layer, its clones and their
//! futures share: the key function, the flights in progress and the cache
//! of that one inner service, and how answers are shared and judged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reflex_core::{BoxError, RejectKind, Rejected, Signal};

use crate::cache::Cache;
use crate::handle::Stats;
use crate::logs::Logs;
use crate::settings::Settings;
use crate::share::{Share, Sharing};
use crate::table::Table;
use crate::{Call, Key};

/// The state behind one service and its clones. `Fut` is the (boxed)
/// future of a shared call and `Res` its answer, which `H` shares.
pub(crate) struct Shared<K, KF, H, C, Fut, Res>
where
    H: Share<Res>,
{
    pub(crate) key: KF,
    pub(crate) table: Table<K, Fut, Res, H::Shared>,
    pub(crate) cache: Option<Cache<K, H::Shared>>,
    pub(crate) refuse_duplicates: bool,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) share: H,
    /// Which answers the cache may keep.
    pub(crate) classifier: C,
    pub(crate) stats: Arc<Stats>,
}

// === impl Shared ===

impl<K, KF, H, C, Fut, Res> Shared<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    /// The state of one new service: no flight, an empty cache (if the
    /// settings ask for one).
    pub(crate) fn new(
        settings: &Settings,
        key: KF,
        share: H,
        classifier: C,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            key,
            table: Table::new(settings.max_keys),
            cache: settings
                .cache
                .map(|cache| Cache::new(cache, settings.stale.unwrap_or_default())),
            refuse_duplicates: settings.refuse_duplicates,
            wait_timeout: settings.wait_timeout,
            share,
            classifier,
            stats,
        }
    }

    /// A copy of a cached answer, counted as a hit and marked.
    pub(crate) fn cached(&self, answer: &H::Shared, sharing: Sharing) -> Res {
        let stats = &self.stats;
        stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        let stale = sharing == Sharing::Stale;
        stats.emit(Signal::DedupCacheHit { stale });
        Logs::cache_hit(&stats.component, stale);
        let mut response = self.share.unshare(answer);
        self.share.mark(&mut response, sharing);
        response
    }

    /// A refusal of `kind`, counted.
    pub(crate) fn refuse(&self, kind: RejectKind) -> BoxError {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        self.stats.logs.refused(&self.stats.component, kind);
        Rejected::new(kind, self.stats.component.clone()).into()
    }

    /// The error of a waiter whose call ended without an answer for it.
    pub(crate) fn aborted(&self) -> BoxError {
        Logs::aborted(&self.stats.component);
        Rejected::new(RejectKind::DedupAborted, self.stats.component.clone()).into()
    }
}
