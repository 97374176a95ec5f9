//! The edge reflex's choice of measure, against a fake breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reflex_core::{BreakerControl, BreakerState, ConfigError, Control};

use super::*;
use crate::report::Root;
use crate::snapshot::Snapshot;
use crate::state::ComponentState;

/// A breaker that remembers what it was told.
#[derive(Default)]
struct Fake(Mutex<Told>);

#[derive(Default)]
struct Told {
    state: Option<BreakerState>,
    throttle: Option<f64>,
    throttled: usize,
}

impl Fake {
    fn in_state(state: BreakerState) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Told {
            state: Some(state),
            ..Told::default()
        })))
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BreakerControl for Fake {
    fn state(&self) -> BreakerState {
        self.told().state.unwrap_or(BreakerState::Closed)
    }
    fn force_open(&self) {
        self.told().state = Some(BreakerState::ForcedOpen);
    }
    fn reset(&self) {
        self.told().state = Some(BreakerState::Closed);
    }
    fn trip(&self) {
        let mut told = self.told();
        if told.state == Some(BreakerState::Closed) {
            told.state = Some(BreakerState::Open);
        }
    }
    fn throttle(&self, k: Option<f64>) -> Result<(), ConfigError> {
        let mut told = self.told();
        told.throttle = k;
        told.throttled += 1;
        Ok(())
    }
}

/// db, called by api, failing `failed` of 100 requests on its own, root
/// of open episode 1; the controls hold `breaker` as db's.
struct Case {
    snapshot: Snapshot,
    open: Vec<Episode>,
    callers: HashMap<String, Vec<String>>,
    controls: Controls,
}

fn case(failed: u64, breaker: &Arc<Fake>) -> Case {
    let mut db = ComponentState::idle("db");
    (db.succeeded, db.failed, db.own_failed) = (100 - failed, failed, failed);
    let mut snapshot = Snapshot::empty();
    snapshot.components.push(db);
    let root = Root {
        component: "db".to_owned(),
        kind: DetectionKind::OwnErrorRate,
        evidence: None,
    };
    let episode = Episode {
        id: 1,
        kind: DetectionKind::OwnErrorRate,
        roots: vec![root],
        since_ms: 0,
        opened_cycle: 1,
        affected: vec!["api".to_owned()],
        actions: Vec::new(),
        ended_ms: None,
    };
    let mut controls = Controls::default();
    let control: Arc<dyn BreakerControl> = Arc::clone(breaker) as _;
    controls.add("db".to_owned(), Control::Breaker(control));
    Case {
        snapshot,
        open: vec![episode],
        callers: HashMap::from([("db".to_owned(), vec!["api".to_owned()])]),
        controls,
    }
}

impl Case {
    fn react(&self, reflex: &mut EdgeReflex, closed: &[Episode]) -> Vec<MeasureKind> {
        let open: Vec<Episode> = self
            .open
            .iter()
            .filter(|e| closed.iter().all(|c| c.id != e.id))
            .cloned()
            .collect();
        let situation = Situation {
            snapshot: &self.snapshot,
            open: &open,
            closed,
            callers: &self.callers,
        };
        reflex
            .react(&situation, &self.controls)
            .into_iter()
            .map(|action| action.what.what)
            .collect()
    }
}

#[test]
fn a_blackout_on_a_breaker_already_open_is_left_to_it_and_never_throttled() {
    for state in [
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::ForcedOpen,
    ] {
        let breaker = Fake::in_state(state);
        let case = case(100, &breaker);
        let mut reflex = EdgeReflex::default();
        for _ in 0..3 {
            assert_eq!(case.react(&mut reflex, &[]), [], "{state:?}");
        }
        assert_eq!(breaker.told().throttled, 0, "{state:?}: never throttled");
        assert_eq!(breaker.state(), state);
    }
}

#[test]
fn a_blackout_trips_a_closed_breaker_once() {
    let breaker = Fake::in_state(BreakerState::Closed);
    let case = case(100, &breaker);
    let mut reflex = EdgeReflex::default();
    assert_eq!(case.react(&mut reflex, &[]), [MeasureKind::TripBreaker]);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(case.react(&mut reflex, &[]), []);
    assert_eq!(breaker.told().throttled, 0);
}

#[test]
fn a_brownout_throttles_its_breaker_until_the_episode_closes() {
    for state in [BreakerState::Closed, BreakerState::Open] {
        let breaker = Fake::in_state(state);
        let case = case(25, &breaker);
        let mut reflex = EdgeReflex::default();
        assert_eq!(
            case.react(&mut reflex, &[]),
            [MeasureKind::Throttle { k: DEFAULT_K }],
            "{state:?}"
        );
        assert_eq!(breaker.told().throttle, Some(DEFAULT_K));
        assert_eq!(case.react(&mut reflex, &[]), [], "once");
        let mut closed = case.open[0].clone();
        closed.ended_ms = Some(2_000);
        assert_eq!(
            case.react(&mut reflex, &[closed]),
            [MeasureKind::StopThrottling]
        );
        assert_eq!(breaker.told().throttle, None);
        assert_eq!(breaker.state(), state, "a brownout never trips");
    }
}
