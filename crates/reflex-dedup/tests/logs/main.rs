//! The `tracing` events of the dedup layer, as a subscriber sees them:
//! their levels and fields, no key in any of them, and how few lines a
//! burst of refusals or wait timeouts writes.
//!
//! A test binary of its own: its subscriber is installed for the whole
//! process.

use std::time::Duration;

use reflex_dedup::{DedupBuilder, Share};
use tokio_test::{assert_pending, assert_ready};
use tower_test::mock;
use tracing::Level;
use tracing::level_filters::LevelFilter;

use reflex_tests::capture::{self, Captured, at, loud, only};
use reflex_tests::support::{over_mock, spawn_call};

/// Shares even answers only, and weighs an answer by its value.
#[derive(Clone, Copy)]
struct EvenShared;

impl Share<u32> for EvenShared {
    type Shared = u32;
    fn share(&self, response: u32) -> Result<u32, u32> {
        if response % 2 == 0 {
            Ok(response)
        } else {
            Err(response)
        }
    }
    fn unshare(&self, shared: &u32) -> u32 {
        *shared
    }
    fn weight(&self, shared: &u32) -> usize {
        *shared as usize
    }
}

fn builder() -> DedupBuilder<u32, u32, impl Fn(&u32) -> Option<u32> + Clone> {
    reflex_dedup::DedupLayer::builder()
        .key(|n: &u32| Some(*n))
        .component("db")
}

/// Answers the next request the mock gets with `n`.
async fn respond(inner: &mut mock::Handle<u32, u32>, n: u32) {
    let (_, send) = inner.next_request().await.unwrap();
    send.send_response(n);
}

/// The secret key of these tests: it must appear in no event.
const KEY: u32 = 4242;

fn assert_no_key(events: &[Captured]) {
    capture::assert_none_contains(events, &KEY.to_string());
}

#[tokio::test(start_paused = true)]
async fn joining_a_call_and_a_cache_hit_are_trace_events() {
    capture::start(LevelFilter::TRACE);
    let layer = builder().cache(Duration::from_secs(60), 1).build().unwrap();
    let (mut svc, mut inner) = over_mock(layer);
    let mut leader = spawn_call(&mut svc, KEY).await;
    let mut follower = spawn_call(&mut svc, KEY).await;
    assert_pending!(follower.poll());
    respond(&mut inner, 1).await;
    assert_eq!(assert_ready!(leader.poll()).unwrap(), 1);
    assert_eq!(assert_ready!(follower.poll()).unwrap(), 1);
    let mut cached = spawn_call(&mut svc, KEY).await;
    assert_eq!(assert_ready!(cached.poll()).unwrap(), 1);

    let events = capture::take();
    only(&events, "request joined a shared call").assert(
        Level::TRACE,
        &[("component", Some("db")), ("waiters", Some("2"))],
    );
    only(&events, "request answered from the cache").assert(
        Level::TRACE,
        &[("component", Some("db")), ("stale", Some("false"))],
    );
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_no_key(&events);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_leaves_and_a_follower_that_calls_alone_are_debug_events() {
    capture::start(LevelFilter::DEBUG);
    let layer = builder().share(EvenShared).build().unwrap();
    let (mut svc, mut inner) = over_mock(layer);
    let leader = spawn_call(&mut svc, KEY).await;
    let mut follower = spawn_call(&mut svc, KEY).await;
    assert_pending!(follower.poll());
    drop(leader);
    respond(&mut inner, 2).await;
    assert_eq!(assert_ready!(follower.poll()).unwrap(), 2);
    let events = capture::take();
    only(
        &events,
        "leader left: the shared call goes on for the others",
    )
    .assert(Level::DEBUG, &[("component", Some("db"))]);
    assert_eq!(events.len(), 1, "{events:#?}");

    // An odd answer is not shared: the leader takes it, the follower makes
    // its own call.
    let mut leader = spawn_call(&mut svc, KEY).await;
    let mut follower = spawn_call(&mut svc, KEY).await;
    assert_pending!(follower.poll());
    respond(&mut inner, 1).await;
    assert_eq!(assert_ready!(leader.poll()).unwrap(), 1);
    assert_pending!(follower.poll());
    respond(&mut inner, 3).await;
    assert_eq!(assert_ready!(follower.poll()).unwrap(), 3);
    let events = capture::take();
    only(
        &events,
        "answer not shareable: a follower makes its own call",
    )
    .assert(Level::DEBUG, &[("component", Some("db"))]);
    assert_eq!(events.len(), 1, "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn what_the_cache_cannot_keep_is_a_debug_event_and_evictions_trace() {
    capture::start(LevelFilter::TRACE);
    let layer = builder()
        .share(EvenShared)
        .cache(Duration::from_secs(60), 1)
        .cache_max_bytes(10)
        .build()
        .unwrap();
    let (mut svc, mut inner) = over_mock(layer);
    for (key, answer) in [(KEY, 100), (1, 2), (3, 4)] {
        let mut request = spawn_call(&mut svc, key).await;
        respond(&mut inner, answer).await;
        assert_eq!(assert_ready!(request.poll()).unwrap(), answer);
    }
    let events = capture::take();
    only(
        &events,
        "answer not cached: over the byte bound or no age left",
    )
    .assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("weight", Some("100")),
            ("max_bytes", Some("10")),
            ("ttl_ms", Some("60000")),
        ],
    );
    only(&events, "cache evicted its oldest answers").assert(
        Level::TRACE,
        &[("component", Some("db")), ("evicted", Some("1"))],
    );
    assert_no_key(&events);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_wait_timeouts_write_one_summary_per_interval() {
    capture::start(LevelFilter::DEBUG);
    let layer = builder()
        .wait_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (mut svc, _inner) = over_mock::<_, u32, u32>(layer);
    // 5000 calls, each with a leader and a follower.
    let mut waiters = Vec::new();
    for key in (KEY..).take(5_000) {
        for _ in 0..2 {
            let mut waiter = spawn_call(&mut svc, key).await;
            assert_pending!(waiter.poll());
            waiters.push(waiter);
        }
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    // Unconstrained: tokio's cooperative budget would make the timer of
    // the 129th waiter polled in one go say it is pending.
    tokio::task::unconstrained(async {
        for waiter in &mut waiters {
            assert!(assert_ready!(waiter.poll()).is_err());
        }
    })
    .await;
    let events = capture::take();
    let timeouts = at(&events, Level::DEBUG);
    assert_eq!(timeouts.len(), 10_000);
    timeouts[0].assert(
        Level::DEBUG,
        &[
            ("component", Some("db")),
            ("kind", Some("wait_timeout")),
            ("timeout_ms", Some("1000")),
            ("leader", Some("true")),
        ],
    );
    timeouts[1].assert(Level::DEBUG, &[("leader", Some("false"))]);
    let loud = loud(&events);
    assert_eq!(loud.len(), 1, "one summary in the interval: {loud:#?}");

    tokio::time::advance(Duration::from_secs(10)).await;
    let mut late = spawn_call(&mut svc, 1).await;
    assert_pending!(late.poll());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(assert_ready!(late.poll()).is_err());
    let events = capture::take();
    only(&events, "waits on shared calls timed out").assert(
        Level::WARN,
        &[
            ("kind", Some("wait_timeout")),
            ("count", Some("10000")),
            ("window_ms", Some("11000")),
            ("timeout_ms", Some("1000")),
        ],
    );
    assert_no_key(&events);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_debug_events_summed_up_once_per_interval() {
    capture::start(LevelFilter::DEBUG);
    let layer = builder().refuse_duplicates().max_keys(1).build().unwrap();
    let (mut svc, _inner) = over_mock::<_, u32, u32>(layer);
    let _leader = spawn_call(&mut svc, KEY).await;
    for _ in 0..10_000 {
        assert!(assert_ready!(spawn_call(&mut svc, KEY).await.poll()).is_err());
        assert!(assert_ready!(spawn_call(&mut svc, 1).await.poll()).is_err());
    }
    let events = capture::take();
    let refused = at(&events, Level::DEBUG);
    assert_eq!(refused.len(), 20_000);
    refused[0].assert(
        Level::DEBUG,
        &[("component", Some("db")), ("kind", Some("in_progress"))],
    );
    refused[1].assert(Level::DEBUG, &[("kind", Some("dedup_full"))]);
    only(
        &events,
        "requests refused by dedup: identical request in progress",
    )
    .assert(
        Level::INFO,
        &[("kind", Some("in_progress")), ("count", Some("1"))],
    );
    only(
        &events,
        "requests refused by dedup: too many distinct keys in flight",
    )
    .assert(
        Level::WARN,
        &[("kind", Some("dedup_full")), ("count", Some("1"))],
    );
    assert_eq!(events.len(), 20_002, "two summaries in the interval");
    assert_no_key(&events);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_not_counted_for_a_summary_while_their_level_is_off() {
    capture::start(LevelFilter::ERROR);
    let layer = builder().max_keys(1).build().unwrap();
    let (mut svc, _inner) = over_mock::<_, u32, u32>(layer);
    let _leader = spawn_call(&mut svc, KEY).await;
    capture::assert_uncounted_while_off(
        "requests refused by dedup: too many distinct keys in flight",
        Level::WARN,
        async || {
            assert!(assert_ready!(spawn_call(&mut svc, 1).await.poll()).is_err());
        },
    )
    .await;
}
