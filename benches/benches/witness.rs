//! ObserveWitness on the happy path: the cost per request of recording into
//! a witness (two clock reads, a few atomics), single-threaded and with 64
//! tasks on 2 workers, beside bare `Echo`; and a witness cycle over 100
//! components. Run with `cargo bench -p reflex-benches --bench witness`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, allocations_per_call, bench_contended, bench_single, call_once};
use reflex_witness::Witness;
use tower::Layer;

const TASKS: u64 = 64;

fn observed(witness: &Witness) -> reflex_witness::ObserveWitness<Echo> {
    witness.layer("db").build().expect("room").layer(Echo)
}

fn single_threaded(c: &mut Criterion) {
    let witness = Witness::builder().build().expect("valid");
    eprintln!(
        "allocations per call: witness {:.3}",
        allocations_per_call(&mut observed(&witness), 100_000)
    );
    let mut group = c.benchmark_group("witness/single_thread");
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(&mut group, "reflex ObserveWitness", observed(&witness));
    group.finish();
}

fn contended_64_tasks(c: &mut Criterion) {
    let runtime = reflex_benches::two_workers();
    let witness = Witness::builder().build().expect("valid");
    let mut group = c.benchmark_group("witness/64_tasks_2_workers");
    bench_contended(&mut group, &runtime, "bare Echo", Echo, TASKS);
    bench_contended(
        &mut group,
        &runtime,
        "reflex ObserveWitness",
        observed(&witness),
        TASKS,
    );
    group.finish();
}

/// One cycle over 100 components that each ended 1 000 requests since the
/// last (100 000 requests per cycle).
fn cycle_100_components(c: &mut Criterion) {
    let witness = Witness::builder().build().expect("valid");
    let mut services: Vec<_> = (0..100)
        .map(|i| {
            witness
                .layer(format!("c{i}"))
                .build()
                .expect("room")
                .layer(Echo)
        })
        .collect();
    let mut group = c.benchmark_group("witness/cycle");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("100 components, 100k requests", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                for svc in &mut services {
                    for n in 0..1_000 {
                        call_once(svc, n);
                    }
                }
                let start = tokio::time::Instant::now();
                std::hint::black_box(witness.cycle_now());
                spent += start.elapsed();
            }
            spent
        });
    });
    let signals = Witness::builder().build().expect("valid");
    let components: Vec<_> = (0..100)
        .map(|i| reflex_core::Component::new(format!("s{i}")))
        .collect();
    group.bench_function("100 components, 100k signals", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                for component in &components {
                    for _ in 0..1_000 {
                        reflex_core::SignalSink::emit(
                            &signals,
                            component,
                            reflex_core::Signal::Shed {
                                in_flight: 1,
                                hard_limit: 1,
                            },
                        );
                    }
                }
                let start = tokio::time::Instant::now();
                std::hint::black_box(signals.cycle_now());
                spent += start.elapsed();
            }
            spent
        });
    });
    group.finish();
}

/// The same layer on a witness that learns call patterns (a task-local
/// scope and one more word per request).
fn single_threaded_patterns(c: &mut Criterion) {
    let witness = Witness::builder()
        .call_patterns(50, 2.0)
        .build()
        .expect("valid");
    let mut group = c.benchmark_group("witness/single_thread_patterns");
    bench_single(
        &mut group,
        "reflex ObserveWitness, call patterns",
        observed(&witness),
    );
    group.finish();
}

criterion_group!(
    benches,
    single_threaded,
    single_threaded_patterns,
    contended_64_tasks,
    cycle_100_components
);
criterion_main!(benches);
