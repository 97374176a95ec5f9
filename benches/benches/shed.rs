//! ConcurrencyShed beside tower's ConcurrencyLimit + LoadShed, on the happy
//! path (limit never reached), single-threaded and with 64 tasks on 2
//! workers. Run with `cargo bench -p reflex-benches --bench shed`.
//!
//! Layers are built outside the timed loop. Allocations per call are printed
//! before the timings.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, allocations_per_call, bench_contended, bench_single};
use reflex_shed::ConcurrencyShedLayer;
use tower::{Layer, ServiceBuilder};

/// High enough that the happy path never sheds, even with 64 tasks.
const LIMIT: usize = 1024;
const TASKS: u64 = 64;

fn reflex_shed() -> reflex_shed::ConcurrencyShed<Echo> {
    ConcurrencyShedLayer::builder()
        .hard_limit(LIMIT)
        .soft_limit(LIMIT - 1)
        .build()
        .expect("valid config")
        .layer(Echo)
}

/// The same without a soft limit: the admission path is the same, so the
/// two should time alike.
fn reflex_shed_no_soft_limit() -> reflex_shed::ConcurrencyShed<Echo> {
    ConcurrencyShedLayer::builder()
        .hard_limit(LIMIT)
        .build()
        .expect("valid config")
        .layer(Echo)
}

fn tower_pair() -> tower::load_shed::LoadShed<tower::limit::ConcurrencyLimit<Echo>> {
    ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(LIMIT)
        .service(Echo)
}

fn print_allocations() {
    eprintln!(
        "allocations per call: reflex ConcurrencyShed {:.3}, tower ConcurrencyLimit+LoadShed {:.3}, bare Echo {:.3}",
        allocations_per_call(&mut reflex_shed(), 100_000),
        allocations_per_call(&mut tower_pair(), 100_000),
        allocations_per_call(&mut Echo, 100_000),
    );
}

fn single_threaded(c: &mut Criterion) {
    print_allocations();
    let mut group = c.benchmark_group("shed/single_thread");
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(&mut group, "reflex ConcurrencyShed", reflex_shed());
    bench_single(
        &mut group,
        "reflex ConcurrencyShed, no soft limit",
        reflex_shed_no_soft_limit(),
    );
    bench_single(&mut group, "tower ConcurrencyLimit+LoadShed", tower_pair());
    group.finish();
}

fn contended_64_tasks(c: &mut Criterion) {
    let runtime = reflex_benches::two_workers();
    let mut group = c.benchmark_group("shed/64_tasks_2_workers");
    bench_contended(
        &mut group,
        &runtime,
        "reflex ConcurrencyShed",
        reflex_shed(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "tower ConcurrencyLimit+LoadShed",
        tower_pair(),
        TASKS,
    );
    bench_contended(&mut group, &runtime, "bare Echo", Echo, TASKS);
    group.finish();
}

criterion_group!(benches, single_threaded, contended_64_tasks);
criterion_main!(benches);
