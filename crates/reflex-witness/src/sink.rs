//! [`WitnessSink`]: a signal sink into a witness that does not keep it
//! alive.

use std::fmt;
use std::sync::{Arc, Weak};

use reflex_core::{Component, Signal, SignalSink};

use crate::runtime::Inner;

/// A [`SignalSink`] into a [`Witness`](crate::Witness) that does not keep
/// it alive; from [`Witness::sink`](crate::Witness::sink).
///
/// # Examples
///
/// ```
/// use reflex_core::{Signal, SignalSink};
/// use reflex_witness::Witness;
///
/// let witness = Witness::builder().build()?;
/// let sink = witness.sink();
/// sink.emit(&"db".into(), Signal::SlotBusy);
/// assert!(witness.cycle_now().component("db").is_some());
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct WitnessSink {
    inner: Weak<Inner>,
}

// === impl WitnessSink ===

impl WitnessSink {
    pub(crate) fn new(inner: &Arc<Inner>) -> Self {
        Self {
            inner: Arc::downgrade(inner),
        }
    }
}

impl SignalSink for WitnessSink {
    /// As [`Witness`](crate::Witness)'s; nothing once the witness is gone.
    fn emit(&self, component: &Component, signal: Signal) {
        if let Some(inner) = self.inner.upgrade() {
            inner.registry.hear(component, signal);
        }
    }
}

impl fmt::Debug for WitnessSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessSink")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}
