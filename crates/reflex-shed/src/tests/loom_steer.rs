//! Loom models of the limit's publication: whoever changes an input of the
//! limit publishes it, and the last publisher writes what the last inputs
//! say. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p reflex-shed --release --lib`.

use loom::sync::Arc;
use loom::thread;

use crate::counter::{Counter, NO_SOFT_LIMIT};
use crate::steer::Steering;

#[test]
fn concurrent_changes_leave_the_limit_the_inputs_say() {
    loom::model(|| {
        let counter = Arc::new(Counter::new(10, NO_SOFT_LIMIT));
        let steering = Arc::new(Steering::new(10));
        // An operator pins the limit while the estimator moves its base.
        let pin = {
            let (counter, steering) = (counter.clone(), steering.clone());
            thread::spawn(move || {
                steering.set_pin(Some(3));
                steering.publish(&counter, |_| NO_SOFT_LIMIT);
            })
        };
        let base = {
            let (counter, steering) = (counter.clone(), steering.clone());
            thread::spawn(move || {
                steering.set_base(7);
                steering.publish(&counter, |_| NO_SOFT_LIMIT);
            })
        };
        pin.join().unwrap();
        base.join().unwrap();
        assert_eq!(counter.hard_limit(), 3, "the pin wins, whatever the order");
        assert_eq!(steering.inputs().limit(), 3);
    });
}

#[test]
fn a_cap_and_an_unpin_racing_end_at_the_capped_base() {
    loom::model(|| {
        let counter = Arc::new(Counter::new(10, NO_SOFT_LIMIT));
        let steering = Arc::new(Steering::new(10));
        steering.set_pin(Some(8));
        steering.publish(&counter, |_| NO_SOFT_LIMIT);
        let cap = {
            let (counter, steering) = (counter.clone(), steering.clone());
            thread::spawn(move || {
                steering.set_cap(Some(5));
                steering.publish(&counter, |_| NO_SOFT_LIMIT);
            })
        };
        steering.set_pin(None);
        steering.publish(&counter, |_| NO_SOFT_LIMIT);
        cap.join().unwrap();
        assert_eq!(counter.hard_limit(), 5);
    });
}

#[test]
fn a_fleet_cap_of_zero_racing_a_reflex_cap_ends_at_zero_and_refuses() {
    loom::model(|| {
        let counter = Arc::new(Counter::new(10, NO_SOFT_LIMIT));
        let steering = Arc::new(Steering::new(10));
        let fleet = {
            let (counter, steering) = (counter.clone(), steering.clone());
            thread::spawn(move || {
                steering.set_fleet(Some(0));
                steering.publish(&counter, |_| NO_SOFT_LIMIT);
            })
        };
        steering.set_cap(Some(4));
        steering.publish(&counter, |_| NO_SOFT_LIMIT);
        fleet.join().unwrap();
        assert_eq!(counter.hard_limit(), 0);
        assert!(counter.try_acquire().is_err(), "no permits, no admission");
        // Lifting the fleet's cap leaves the reflex's.
        steering.set_fleet(None);
        steering.publish(&counter, |_| NO_SOFT_LIMIT);
        assert_eq!(counter.hard_limit(), 4);
    });
}

#[test]
fn a_lowered_fleet_cap_is_in_force_when_its_publication_returns() {
    loom::model(|| {
        let counter = Arc::new(Counter::new(10, NO_SOFT_LIMIT));
        let steering = Arc::new(Steering::new(10));
        counter.try_acquire().unwrap();
        // A reflex's publication may be under way when the budget lowers
        // the fleet's cap: the budget must not return before it is in force.
        let reflex = {
            let (counter, steering) = (counter.clone(), steering.clone());
            thread::spawn(move || {
                steering.set_cap(Some(8));
                steering.publish(&counter, |_| NO_SOFT_LIMIT);
            })
        };
        steering.set_fleet(Some(1));
        steering.publish_own(&counter, |_| NO_SOFT_LIMIT);
        assert!(counter.hard_limit() <= 1, "in force on return");
        assert!(counter.try_acquire().is_err(), "1 in flight: none admitted");
        reflex.join().unwrap();
        assert_eq!(counter.hard_limit(), 1);
    });
}
