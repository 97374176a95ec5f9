//! The Redis backends on the happy path, beside the in-memory ones in the
//! same run: a Closed breaker (`SharedBreaker` against `MemoryBackend`)
//! and a shed layer under a fleet budget (against the shed layer alone).
//! Neither makes a Redis round trip per request: the figures should be
//! within a few nanoseconds. Run with
//! `cargo bench -p reflex-benches --bench fleet`.
//!
//! It starts its own `redis-server` (Debian's, as `.ci/run` installs it)
//! on a free loopback port, and skips with a message when there is none.

#![allow(missing_docs)]
// criterion_group! generates undocumented functions
// The server is a process of its own, in real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, bench_single};
use reflex_breaker::CircuitBreakLayer;
use reflex_redis::{Fleet, FleetBudget, SharedBreaker};
use reflex_shed::ConcurrencyShedLayer;
use tower::Layer;

/// A `redis-server` on a free loopback port, killed on drop.
struct Server(Child, u16);

impl Server {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self(child, port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fleet_backends(c: &mut Criterion) {
    let Some(server) = Server::start() else {
        eprintln!("fleet: no redis-server on this machine (bash .ci/run installs it): skipped");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let fleet = Fleet::builder(format!("redis://127.0.0.1:{}", server.1))
        .namespace("bench")
        .op_timeout(Duration::from_millis(50))
        .build()
        .expect("fleet");
    assert!(
        runtime.block_on(fleet.wait_up(Duration::from_secs(10))),
        "redis-server did not answer"
    );

    let mut group = c.benchmark_group("fleet breaker, Closed (failure rate 50% over 100 calls)");
    let memory = CircuitBreakLayer::builder()
        .component("db")
        .build()
        .expect("valid")
        .layer(Echo);
    bench_single(&mut group, "reflex MemoryBackend", memory);
    let shared = CircuitBreakLayer::builder()
        .component("db")
        .build_with_backend(SharedBreaker::builder(&fleet).backend().expect("valid"))
        .expect("valid")
        .layer(Echo);
    bench_single(&mut group, "reflex-redis SharedBreaker", shared);
    group.finish();

    let mut group = c.benchmark_group("fleet shed, fixed limit 1000");
    let alone = ConcurrencyShedLayer::builder()
        .component("db")
        .hard_limit(1000)
        .build()
        .expect("valid");
    bench_single(&mut group, "reflex shed alone", alone.layer(Echo));
    let budgeted = ConcurrencyShedLayer::builder()
        .component("db-budget")
        .hard_limit(1000)
        .build()
        .expect("valid");
    let budget = FleetBudget::builder(&fleet, &budgeted.handle())
        .cap(1000)
        .ttl(Duration::from_secs(5))
        .start()
        .expect("valid");
    // Admission is against the lease: wait for the first one.
    runtime.block_on(async {
        for _ in 0..500 {
            if budget.granted() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(budget.granted() > 0, "no lease from redis");
    bench_single(
        &mut group,
        "reflex shed under FleetBudget",
        budgeted.layer(Echo),
    );
    group.finish();
    drop(budget);
    drop(fleet);
    drop(server);
}

criterion_group!(benches, fleet_backends);
criterion_main!(benches);
