//! Loom models of the permit counter. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p reflex-shed --release --lib`.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::counter::{Counter, NO_SOFT_LIMIT};

/// Admits, records the highest count it saw, and releases.
fn admit_and_release(counter: &Counter, highest: &AtomicUsize) -> bool {
    match counter.try_acquire() {
        Ok(admitted) => {
            highest.fetch_max(admitted.in_flight, Ordering::Relaxed);
            counter.release();
            true
        }
        Err(_) => false,
    }
}

#[test]
fn concurrent_admissions_never_exceed_the_hard_limit() {
    loom::model(|| {
        let counter = Arc::new(Counter::new(2, NO_SOFT_LIMIT));
        let highest = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let counter = counter.clone();
                let highest = highest.clone();
                thread::spawn(move || admit_and_release(&counter, &highest))
            })
            .collect();
        let admitted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|a| *a)
            .count();
        assert!(admitted >= 2, "with limit 2, at most one of 3 is refused");
        assert!(highest.load(Ordering::Relaxed) <= 2);
        assert_eq!(counter.in_flight(), 0, "every permit came back");
    });
}

#[test]
fn a_refusal_never_spoils_a_concurrent_admission() {
    // One permit held for the whole model; limit 2: exactly one of two
    // contenders can get the second permit, and the other one must be
    // refused only because the first got it.
    loom::model(|| {
        let counter = Arc::new(Counter::new(2, NO_SOFT_LIMIT));
        counter.try_acquire().unwrap();
        let a = {
            let counter = counter.clone();
            thread::spawn(move || counter.try_acquire().is_ok())
        };
        let b = {
            let counter = counter.clone();
            thread::spawn(move || counter.try_acquire().is_ok())
        };
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a ^ b, "exactly one contender is admitted");
        assert_eq!(counter.in_flight(), 2);
    });
}

#[test]
fn a_soft_excursion_is_reported_once_and_always_ends() {
    // Soft limit 0: every admission from 0 is over it; low water 0.
    loom::model(|| {
        let counter = Arc::new(Counter::new(3, 0));
        let crossings = Arc::new(AtomicUsize::new(0));
        let recoveries = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let counter = counter.clone();
                let crossings = crossings.clone();
                let recoveries = recoveries.clone();
                thread::spawn(move || {
                    let admitted = counter.try_acquire().unwrap();
                    if admitted.crossed_soft {
                        crossings.fetch_add(1, Ordering::Relaxed);
                    }
                    if counter.release().is_some() {
                        recoveries.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let crossings = crossings.load(Ordering::Relaxed);
        let recoveries = recoveries.load(Ordering::Relaxed);
        // Each excursion that began has ended, and nothing ended that
        // did not begin.
        assert!(crossings >= 1);
        assert_eq!(crossings, recoveries);
        assert_eq!(counter.in_flight(), 0);
    });
}

#[test]
fn lowering_the_limit_concurrently_keeps_the_count_within_the_old_limit() {
    loom::model(|| {
        let counter = Arc::new(Counter::new(2, NO_SOFT_LIMIT));
        let highest = Arc::new(AtomicUsize::new(0));
        let worker = {
            let counter = counter.clone();
            let highest = highest.clone();
            thread::spawn(move || {
                admit_and_release(&counter, &highest);
                admit_and_release(&counter, &highest);
            })
        };
        counter.set_limits(1, NO_SOFT_LIMIT);
        let after = counter.try_acquire();
        worker.join().unwrap();
        assert!(highest.load(Ordering::Relaxed) <= 2);
        if let Ok(admitted) = after {
            assert!(admitted.in_flight <= 2);
            counter.release();
        }
        assert_eq!(counter.in_flight(), 0);
    });
}
