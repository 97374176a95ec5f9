//! What every bench of reflex shares: the pieces the tests use too
//! ([`reflex_tests::support`]), and the contended driver.

use std::time::Duration;

pub use reflex_tests::support::{Echo, allocations_per_call, call_once};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

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
