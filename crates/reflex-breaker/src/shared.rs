//! [`Shared`]: what a breaker layer, its services and their futures share.

use std::sync::Arc;

use reflex_core::Component;
use tokio::time::Instant;

use crate::logs::Logs;

/// What a layer, its services and their futures share.
///
/// Aligned to a cache line so that it does not share one with the `Arc`'s
/// reference counts: every call increments and decrements those, and on
/// another core that would evict the fields every call reads.
#[repr(align(64))]
pub(crate) struct Shared<C, B> {
    pub(crate) backend: Arc<B>,
    pub(crate) classifier: C,
    pub(crate) component: Component,
    /// Latencies are measured from here, in nanoseconds.
    pub(crate) base: Instant,
    /// Failures that are echoes of a failure below count as failures.
    pub(crate) count_echoes: bool,
    /// The layer's log limiters (every key's breaker shares them).
    pub(crate) logs: Arc<Logs>,
}

// === impl Shared ===

impl<C, B> Shared<C, B> {
    pub(crate) fn new(
        backend: Arc<B>,
        classifier: C,
        component: Component,
        count_echoes: bool,
        logs: Arc<Logs>,
    ) -> Self {
        Self {
            backend,
            classifier,
            component,
            base: Instant::now(),
            count_echoes,
            logs,
        }
    }

    /// Nanoseconds since `base`, now (saturating far below the reserved
    /// values a guard uses).
    pub(crate) fn since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX >> 1)
    }
}
