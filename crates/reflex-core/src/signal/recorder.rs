//! [`Recorder`]: a sink that keeps the most recent signals in memory.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::{Signal, SignalSink};
use crate::Component;

/// A sink that keeps the most recent signals in memory, for tests, examples
/// and debugging.
///
/// It takes a lock on every signal: do not put it in front of production
/// traffic; use a witness there. It keeps at most `capacity` signals and
/// forgets the oldest beyond that.
///
/// # Examples
///
/// ```
/// use reflex_core::{signal::Recorder, Component, Signal, SignalSink};
///
/// let recorder = Recorder::with_capacity(1);
/// let db = Component::new("db");
/// recorder.emit(&db, Signal::HardLimitChanged { from: 4, to: 2 });
/// recorder.emit(&db, Signal::HardLimitChanged { from: 2, to: 3 });
/// assert_eq!(
///     recorder.signals(),
///     vec![(db, Signal::HardLimitChanged { from: 2, to: 3 })],
/// );
/// ```
#[derive(Debug)]
pub struct Recorder {
    capacity: usize,
    signals: Mutex<VecDeque<(Component, Signal)>>,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder that keeps at most `capacity` signals (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            signals: Mutex::new(VecDeque::new()),
        }
    }

    /// The signals kept, oldest first.
    pub fn signals(&self) -> Vec<(Component, Signal)> {
        let signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        signals.iter().cloned().collect()
    }

    /// Forgets every signal kept so far.
    pub fn clear(&self) {
        self.signals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Default for Recorder {
    /// A recorder that keeps the last 1024 signals.
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl SignalSink for Recorder {
    fn emit(&self, component: &Component, signal: Signal) {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        if signals.len() == self.capacity {
            signals.pop_front();
        }
        signals.push_back((component.clone(), signal));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_forgets_the_oldest_beyond_its_capacity() {
        let recorder = Recorder::with_capacity(3);
        let c = Component::new("c");
        for to in 0..10 {
            recorder.emit(&c, Signal::HardLimitChanged { from: 0, to });
        }
        let kept: Vec<_> = recorder
            .signals()
            .into_iter()
            .map(|(_, s)| match s {
                Signal::HardLimitChanged { to, .. } => to,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kept, vec![7, 8, 9]);
        recorder.clear();
        assert!(recorder.signals().is_empty());
    }
}
