//! The witness's edge reflex steering real breakers through reflex-core's
//! control trait: only the root's edge, never a victim, and the breaker's
//! own half-open probes deciding recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reflex_breaker::{BreakerHandle, CircuitBreakLayer};
use reflex_core::{BoxError, BreakerState};
use reflex_witness::{Clock, EdgeReflex, Witness};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

type Svc = BoxCloneSyncService<(), (), BoxError>;

/// `name`'s stack: the witness's layer over a breaker (given to the
/// witness to steer) over `inner`.
fn stack(witness: &Witness, name: &'static str, inner: Svc) -> (Svc, BreakerHandle) {
    let breaker = CircuitBreakLayer::builder()
        .component(name)
        .open_duration(Duration::from_secs(5))
        .sink(witness.sink())
        .build()
        .unwrap();
    witness.control_breaker(name, breaker.handle());
    let handle = breaker.handle();
    let svc = witness
        .layer(name)
        .build()
        .unwrap()
        .layer(breaker.layer(inner));
    (BoxCloneSyncService::new(svc), handle)
}

struct System {
    witness: Witness,
    api: Svc,
    db_down: Arc<AtomicBool>,
    db: BreakerHandle,
    auth: BreakerHandle,
    api_breaker: BreakerHandle,
}

/// api -> auth -> db, each behind a breaker the witness may steer.
fn system() -> System {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .reflex(EdgeReflex::default())
        .build()
        .unwrap();
    let db_down = Arc::new(AtomicBool::new(false));
    let down = db_down.clone();
    let (db_svc, db) = stack(
        &witness,
        "db",
        BoxCloneSyncService::new(service_fn(move |(): ()| {
            let down = down.load(Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if down {
                    Err::<(), BoxError>("db down".into())
                } else {
                    Ok(())
                }
            }
        })),
    );
    let calling = |below: Svc| -> Svc {
        BoxCloneSyncService::new(service_fn(move |(): ()| below.clone().oneshot(())))
    };
    let (auth_svc, auth) = stack(&witness, "auth", calling(db_svc));
    let (api, api_breaker) = stack(&witness, "api", calling(auth_svc));
    System {
        witness,
        api,
        db_down,
        db,
        auth,
        api_breaker,
    }
}

impl System {
    /// `n` requests at the entry point, then a cycle.
    async fn cycle(&self, n: usize) -> Arc<reflex_witness::Snapshot> {
        for _ in 0..n {
            let _ = self.api.clone().oneshot(()).await;
        }
        self.witness.cycle_now()
    }
}

#[tokio::test(start_paused = true)]
async fn a_blackout_trips_only_the_root_s_breaker_and_its_probes_close_it_once_it_recovers() {
    let system = system();
    for _ in 0..8 {
        let snapshot = system.cycle(40).await;
        assert!(snapshot.reports.is_empty(), "{:#?}", snapshot.reports);
    }
    system.db_down.store(true, Ordering::Relaxed);
    let snapshot = system.cycle(40).await;
    assert_eq!(snapshot.reports.len(), 1, "{:#?}", snapshot.reports);
    let report = &snapshot.reports[0];
    assert_eq!(report.roots[0].component, "db");
    assert_eq!(report.actions.len(), 1, "{:?}", report.actions);
    assert_eq!(report.actions[0].component, "db");
    assert_eq!(system.db.state(), BreakerState::Open);
    assert_eq!(system.auth.state(), BreakerState::Closed, "a victim");
    assert_eq!(
        system.api_breaker.state(),
        BreakerState::Closed,
        "the entry point"
    );

    // While db is open, its callers get fast refusals: no call reaches it.
    let reached = system.cycle(40).await;
    let db = reached.component("db").unwrap();
    assert_eq!(db.succeeded + db.failed, 0, "{db:#?}");

    // db recovers; once its open duration is over, its own probe closes it.
    system.db_down.store(false, Ordering::Relaxed);
    tokio::time::advance(Duration::from_secs(6)).await;
    system.cycle(40).await;
    assert_eq!(system.db.state(), BreakerState::Closed);
    let back = system.cycle(40).await;
    assert_eq!(back.component("api").unwrap().succeeded, 40, "full traffic");
}

#[tokio::test(start_paused = true)]
async fn a_blackout_that_outlasts_the_open_duration_is_reopened_by_the_probe_not_by_a_timer() {
    let system = system();
    for _ in 0..8 {
        system.cycle(40).await;
    }
    system.db_down.store(true, Ordering::Relaxed);
    system.cycle(40).await;
    assert_eq!(system.db.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(6)).await;
    // db is still down: the probe fails and the breaker opens again by
    // itself; nothing resets it blindly.
    system.cycle(40).await;
    assert_eq!(system.db.state(), BreakerState::Open);
    assert_eq!(system.auth.state(), BreakerState::Closed);
}
