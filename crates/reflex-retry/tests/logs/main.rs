//! The `tracing` events of the retry layer, as a subscriber sees them:
//! their levels and fields, and how few lines a burst of budget refusals
//! writes.
//!
//! A test binary of its own: its subscriber is installed for the whole
//! process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reflex_core::{BoxError, Component, RejectKind, Rejected};
use reflex_retry::{Jitter, RetryLayer};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};
use tracing::Level;
use tracing::level_filters::LevelFilter;

use reflex_tests::capture::{self, only};

type Svc = BoxCloneService<u32, u32, BoxError>;

/// A service whose first `failures` calls fail with `error()`, behind
/// `layer`.
fn behind(
    layer: &RetryLayer,
    failures: u32,
    error: impl Fn() -> BoxError + Send + Sync + 'static,
) -> Svc {
    let calls = Arc::new(AtomicU32::new(0));
    let error = Arc::new(error);
    BoxCloneService::new(layer.layer(service_fn(move |n: u32| {
        let failed = calls.fetch_add(1, Ordering::SeqCst) < failures;
        let error = failed.then(|| error());
        async move {
            match error {
                Some(error) => Err::<u32, BoxError>(error),
                None => Ok(n),
            }
        }
    })))
}

fn down() -> BoxError {
    "down".into()
}

#[tokio::test(start_paused = true)]
async fn a_retry_and_how_the_retried_request_ended_are_debug_events() {
    capture::start(LevelFilter::TRACE);
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Duration::from_millis(250), 1.0)
        .jitter(Jitter::None)
        .no_budget()
        .component("db")
        .build()
        .unwrap();
    let svc = behind(&layer, 1, down);
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);

    let events = capture::take();
    only(&events, "retrying").assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("attempt", Some("2")),
            ("delay_ms", Some("250")),
            ("reason", Some("error")),
            ("retry_after_ms", None),
        ],
    );
    only(&events, "retried request ended").assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("attempts", Some("2")),
            ("recovered", Some("true")),
        ],
    );
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_wait_for_an_open_breaker_is_logged_with_its_retry_after() {
    capture::start(LevelFilter::DEBUG);
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .no_budget()
        .wait_for_open_breaker(Duration::from_secs(5))
        .build()
        .unwrap();
    let svc = behind(&layer, 1, || {
        Rejected::new(RejectKind::CircuitOpen, Component::new("db"))
            .with_retry_after(Duration::from_secs(3))
            .into()
    });
    svc.oneshot(1).await.unwrap();
    let events = capture::take();
    only(&events, "retrying").assert(
        Level::DEBUG,
        &[
            ("reason", Some("circuit_open")),
            ("delay_ms", Some("3000")),
            ("retry_after_ms", Some("3000")),
        ],
    );
}

/// A layer whose budget refuses every retry.
fn no_retries_allowed() -> RetryLayer {
    RetryLayer::builder()
        .max_attempts(2)
        .budget(0.0, 0, Duration::from_secs(10))
        .component("db")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_budget_refusals_write_one_summary_per_interval() {
    capture::start(LevelFilter::TRACE);
    let svc = behind(&no_retries_allowed(), u32::MAX, down);
    let (refused, summary) = capture::assert_burst_summarised(
        10_000,
        1,
        "retries refused by the retry budget",
        Level::WARN,
        async || {
            svc.clone().oneshot(0).await.unwrap_err();
        },
    )
    .await;
    refused.assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("kind", Some("retry_budget_exhausted")),
            ("attempt", Some("2")),
        ],
    );
    summary.assert(
        Level::WARN,
        &[
            ("component", Some("db")),
            ("kind", Some("retry_budget_exhausted")),
            ("window_ms", Some("10000")),
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn budget_refusals_are_not_counted_for_a_summary_while_warn_is_off() {
    capture::start(LevelFilter::ERROR);
    let svc = behind(&no_retries_allowed(), u32::MAX, down);
    capture::assert_uncounted_while_off(
        "retries refused by the retry budget",
        Level::WARN,
        async || {
            svc.clone().oneshot(0).await.unwrap_err();
        },
    )
    .await;
}
