//! The detectors, on a paused clock: the seed's cascade and regression
//! scenarios, healthy load that must stay silent, a failing detector.

use std::time::Duration;

use reflex_core::{BoxError, BreakerState, Component, Signal, SignalSink, TransitionReason};
use reflex_witness::{Clock, Detector, Finding, Observation, Witness};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A component whose calls take `ms` and fail when `fail` says so.
fn component(
    witness: &Witness,
    name: &str,
) -> impl Service<(u64, bool), Response = (), Error = BoxError> + Clone {
    witness
        .layer(name)
        .unwrap()
        .layer(service_fn(|(ms, fail): (u64, bool)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if fail {
                Err::<(), BoxError>("down".into())
            } else {
                Ok(())
            }
        }))
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
async fn four_components_failing_together_make_one_cascade_report_with_its_chain() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .no_latency_regression()
        .build()
        .unwrap();
    let names = ["api", "auth", "db", "cache"];
    let services: Vec<_> = names.iter().map(|n| component(&witness, n)).collect();
    for round in 0..6 {
        for svc in &services {
            let _ = svc.clone().oneshot((5, true)).await;
        }
        if round == 2 {
            assert!(
                witness.cycle_now().reports.is_empty(),
                "3 failures each: not yet"
            );
        }
    }
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.reports.len(), 1);
    let report = &snapshot.reports[0];
    assert_eq!(report.detector, "cascade");
    let mut involved: Vec<_> = report
        .components
        .iter()
        .map(|c| c.component.as_str())
        .collect();
    involved.sort_unstable();
    assert_eq!(involved, vec!["api", "auth", "cache", "db"]);
    // The chain: the failed calls in the order they failed, earliest first.
    let chain: Vec<_> = report
        .causal_chain
        .iter()
        .map(|l| l.component.as_str())
        .collect();
    assert_eq!(&chain[..4], &names[..]);
    assert!(
        report
            .causal_chain
            .windows(2)
            .all(|w| w[0].at_ms <= w[1].at_ms)
    );
    assert!(report.causal_chain.iter().all(|l| l.what == "failed"));
    // Still failing: the same episode, no new report.
    for svc in &services {
        let _ = svc.clone().oneshot((5, true)).await;
    }
    assert!(witness.cycle_now().reports.is_empty());
    assert_eq!(witness.reports().len(), 1);
    assert_eq!(witness.health().reports, 1);
}

#[tokio::test(start_paused = true)]
async fn a_latency_regression_against_the_components_own_baseline_is_reported() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .no_cascade()
        .build()
        .unwrap();
    let db = component(&witness, "db");
    for _ in 0..6 {
        for _ in 0..25 {
            db.clone().oneshot((10, false)).await.unwrap();
        }
        assert!(witness.cycle_now().reports.is_empty());
    }
    for _ in 0..25 {
        db.clone().oneshot((35, false)).await.unwrap();
    }
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.reports.len(), 1, "{:?}", snapshot.reports);
    let report = &snapshot.reports[0];
    assert_eq!(report.detector, "latency_regression");
    assert!(
        report.decision.starts_with("db: p50"),
        "{}",
        report.decision
    );
    assert_eq!(report.components[0].component, "db");
}

#[tokio::test(start_paused = true)]
async fn healthy_load_with_ordinary_jitter_and_isolated_errors_reports_nothing() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let names = ["api", "auth", "db", "cache", "queue"];
    let services: Vec<_> = names.iter().map(|n| component(&witness, n)).collect();
    let mut jitter = Jitter(0x2545_f491_4f6c_dd1d);
    for _cycle in 0..30 {
        for _ in 0..30 {
            let svc = &services[jitter.next(names.len() as u64) as usize];
            // 8–14 ms; one call in 200 fails.
            let ms = 8 + jitter.next(7);
            let fail = jitter.next(200) == 0;
            let _ = svc.clone().oneshot((ms, fail)).await;
        }
        let snapshot = witness.cycle_now();
        assert!(snapshot.reports.is_empty(), "{:?}", snapshot.reports);
    }
    assert!(witness.reports().is_empty());
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
    witness.emit(
        &Component::new("db"),
        Signal::Shed {
            in_flight: 1,
            hard_limit: 1,
        },
    );
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.reports.len(), 1, "the other detector still ran");
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
    witness.emit(
        &Component::new("db"),
        Signal::Shed {
            in_flight: 1,
            hard_limit: 1,
        },
    );
    let snapshot = rx.recv().await.unwrap();
    assert_eq!(snapshot.reports.len(), 1, "the other detectors still ran");
    assert_eq!(witness.last_error().as_deref(), Some("panicky: panicked"));
    witness.emit(
        &Component::new("db"),
        Signal::Shed {
            in_flight: 1,
            hard_limit: 1,
        },
    );
    let snapshot = rx.recv().await.unwrap();
    assert_eq!(snapshot.cycle, 2, "cycles go on");
    assert!(witness.is_running());
}

#[tokio::test(start_paused = true)]
async fn reports_and_chains_are_bounded_and_health_sees_open_breakers() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .no_latency_regression()
        .report_limit(2)
        .chain_limit(3)
        .detector(Every)
        .build()
        .unwrap();
    for cycle in 0..5 {
        let name = format!("c{cycle}");
        witness.emit(
            &Component::new(name.as_str()),
            Signal::Shed {
                in_flight: 1,
                hard_limit: 1,
            },
        );
        witness.cycle_now();
    }
    assert_eq!(witness.reports().len(), 2);
    assert_eq!(witness.reports()[1].components[0].component, "c4");
    let services: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| component(&witness, n))
        .collect();
    for _ in 0..5 {
        for svc in &services {
            let _ = svc.clone().oneshot((1, true)).await;
        }
    }
    let snapshot = witness.cycle_now();
    let cascade = snapshot
        .reports
        .iter()
        .find(|r| r.detector == "cascade")
        .unwrap();
    assert_eq!(cascade.causal_chain.len(), 3);
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

mod reflexes {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use reflex_core::{BreakerControl, BreakerState, ConfigError, ShedControl};
    use reflex_witness::{CascadeReflex, Clock, Witness};
    use tower::ServiceExt;

    use super::component;

    #[derive(Clone, Default)]
    struct FakeBreaker(Arc<Mutex<Option<BreakerState>>>);

    impl BreakerControl for FakeBreaker {
        fn state(&self) -> BreakerState {
            self.0.lock().unwrap().unwrap_or(BreakerState::Closed)
        }
        fn force_open(&self) {
            *self.0.lock().unwrap() = Some(BreakerState::ForcedOpen);
        }
        fn reset(&self) {
            *self.0.lock().unwrap() = Some(BreakerState::Closed);
        }
    }

    #[derive(Clone)]
    struct FakeShed(Arc<AtomicUsize>);

    impl ShedControl for FakeShed {
        fn hard_limit(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
        fn set_hard_limit(&self, limit: usize) -> Result<(), ConfigError> {
            self.0.store(limit, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cascade_forces_breakers_open_and_lowers_shed_limits_until_it_clears() {
        let witness = Witness::builder()
            .clock(Clock::Tokio)
            .no_latency_regression()
            .reflex(CascadeReflex::new(Duration::from_secs(30), 0.5))
            .build()
            .unwrap();
        let names = ["auth", "db", "cache"];
        let breakers: Vec<FakeBreaker> = names.iter().map(|_| FakeBreaker::default()).collect();
        let sheds: Vec<FakeShed> = names
            .iter()
            .map(|_| FakeShed(Arc::new(AtomicUsize::new(64))))
            .collect();
        for ((name, breaker), shed) in names.iter().zip(&breakers).zip(&sheds) {
            witness.control_breaker(*name, breaker.clone());
            witness.control_shed(*name, shed.clone());
        }
        let services: Vec<_> = names.iter().map(|n| component(&witness, n)).collect();
        for _ in 0..5 {
            for svc in &services {
                let _ = svc.clone().oneshot((2, true)).await;
            }
        }
        let snapshot = witness.cycle_now();
        let report = &snapshot.reports[0];
        assert_eq!(report.actions.len(), 6, "{:?}", report.actions);
        assert!(
            report
                .actions
                .contains(&"forced db's breaker open".to_owned())
        );
        assert!(
            report
                .actions
                .contains(&"lowered db's shed limit from 64 to 32".to_owned())
        );
        assert!(
            breakers
                .iter()
                .all(|b| b.state() == BreakerState::ForcedOpen)
        );
        assert!(sheds.iter().all(|s| s.hard_limit() == 32));
        // Held for 30 s, then restored once the components are quiet.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(witness.cycle_now().actions.is_empty(), "still held");
        tokio::time::advance(Duration::from_secs(25)).await;
        let snapshot = witness.cycle_now();
        assert_eq!(snapshot.actions.len(), 6, "{:?}", snapshot.actions);
        assert!(breakers.iter().all(|b| b.state() == BreakerState::Closed));
        assert!(sheds.iter().all(|s| s.hard_limit() == 64));
        assert_eq!(witness.health().actions, 12);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_reflex_the_witness_only_observes() {
        let witness = Witness::builder()
            .clock(Clock::Tokio)
            .no_latency_regression()
            .build()
            .unwrap();
        let breaker = FakeBreaker::default();
        witness.control_breaker("db", breaker.clone());
        let services: Vec<_> = ["a", "b", "db"]
            .iter()
            .map(|n| component(&witness, n))
            .collect();
        for _ in 0..5 {
            for svc in &services {
                let _ = svc.clone().oneshot((2, true)).await;
            }
        }
        let snapshot = witness.cycle_now();
        assert_eq!(snapshot.reports.len(), 1);
        assert!(snapshot.reports[0].actions.is_empty());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}

mod call_patterns {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use reflex_core::BoxError;
    use reflex_witness::{Clock, Witness};
    use tower::util::BoxCloneSyncService;
    use tower::{Layer, ServiceExt, service_fn};

    type Svc = BoxCloneSyncService<(), (), BoxError>;

    /// A component that takes `ms` (or `slow_ms` while `slow` is set), then
    /// calls `next`, if any.
    fn node(witness: &Witness, name: &str, ms: Arc<AtomicU64>, next: Option<Svc>) -> Svc {
        let svc = witness
            .layer(name)
            .unwrap()
            .layer(service_fn(move |(): ()| {
                let next = next.clone();
                let ms = ms.load(Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if let Some(next) = next {
                        next.oneshot(()).await?;
                    }
                    Ok::<_, BoxError>(())
                }
            }));
        BoxCloneSyncService::new(svc)
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_healthy_chains_learn_one_pattern_and_its_slowdown_and_a_new_chain_are_reported()
    {
        let witness = Witness::builder()
            .clock(Clock::Tokio)
            .no_cascade()
            .no_latency_regression()
            .call_patterns(50, 2.0)
            .build()
            .unwrap();
        let db_ms = Arc::new(AtomicU64::new(2));
        let db = node(&witness, "db", db_ms.clone(), None);
        let auth = node(&witness, "auth", Arc::new(AtomicU64::new(1)), Some(db));
        let api = node(&witness, "api", Arc::new(AtomicU64::new(1)), Some(auth));
        for _ in 0..50 {
            api.clone().oneshot(()).await.unwrap();
        }
        let snapshot = witness.cycle_now();
        assert!(snapshot.reports.is_empty(), "{:?}", snapshot.reports);
        assert_eq!(witness.health().patterns_learned, 1);

        // db turns slow: the chain is ~10× its usual 4 ms.
        db_ms.store(40, Ordering::SeqCst);
        api.clone().oneshot(()).await.unwrap();
        let snapshot = witness.cycle_now();
        assert_eq!(snapshot.reports.len(), 1, "{:?}", snapshot.reports);
        let report = &snapshot.reports[0];
        assert_eq!(report.trigger, "slow_call_pattern");
        assert!(
            report.decision.starts_with("api > auth > db"),
            "{}",
            report.decision
        );

        // A chain never seen while learning.
        let gateway = node(
            &witness,
            "gateway",
            Arc::new(AtomicU64::new(1)),
            Some(api.clone()),
        );
        db_ms.store(2, Ordering::SeqCst);
        gateway.oneshot(()).await.unwrap();
        let snapshot = witness.cycle_now();
        assert!(
            snapshot
                .reports
                .iter()
                .any(|r| r.trigger == "new_call_pattern"
                    && r.decision.ends_with("gateway > api > auth > db")),
            "{:?}",
            snapshot.reports
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_witness_that_does_not_learn_patterns_reports_none() {
        // The built-in detectors stay on: healthy chains give them nothing,
        // and no pattern report may appear.
        let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
        let db = node(&witness, "db", Arc::new(AtomicU64::new(2)), None);
        let api = node(&witness, "api", Arc::new(AtomicU64::new(1)), Some(db));
        for _ in 0..60 {
            api.clone().oneshot(()).await.unwrap();
        }
        assert!(witness.cycle_now().reports.is_empty());
        assert_eq!(witness.health().patterns_learned, 0);
    }
}
