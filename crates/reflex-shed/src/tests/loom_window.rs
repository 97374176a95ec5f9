//! Loom models of the window gate: the compare-and-swap that picks the one
//! caller that closes a window and recomputes the limit. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p reflex-shed --release --lib`.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::thread;

use crate::window::Gate;

/// What the estimator does around the gate: a sample is added, then the
/// caller that finds the window due and wins the gate takes the window's
/// samples, updates the state, and opens the next window at `next`.
struct Estimator {
    gate: Gate,
    samples: AtomicU64,
    /// The estimator's state: written only by the gate's holder.
    state: AtomicU64,
    closes: AtomicUsize,
    taken: AtomicU64,
}

impl Estimator {
    fn new(end: u64) -> Self {
        Self {
            gate: Gate::new(end),
            samples: AtomicU64::new(0),
            state: AtomicU64::new(0),
            closes: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// Records a sample at `now`; returns the state this caller read when
    /// it closed the window.
    fn record(&self, now: u64, next: u64) -> Option<u64> {
        self.samples.fetch_add(1, Ordering::Relaxed);
        if !self.gate.due(now) {
            return None;
        }
        let closing = self.gate.try_close(now)?;
        let state = self.state.load(Ordering::Relaxed);
        self.taken
            .fetch_add(self.samples.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.state.store(state + 1, Ordering::Relaxed);
        self.closes.fetch_add(1, Ordering::Relaxed);
        closing.reopen(next);
        Some(state)
    }
}

#[test]
fn one_caller_closes_a_due_window_and_no_sample_is_lost() {
    loom::model(|| {
        let estimator = Arc::new(Estimator::new(10));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let estimator = estimator.clone();
                thread::spawn(move || estimator.record(10, 20))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(estimator.closes.load(Ordering::Relaxed), 1);
        let taken = estimator.taken.load(Ordering::Relaxed);
        let left = estimator.samples.load(Ordering::Relaxed);
        assert_eq!(
            taken + left,
            2,
            "every sample counts in one window or the next"
        );
        assert!(
            taken >= 1,
            "the closer's own sample is in the window it closed"
        );
    });
}

#[test]
fn the_next_closer_sees_the_state_the_last_one_wrote() {
    loom::model(|| {
        let estimator = Arc::new(Estimator::new(10));
        let first = {
            let estimator = estimator.clone();
            thread::spawn(move || estimator.record(10, 20))
        };
        let second = {
            let estimator = estimator.clone();
            thread::spawn(move || estimator.record(20, 30))
        };
        let (first, second) = (first.join().unwrap(), second.join().unwrap());
        // Whoever closed second read what the first closer wrote: the
        // gate's Release on reopening and Acquire on winning order them.
        match (first, second) {
            (Some(a), Some(b)) => assert_eq!((a, b), (0, 1)),
            (Some(a), None) | (None, Some(a)) => assert_eq!(a, 0),
            (None, None) => panic!("the first window was due"),
        }
        assert!(estimator.closes.load(Ordering::Relaxed) >= 1);
    });
}
