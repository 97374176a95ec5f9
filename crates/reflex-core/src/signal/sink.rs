//! Where signals go: the [`SignalSink`] trait, and the [`Sink`] a layer
//! keeps (one sink, or nowhere).

use std::fmt;
use std::sync::Arc;

use super::Signal;
use crate::Component;

/// Hears the [`Signal`]s of the layers it was given to.
///
/// `emit` runs on the request path of whichever request caused the signal:
/// it must cost a few atomics at most, never a lock, an allocation or a wait.
/// Defer analysis to a task of your own.
///
/// Layers never emit while holding a lock of their own, so a sink may read
/// or steer the layers it hears from through their handles (a reflex that
/// forces a breaker open on a signal does not deadlock it).
///
/// # Examples
///
/// A sink that counts sheds:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use reflex_core::{Component, Signal, SignalSink};
///
/// #[derive(Debug, Default)]
/// struct CountSheds(AtomicU64);
///
/// impl SignalSink for CountSheds {
///     fn emit(&self, _component: &Component, signal: Signal) {
///         if let Signal::Shed { .. } = signal {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let sink = CountSheds::default();
/// sink.emit(&Component::new("db"), Signal::Shed { in_flight: 8, hard_limit: 8 });
/// assert_eq!(sink.0.load(Ordering::Relaxed), 1);
/// ```
pub trait SignalSink: Send + Sync + 'static {
    /// Hears one signal of `component`'s stack.
    fn emit(&self, component: &Component, signal: Signal);
}

impl<T: SignalSink + ?Sized> SignalSink for Arc<T> {
    fn emit(&self, component: &Component, signal: Signal) {
        (**self).emit(component, signal);
    }
}

/// Where a layer sends its signals: one [`SignalSink`], or nowhere.
///
/// Layers keep a `Sink` in their shared state; builders fill it from their
/// `.sink(..)` setter. The default sends nowhere, at the cost of one branch.
///
/// # Clone
///
/// Clones send to the same sink (a reference count, no copy of it).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use reflex_core::{signal::Recorder, Component, Signal, Sink};
///
/// let recorder = Arc::new(Recorder::default());
/// let sink = Sink::new(recorder.clone());
/// sink.emit(&Component::new("db"), Signal::HardLimitChanged { from: 4, to: 2 });
/// assert_eq!(recorder.signals().len(), 1);
///
/// Sink::none().emit(&Component::new("db"), Signal::HardLimitChanged { from: 4, to: 2 });
/// ```
#[derive(Clone, Default)]
pub struct Sink(Option<Arc<dyn SignalSink>>);

// === impl Sink ===

impl Sink {
    /// Sends signals to `sink`.
    pub fn new(sink: impl SignalSink) -> Self {
        Self(Some(Arc::new(sink)))
    }

    /// Sends signals nowhere.
    pub fn none() -> Self {
        Self(None)
    }

    /// `true` when signals go somewhere.
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }

    /// Sends `signal` of `component`'s stack to the sink, if any.
    #[inline]
    pub fn emit(&self, component: &Component, signal: Signal) {
        if let Some(sink) = &self.0 {
            sink.emit(component, signal);
        }
    }
}

impl From<Arc<dyn SignalSink>> for Sink {
    fn from(sink: Arc<dyn SignalSink>) -> Self {
        Self(Some(sink))
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sink")
            .field(&if self.is_active() { "active" } else { "none" })
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Recorder;

    #[test]
    fn a_sink_of_none_is_inactive_and_an_arc_sink_forwards() {
        assert!(!Sink::none().is_active());
        let recorder = Arc::new(Recorder::default());
        let as_dyn: Arc<dyn SignalSink> = recorder.clone();
        let sink = Sink::from(as_dyn);
        assert!(sink.is_active());
        sink.emit(
            &Component::new("x"),
            Signal::Shed {
                in_flight: 1,
                hard_limit: 1,
            },
        );
        assert_eq!(recorder.signals().len(), 1);
    }
}
