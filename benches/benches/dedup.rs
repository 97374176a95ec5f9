//! Dedup: what it costs and what it saves. Run with
//! `cargo bench -p reflex-benches --bench dedup`.
//!
//! - **No key**: `Echo` behind a dedup layer whose key function returns
//!   `None` for every request (pass-through), beside bare `Echo`,
//!   single-threaded and with 64 tasks on 2 workers.
//! - **Keyed, uncontended**: every request keyed by itself (all distinct,
//!   no concurrency), so each one goes through the table and the shared
//!   call machinery alone; single-threaded.
//! - **Identical requests over a slow service**: N tasks (1, 8, 64) on 2
//!   workers send the same key at once to a service whose call takes 1 ms,
//!   with dedup and without (the same inner service called directly); the
//!   time is the wall time of one batch of N. Each batch uses a new key, so
//!   batches never share a call.
//!
//! Layers are built outside the timed loop. Allocations per call, and the
//! inner calls made per batch with and without dedup, are printed before
//! the timings.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, allocations_per_call, bench_contended, bench_single};
use reflex_core::BoxError;
use reflex_dedup::DedupLayer;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const TASKS: u64 = 64;

/// Concurrent identical requests per batch.
const BATCHES: [u64; 3] = [1, 8, 64];

/// Batches run (untimed) to count the inner calls each makes.
const COUNTED_BATCHES: u64 = 100;

/// How long the slow inner service takes to answer.
const SLOW: Duration = Duration::from_millis(1);

/// The key of the next batch: a new one each time, so batches never share.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// A dedup layer whose key function never gives a key: every request
/// passes straight through.
fn no_key()
-> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static {
    DedupLayer::builder()
        .key(|_: &u64| None::<u64>)
        .build()
        .expect("valid")
        .layer(Echo)
}

/// Every request keyed by itself: distinct requests never share, but each
/// goes through the table.
fn keyed()
-> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static {
    DedupLayer::builder()
        .key(|r: &u64| Some(*r))
        .build()
        .expect("valid")
        .layer(Echo)
}

/// A service whose every call sleeps [`SLOW`] then echoes its request,
/// counting its calls in `calls`.
fn slow(
    calls: Arc<AtomicU64>,
) -> impl Service<u64, Response = u64, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
{
    tower::service_fn(move |req: u64| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(SLOW).await;
            Ok::<_, Infallible>(req)
        }
    })
}

/// One batch: `n` tasks send the same (new) key to `svc` at once; resolves
/// when all have their answer.
async fn batch<S>(svc: &S, n: u64)
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let svc = svc.clone();
        set.spawn(async move {
            let out = svc.oneshot(key).await.expect("call");
            std::hint::black_box(out);
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("task");
    }
}

/// Runs `batches` batches of `n` one after another on `runtime`; returns
/// their total wall time.
fn run_batches<S>(runtime: &tokio::runtime::Runtime, svc: &S, n: u64, batches: u64) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..batches {
            batch(svc, n).await;
        }
        start.elapsed()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    reflex_benches::two_workers()
}

fn print_allocations() {
    eprintln!(
        "allocations per call: dedup no key {:.3}, dedup keyed (uncontended) {:.3}, bare Echo {:.3}",
        allocations_per_call(&mut no_key(), 100_000),
        allocations_per_call(&mut keyed(), 100_000),
        allocations_per_call(&mut Echo, 100_000),
    );
}

fn single_threaded(c: &mut Criterion) {
    print_allocations();
    let mut group = c.benchmark_group("dedup/single_thread");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(&mut group, "dedup no key", no_key());
    bench_single(&mut group, "dedup keyed (uncontended)", keyed());
    group.finish();
}

fn contended_64_tasks(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("dedup/64_tasks_2_workers");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    bench_contended(&mut group, &runtime, "bare Echo", Echo, TASKS);
    bench_contended(&mut group, &runtime, "dedup no key", no_key(), TASKS);
    group.finish();
}

/// Counts, outside any timing, the inner calls a batch of `n` makes with
/// and without dedup, and the requests dedup coalesced.
fn print_calls_saved(runtime: &tokio::runtime::Runtime) {
    for n in BATCHES {
        let calls = Arc::new(AtomicU64::new(0));
        run_batches(runtime, &slow(Arc::clone(&calls)), n, COUNTED_BATCHES);
        let without = calls.load(Ordering::Relaxed);

        let calls = Arc::new(AtomicU64::new(0));
        let layer = DedupLayer::builder()
            .key(|r: &u64| Some(*r))
            .build()
            .expect("valid");
        run_batches(
            runtime,
            &layer.layer(slow(Arc::clone(&calls))),
            n,
            COUNTED_BATCHES,
        );
        let with = calls.load(Ordering::Relaxed);
        let metrics = layer.handle().metrics();
        let batches = COUNTED_BATCHES as f64;
        eprintln!(
            "N = {n}: inner calls per batch: without dedup {:.2}, with dedup {:.2} ({:.2} saved; {:.2} coalesced per batch; {} keys left in flight)",
            without as f64 / batches,
            with as f64 / batches,
            (without as f64 - with as f64) / batches,
            metrics.coalesced as f64 / batches,
            metrics.in_flight_keys,
        );
    }
}

fn identical_slow(c: &mut Criterion) {
    let runtime = runtime();
    print_calls_saved(&runtime);
    let mut group = c.benchmark_group("dedup/identical_1ms_2_workers");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in BATCHES {
        let without = slow(Arc::default());
        group.bench_function(BenchmarkId::new("without dedup", n), |b| {
            b.iter_custom(|iters| run_batches(&runtime, &without, n, iters));
        });
        let with = DedupLayer::builder()
            .key(|r: &u64| Some(*r))
            .build()
            .expect("valid")
            .layer(slow(Arc::default()));
        group.bench_function(BenchmarkId::new("with dedup", n), |b| {
            b.iter_custom(|iters| run_batches(&runtime, &with, n, iters));
        });
    }
    group.finish();
}

criterion_group!(benches, single_threaded, contended_64_tasks, identical_slow);
criterion_main!(benches);
