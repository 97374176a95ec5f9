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

/// Excursions above the soft limit begun (by admissions) and ended (by
/// releases).
#[derive(Default)]
struct Excursions {
    begun: AtomicUsize,
    ended: AtomicUsize,
}

/// Admits, releases, and counts the excursions it began and ended.
fn admit_and_release_counting(counter: &Counter, excursions: &Excursions) {
    if counter.try_acquire().unwrap().crossed_soft {
        excursions.begun.fetch_add(1, Ordering::Relaxed);
    }
    if counter.release().is_some() {
        excursions.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// Two threads admitting and releasing once each, while `meanwhile` runs
/// on this one; returns the excursions once both are done.
fn two_admissions(counter: &Arc<Counter>, meanwhile: impl FnOnce()) -> (usize, usize) {
    let excursions = Arc::new(Excursions::default());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let counter = counter.clone();
            let excursions = excursions.clone();
            thread::spawn(move || admit_and_release_counting(&counter, &excursions))
        })
        .collect();
    meanwhile();
    for t in threads {
        t.join().unwrap();
    }
    (
        excursions.begun.load(Ordering::Relaxed),
        excursions.ended.load(Ordering::Relaxed),
    )
}

#[test]
fn every_soft_excursion_that_begins_ends_and_none_ends_twice() {
    // Soft limit 1: a second request in flight is over it; low water 0.
    loom::model(|| {
        let counter = Arc::new(Counter::new(3, 1));
        let (begun, ended) = two_admissions(&counter, || {});
        // Each excursion that began has ended, and nothing ended that
        // did not begin (whether the two requests overlapped, and so
        // whether there was an excursion at all, is up to the schedule).
        assert_eq!(begun, ended);
        assert!(begun <= 1, "two requests make at most one excursion");
        assert_eq!(counter.in_flight(), 0);
    });
}

#[test]
fn a_soft_limit_set_during_admissions_pairs_every_excursion_with_its_end() {
    // An admission below both limits reads the soft limit beside the word
    // and only increments it; one at a limit takes the full path. A soft
    // limit of 1 coming in while two requests run may be seen by either
    // path or not; an excursion begun against it before the word changed
    // must survive the change, and end.
    loom::model(|| {
        let counter = Arc::new(Counter::new(3, NO_SOFT_LIMIT));
        let (begun, ended) = two_admissions(&counter, || {
            counter.set_limits(3, 1);
        });
        assert_eq!(begun, ended);
        assert!(begun <= 1, "two requests make at most one excursion");
        assert_eq!(counter.in_flight(), 0);
        assert_eq!(counter.soft_limit(), 1);
    });
}

#[test]
fn an_admission_after_a_lowered_limit_sees_the_new_limit() {
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
        assert_eq!(counter.set_limits(1, NO_SOFT_LIMIT).previous_hard, 2);
        // Ordered after the change: decided against a limit of 1, whatever
        // the worker holds (admitted under 2 or under 1).
        match counter.try_acquire() {
            Ok(admitted) => {
                assert_eq!(admitted.in_flight, 1);
                counter.release();
            }
            Err(refused) => {
                assert_eq!(refused.hard_limit, 1);
                assert_eq!(
                    refused.in_flight, 1,
                    "refused only for the worker's request"
                );
            }
        }
        worker.join().unwrap();
        // The worker alone never holds two permits, so it can only have seen
        // 2 in flight by admitting beside the main thread's permit, which
        // exists only after the limit fell to 1. An admission that read the
        // limit before the change and counted after it would do just that.
        assert!(highest.load(Ordering::Relaxed) <= 1);
        assert_eq!(counter.in_flight(), 0);
        assert_eq!(counter.hard_limit(), 1);
    });
}
