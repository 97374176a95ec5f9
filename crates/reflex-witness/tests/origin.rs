//! Origin, not echo: what each component did itself, told apart from what
//! it waited on, through real chains api -> auth -> db on a paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reflex_core::{BoxError, BreakerControl, BreakerState};
use reflex_witness::{ComponentState, Snapshot, Witness};
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

mod common;
use common::{Svc, observed, witness};

/// A component that works `own` then, if it has one, calls `below`; fails
/// its own work when `fails` is set, and fails when its call below does.
fn component(
    witness: &Witness,
    name: &'static str,
    own: Duration,
    below: Option<Svc>,
    fails: Arc<AtomicBool>,
) -> Svc {
    let svc = service_fn(move |(): ()| {
        let below = below.clone();
        let fails = fails.clone();
        async move {
            tokio::time::sleep(own).await;
            if fails.load(Ordering::Relaxed) {
                return Err::<(), BoxError>(format!("{name} failed").into());
            }
            match below {
                Some(below) => below.oneshot(()).await,
                None => Ok(()),
            }
        }
    });
    BoxCloneSyncService::new(observed(witness, name, svc))
}

struct Chain {
    api: Svc,
    auth_fails: Arc<AtomicBool>,
    db_fails: Arc<AtomicBool>,
}

fn chain(witness: &Witness) -> Chain {
    let db_fails = Arc::new(AtomicBool::new(false));
    let auth_fails = Arc::new(AtomicBool::new(false));
    let db = component(
        witness,
        "db",
        Duration::from_millis(10),
        None,
        db_fails.clone(),
    );
    let auth = component(
        witness,
        "auth",
        Duration::from_millis(5),
        Some(db),
        auth_fails.clone(),
    );
    let api = component(
        witness,
        "api",
        Duration::from_millis(2),
        Some(auth),
        Arc::new(AtomicBool::new(false)),
    );
    Chain {
        api,
        auth_fails,
        db_fails,
    }
}

impl Chain {
    /// `requests` requests through api, each of which succeeds.
    async fn succeed(&self, requests: usize) {
        for _ in 0..requests {
            self.api.clone().oneshot(()).await.unwrap();
        }
    }

    /// `requests` requests through api, each of which fails.
    async fn fail(&self, requests: usize) {
        for _ in 0..requests {
            self.api.clone().oneshot(()).await.unwrap_err();
        }
    }
}

fn state<'a>(snapshot: &'a Snapshot, name: &str) -> &'a ComponentState {
    snapshot.component(name).unwrap()
}

/// `name`'s failures in `snapshot`: all, its own, and those echoing a call
/// below.
fn failures(snapshot: &Snapshot, name: &str) -> (u64, u64, u64) {
    let s = state(snapshot, name);
    (s.failed, s.own_failed, s.propagated_failed)
}

/// Within the histograms' 1/16.
fn about(got: Option<f64>, expected_ms: f64) -> bool {
    got.is_some_and(|got| (got - expected_ms).abs() <= expected_ms / 16.0 + 0.01)
}

#[tokio::test(start_paused = true)]
async fn each_component_s_self_time_is_its_latency_less_its_wait_below() {
    let witness = witness();
    let chain = chain(&witness);
    chain.succeed(20).await;
    let snapshot = witness.cycle_now();
    for (name, total, own) in [("api", 17.0, 2.0), ("auth", 15.0, 5.0), ("db", 10.0, 10.0)] {
        let state = state(&snapshot, name);
        assert_eq!(state.succeeded, 20, "{name}");
        assert!(about(state.p50_ms, total), "{name}: {:?}", state.p50_ms);
        assert!(
            about(state.self_p50_ms, own),
            "{name}: {:?}",
            state.self_p50_ms
        );
        assert!(
            about(state.self_p99_ms, own),
            "{name}: {:?}",
            state.self_p99_ms
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_below_is_an_echo_above_and_its_own_where_it_started() {
    let witness = witness();
    let chain = chain(&witness);
    chain.db_fails.store(true, Ordering::Relaxed);
    chain.fail(10).await;
    let snapshot = witness.cycle_now();
    assert_eq!(
        failures(&snapshot, "db"),
        (10, 10, 0),
        "db failed on its own"
    );
    assert_eq!(failures(&snapshot, "auth"), (10, 0, 10), "auth echoed db");
    assert_eq!(failures(&snapshot, "api"), (10, 0, 10), "api echoed auth");

    // auth failing its own work (before calling db) is auth's own.
    chain.db_fails.store(false, Ordering::Relaxed);
    chain.auth_fails.store(true, Ordering::Relaxed);
    chain.fail(4).await;
    let snapshot = witness.cycle_now();
    assert_eq!(failures(&snapshot, "auth"), (4, 4, 0));
    assert_eq!(failures(&snapshot, "api"), (4, 0, 4));
    assert_eq!(state(&snapshot, "db").requests, 0, "db was never called");
}

#[tokio::test(start_paused = true)]
async fn calls_between_components_are_counted_edge_by_edge() {
    let witness = witness();
    let chain = chain(&witness);
    chain.succeed(3).await;
    chain.db_fails.store(true, Ordering::Relaxed);
    chain.fail(1).await;
    let snapshot = witness.cycle_now();
    let mut edges: Vec<(String, String, u64, u64)> = snapshot
        .calls
        .iter()
        .map(|e| (e.caller.clone(), e.callee.clone(), e.calls, e.failed))
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        vec![
            ("api".to_owned(), "auth".to_owned(), 4, 1),
            ("auth".to_owned(), "db".to_owned(), 4, 1),
        ]
    );
    assert!(witness.cycle_now().calls.is_empty(), "counts are per cycle");
}

#[tokio::test(start_paused = true)]
async fn a_call_below_dropped_by_a_timeout_makes_the_timeout_an_echo() {
    let witness = witness();
    let db = component(
        &witness,
        "db",
        Duration::from_secs(60),
        None,
        Arc::new(AtomicBool::new(false)),
    );
    let auth = observed(
        &witness,
        "auth",
        service_fn(move |(): ()| {
            let db = db.clone();
            async move {
                tokio::time::timeout(Duration::from_millis(100), db.oneshot(()))
                    .await
                    .map_err(BoxError::from)?
            }
        }),
    );
    auth.oneshot(()).await.unwrap_err();
    let snapshot = witness.cycle_now();
    let auth = state(&snapshot, "auth");
    assert_eq!((auth.own_failed, auth.propagated_failed), (0, 1));
    assert_eq!(state(&snapshot, "db").cancelled, 1);
    assert_eq!(
        snapshot.calls[0].failed, 1,
        "a dropped call failed its caller"
    );
}

#[tokio::test(start_paused = true)]
async fn work_spawned_on_another_task_is_not_linked_and_counts_as_own() {
    let witness = witness();
    let chain = chain(&witness);
    chain.db_fails.store(true, Ordering::Relaxed);
    let api = chain.api.clone();
    // The caller's frame is not current in another task: db's failure is
    // api's own there (the witness cannot see the link).
    let outer = observed(
        &witness,
        "gateway",
        service_fn(move |(): ()| {
            let api = api.clone();
            async move { tokio::spawn(api.oneshot(())).await.unwrap() }
        }),
    );
    outer.oneshot(()).await.unwrap_err();
    let snapshot = witness.cycle_now();
    let gateway = state(&snapshot, "gateway");
    assert_eq!((gateway.own_failed, gateway.propagated_failed), (1, 0));
    assert_eq!(state(&snapshot, "api").propagated_failed, 1, "linked below");
}

struct Fixed(BreakerState);

impl BreakerControl for Fixed {
    fn state(&self) -> BreakerState {
        self.0
    }
    fn force_open(&self) {}
    fn reset(&self) {}
    fn trip(&self) {}
    fn throttle(&self, _: Option<f64>) -> Result<(), reflex_core::ConfigError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_registered_breaker_s_state_is_in_every_snapshot_before_any_transition() {
    let witness = witness();
    let _db = witness.layer("db").build().unwrap();
    witness.control_breaker("db", Fixed(BreakerState::Closed));
    assert_eq!(
        state(&witness.cycle_now(), "db").breaker.as_deref(),
        Some("closed")
    );
    assert_eq!(
        state(&witness.cycle_now(), "db").breaker.as_deref(),
        Some("closed"),
        "and in the next one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_below_handed_up_is_the_caller_s_echo_not_its_refusal() {
    use reflex_core::{Component, RejectKind, Rejected};

    let witness = witness();
    // db's own breaker refuses: a refusal of db's stack.
    let db = observed(
        &witness,
        "db",
        service_fn(|(): ()| async {
            Err::<(), BoxError>(Rejected::new(RejectKind::CircuitOpen, Component::new("db")).into())
        }),
    );
    // auth's handler hands db's error up as its own.
    let auth = observed(
        &witness,
        "auth",
        service_fn(move |(): ()| {
            let db = db.clone();
            async move { db.oneshot(()).await }
        }),
    );
    auth.oneshot(()).await.unwrap_err();
    let snapshot = witness.cycle_now();
    let db = state(&snapshot, "db");
    assert_eq!(db.rejected, vec![("circuit_open".to_owned(), 1)]);
    let auth = state(&snapshot, "auth");
    assert!(auth.rejected.is_empty(), "{:?}", auth.rejected);
    assert_eq!((auth.own_failed, auth.propagated_failed), (0, 1));
}
