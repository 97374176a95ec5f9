//! The `tracing` events of the slot layer, as a subscriber sees them: their
//! levels and fields, no key in any of them, and how few lines a burst of
//! refusals writes.
//!
//! A test binary of its own: its subscriber is installed for the whole
//! process.

use reflex_core::BoxError;
use reflex_slot::{Policy, SlotAdmissionLayer};
use tokio_test::{assert_pending, assert_ready};
use tower::Service;
use tower_test::mock;
use tracing::Level;
use tracing::level_filters::LevelFilter;

use reflex_tests::capture::{self, Captured, at, loud, only};
use reflex_tests::support::{over_mock, spawn_call};

/// The secret key of these tests: it must appear in no event.
const KEY: u32 = 4242;

/// A slot layer over a mock: `policy`, queues of `queue_limit`.
fn slots(
    policy: Policy,
    queue_limit: usize,
) -> (
    impl Service<u32, Response = u32, Error = BoxError>,
    mock::Handle<u32, u32>,
) {
    let layer = SlotAdmissionLayer::builder()
        .key(|n: &u32| Some(*n))
        .policy(policy)
        .queue_limit(queue_limit)
        .component("jobs")
        .build()
        .unwrap();
    over_mock(layer)
}

fn assert_no_key(events: &[Captured]) {
    capture::assert_none_contains(events, &KEY.to_string());
}

#[tokio::test(start_paused = true)]
async fn queueing_waiting_and_abandoning_are_debug_events() {
    capture::start(LevelFilter::TRACE);
    let (mut svc, mut inner) = slots(Policy::Queue, 8);
    let mut running = spawn_call(&mut svc, KEY).await;
    let mut next = spawn_call(&mut svc, KEY).await;
    let gone = spawn_call(&mut svc, KEY).await;
    drop(gone);
    assert_pending!(next.poll());
    let (_, answer) = inner.next_request().await.unwrap();
    answer.send_response(1);
    assert_eq!(assert_ready!(running.poll()).unwrap(), 1);
    assert_pending!(next.poll());

    let events = capture::take();
    let queued: Vec<_> = events
        .iter()
        .filter(|e| e.message == "request queued for its slot")
        .collect();
    assert_eq!(queued.len(), 2, "{events:#?}");
    queued[0].assert(
        Level::DEBUG,
        &[("component", Some("jobs")), ("depth", Some("1"))],
    );
    queued[1].assert(Level::DEBUG, &[("depth", Some("2"))]);
    only(&events, "queued requests abandoned by their callers").assert(
        Level::DEBUG,
        &[("component", Some("jobs")), ("count", Some("1"))],
    );
    only(&events, "queued request took its slot")
        .assert(Level::DEBUG, &[("component", Some("jobs"))]);
    assert_eq!(
        events.len(),
        4,
        "nothing for the idle slot's start: {events:#?}"
    );
    assert_no_key(&events);
}

#[tokio::test(start_paused = true)]
async fn a_replacement_is_a_debug_event() {
    capture::start(LevelFilter::TRACE);
    let (mut svc, _inner) = slots(Policy::Replace, 8);
    let mut running = spawn_call(&mut svc, KEY).await;
    let _newer = spawn_call(&mut svc, KEY).await;
    assert!(assert_ready!(running.poll()).is_err());
    let events = capture::take();
    only(&events, "request replaced by a newer one").assert(
        Level::DEBUG,
        &[
            ("component", Some("jobs")),
            ("kind", Some("replaced")),
            ("was_running", Some("true")),
        ],
    );
    assert!(loud(&events).is_empty(), "{events:#?}");
    assert_no_key(&events);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_busy_refusals_write_one_summary_per_interval() {
    capture::start(LevelFilter::TRACE);
    let (mut svc, _inner) = slots(Policy::DropIfRunning, 8);
    let _running = spawn_call(&mut svc, KEY).await;
    let (refused, summary) = capture::assert_burst_summarised(
        10_000,
        1,
        "requests refused: slot busy",
        Level::INFO,
        async || {
            assert!(assert_ready!(spawn_call(&mut svc, KEY).await.poll()).is_err());
        },
    )
    .await;
    refused.assert(
        Level::DEBUG,
        &[("component", Some("jobs")), ("kind", Some("slot_busy"))],
    );
    summary.assert(
        Level::INFO,
        &[("kind", Some("slot_busy")), ("window_ms", Some("10000"))],
    );
    assert_no_key(&[refused, summary]);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_queue_full_refusals_write_one_warn_summary() {
    capture::start(LevelFilter::DEBUG);
    let (mut svc, _inner) = slots(Policy::Queue, 1);
    let _running = spawn_call(&mut svc, KEY).await;
    let _waiting = spawn_call(&mut svc, KEY).await;
    capture::take();
    for _ in 0..10_000 {
        assert!(assert_ready!(spawn_call(&mut svc, KEY).await.poll()).is_err());
    }
    let events = capture::take();
    let refused = at(&events, Level::DEBUG);
    assert_eq!(refused.len(), 10_000);
    refused[0].assert(Level::DEBUG, &[("kind", Some("slot_queue_full"))]);
    only(&events, "requests refused: slot queues full").assert(
        Level::WARN,
        &[
            ("component", Some("jobs")),
            ("kind", Some("slot_queue_full")),
            ("count", Some("1")),
        ],
    );
    assert_eq!(events.len(), 10_001);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_not_counted_for_a_summary_while_their_level_is_off() {
    capture::start(LevelFilter::ERROR);
    let (mut svc, _inner) = slots(Policy::DropIfRunning, 8);
    let _running = spawn_call(&mut svc, KEY).await;
    capture::assert_uncounted_while_off("requests refused: slot busy", Level::INFO, async || {
        assert!(assert_ready!(spawn_call(&mut svc, KEY).await.poll()).is_err());
    })
    .await;
}
