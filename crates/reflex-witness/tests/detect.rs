//! The judgement on a paused clock, through real witness layers: api calls
//! auth calls db, each hop turning a failure below into its own. Healthy
//! load stays silent; db failing is one report naming db, with auth and
//! api affected; detectors of your own; reflexes on fake controls; call
//! patterns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::{BoxError, BreakerState, Component, Signal, SignalSink, TransitionReason};
use reflex_witness::{
    Clock, DetectionKind, Detector, Evidence, Finding, LinkKind, Observation, Report, Witness,
};
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

mod common;
use common::{Svc, observed, witness};

/// A component's knobs: how long its own work takes, and which of its
/// calls fail on their own (every `fail_every`-th; 0: none).
#[derive(Clone, Default)]
struct Knobs {
    ms: Arc<AtomicU64>,
    fail_every: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

impl Knobs {
    fn new(ms: u64) -> Self {
        let knobs = Self::default();
        knobs.ms.store(ms, Ordering::SeqCst);
        knobs
    }
}

/// A component that works `knobs.ms`, fails if `knobs.fail`, then calls
/// `next` (a failure below is its failure too, as an http hop's would be).
fn node(witness: &Witness, name: &str, knobs: &Knobs, next: Option<Svc>) -> Svc {
    let knobs = knobs.clone();
    let svc = service_fn(move |(): ()| {
        let next = next.clone();
        let ms = knobs.ms.load(Ordering::SeqCst);
        let every = knobs.fail_every.load(Ordering::SeqCst);
        let call = knobs.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = every > 0 && call % every == 0;
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if fail {
                return Err::<(), BoxError>("down".into());
            }
            if let Some(next) = next {
                next.oneshot(()).await?;
            }
            Ok(())
        }
    });
    BoxCloneSyncService::new(observed(witness, name, svc))
}

/// api -> auth -> db, 5 ms of own work each.
struct Stack {
    witness: Witness,
    api: Svc,
    knobs: [Knobs; 3],
}

impl Stack {
    fn new(witness: Witness) -> Self {
        let knobs = [Knobs::new(5), Knobs::new(5), Knobs::new(5)];
        let db = node(&witness, "db", &knobs[2], None);
        let auth = node(&witness, "auth", &knobs[1], Some(db));
        let api = node(&witness, "api", &knobs[0], Some(auth));
        Self {
            witness,
            api,
            knobs,
        }
    }

    /// `requests` requests through api, then a cycle.
    async fn cycle(&self, requests: usize) -> Arc<reflex_witness::Snapshot> {
        for _ in 0..requests {
            let _ = self.api.clone().oneshot(()).await;
        }
        self.witness.cycle_now()
    }

    /// Ten cycles of `requests` healthy requests, for the baselines to
    /// learn: none reports or acts.
    async fn learn(&self, requests: usize) {
        for _ in 0..10 {
            let snapshot = self.cycle(requests).await;
            assert!(snapshot.reports.is_empty(), "{:?}", snapshot.reports);
            assert!(snapshot.actions.is_empty(), "{:?}", snapshot.actions);
        }
    }
}

/// The components a report names as its roots.
fn roots(report: &Report) -> Vec<&str> {
    report.roots.iter().map(|r| r.component.as_str()).collect()
}

/// How each affected component depends on the root, as `"api -> auth"`.
fn affected_paths(report: &Report) -> Vec<String> {
    report
        .affected
        .iter()
        .map(|a| a.path.join(" -> "))
        .collect()
}

/// `component`'s shed layer refuses a request.
fn shed(witness: &Witness, component: &str) {
    witness.emit(
        &Component::new(component),
        Signal::Shed {
            in_flight: 1,
            hard_limit: 1,
        },
    );
}

#[tokio::test(start_paused = true)]
async fn db_failing_is_one_report_naming_db_as_root_with_auth_and_api_affected_through_their_calls()
{
    let stack = Stack::new(witness());
    stack.learn(30).await;
    stack.knobs[2].fail_every.store(1, Ordering::SeqCst);
    let snapshot = stack.cycle(30).await;
    assert_eq!(snapshot.reports.len(), 1, "{:?}", snapshot.reports);
    let report = &snapshot.reports[0];
    assert_eq!(report.kind, DetectionKind::OwnErrorRate);
    assert_eq!(roots(report), ["db"]);
    assert!(matches!(
        report.roots[0].evidence,
        Some(Evidence::ErrorRate {
            failed: 30,
            requests: 30,
            ..
        })
    ));
    assert_eq!(affected_paths(report), ["auth -> db", "api -> auth -> db"]);
    assert_eq!(report.causal_chain[0].component, "db");
    assert_eq!(report.causal_chain[0].what, LinkKind::Failed);
    assert!(
        report
            .causal_chain
            .iter()
            .all(|l| l.at_ms >= report.since_ms)
    );
    assert!(
        report
            .causal_chain
            .iter()
            .filter(|l| l.component != "db")
            .all(|l| l.what == LinkKind::FailedBelow),
        "auth's and api's failures are echoes: {:?}",
        report.causal_chain
    );
    // Still failing: the same episode, no new report.
    assert!(stack.cycle(30).await.reports.is_empty());
    let episodes = stack.witness.episodes();
    assert_eq!(episodes.len(), 1);
    assert!(episodes[0].is_open());
    // Back: the episode closes after two cycles within the baseline.
    stack.knobs[2].fail_every.store(0, Ordering::SeqCst);
    stack.cycle(30).await;
    assert!(stack.witness.episodes()[0].is_open());
    let snapshot = stack.cycle(30).await;
    assert_eq!(
        stack.witness.episodes()[0].ended_ms,
        Some(snapshot.observed_at_ms)
    );
    assert_eq!(stack.witness.reports().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn auths_own_work_five_times_slower_names_auth_alone_with_api_affected() {
    let stack = Stack::new(witness());
    stack.learn(30).await;
    stack.knobs[1].ms.store(25, Ordering::SeqCst);
    let snapshot = stack.cycle(30).await;
    assert_eq!(snapshot.reports.len(), 1, "{:?}", snapshot.reports);
    let report = &snapshot.reports[0];
    assert_eq!(report.kind, DetectionKind::OwnLatencyP50);
    assert_eq!(roots(report), ["auth"], "api only waited longer");
    assert_eq!(affected_paths(report), ["api -> auth"]);
}

/// A small deterministic generator (xorshift), for jitter.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test(start_paused = true)]
async fn healthy_load_with_ordinary_jitter_and_isolated_errors_reports_nothing() {
    let stack = Stack::new(witness());
    let mut jitter = Jitter(0x2545_f491_4f6c_dd1d);
    for _cycle in 0..60 {
        for _ in 0..40 {
            // 3–7 ms of own work each; one call in 100 fails somewhere.
            for knobs in &stack.knobs {
                knobs.ms.store(3 + jitter.next(5), Ordering::SeqCst);
                knobs
                    .fail_every
                    .store(u64::from(jitter.next(300) == 0), Ordering::SeqCst);
            }
            let _ = stack.api.clone().oneshot(()).await;
        }
        let snapshot = stack.witness.cycle_now();
        assert!(snapshot.reports.is_empty(), "{:?}", snapshot.reports);
    }
    assert!(stack.witness.reports().is_empty());
}

struct Broken;

impl Detector for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn inspect(&mut self, _: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        Err("no data source".into())
    }
}

struct Panicky;

impl Detector for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }

    fn inspect(&mut self, _: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        panic!("a detector panics (on purpose)")
    }
}

/// Reports every component with a refusal.
struct Every;

impl Detector for Every {
    fn name(&self) -> &str {
        "every"
    }

    fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        Ok(seen
            .snapshot
            .components
            .iter()
            .filter(|c| c.shed > 0)
            .map(|c| Finding::new("shed", vec![c.component.clone()], "shedding"))
            .collect())
    }
}

#[test]
fn a_detector_that_errors_sets_last_error_with_its_name() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .detector(Broken)
        .detector(Every)
        .build()
        .unwrap();
    shed(&witness, "db");
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.reports.len(), 1, "the other detector still ran");
    assert_eq!(
        snapshot.reports[0].kind,
        DetectionKind::Custom("every".to_owned())
    );
    assert_eq!(snapshot.reports[0].summary, "shedding");
    let error = witness.last_error().unwrap();
    assert!(error.starts_with("broken"), "{error}");
    assert!(error.contains("no data source"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_detector_sets_last_error_and_the_runtime_goes_on() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .interval(Duration::from_secs(1))
        .detector(Broken)
        .detector(Panicky)
        .detector(Every)
        .start()
        .unwrap();
    let mut rx = witness.subscribe();
    shed(&witness, "db");
    let snapshot = rx.recv().await.unwrap();
    assert_eq!(snapshot.reports.len(), 1, "the other detectors still ran");
    assert_eq!(witness.last_error().as_deref(), Some("panicky: panicked"));
    shed(&witness, "db");
    let snapshot = rx.recv().await.unwrap();
    assert_eq!(snapshot.cycle, 2, "cycles go on");
    assert!(witness.is_running());
}

#[tokio::test(start_paused = true)]
async fn reports_are_bounded_and_health_sees_open_breakers() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .report_limit(2)
        .detector(Every)
        .build()
        .unwrap();
    for cycle in 0..5 {
        shed(&witness, &format!("c{cycle}"));
        witness.cycle_now();
    }
    assert_eq!(witness.reports().len(), 2);
    assert_eq!(witness.reports()[1].roots[0].component, "c4");
    witness.emit(
        &Component::new("db"),
        Signal::BreakerTransition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason: TransitionReason::FailureRate,
        },
    );
    witness.cycle_now();
    assert_eq!(witness.health().open_breakers, vec!["db".to_owned()]);
}

#[tokio::test(start_paused = true)]
async fn a_causal_chain_holds_at_most_the_chain_limit() {
    let stack = Stack::new(
        Witness::builder()
            .clock(Clock::Tokio)
            .chain_limit(3)
            .build()
            .unwrap(),
    );
    stack.learn(30).await;
    stack.knobs[2].fail_every.store(1, Ordering::SeqCst);
    let snapshot = stack.cycle(30).await;
    assert_eq!(snapshot.reports[0].causal_chain.len(), 3);
}

mod reflexes {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    use reflex_core::{BreakerControl, BreakerState, ConfigError};
    use reflex_witness::{Clock, EdgeReflex, MeasureKind, Reason, Until, Witness};

    use super::Stack;

    /// A breaker's state and throttle, steered by the reflex; the test
    /// plays its probes.
    #[derive(Clone, Default)]
    struct FakeBreaker(Arc<Mutex<(Option<BreakerState>, Option<f64>)>>);

    impl FakeBreaker {
        fn throttled(&self) -> Option<f64> {
            self.0.lock().unwrap().1
        }
    }

    impl BreakerControl for FakeBreaker {
        fn state(&self) -> BreakerState {
            self.0.lock().unwrap().0.unwrap_or(BreakerState::Closed)
        }
        fn force_open(&self) {
            self.0.lock().unwrap().0 = Some(BreakerState::ForcedOpen);
        }
        fn reset(&self) {
            self.0.lock().unwrap().0 = Some(BreakerState::Closed);
        }
        fn trip(&self) {
            if self.state() == BreakerState::Closed {
                self.0.lock().unwrap().0 = Some(BreakerState::Open);
            }
        }
        fn throttle(&self, k: Option<f64>) -> Result<(), ConfigError> {
            self.0.lock().unwrap().1 = k;
            Ok(())
        }
    }

    /// A stack whose three components each have a fake breaker.
    fn stack(reflex: bool) -> (Stack, [FakeBreaker; 3]) {
        let mut builder = Witness::builder().clock(Clock::Tokio);
        if reflex {
            builder = builder.reflex(EdgeReflex::default());
        }
        let stack = Stack::new(builder.build().unwrap());
        let breakers: [FakeBreaker; 3] = Default::default();
        for (name, breaker) in ["api", "auth", "db"].iter().zip(&breakers) {
            stack.witness.control_breaker(*name, breaker.clone());
        }
        (stack, breakers)
    }

    #[tokio::test(start_paused = true)]
    async fn a_blackout_trips_the_roots_breaker_alone_and_its_probes_decide_recovery() {
        let (stack, [api, auth, db]) = stack(true);
        stack.learn(30).await;
        stack.knobs[2].fail_every.store(1, Ordering::SeqCst);
        let snapshot = stack.cycle(30).await;
        let report = &snapshot.reports[0];
        assert_eq!(report.actions.len(), 1, "{:?}", report.actions);
        let trip = &report.actions[0];
        assert_eq!(trip.what, MeasureKind::TripBreaker);
        assert_eq!(trip.component, "db");
        assert!(
            matches!(trip.why, Reason::Blackout { episode: 1, error_rate } if error_rate == 1.0)
        );
        assert_eq!(trip.until, Until::ProbesSucceed);
        assert_eq!(db.state(), BreakerState::Open);
        assert_eq!(auth.state(), BreakerState::Closed, "affected only");
        assert_eq!(api.state(), BreakerState::Closed, "the entry point");
        assert_eq!((auth.throttled(), api.throttled()), (None, None));
        // db recovers and a probe closes its breaker: two healthy cycles
        // close the episode; the trip has nothing left to undo.
        stack.knobs[2].fail_every.store(0, Ordering::SeqCst);
        db.reset();
        assert!(stack.cycle(30).await.actions.is_empty());
        assert!(stack.cycle(30).await.actions.is_empty());
        let episode = &stack.witness.episodes()[0];
        assert!(!episode.is_open());
        assert_eq!(episode.actions.len(), 1);
        assert_eq!(stack.witness.health().actions, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_brownout_throttles_the_roots_edge_until_the_episode_closes() {
        let (stack, [api, auth, db]) = stack(true);
        stack.learn(40).await;
        stack.knobs[2].fail_every.store(4, Ordering::SeqCst);
        let snapshot = stack.cycle(40).await;
        let report = &snapshot.reports[0];
        assert_eq!(report.roots[0].component, "db");
        assert_eq!(report.actions.len(), 1, "{:?}", report.actions);
        let throttle = &report.actions[0];
        assert_eq!(
            throttle.what,
            MeasureKind::Throttle {
                k: reflex_witness::DEFAULT_K
            }
        );
        assert_eq!(throttle.component, "db");
        assert!(matches!(throttle.why, Reason::Brownout { episode: 1, .. }));
        assert_eq!(throttle.until, Until::EpisodeCloses { episode: 1 });
        assert_eq!(db.throttled(), Some(reflex_witness::DEFAULT_K));
        assert_eq!(
            db.state(),
            BreakerState::Closed,
            "a brownout is not tripped"
        );
        assert_eq!((auth.throttled(), api.throttled()), (None, None));
        stack.knobs[2].fail_every.store(0, Ordering::SeqCst);
        stack.cycle(40).await;
        let snapshot = stack.cycle(40).await;
        assert_eq!(snapshot.actions.len(), 1, "{:?}", snapshot.actions);
        assert_eq!(snapshot.actions[0].what, MeasureKind::StopThrottling);
        assert_eq!(
            snapshot.actions[0].why,
            Reason::EpisodeClosed { episode: 1 }
        );
        assert_eq!(db.throttled(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_point_failing_on_its_own_is_reported_and_never_refused() {
        let (stack, [api, _, _]) = stack(true);
        stack.learn(30).await;
        stack.knobs[0].fail_every.store(1, Ordering::SeqCst);
        let snapshot = stack.cycle(30).await;
        assert_eq!(snapshot.reports[0].roots[0].component, "api");
        assert!(snapshot.actions.is_empty(), "{:?}", snapshot.actions);
        assert_eq!(api.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_reflex_the_witness_only_observes() {
        let (stack, [_, _, db]) = stack(false);
        stack.learn(30).await;
        stack.knobs[2].fail_every.store(1, Ordering::SeqCst);
        let snapshot = stack.cycle(30).await;
        assert_eq!(snapshot.reports.len(), 1);
        assert!(snapshot.reports[0].actions.is_empty());
        assert_eq!(db.state(), BreakerState::Closed);
    }
}

mod call_patterns {
    use std::sync::atomic::Ordering;

    use reflex_core::BoxError;
    use reflex_witness::{Clock, DetectionKind, Witness};
    use tower::util::BoxCloneSyncService;
    use tower::{ServiceExt, service_fn};

    use super::{Knobs, node, observed, witness};

    /// A witness whose call patterns settle after 50 chains, a chain more
    /// than twice as slow as usual reported, and no other judgement.
    fn pattern_learner() -> Witness {
        Witness::builder()
            .clock(Clock::Tokio)
            .no_judgement()
            .call_patterns(50, 2.0)
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_healthy_chains_learn_one_pattern_and_its_slowdown_and_a_new_chain_are_reported()
    {
        let witness = pattern_learner();
        let db_knobs = Knobs::new(2);
        let db = node(&witness, "db", &db_knobs, None);
        let auth = node(&witness, "auth", &Knobs::new(1), Some(db));
        let api = node(&witness, "api", &Knobs::new(1), Some(auth));
        for _ in 0..50 {
            api.clone().oneshot(()).await.unwrap();
        }
        let snapshot = witness.cycle_now();
        assert!(snapshot.reports.is_empty(), "{:?}", snapshot.reports);
        assert_eq!(witness.health().patterns_learned, 1);

        // db turns slow: the chain is ~10× its usual 4 ms.
        db_knobs.ms.store(40, Ordering::SeqCst);
        api.clone().oneshot(()).await.unwrap();
        let snapshot = witness.cycle_now();
        assert_eq!(snapshot.reports.len(), 1, "{:?}", snapshot.reports);
        let report = &snapshot.reports[0];
        assert!(
            matches!(&report.kind, DetectionKind::SlowCallPattern { chain, .. } if chain == &["api", "auth", "db"]),
            "{:?}",
            report.kind
        );
        assert!(
            report.summary.starts_with("api > auth > db"),
            "{}",
            report.summary
        );

        // A chain never seen while learning.
        let gateway = node(&witness, "gateway", &Knobs::new(1), Some(api.clone()));
        db_knobs.ms.store(2, Ordering::SeqCst);
        gateway.oneshot(()).await.unwrap();
        let snapshot = witness.cycle_now();
        assert!(
            snapshot.reports.iter().any(
                |r| matches!(&r.kind, DetectionKind::NewCallPattern { chain }
                    if chain == &["gateway", "api", "auth", "db"])
            ),
            "{:?}",
            snapshot.reports
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_witness_that_does_not_learn_patterns_reports_none() {
        // The judgement stays on: healthy chains give it nothing, and no
        // pattern report may appear.
        let witness = witness();
        let db = node(&witness, "db", &Knobs::new(2), None);
        let api = node(&witness, "api", &Knobs::new(1), Some(db));
        for _ in 0..60 {
            api.clone().oneshot(()).await.unwrap();
        }
        assert!(witness.cycle_now().reports.is_empty());
        assert_eq!(witness.health().patterns_learned, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn chains_cut_short_by_a_failure_are_not_reported_as_new_patterns() {
        let witness = pattern_learner();
        let db = observed(
            &witness,
            "db",
            service_fn(|fail: bool| async move {
                if fail {
                    Err::<(), BoxError>("down".into())
                } else {
                    Ok(())
                }
            }),
        );
        let db = BoxCloneSyncService::new(db);
        let auth = BoxCloneSyncService::new(observed(
            &witness,
            "auth",
            service_fn(move |fail: bool| {
                let db = db.clone();
                async move { db.oneshot(fail).await }
            }),
        ));
        let api = observed(
            &witness,
            "api",
            service_fn(move |fail: bool| {
                let auth = auth.clone();
                async move { auth.oneshot(fail).await }
            }),
        );
        for _ in 0..60 {
            api.clone().oneshot(false).await.unwrap();
        }
        assert!(witness.cycle_now().reports.is_empty());
        // db fails: every chain ends in a failure, none is a pattern.
        for _ in 0..20 {
            api.clone().oneshot(true).await.unwrap_err();
        }
        let snapshot = witness.cycle_now();
        assert!(snapshot.reports.is_empty(), "{:?}", snapshot.reports);
    }
}
