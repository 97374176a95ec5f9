//! The `tracing` events of the breaker, as a subscriber sees them: their
//! levels and fields, keys only at DEBUG, and how few lines a burst of
//! refusals or a flapping breaker writes.
//!
//! A test binary of its own: its subscriber is installed for the whole
//! process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reflex_breaker::CircuitBreakLayer;
use reflex_core::BoxError;
use reflex_core::log_limit::CHANGES_PER_INTERVAL;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};
use tracing::Level;
use tracing::level_filters::LevelFilter;

use reflex_tests::capture::{self, Captured, loud, only};

type Svc = BoxCloneService<u32, u32, BoxError>;

/// A service that fails while `fail` is set, behind `layer`.
fn behind<L>(layer: L) -> (Svc, Arc<AtomicBool>)
where
    L: Layer<BoxCloneService<u32, u32, BoxError>>,
    L::Service: tower::Service<u32, Response = u32, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static,
{
    let fail = Arc::new(AtomicBool::new(false));
    let failing = fail.clone();
    let inner = BoxCloneService::new(service_fn(move |n: u32| {
        let fail = failing.load(Ordering::SeqCst);
        async move {
            if fail {
                Err::<u32, BoxError>("down".into())
            } else {
                Ok(n)
            }
        }
    }));
    (BoxCloneService::new(layer.layer(inner)), fail)
}

async fn call(svc: &Svc, n: u32) -> Result<u32, BoxError> {
    svc.clone().oneshot(n).await
}

fn changes(events: &[Captured]) -> Vec<&Captured> {
    events
        .iter()
        .filter(|e| e.level <= Level::INFO && !e.message.starts_with("requests refused"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn opening_is_a_warn_and_each_refusal_a_debug_event_with_its_retry_after() {
    capture::start(LevelFilter::TRACE);
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(60))
        .component("db")
        .build()
        .unwrap();
    let (svc, fail) = behind(layer);
    fail.store(true, Ordering::SeqCst);
    call(&svc, 1).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(15)).await;
    call(&svc, 2).await.unwrap_err();

    let events = capture::take();
    only(&events, "circuit breaker opened").assert(
        Level::WARN,
        &[
            ("component", Some("db")),
            ("from", Some("closed")),
            ("to", Some("open")),
            ("reason", Some("consecutive_failures")),
            ("open_for_ms", Some("60000")),
            ("suppressed", Some("0")),
        ],
    );
    only(&events, "request refused by the circuit breaker").assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("kind", Some("circuit_open")),
            ("retry_after_ms", Some("45000")),
        ],
    );
    only(&events, "requests refused by the circuit breaker").assert(
        Level::INFO,
        &[
            ("component", Some("db")),
            ("kind", Some("circuit_open")),
            ("count", Some("1")),
            ("window_ms", Some("15000")),
        ],
    );
    assert_eq!(events.len(), 3, "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_refusals_write_one_summary_per_interval() {
    capture::start(LevelFilter::TRACE);
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    let (svc, fail) = behind(layer);
    fail.store(true, Ordering::SeqCst);
    call(&svc, 0).await.unwrap_err();
    // Above DEBUG: the opening and one summary.
    let (_, summary) = capture::assert_burst_summarised(
        10_000,
        2,
        "requests refused by the circuit breaker",
        Level::INFO,
        async || {
            call(&svc, 0).await.unwrap_err();
        },
    )
    .await;
    summary.assert(
        Level::INFO,
        &[
            ("window_ms", Some("10000")),
            ("retry_after_ms", Some("50000")),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_are_not_counted_for_a_summary_while_info_is_off() {
    capture::start(LevelFilter::WARN);
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let (svc, fail) = behind(layer);
    fail.store(true, Ordering::SeqCst);
    call(&svc, 0).await.unwrap_err();
    let events = capture::take();
    assert_eq!(events.len(), 1, "the opening only: {events:#?}");
    capture::assert_uncounted_while_off(
        "requests refused by the circuit breaker",
        Level::INFO,
        async || {
            call(&svc, 0).await.unwrap_err();
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn recovery_is_info_and_forcing_open_a_warn() {
    capture::start(LevelFilter::INFO);
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .component("db")
        .build()
        .unwrap();
    let handle = layer.handle();
    let (svc, fail) = behind(layer);
    fail.store(true, Ordering::SeqCst);
    call(&svc, 0).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    fail.store(false, Ordering::SeqCst);
    call(&svc, 0).await.unwrap();
    let events = capture::take();
    let changed: Vec<_> = events
        .iter()
        .filter(|e| e.message == "circuit breaker changed state")
        .collect();
    assert_eq!(changed.len(), 2, "{events:#?}");
    changed[0].assert(
        Level::INFO,
        &[
            ("component", Some("db")),
            ("from", Some("open")),
            ("to", Some("half_open")),
            ("reason", Some("open_duration_elapsed")),
        ],
    );
    changed[1].assert(
        Level::INFO,
        &[
            ("from", Some("half_open")),
            ("to", Some("closed")),
            ("reason", Some("probes_succeeded")),
        ],
    );

    // A fresh interval, so the four changes above do not use it up.
    tokio::time::advance(Duration::from_secs(10)).await;
    handle.force_open();
    capture::set_level(LevelFilter::TRACE);
    call(&svc, 0).await.unwrap_err();
    let events = capture::take();
    only(&events, "circuit breaker forced open").assert(
        Level::WARN,
        &[
            ("from", Some("closed")),
            ("to", Some("forced_open")),
            ("reason", Some("manual")),
        ],
    );
    only(&events, "request refused by the circuit breaker").assert(
        Level::DEBUG,
        &[("kind", Some("circuit_open")), ("retry_after_ms", None)],
    );
}

#[tokio::test(start_paused = true)]
async fn a_flapping_breaker_is_logged_a_few_times_per_interval() {
    capture::start(LevelFilter::INFO);
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_millis(100))
        .build()
        .unwrap();
    let (svc, fail) = behind(layer);
    fail.store(true, Ordering::SeqCst);
    // Opens, then 20 times: probes after 100 ms, and the probe fails.
    call(&svc, 0).await.unwrap_err();
    for _ in 0..20 {
        tokio::time::advance(Duration::from_millis(100)).await;
        call(&svc, 0).await.unwrap_err();
    }
    let events = capture::take();
    assert_eq!(
        changes(&events).len(),
        usize::from(CHANGES_PER_INTERVAL),
        "{events:#?}"
    );

    tokio::time::advance(Duration::from_secs(10)).await;
    call(&svc, 0).await.unwrap_err();
    let events = capture::take();
    let changed = changes(&events);
    let suppressed = 1 + 2 * 20 - u64::from(CHANGES_PER_INTERVAL);
    changed[0].assert(
        Level::INFO,
        &[
            ("to", Some("half_open")),
            ("suppressed", Some(&suppressed.to_string())),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn a_keyed_breakers_key_is_only_in_debug_events() {
    capture::start(LevelFilter::TRACE);
    let layer = CircuitBreakLayer::builder()
        .key(|n: &u32| Some(*n))
        .consecutive_failures(1)
        .component("db")
        .build()
        .unwrap();
    let (svc, fail) = behind(layer);
    fail.store(true, Ordering::SeqCst);
    call(&svc, 4242).await.unwrap_err();
    call(&svc, 4242).await.unwrap_err();

    let events = capture::take();
    only(&events, "keyed circuit breaker changed state").assert(
        Level::DEBUG,
        &[
            ("key", Some("4242")),
            ("from", Some("closed")),
            ("to", Some("open")),
        ],
    );
    only(&events, "a keyed circuit breaker opened").assert(
        Level::WARN,
        &[
            ("component", Some("db")),
            ("to", Some("open")),
            ("key", None),
        ],
    );
    // The key is not above DEBUG.
    capture::assert_none_contains(loud(&events), "4242");
}
