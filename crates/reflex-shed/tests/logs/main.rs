//! The `tracing` events of the shed layer, as a subscriber sees them: their
//! levels and fields, and how few lines a burst of sheds or a flapping soft
//! limit writes.
//!
//! A test binary of its own: its subscriber is installed for the whole
//! process.

use std::time::Duration;

use reflex_core::log_limit::CHANGES_PER_INTERVAL;
use reflex_shed::{ConcurrencyShed, ConcurrencyShedLayer, ShedHandle};
use tokio_test::assert_ready_ok;
use tower_test::mock;
use tracing::Level;
use tracing::level_filters::LevelFilter;

use reflex_tests::capture::{self, at, only};

type Shed = mock::Spawn<ConcurrencyShed<mock::Mock<(), ()>>>;

/// A shed service over a mock, the mock's handle and the layer's.
fn shed_service(hard_limit: usize) -> (Shed, mock::Handle<(), ()>, ShedHandle) {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(hard_limit)
        .retry_after(Duration::from_millis(2500))
        .component("db")
        .build()
        .unwrap();
    let handle = layer.handle();
    let (svc, inner) = mock::spawn_layer(layer);
    (svc, inner, handle)
}

#[tokio::test(start_paused = true)]
async fn a_shed_request_is_a_debug_event_and_the_first_shed_a_warn_summary() {
    capture::start(LevelFilter::TRACE);
    let (mut svc, _inner, _) = shed_service(1);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    assert_ready_ok!(svc.poll_ready());
    let _shed = svc.call(());

    let events = capture::take();
    only(&events, "request shed").assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("kind", Some("shed")),
            ("in_flight", Some("1")),
            ("hard_limit", Some("1")),
            ("retry_after_ms", Some("2500")),
        ],
    );
    only(&events, "requests shed").assert(
        Level::WARN,
        &[
            ("component", Some("db")),
            ("kind", Some("shed")),
            ("count", Some("1")),
            ("window_ms", Some("0")),
            ("hard_limit", Some("1")),
        ],
    );
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_sheds_write_one_summary_per_interval() {
    capture::start(LevelFilter::TRACE);
    let (mut svc, _inner, handle) = shed_service(1);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    for _ in 0..10_000 {
        assert_ready_ok!(svc.poll_ready());
        drop(svc.call(()));
    }
    let events = capture::take();
    assert_eq!(at(&events, Level::DEBUG).len(), 10_000);
    let loud: Vec<_> = events.iter().filter(|e| e.level < Level::DEBUG).collect();
    assert_eq!(loud.len(), 1, "one summary in the interval: {loud:#?}");

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_ready_ok!(svc.poll_ready());
    drop(svc.call(()));
    let events = capture::take();
    only(&events, "requests shed").assert(
        Level::WARN,
        &[("count", Some("10000")), ("window_ms", Some("10000"))],
    );
    assert_eq!(handle.metrics().shed_total, 10_001);
}

#[tokio::test(start_paused = true)]
async fn sheds_are_not_counted_for_a_summary_while_warn_is_off() {
    capture::start(LevelFilter::ERROR);
    let (mut svc, _inner, _) = shed_service(1);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    for _ in 0..10_000 {
        assert_ready_ok!(svc.poll_ready());
        drop(svc.call(()));
    }
    assert!(capture::take().is_empty());

    capture::set_level(LevelFilter::WARN);
    assert_ready_ok!(svc.poll_ready());
    drop(svc.call(()));
    let events = capture::take();
    only(&events, "requests shed").assert(Level::WARN, &[("count", Some("1"))]);
}

#[tokio::test(start_paused = true)]
async fn soft_limit_excursions_and_limit_changes_are_warn_and_info_events() {
    capture::start(LevelFilter::INFO);
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .soft_limit(2)
        .component("db")
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    let mut held = Vec::new();
    while held.len() < 3 {
        assert_ready_ok!(svc.poll_ready());
        held.push(svc.call(()));
    }
    held.truncate(1);
    handle.set_hard_limit(16).unwrap();

    let events = capture::take();
    only(&events, "in-flight requests above the soft limit").assert(
        Level::WARN,
        &[
            ("component", Some("db")),
            ("in_flight", Some("3")),
            ("soft_limit", Some("2")),
            ("hard_limit", Some("8")),
            ("suppressed", Some("0")),
        ],
    );
    only(&events, "in-flight requests back under the soft limit").assert(
        Level::INFO,
        &[
            ("component", Some("db")),
            ("in_flight", Some("1")),
            ("soft_limit", Some("2")),
        ],
    );
    only(&events, "hard limit changed").assert(
        Level::INFO,
        &[
            ("component", Some("db")),
            ("from", Some("8")),
            ("to", Some("16")),
        ],
    );
    assert_eq!(events.len(), 3, "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_flapping_soft_limit_is_logged_a_few_times_per_interval() {
    capture::start(LevelFilter::INFO);
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .soft_limit(2)
        .build()
        .unwrap();
    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    // 100 excursions: above the soft limit, and back to half of it.
    for _ in 0..100 {
        let mut held = Vec::new();
        while held.len() < 3 {
            assert_ready_ok!(svc.poll_ready());
            held.push(svc.call(()));
        }
    }
    let events = capture::take();
    assert_eq!(
        events.len(),
        usize::from(CHANGES_PER_INTERVAL),
        "{events:#?}"
    );

    tokio::time::advance(Duration::from_secs(10)).await;
    let mut held = Vec::new();
    while held.len() < 3 {
        assert_ready_ok!(svc.poll_ready());
        held.push(svc.call(()));
    }
    let events = capture::take();
    let suppressed = 200 - u64::from(CHANGES_PER_INTERVAL);
    only(&events, "in-flight requests above the soft limit").assert(
        Level::WARN,
        &[("suppressed", Some(&suppressed.to_string()))],
    );
}
