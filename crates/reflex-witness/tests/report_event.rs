//! A witness report as a `tracing` subscriber sees it: one WARN event,
//! its roots, affected components and actions as fields.
//!
//! A test binary of its own: tracing caches per call site whether anyone
//! listens, so a test on another thread with no subscriber could make this
//! one miss its events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflex_core::{BoxError, BreakerControl, BreakerState, ConfigError};
use reflex_witness::{Clock, EdgeReflex, Witness};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

/// An event: its level and its fields, as text.
#[derive(Debug)]
struct Seen {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Keeps the witness's events.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if !event.metadata().target().starts_with("reflex_witness") {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A breaker the reflex trips.
#[derive(Default)]
struct Breaker(Mutex<Option<BreakerState>>);

impl BreakerControl for Breaker {
    fn state(&self) -> BreakerState {
        self.0.lock().unwrap().unwrap_or(BreakerState::Closed)
    }
    fn force_open(&self) {}
    fn reset(&self) {}
    fn trip(&self) {
        *self.0.lock().unwrap() = Some(BreakerState::Open);
    }
    fn throttle(&self, _: Option<f64>) -> Result<(), ConfigError> {
        Ok(())
    }
}

type Svc = BoxCloneSyncService<(), (), BoxError>;

/// A component that works 5 ms, fails while `failing` is odd, then calls
/// `next` (a failure below is its failure too).
fn node(witness: &Witness, name: &str, failing: &Arc<AtomicU64>, next: Option<Svc>) -> Svc {
    let failing = Arc::clone(failing);
    let svc = service_fn(move |()| {
        let next = next.clone();
        let fail = failing.load(Ordering::SeqCst) % 2 == 1;
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if fail {
                return Err::<(), BoxError>("down".into());
            }
            if let Some(next) = next {
                next.oneshot(()).await?;
            }
            Ok(())
        }
    });
    BoxCloneSyncService::new(witness.layer(name).build().unwrap().layer(svc))
}

#[tokio::test(start_paused = true)]
async fn a_report_is_one_warn_event_with_its_roots_affected_components_and_actions() {
    let capture = Capture::default();
    let _subscriber = tracing::subscriber::set_default(capture.clone());
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .reflex(EdgeReflex::default())
        .build()
        .unwrap();
    let (healthy, db_down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let db = node(&witness, "db", &db_down, None);
    let auth = node(&witness, "auth", &healthy, Some(db));
    let api = node(&witness, "api", &healthy, Some(auth));
    witness.control_breaker("db", Breaker::default());
    let cycle = |requests: usize| {
        let (api, witness) = (api.clone(), witness.clone());
        async move {
            for _ in 0..requests {
                let _ = api.clone().oneshot(()).await;
            }
            witness.cycle_now()
        }
    };
    for _ in 0..10 {
        assert!(cycle(30).await.reports.is_empty());
    }
    assert!(capture.0.lock().unwrap().is_empty(), "healthy: no event");

    // db fails every call, twice: one episode, one report, one event.
    db_down.store(1, Ordering::SeqCst);
    let report = cycle(30).await.reports[0].clone();
    assert!(cycle(30).await.reports.is_empty());

    let seen = capture.0.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let event = &seen[0];
    assert_eq!(event.level, tracing::Level::WARN);
    let field = |name: &str| event.fields.get(name).map(String::as_str);
    assert_eq!(field("message"), Some("witness report"));
    assert_eq!(field("kind"), Some("own_error_rate"));
    assert_eq!(field("episode"), Some("1"));
    assert_eq!(field("roots"), Some("db"));
    let mut affected: Vec<&str> = field("affected").unwrap().split(',').collect();
    affected.sort_unstable();
    assert_eq!(affected, ["api", "auth"]);
    assert_eq!(
        field("actions"),
        Some(report.actions[0].to_string().as_str())
    );
    assert!(
        field("actions")
            .unwrap()
            .starts_with("tripped db's breaker")
    );
    assert_eq!(field("summary"), Some(report.summary.as_str()));
    assert_eq!(
        field("since_ms"),
        Some(report.since_ms.to_string().as_str())
    );
    assert_eq!(field("cycle"), Some("11"));
}
