//! [`SlotHandle`]: live state of a slot layer.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use reflex_core::Component;

use crate::metrics::SlotMetrics;
use crate::table::Table;

/// Reads a [`SlotAdmissionLayer`](crate::SlotAdmissionLayer)'s live
/// numbers, and the state of one slot.
///
/// Got from [`SlotAdmissionLayer::handle`](crate::SlotAdmissionLayer::handle).
///
/// # Clone
///
/// Clones read the same table.
///
/// # Examples
///
/// ```
/// use reflex_slot::SlotAdmissionLayer;
///
/// let layer = SlotAdmissionLayer::builder()
///     .key(|job: &&'static str| Some(*job))
///     .component("jobs")
///     .build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.component().as_str(), "jobs");
/// assert!(!handle.is_busy(&"reindex"));
/// assert_eq!(handle.queue_depth(&"reindex"), 0);
/// assert_eq!(handle.metrics().busy_slots, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct SlotHandle<K: Hash + Eq + Clone> {
    table: Arc<Table<K>>,
}

// === impl SlotHandle ===

impl<K: Hash + Eq + Clone> SlotHandle<K> {
    pub(crate) fn new(table: Arc<Table<K>>) -> Self {
        Self { table }
    }

    /// The layer's live numbers now: busy slots, requests waiting, and the
    /// counts of each admission decision since the layer was built.
    pub fn metrics(&self) -> SlotMetrics {
        self.table.metrics()
    }

    /// The component the layer guards.
    pub fn component(&self) -> &Component {
        &self.table.component
    }

    /// `true` when `slot` has a running request.
    pub fn is_busy(&self, slot: &K) -> bool {
        self.table.is_busy(slot)
    }

    /// Requests waiting in `slot`'s queue.
    pub fn queue_depth(&self, slot: &K) -> usize {
        self.table.queue_depth(slot)
    }
}

impl<K: Hash + Eq + Clone> Clone for SlotHandle<K> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
        }
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for SlotHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotHandle")
            .field("component", self.component())
            .field("metrics", &self.metrics())
            .finish()
    }
}

reflex_core::layer_handle!(
    impl<K> SlotHandle<K> => SlotMetrics
    where K: Hash + Eq + Clone + Send + 'static
);
