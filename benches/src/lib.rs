//! What every bench of reflex shares: the pieces the tests use too
//! ([`reflex_tests::support`]), and the contended driver.

use std::time::Duration;

pub use reflex_tests::support::{Echo, allocations_per_call, call_once};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// A service the benches drive: `u64` in and out, ready to be cloned into
/// the tasks of a contended bench.
pub trait BenchService:
    Service<u64, Response = u64, Error: std::fmt::Debug + Send, Future: Send> + Clone + Send + 'static
{
}

impl<S> BenchService for S where
    S: Service<u64, Response = u64, Error: std::fmt::Debug + Send, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The runtime of every contended bench: 2 workers (this machine's 2
/// cores), timers on.
pub fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime")
}

/// Runs `iters` calls split across `tasks` tasks on `runtime`, each task on
/// its own clone of `svc`; returns the wall time of the whole batch.
pub fn contended<S>(runtime: &tokio::runtime::Runtime, svc: &S, tasks: u64, iters: u64) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let per_task = iters.div_ceil(tasks);
    runtime.block_on(async {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let mut svc = svc.clone();
            set.spawn(async move {
                for n in 0..per_task {
                    let out = svc
                        .ready()
                        .await
                        .expect("ready")
                        .call(n)
                        .await
                        .expect("call");
                    std::hint::black_box(out);
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.expect("task");
        }
        start.elapsed()
    })
}

/// Benches `svc` in `group` as `name`, one whole call at a time on this
/// thread ([`call_once`]).
pub fn bench_single<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let mut n = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            call_once(&mut svc, n)
        })
    });
}

/// Benches `svc` in `group` as `name`, its calls split across `tasks`
/// tasks on `runtime` ([`contended`]).
pub fn bench_contended<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    svc: S,
    tasks: u64,
) where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    group.bench_function(criterion::BenchmarkId::from_parameter(name), move |b| {
        b.iter_custom(|iters| contended(runtime, &svc, tasks, iters));
    });
}
