//! The shared breaker, in one process with one `Fleet` per replica: trips
//! travel, the fleet trips on its aggregate rate, probes are leased K in
//! all, closes travel, and with Redis gone each breaker works alone and
//! resyncs when it returns. The tests marked `ignore` need a real
//! `redis-server` (`bash .ci/run` installs and runs it); run them with
//! `-- --include-ignored`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{DelayProxy, RedisServer};
use reflex_breaker::{BreakerHandle, CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::signal::Recorder;
use reflex_core::{BreakerState, ConfigErrorKind, RejectKind, Rejected, Signal};
use reflex_redis::{Fleet, SharedBreaker, SharedBreakerBuilder};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// A dependency that counts the calls reaching it: fails the calls asked
/// to fail, and hangs (3 s) while told to.
#[derive(Default)]
struct Dep {
    calls: AtomicUsize,
    hang: AtomicBool,
}

impl Dep {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

type Svc = BoxCloneService<bool, (), BoxError>;

/// One replica: its fleet, its breaker, a service through it.
struct Node {
    fleet: Fleet,
    shared: SharedBreaker,
    handle: BreakerHandle,
    svc: Svc,
}

impl Node {
    fn new(
        fleet: Fleet,
        breaker: CircuitBreakBuilder,
        shared: impl FnOnce(&Fleet) -> SharedBreakerBuilder,
        dep: &Arc<Dep>,
    ) -> Self {
        let (layer, shared) = shared(&fleet).layer(breaker).unwrap();
        let dep = Arc::clone(dep);
        let inner = service_fn(move |fail: bool| {
            let dep = Arc::clone(&dep);
            async move {
                dep.calls.fetch_add(1, Ordering::SeqCst);
                if dep.hang.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                if fail { Err("down") } else { Ok(()) }
            }
        });
        Self {
            fleet,
            shared,
            handle: layer.handle(),
            svc: BoxCloneService::new(layer.layer(inner)),
        }
    }

    async fn call(&mut self, fail: bool) -> Result<(), BoxError> {
        self.svc.ready().await?.call(fail).await
    }

    fn state(&self) -> BreakerState {
        self.handle.state()
    }
}

fn refused(result: &Result<(), BoxError>) -> bool {
    result
        .as_ref()
        .err()
        .and_then(|error| error.downcast_ref::<Rejected>())
        .is_some_and(|rejected| rejected.kind() == RejectKind::CircuitOpen)
}

/// One node per replica, each with its own fleet on the server at `url`.
async fn nodes(
    url: &str,
    namespace: &str,
    replicas: &[&str],
    breaker: impl Fn() -> CircuitBreakBuilder,
    shared: impl Fn(&Fleet) -> SharedBreakerBuilder,
    dep: &Arc<Dep>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for replica in replicas {
        let fleet = fleet(url, namespace, replica).await;
        nodes.push(Node::new(fleet, breaker(), &shared, dep));
    }
    nodes
}

/// As [`nodes`], once the fleet has opened: the first node's breaker
/// trips on one failure, and every other node hears it.
async fn opened(
    url: &str,
    namespace: &str,
    replicas: &[&str],
    breaker: impl Fn() -> CircuitBreakBuilder,
    dep: &Arc<Dep>,
) -> Vec<Node> {
    let shared = SharedBreaker::builder;
    let mut nodes = nodes(url, namespace, replicas, breaker, shared, dep).await;
    let _ = nodes[0].call(true).await;
    let all_open = || nodes.iter().all(|node| node.state() == BreakerState::Open);
    wait_until(Duration::from_secs(2), all_open).expect("the trip did not travel");
    nodes
}

/// A replica's fleet, up. Its `op_timeout` is generous: on a loaded machine
/// two slow pings would take the link down, and a replica whose link is
/// down is a local breaker (its probes need no lease).
async fn fleet(url: &str, namespace: &str, replica: &str) -> Fleet {
    common::fleet_up(url, namespace, replica, Duration::from_millis(250)).await
}

/// Waits (at most `limit`) until `done`, looking every 50 µs: tokio's
/// timer ticks in milliseconds, too coarse for what is measured here.
#[allow(
    clippy::disallowed_methods,
    reason = "sub-millisecond polling of a real server's effect, on the test's own thread"
)]
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    done().then(|| started.elapsed())
}

fn figures(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_trip_on_one_replica_opens_the_others_within_milliseconds() {
    let server = RedisServer::start();
    let dep = Arc::new(Dep::default());
    let breaker = || {
        CircuitBreakLayer::builder()
            .component("db")
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(30))
    };
    let url = server.url();
    let mut a = Node::new(
        fleet(&url, "trip", "a").await,
        breaker(),
        SharedBreaker::builder,
        &dep,
    );
    let mut b = Node::new(
        fleet(&url, "trip", "b").await,
        breaker(),
        SharedBreaker::builder,
        &dep,
    );
    let mut seen = Vec::new();
    for round in 0..10 {
        for _ in 0..3 {
            let _ = a.call(true).await;
        }
        assert_eq!(a.state(), BreakerState::Open, "round {round}");
        let took = wait_until(Duration::from_secs(2), || b.state() == BreakerState::Open)
            .unwrap_or_else(|| panic!("round {round}: b did not open within 2 s"));
        seen.push(took);
        // b refuses, and the dependency never sees the call.
        let before = dep.calls();
        assert!(refused(&b.call(false).await));
        assert_eq!(dep.calls(), before);
        a.handle.reset();
        b.handle.reset();
    }
    let (p50, max) = figures(seen);
    println!("trip propagation in process: p50 {p50:?}, max {max:?} (10 trips)");
    // By pub/sub, not a resync: under half a second, with room for a
    // stall of a loaded machine (the figures are printed).
    assert!(max < Duration::from_millis(500), "max {max:?}");
    // The counters move just after the state does: wait for the last.
    // (b may open on its first resync instead of the message, if a's
    // open key is set by the time it reads it.)
    let counted = || {
        let heard = b.shared.stats();
        heard.trips_heard + heard.resync_trips == 10 && a.shared.stats().announced == 10
    };
    assert!(
        wait_until(Duration::from_secs(5), counted).is_some(),
        "{:?} {:?}",
        a.shared.stats(),
        b.shared.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn the_fleet_trips_on_its_aggregate_rate_when_each_replica_is_under_its_minimum() {
    let server = RedisServer::start();
    let url = server.url();
    for fleet_rate in [true, false] {
        let namespace = format!("rate-{fleet_rate}");
        let dep = Arc::new(Dep::default());
        let breaker = || {
            CircuitBreakLayer::builder()
                .component("rate")
                .failure_rate(0.5)
                .minimum_calls(30)
        };
        let shared = |fleet: &Fleet| {
            SharedBreaker::builder(fleet)
                .flush_every(Duration::from_millis(20))
                .fleet_rate(fleet_rate)
        };
        let mut nodes = nodes(&url, &namespace, &["a", "b", "c"], breaker, shared, &dep).await;
        // 15 calls each, 9 failures (60%): under the minimum of 30 alone,
        // 45 calls at 60% together.
        for node in &mut nodes {
            for call in 0..15 {
                let _ = node.call(call % 5 < 3).await;
            }
        }
        let last_call = Instant::now();
        if fleet_rate {
            let all_open = || nodes.iter().all(|node| node.state() == BreakerState::Open);
            let Some(took) = wait_until(Duration::from_secs(2), all_open) else {
                let stats: Vec<_> = nodes
                    .iter()
                    .map(|node| (node.state(), node.fleet.downs(), node.shared.stats()))
                    .collect();
                panic!("the fleet did not trip on its aggregate within 2 s: {stats:#?}");
            };
            println!("fleet rate: every replica open {took:?} after the last call");
            // Each opened once, on the fleet's counts or on another's news
            // (the counters move just after the state).
            let stats = || {
                nodes
                    .iter()
                    .map(|node| node.shared.stats())
                    .collect::<Vec<_>>()
            };
            let counted = || {
                let stats = stats();
                stats.iter().map(|s| s.fleet_trips).sum::<u64>() >= 1
                    && stats.iter().any(|s| s.fleet_calls >= 30)
                    && stats.iter().all(|s| s.fleet_trips + s.trips_heard == 1)
            };
            assert!(
                wait_until(Duration::from_secs(1), counted).is_some(),
                "{:#?}",
                stats()
            );
        } else {
            // Twenty-five flush intervals: nothing to trip on alone.
            tokio::time::sleep_until(last_call + Duration::from_millis(500)).await;
            for node in &nodes {
                assert_eq!(node.state(), BreakerState::Closed);
                assert_eq!(node.handle.metrics().calls, 15);
                assert_eq!(node.shared.stats().flushes, 0);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn half_open_probes_are_limited_to_k_across_the_fleet() {
    const K: u32 = 2;
    let server = RedisServer::start();
    let url = server.url();
    let dep = Arc::new(Dep::default());
    let breaker = || {
        CircuitBreakLayer::builder()
            .component("probe")
            .consecutive_failures(1)
            .open_duration(Duration::from_millis(300))
            .half_open_probes(K)
            .half_open_max_wait(Duration::from_secs(10))
    };
    let replicas = ["a", "b", "c", "d"];
    let nodes = opened(&url, "probes", &replicas, breaker, &dep).await;

    // Every replica hammers the dependency through its half-open breaker;
    // the probes hang, so none closes anything.
    dep.calls.store(0, Ordering::SeqCst);
    dep.hang.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut hammers = Vec::new();
    for node in &nodes {
        let mut svc = node.svc.clone();
        hammers.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while Instant::now() < deadline {
                let call = svc.ready().await.unwrap().call(false);
                tokio::spawn(call);
                sent += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sent
        }));
    }
    let mut sent = 0;
    for hammer in hammers {
        sent += hammer.await.unwrap();
    }
    let probes = dep.calls();
    let leases: u64 = nodes
        .iter()
        .map(|node| node.shared.stats().leases_taken)
        .sum();
    println!("{sent} calls sent to 4 half-open replicas: {probes} probes reached the dependency");
    assert!(probes >= 1, "no probe at all: the leases never came");
    assert!(probes <= K as usize, "{probes} probes for K = {K}");
    assert!(leases <= u64::from(K), "{leases} leases taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_close_after_successful_probes_closes_the_other_replicas() {
    let server = RedisServer::start();
    let url = server.url();
    let dep = Arc::new(Dep::default());
    let breaker = || {
        CircuitBreakLayer::builder()
            .component("close")
            .consecutive_failures(1)
            .open_duration(Duration::from_millis(200))
    };
    let replicas = ["a", "b", "c"];
    let mut nodes = opened(&url, "close", &replicas, breaker, &dep).await;
    tokio::time::sleep(Duration::from_millis(250)).await;

    // Only the first replica gets traffic: its probe closes it.
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(3), "a never closed");
        let _ = nodes[0].call(false).await;
        if nodes[0].state() == BreakerState::Closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all_closed = || {
        nodes
            .iter()
            .all(|node| node.state() == BreakerState::Closed)
    };
    let took = wait_until(Duration::from_secs(2), all_closed).expect("the close did not travel");
    println!("close propagation: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    for node in &nodes[1..] {
        assert_eq!(node.shared.stats().closes_heard, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn with_redis_down_each_breaker_works_alone_and_resyncs_when_it_returns() {
    let mut server = RedisServer::start();
    let proxy = DelayProxy::start(server.addr());
    let recorder = Arc::new(Recorder::with_capacity(1000));
    let dep = Arc::new(Dep::default());
    let breaker = || {
        CircuitBreakLayer::builder()
            .component("db")
            .consecutive_failures(3)
            .open_duration(Duration::from_millis(300))
    };
    let a_fleet = fleet(&server.url(), "resync", "a").await;
    let b_fleet = Fleet::builder(proxy.url())
        .namespace("resync")
        .replica_id("b")
        .op_timeout(Duration::from_millis(20))
        .sink(Arc::clone(&recorder))
        .build()
        .unwrap();
    assert!(b_fleet.wait_up(Duration::from_secs(5)).await);
    let a = Node::new(a_fleet, breaker(), SharedBreaker::builder, &dep);
    let mut b = Node::new(b_fleet, breaker(), SharedBreaker::builder, &dep);

    server.kill();
    let down = || !a.fleet.is_up() && !b.fleet.is_up();
    wait_until(Duration::from_secs(3), down).expect("the links did not go down");

    // Alone: every call is answered at once, failures trip b, a hears nothing.
    for call in 0..6 {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(1), b.call(true))
            .await
            .expect("a call waited on a dead redis");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(refused(&result), call >= 3, "call {call}");
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(a.state(), BreakerState::Closed);
    // After the open duration b probes with no lease, and closes.
    tokio::time::sleep(Duration::from_millis(350)).await;
    b.call(false)
        .await
        .expect("a probe with the link down needs no lease");
    assert_eq!(b.state(), BreakerState::Closed);
    let db = reflex_core::Component::new("db");
    assert!(
        recorder
            .signals()
            .contains(&(db.clone(), Signal::FleetLink { up: false }))
    );

    server.restart();
    let up = || a.fleet.is_up() && b.fleet.is_up();
    wait_until(Duration::from_secs(5), up).expect("the links did not come back");

    // b away (redis slow behind its proxy) while another replica opens the
    // fleet: b hears no message, and opens on resync.
    proxy.set_delay(Duration::from_millis(300));
    wait_until(Duration::from_secs(3), || !b.fleet.is_up()).expect("b's link stayed up");
    assert_eq!(
        server.command(&["SET", "reflex:{resync:cb:db}:open", "1", "PX", "10000"]),
        "+OK"
    );
    proxy.set_delay(Duration::ZERO);
    wait_until(Duration::from_secs(5), || b.state() == BreakerState::Open)
        .expect("b did not honour the fleet's open key on resync");
    let resynced = || b.shared.stats().resync_trips == 1;
    wait_until(Duration::from_secs(1), resynced).expect("b opened, not on resync");
    assert_eq!(b.shared.stats().trips_heard, 0);
    assert!(
        recorder
            .signals()
            .contains(&(db, Signal::FleetLink { up: true }))
    );
}

#[tokio::test]
async fn with_no_redis_at_all_the_breaker_is_a_local_one() {
    let url = common::nobody_url();
    let fleet = Fleet::builder(url).build().unwrap();
    let dep = Arc::new(Dep::default());
    let mut node = Node::new(
        fleet,
        CircuitBreakLayer::builder().consecutive_failures(2),
        SharedBreaker::builder,
        &dep,
    );
    let _ = node.call(true).await;
    let _ = node.call(true).await;
    assert_eq!(node.state(), BreakerState::Open);
    assert!(refused(&node.call(false).await));
    assert_eq!(dep.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_by_a_timeout_gives_its_slot_back() {
    let url = common::nobody_url();
    let fleet = Fleet::builder(url).build().unwrap();
    let dep = Arc::new(Dep::default());
    let mut node = Node::new(
        fleet,
        CircuitBreakLayer::builder()
            .consecutive_failures(1)
            .open_duration(Duration::from_millis(50))
            .half_open_probes(1)
            .half_open_max_wait(Duration::from_secs(3600)),
        SharedBreaker::builder,
        &dep,
    );
    let _ = node.call(true).await;
    assert_eq!(node.state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(60)).await;
    // The only probe hangs and its caller gives up: the future is dropped.
    dep.hang.store(true, Ordering::SeqCst);
    let gave_up = tokio::time::timeout(Duration::from_millis(100), node.call(false)).await;
    assert!(gave_up.is_err(), "the probe did not hang");
    assert_eq!(dep.calls(), 2);
    // Its slot is back: the next probe goes through and closes the breaker.
    dep.hang.store(false, Ordering::SeqCst);
    node.call(false).await.expect("the next probe was refused");
    assert_eq!((node.state(), dep.calls()), (BreakerState::Closed, 3));
}

#[tokio::test]
async fn a_flush_interval_of_zero_or_above_an_hour_is_a_typed_error() {
    let url = common::nobody_url();
    let fleet = Fleet::builder(url).build().unwrap();
    for (every, kind) in [
        (Duration::ZERO, ConfigErrorKind::Zero),
        (Duration::from_micros(1), ConfigErrorKind::OutOfRange),
        (Duration::from_secs(3601), ConfigErrorKind::OutOfRange),
        (Duration::MAX, ConfigErrorKind::OutOfRange),
    ] {
        let Err(error) = SharedBreaker::builder(&fleet).flush_every(every).backend() else {
            panic!("{every:?} accepted");
        };
        assert_eq!((error.setting(), error.kind()), ("flush_every", kind));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_breakers_task_ends_when_the_layer_is_dropped() {
    let url = common::nobody_url();
    let fleet = Fleet::builder(url).build().unwrap();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let layer = CircuitBreakLayer::builder()
        .build_with_backend(
            SharedBreaker::builder(&fleet)
                .flush_every(Duration::from_millis(10))
                .backend()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(tasks(), before + 1);
    drop(layer);
    let started = Instant::now();
    while tasks() > before {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the task outlived its breaker"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
