//! The fleet budget across replicas that are separate processes: the cap
//! holds at the dependency, counted there, and a killed replica's permits
//! go back to the others once its lease lapses.
//!
//! The dependency is a loopback TCP server in the test process: each call
//! is one connection that holds for `HOLD`, and the server keeps the most
//! calls it had at once. Each replica (this test binary again, running
//! `budget_replica` only) calls it through a shed layer (its own limit 50)
//! under a `FleetBudget` (cap 12, block 2).
//!
//! Real processes, a real server and a real clock: the test talks to its
//! replicas over blocking pipes and times them with std's clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{RedisServer, Replica};
use reflex_core::Rejected;
use reflex_redis::Fleet;
use reflex_redis::budget::BudgetState;
use tower::{Layer, ServiceExt, service_fn};

const CAP: usize = 12;
const BLOCK: usize = 2;
const HOLD: Duration = Duration::from_millis(30);
const CALLERS: usize = 40;

/// The dependency: counts calls in flight, keeps the most.
struct Dependency {
    server: common::dependency::Dependency,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    calls: Arc<AtomicU64>,
}

impl Dependency {
    fn start() -> Self {
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let calls = Arc::new(AtomicU64::new(0));
        let (n, m, c) = (now.clone(), max.clone(), calls.clone());
        let server = common::dependency::Dependency::start(move |mut stream| {
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_err() {
                return;
            }
            let at_once = n.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(at_once, Ordering::SeqCst);
            std::thread::sleep(HOLD);
            c.fetch_add(1, Ordering::SeqCst);
            n.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.write_all(&byte);
        });
        Self {
            server,
            now,
            max,
            calls,
        }
    }

    /// The most at once since the last reset.
    fn reset_max(&self) -> usize {
        self.max
            .swap(self.now.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

fn spawn(
    id: &str,
    server: &RedisServer,
    dep: &Dependency,
    namespace: &str,
    ttl: Duration,
) -> Replica {
    Replica::spawn(
        "budget_replica",
        id,
        &[
            ("BUDGET_REDIS", server.url()),
            ("BUDGET_DEP", dep.server.addr().to_string()),
            ("BUDGET_NS", namespace.to_owned()),
            ("BUDGET_TTL_MS", ttl.as_millis().to_string()),
        ],
    )
}

/// A replica's numbers: `state granted held fleet_total`.
fn metrics(replica: &mut Replica) -> (String, usize, usize, usize) {
    let answer = replica.ask("metrics");
    let mut parts = answer.split(' ');
    let state = parts.next().unwrap().to_owned();
    let mut n = || parts.next().unwrap().parse::<usize>().unwrap();
    (state, n(), n(), n())
}

/// Replicas a, b and c of fleet `namespace` (leases of `ttl`), once each
/// holds a lease.
fn leased_replicas(
    server: &RedisServer,
    dep: &Dependency,
    namespace: &str,
    ttl: Duration,
) -> Vec<Replica> {
    let mut replicas: Vec<_> = ["a", "b", "c"]
        .map(|id| spawn(id, server, dep, namespace, ttl))
        .into();
    let deadline = Instant::now() + Duration::from_secs(10);
    for replica in &mut replicas {
        while metrics(replica).0 != "Leased" {
            assert!(Instant::now() < deadline, "a replica never leased");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    replicas
}

/// `ok shed other` from a load's answer.
fn outcomes(answer: &str) -> [u64; 3] {
    let n: Vec<u64> = answer.split(' ').map(|n| n.parse().unwrap()).collect();
    [n[0], n[1], n[2]]
}

#[test]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
fn the_fleet_never_has_more_than_the_cap_in_flight_at_the_dependency() {
    let server = RedisServer::start();
    let dep = Dependency::start();
    let ttl = Duration::from_secs(2);
    let mut replicas = leased_replicas(&server, &dep, "cap", ttl);
    dep.reset_max();
    let load = Duration::from_secs(2);
    let calls_before = dep.calls.load(Ordering::SeqCst);
    for replica in &mut replicas {
        replica.send(&format!("load {} {CALLERS}", load.as_millis()));
    }
    let answers: Vec<[u64; 3]> = replicas.iter_mut().map(|r| outcomes(&r.recv())).collect();
    let max = dep.reset_max();
    let calls = dep.calls.load(Ordering::SeqCst) - calls_before;
    let ceiling = CAP as f64 / HOLD.as_secs_f64() * load.as_secs_f64();
    println!(
        "3 replicas × {CALLERS} callers, cap {CAP}, {HOLD:?} a call, {load:?}: max {max} at once at \
         the dependency; {calls} calls ({:.0}% of the {ceiling:.0} the cap allows); per replica \
         [ok, shed, other] {answers:?}",
        calls as f64 / ceiling * 100.0
    );
    assert!(
        max <= CAP,
        "{max} calls at once at the dependency, cap {CAP}"
    );
    assert!(max >= CAP - BLOCK, "the cap was used: max {max}");
    for [ok, _, other] in &answers {
        assert!(*ok > 50, "a replica starved: {answers:?}");
        assert_eq!(*other, 0, "admitted or shed, nothing else");
    }
    assert!(
        calls as f64 >= 0.7 * ceiling,
        "goodput {calls} under 70% of {ceiling:.0}"
    );
}

#[test]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
fn a_killed_replicas_permits_go_back_to_the_others_when_its_lease_lapses() {
    let server = RedisServer::start();
    let dep = Dependency::start();
    let ttl = Duration::from_millis(1000);
    let mut replicas = leased_replicas(&server, &dep, "dead", ttl);
    for replica in &mut replicas {
        assert_eq!(replica.ask(&format!("start {CALLERS}")), "started");
    }
    std::thread::sleep(Duration::from_millis(600));
    let (_, held_by_c, _, _) = metrics(&mut replicas[2]);
    let shares: Vec<usize> = replicas[..2].iter_mut().map(|r| metrics(r).1).collect();
    assert!(held_by_c >= BLOCK, "c holds {held_by_c}");

    let mut c = replicas.pop().unwrap();
    c.kill();
    let killed = Instant::now();
    let back = loop {
        let granted: usize = replicas.iter_mut().map(|r| metrics(r).1).sum();
        if granted >= CAP - 1 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < ttl * 3,
            "a and b hold {granted} of {CAP} {:?} after c died",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let totals: Vec<(String, usize, usize, usize)> = replicas.iter_mut().map(metrics).collect();
    println!(
        "c held {held_by_c} (a, b held {shares:?}); SIGKILLed, a and b hold {CAP} - 1 or more \
         {back:?} later (ttl {ttl:?}); now {totals:?}"
    );
    // Its lease lapses a ttl after its last renewal (at most a ttl after
    // the kill); the others take the permits at their next renewal.
    assert!(back <= ttl + Duration::from_millis(300), "took {back:?}");
    // And not before its lease lapsed: it renewed at most a few samples
    // before the kill.
    assert!(
        back >= ttl / 2,
        "took {back:?}: freed before its lease lapsed"
    );
    for replica in &mut replicas {
        let [ok, _, other] = outcomes(&replica.ask("stop"));
        assert!(ok > 0);
        assert_eq!(other, 0);
    }
    let max = dep.reset_max();
    println!("max at once at the dependency through the kill: {max}");
    assert!(max <= CAP, "{max} at once, cap {CAP}");
}

/// A replica process: returns at once unless the test spawned it.
#[test]
fn budget_replica() {
    let Some(id) = common::role() else { return };
    let env = |key: &str| std::env::var(key).unwrap();
    let runtime = common::replica_runtime(2);
    let _guard = runtime.enter();
    let fleet = Fleet::builder(env("BUDGET_REDIS"))
        .namespace(env("BUDGET_NS"))
        .replica_id(id)
        .op_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let ttl = Duration::from_millis(env("BUDGET_TTL_MS").parse().unwrap());
    let (layer, budget) = common::budgeted_shed(&fleet, CAP, BLOCK, ttl);
    let dep: SocketAddr = env("BUDGET_DEP").parse().unwrap();
    let svc = layer.layer(service_fn(move |()| async move {
        let mut stream = tokio::net::TcpStream::connect(dep).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(&[1]).await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(())
    }));
    let mut running: Option<(Arc<AtomicBool>, Arc<[AtomicU64; 3]>)> = None;
    let start = |callers: usize| {
        let stop = Arc::new(AtomicBool::new(false));
        let tally: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        for _ in 0..callers {
            let (svc, stop, tally) = (svc.clone(), stop.clone(), tally.clone());
            runtime.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match svc.clone().oneshot(()).await {
                        Ok(()) => tally[0].fetch_add(1, Ordering::Relaxed),
                        Err(e) if Rejected::find(&*e).is_some() => {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            tally[1].fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => tally[2].fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        (stop, tally)
    };
    let stop = |(stop, tally): (Arc<AtomicBool>, Arc<[AtomicU64; 3]>)| {
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(HOLD * 3);
        let n = |i: usize| tally[i].load(Ordering::Relaxed);
        format!("{} {} {}", n(0), n(1), n(2))
    };
    for line in common::commands() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["metrics"] => {
                let m = budget.metrics();
                let state = match m.state {
                    BudgetState::Leased => "Leased",
                    BudgetState::Fallback => "Fallback",
                    _ => "Starting",
                };
                common::answer(format_args!(
                    "{state} {} {} {}",
                    m.granted, m.held, m.fleet_total
                ));
            }
            ["load", ms, callers] => {
                let running = start(callers.parse().unwrap());
                std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
                common::answer(stop(running));
            }
            ["start", callers] => {
                running = Some(start(callers.parse().unwrap()));
                common::answer("started");
            }
            ["stop"] => common::answer(stop(running.take().unwrap())),
            _ => common::answer("?"),
        }
    }
}
