//! The whole preset on the happy path: `Echo` (always ready, always
//! succeeds) behind `reflex::Preset`, requests with no dedup or slot key,
//! beside bare `Echo` and a tower-resilience stack of the same jobs,
//! single-threaded and with 64 tasks on 2 workers. Run with
//! `cargo bench -p reflex-benches --bench preset`.
//!
//! - **reflex preset (witness, shed, retry, breaker)**: a witness, the shed
//!   layer (1 024 in flight) and the breaker (both on by default), retry
//!   with its defaults (3 attempts, budget on); no timeout.
//! - **reflex preset + timeout**: the same with a 30 s timeout around the
//!   inner service (tower's `Timeout`: a timer entry a call).
//! - **reflex preset (six layers)**: the same plus dedup and slot
//!   admission, their key functions always `None` (every request passes
//!   through both); no timeout.
//! - **reflex preset (six layers) + timeout**: the same with the timeout.
//! - **tower-resilience breaker + bulkhead + retry**: its bulkhead (1 024
//!   concurrent calls, refusing at once when full, as the shed layer does),
//!   its retry (3 attempts) and its circuit breaker (failure rate 50% over
//!   the last 100 calls, at least 20, as reflex's default), outermost first,
//!   composed with `tower::ServiceBuilder`.
//!
//! Stacks are built outside the timed loop, each with its own witness. The
//! single-threaded calls run inside a current-thread runtime's context (no
//! task; the timeout and the bulkhead need a timer to create). Allocations
//! per call are printed before the timings.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::convert::Infallible;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflex::Preset;
use reflex::core::DefaultClassifier;
use reflex::dedup::DedupLayer;
use reflex::retry::RetryLayer;
use reflex::slot::SlotAdmissionLayer;
use reflex::witness::{ObserveWitnessBuilder, Witness};
use reflex_benches::{BenchService, Echo, allocations_per_call, bench_contended, bench_single};
use tower::ServiceBuilder;

const TASKS: u64 = 64;

/// The tower-resilience stack's bulkhead: as many calls as the preset's
/// shed layer lets in.
const MAX_CONCURRENT: usize = 1024;

/// tower-resilience's attempts, as reflex's default.
const ATTEMPTS: usize = 3;

/// Warm-up and measurement per bench: 5 benches a group, 2 groups, well
/// under 3 minutes in all.
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(3);

/// A preset for "db" reporting to a witness of its own: the shed layer and
/// the breaker on (the defaults), nothing else yet.
fn db() -> Preset<DefaultClassifier, ObserveWitnessBuilder> {
    Preset::new("db").witness(&Witness::builder().build().expect("valid"))
}

/// Witness, shed, retry (its defaults: 3 attempts, budget on), breaker.
fn preset() -> impl BenchService {
    db().retry(RetryLayer::builder())
        .build()
        .expect("valid")
        .service(Echo)
}

/// [`preset`] with a 30 s timeout around the inner service.
fn preset_timeout() -> impl BenchService {
    db().retry(RetryLayer::builder())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("valid")
        .service(Echo)
}

/// All six layers, no timeout; dedup and slot never find a key.
fn preset_six() -> impl BenchService {
    db().dedup(DedupLayer::builder().key(|_: &u64| None::<u64>))
        .slot(SlotAdmissionLayer::builder().key(|_: &u64| None::<u64>))
        .retry(RetryLayer::builder())
        .build()
        .expect("valid")
        .service(Echo)
}

/// All six layers and the timeout; dedup and slot never find a key.
fn preset_all_six() -> impl BenchService {
    db().dedup(DedupLayer::builder().key(|_: &u64| None::<u64>))
        .slot(SlotAdmissionLayer::builder().key(|_: &u64| None::<u64>))
        .retry(RetryLayer::builder())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("valid")
        .service(Echo)
}

/// tower-resilience's bulkhead, retry and circuit breaker, outermost first
/// (the preset's order: bulkhead where the shed layer is).
fn tower_resilience() -> impl BenchService {
    type BreakerError = tower_resilience_circuitbreaker::CircuitBreakerError<Infallible>;
    ServiceBuilder::new()
        .layer(
            tower_resilience_bulkhead::BulkheadLayer::builder()
                .max_concurrent_calls(MAX_CONCURRENT)
                .reject_when_full()
                .build()
                .expect("valid"),
        )
        .layer(
            tower_resilience_retry::RetryLayer::<u64, u64, BreakerError>::builder()
                .max_attempts(ATTEMPTS)
                .build(),
        )
        .layer(
            tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .minimum_number_of_calls(20)
                .build()
                .expect("valid"),
        )
        .service(Echo)
}

/// A runtime whose context the single-threaded calls run in: tower's
/// timeout and the bulkhead create timers.
fn timer_context() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn print_allocations() {
    eprintln!(
        "allocations per call: bare Echo {:.3}, reflex preset (witness, shed, retry, breaker) {:.3}, reflex preset + timeout {:.3}, reflex preset (six layers) {:.3}, reflex preset (six layers) + timeout {:.3}, tower-resilience breaker + bulkhead + retry {:.3}",
        allocations_per_call(&mut Echo, 100_000),
        allocations_per_call(&mut preset(), 100_000),
        allocations_per_call(&mut preset_timeout(), 100_000),
        allocations_per_call(&mut preset_six(), 100_000),
        allocations_per_call(&mut preset_all_six(), 100_000),
        allocations_per_call(&mut tower_resilience(), 100_000),
    );
}

fn single_threaded(c: &mut Criterion) {
    let runtime = timer_context();
    let _context = runtime.enter();
    print_allocations();
    let mut group = c.benchmark_group("preset/single_thread");
    group.warm_up_time(WARM_UP).measurement_time(MEASUREMENT);
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(
        &mut group,
        "reflex preset (witness, shed, retry, breaker)",
        preset(),
    );
    bench_single(&mut group, "reflex preset + timeout", preset_timeout());
    bench_single(&mut group, "reflex preset (six layers)", preset_six());
    bench_single(
        &mut group,
        "reflex preset (six layers) + timeout",
        preset_all_six(),
    );
    bench_single(
        &mut group,
        "tower-resilience breaker + bulkhead + retry",
        tower_resilience(),
    );
    group.finish();
}

fn contended_64_tasks(c: &mut Criterion) {
    let runtime = reflex_benches::two_workers();
    let mut group = c.benchmark_group("preset/64_tasks_2_workers");
    group.warm_up_time(WARM_UP).measurement_time(MEASUREMENT);
    bench_contended(&mut group, &runtime, "bare Echo", Echo, TASKS);
    bench_contended(
        &mut group,
        &runtime,
        "reflex preset (witness, shed, retry, breaker)",
        preset(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "reflex preset + timeout",
        preset_timeout(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "reflex preset (six layers)",
        preset_six(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "reflex preset (six layers) + timeout",
        preset_all_six(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "tower-resilience breaker + bulkhead + retry",
        tower_resilience(),
        TASKS,
    );
    group.finish();
}

criterion_group!(benches, single_threaded, contended_64_tasks);
criterion_main!(benches);
