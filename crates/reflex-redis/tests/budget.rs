//! The fleet budget within one process: its builder's checks, an idle
//! replica giving permits back, and Redis killed under load. Two replicas
//! here are two `Fleet`s (two replica ids) in one process; the
//! multi-process tests are in `budget_fleet.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::RedisServer;
use reflex_core::signal::Recorder;
use reflex_core::{Rejected, Signal};
use reflex_redis::Fleet;
use reflex_redis::budget::{BudgetError, BudgetState, FleetBudget};
use reflex_shed::{ConcurrencyShedLayer, ShedHandle};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

/// A dependency in this process: counts the calls in flight, keeps the
/// most it saw.
#[derive(Default)]
struct Dependency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Dependency {
    async fn call(&self, hold: Duration) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(hold).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    fn reset_max(&self) -> usize {
        self.max
            .swap(self.now.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

/// Outcomes of one replica's callers.
#[derive(Default)]
struct Tally {
    issued: AtomicU64,
    ok: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
    slowest_ns: AtomicU64,
}

/// One replica: a fleet link, a shed layer (own limit 50) and a budget.
struct Replica {
    shed: ShedHandle,
    budget: FleetBudget,
    layer: ConcurrencyShedLayer,
    _fleet: Fleet,
}

/// Replicas "a" (its link's signals to `sink`) and "b" of `namespace`,
/// once both hold a lease.
async fn leased_pair(
    url: &str,
    namespace: &str,
    cap: usize,
    ttl: Duration,
    sink: Arc<Recorder>,
) -> (Replica, Replica) {
    let a = replica(url, namespace, "a", cap, ttl, sink);
    let b = replica(url, namespace, "b", cap, ttl, Arc::default());
    wait_for("leased", Duration::from_secs(5), || {
        leased(&a) && leased(&b)
    })
    .await;
    (a, b)
}

fn replica(
    url: &str,
    namespace: &str,
    id: &str,
    cap: usize,
    ttl: Duration,
    sink: Arc<Recorder>,
) -> Replica {
    let fleet = Fleet::builder(url)
        .namespace(namespace)
        .replica_id(id)
        .op_timeout(Duration::from_millis(20))
        .sink(sink)
        .build()
        .unwrap();
    let (layer, budget) = common::budgeted_shed(&fleet, cap, 2, ttl);
    Replica {
        shed: layer.handle(),
        budget,
        layer,
        _fleet: fleet,
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// `callers` tasks calling through `replica`'s layer until `stop`; a shed
/// caller waits 2 ms before its next call.
fn load(
    replica: &Replica,
    dependency: &Arc<Dependency>,
    callers: usize,
    hold: Duration,
    stop: &Arc<AtomicBool>,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    for _ in 0..callers {
        let dep = Arc::clone(dependency);
        let svc = replica.layer.layer(service_fn(move |()| {
            let dep = Arc::clone(&dep);
            async move {
                dep.call(hold).await;
                Ok::<_, std::convert::Infallible>(())
            }
        }));
        let (tally, stop) = (Arc::clone(&tally), Arc::clone(stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tally.issued.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let outcome = svc.clone().oneshot(()).await;
                let took = started.elapsed().as_nanos() as u64;
                tally.slowest_ns.fetch_max(took, Ordering::Relaxed);
                match outcome {
                    Ok(()) => tally.ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) if Rejected::find(&*e).is_some() => {
                        tally.shed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        0
                    }
                    Err(_) => tally.other.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    tally
}

fn leased(replica: &Replica) -> bool {
    replica.budget.metrics().state == BudgetState::Leased
}

#[tokio::test]
async fn a_budget_that_cannot_work_is_refused_with_a_typed_error() {
    let fleet = Fleet::builder("redis://127.0.0.1:1").build().unwrap();
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .build()
        .unwrap()
        .handle();
    let start = |cap, block: Option<usize>, ttl, fallback| {
        let mut builder = FleetBudget::builder(&fleet, &shed)
            .cap(cap)
            .ttl(ttl)
            .fallback(fallback);
        if let Some(block) = block {
            builder = builder.block(block);
        }
        builder.start().map(drop)
    };
    let second = Duration::from_secs(1);
    assert_eq!(start(0, None, second, None), Err(BudgetError::Cap(0)));
    assert_eq!(
        start(usize::MAX, None, second, None),
        Err(BudgetError::Cap(usize::MAX))
    );
    assert_eq!(
        start(10, Some(0), second, None),
        Err(BudgetError::Block { block: 0, cap: 10 })
    );
    assert_eq!(
        start(10, Some(11), second, None),
        Err(BudgetError::Block { block: 11, cap: 10 })
    );
    for ttl in [Duration::ZERO, Duration::from_millis(10), Duration::MAX] {
        assert!(
            matches!(start(10, None, ttl, None), Err(BudgetError::Ttl { value, .. }) if value == ttl),
            "ttl {ttl:?}"
        );
    }
    assert_eq!(
        start(10, None, second, Some(usize::MAX)),
        Err(BudgetError::Fallback(usize::MAX))
    );
    for every in [Duration::ZERO, Duration::MAX] {
        let error = FleetBudget::builder(&fleet, &shed)
            .cap(10)
            .sample_every(every)
            .start();
        assert_eq!(error.map(drop), Err(BudgetError::SampleEvery(every)));
    }
    assert_eq!(
        shed.metrics().fleet_cap,
        None,
        "a refused budget touched nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_holds_nothing_until_leased_and_drops_its_cap_with_the_budget() {
    // No Redis at all: no lease, so no permits, then the fallback (on a
    // paused clock: a ttl to the tick).
    let fleet = Fleet::builder(common::nobody_url()).build().unwrap();
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .build()
        .unwrap()
        .handle();
    let budget = FleetBudget::builder(&fleet, &shed)
        .cap(4)
        .ttl(Duration::from_millis(300))
        .fallback(Some(3))
        .start()
        .unwrap();
    assert_eq!(shed.metrics().hard_limit, 0, "no lease yet: sheds all");
    assert_eq!(budget.metrics().state, BudgetState::Starting);
    let took = wait_for("fallback", Duration::from_secs(2), || {
        budget.metrics().state == BudgetState::Fallback
    })
    .await;
    assert!(
        took >= Duration::from_millis(300),
        "fell back after {took:?}, before the ttl"
    );
    assert_eq!(shed.metrics().hard_limit, 3, "the static share");
    assert_eq!(budget.metrics().fallbacks, 1);
    drop(budget);
    assert_eq!(shed.metrics().fleet_cap, None);
    assert_eq!(shed.metrics().hard_limit, 8, "the layer's own limit again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn an_idle_replica_gives_its_permits_back_to_a_busy_one() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(2);
    let (a, b) = leased_pair(&server.url(), "idle", 12, ttl, Arc::default()).await;
    let dep = Arc::new(Dependency::default());
    let hold = Duration::from_millis(20);

    // a alone is busy: it takes all but b's idle block.
    let stop_a = Arc::new(AtomicBool::new(false));
    let _tally_a = load(&a, &dep, 30, hold, &stop_a);
    let took = wait_for("a grows", Duration::from_secs(3), || {
        a.budget.granted() == 10
    })
    .await;
    println!(
        "a grew to 10 of 12 in {took:?}; b idle holds {}",
        b.budget.granted()
    );
    assert_eq!(b.budget.granted(), 2, "an idle replica keeps one block");
    let m = a.shed.metrics();
    assert_eq!(
        (m.fleet_cap, m.hard_limit),
        (Some(10), 10),
        "the layer's cap is the lease"
    );

    // a goes idle and gives back all but one block, well before a ttl.
    stop_a.store(true, Ordering::Relaxed);
    let took = wait_for("a shrinks", ttl, || a.budget.granted() == 2).await;
    println!("a idle: back to one block in {took:?}");
    assert!(took < ttl / 2, "gave back in {took:?}");

    // b, now busy, takes what a gave back.
    let stop_b = Arc::new(AtomicBool::new(false));
    let tally_b = load(&b, &dep, 30, hold, &stop_b);
    let took = wait_for("b grows", Duration::from_secs(3), || {
        b.budget.granted() == 10
    })
    .await;
    println!(
        "b grew to 10 in {took:?}; fleet total {}",
        b.budget.metrics().fleet_total
    );
    stop_b.store(true, Ordering::Relaxed);
    assert!(
        dep.max.load(Ordering::SeqCst) <= 12,
        "max {}",
        dep.max.load(Ordering::SeqCst)
    );
    assert_eq!(tally_b.other.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn redis_killed_under_load_makes_replicas_fall_back_then_lease_again() {
    let mut server = RedisServer::start();
    let ttl = Duration::from_millis(1000);
    let cap = 12;
    let recorder = Arc::new(Recorder::default());
    let (a, b) = leased_pair(&server.url(), "kill", cap, ttl, recorder.clone()).await;
    let dep = Arc::new(Dependency::default());
    let hold = Duration::from_millis(20);
    let stop = Arc::new(AtomicBool::new(false));
    let tallies = [
        load(&a, &dep, 30, hold, &stop),
        load(&b, &dep, 30, hold, &stop),
    ];

    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = dep.reset_max();
    println!("redis up: max in flight at the dependency {before} (cap {cap})");
    assert!(before <= cap, "{before} in flight, cap {cap}");

    server.kill();
    let killed = Instant::now();
    let took = wait_for("fallback", ttl * 3, || {
        a.budget.metrics().state == BudgetState::Fallback
            && b.budget.metrics().state == BudgetState::Fallback
    })
    .await;
    println!("redis killed: both fell back after {took:?} (ttl {ttl:?})");
    assert!(
        took <= ttl + Duration::from_millis(300),
        "fell back after {took:?}"
    );
    // It kept its lease while the ttl ran (renewed at most a third of one
    // before the kill).
    assert!(
        took + ttl / 3 + Duration::from_millis(100) >= ttl,
        "fell back after {took:?}"
    );
    for r in [&a, &b] {
        let m = r.shed.metrics();
        assert_eq!(
            (m.fleet_cap, m.hard_limit),
            (None, 50),
            "the layer's own limit"
        );
    }
    let link_down = recorder.signals().into_iter().any(|(component, signal)| {
        component.as_str() == "db" && signal == Signal::FleetLink { up: false }
    });
    assert!(
        link_down,
        "the witness hears the link went down, under the budget's component"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down = dep.reset_max();
    println!("redis down: max in flight {down} (local limits, 2 × 50)");
    assert!(down > cap, "fallen back to the local limits");

    server.restart();
    let took = wait_for("lease again", Duration::from_secs(5), || {
        leased(&a) && leased(&b)
    })
    .await;
    println!(
        "redis back: both leased {took:?} after the restart ({:?} after the kill)",
        killed.elapsed()
    );
    // The excess admitted under the fallback drains within a call or two.
    tokio::time::sleep(ttl / 3 + hold * 5).await;
    dep.reset_max();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = dep.reset_max();
    println!("redis back: max in flight {after} (cap {cap})");
    assert!(
        after <= cap,
        "{after} in flight after the restart, cap {cap}"
    );

    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(hold * 5).await;
    for tally in &tallies {
        let outcomes = tally.ok.load(Ordering::Relaxed)
            + tally.shed.load(Ordering::Relaxed)
            + tally.other.load(Ordering::Relaxed);
        assert_eq!(
            tally.issued.load(Ordering::Relaxed),
            outcomes,
            "one outcome each"
        );
        assert_eq!(
            tally.other.load(Ordering::Relaxed),
            0,
            "admitted or shed, nothing else"
        );
        let slowest = Duration::from_nanos(tally.slowest_ns.load(Ordering::Relaxed));
        assert!(
            slowest < hold + Duration::from_millis(100),
            "a call took {slowest:?}"
        );
    }
    assert_eq!(dep.now.load(Ordering::SeqCst), 0);
}
