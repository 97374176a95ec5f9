//! Loom models of the breaker's state word. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p reflex-breaker --release --lib`.

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use reflex_core::{BreakerState, Outcome};

use crate::backend::Backend;
use crate::config::BreakerConfig;
use crate::memory::MemoryBackend;

/// Trips on the first failure and admits `probes` probes at once; an open
/// breaker may probe at once (an open duration of zero keeps the model free
/// of real time).
fn backend(probes: u32) -> MemoryBackend {
    MemoryBackend::new(BreakerConfig {
        probes,
        ..BreakerConfig::trips_on_first_failure(Duration::ZERO)
    })
}

fn open(backend: &MemoryBackend) {
    let ticket = backend.admit().unwrap();
    backend.record(ticket, Outcome::Failure, None);
    assert_eq!(backend.state(), BreakerState::Open);
}

#[test]
fn racing_calls_on_an_open_breaker_get_exactly_the_allowed_probes() {
    loom::model(|| {
        let backend = Arc::new(backend(2));
        open(&backend);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let backend = backend.clone();
                // Each keeps its ticket: probes stay out.
                thread::spawn(move || backend.admit().is_ok())
            })
            .collect();
        let admitted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(admitted, 2, "exactly the allowed probes got through");
        let metrics = backend.metrics();
        assert_eq!(metrics.state, BreakerState::HalfOpen);
        assert_eq!(metrics.probes_in_flight, 2);
        assert_eq!(metrics.rejected_total, 1);
        // Closed -> Open, then one Open -> HalfOpen however many raced.
        assert_eq!(metrics.transitions_total, 2);
    });
}

#[test]
fn a_probe_success_and_a_probe_failure_racing_decide_once() {
    loom::model(|| {
        let backend = Arc::new(backend(2));
        open(&backend);
        let first = backend.admit().unwrap();
        let second = backend.admit().unwrap();
        assert!(first.is_probe() && second.is_probe());
        let succeed = {
            let backend = backend.clone();
            thread::spawn(move || backend.record(first, Outcome::Success, None))
        };
        let fail = {
            let backend = backend.clone();
            thread::spawn(move || backend.record(second, Outcome::Failure, None))
        };
        succeed.join().unwrap();
        fail.join().unwrap();
        let metrics = backend.metrics();
        // Whichever reported first decided; the other's spell was over.
        assert!(matches!(
            metrics.state,
            BreakerState::Closed | BreakerState::Open
        ));
        assert_eq!(metrics.transitions_total, 3);
        assert_eq!(metrics.probes_in_flight, 0);
    });
}

#[test]
fn racing_failures_open_the_breaker_once() {
    loom::model(|| {
        let backend = Arc::new(backend(1));
        let tickets = [backend.admit().unwrap(), backend.admit().unwrap()];
        let threads: Vec<_> = tickets
            .into_iter()
            .map(|ticket| {
                let backend = backend.clone();
                thread::spawn(move || backend.record(ticket, Outcome::Failure, None))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let metrics = backend.metrics();
        assert_eq!(metrics.state, BreakerState::Open);
        assert_eq!(metrics.transitions_total, 1);
    });
}

#[test]
fn a_dropped_probe_gives_its_slot_back_while_another_is_admitted() {
    loom::model(|| {
        let backend = Arc::new(backend(1));
        open(&backend);
        let probe = backend.admit().unwrap();
        let dropper = {
            let backend = backend.clone();
            thread::spawn(move || backend.abandon(probe))
        };
        let contender = {
            let backend = backend.clone();
            thread::spawn(move || backend.admit().ok())
        };
        dropper.join().unwrap();
        let second = contender.join().unwrap();
        // Admitted only if the slot came back first; either way no slot is
        // lost: after the contender's probe (if any) is dropped too, one
        // more probe gets in.
        if let Some(second) = second {
            backend.abandon(second);
        }
        assert_eq!(backend.metrics().probes_in_flight, 0);
        assert!(backend.admit().unwrap().is_probe());
    });
}
