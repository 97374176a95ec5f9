//! Per-key breakers: `CircuitBreakBuilder::build_keyed`.

use reflex_breaker::CircuitBreakLayer;
use reflex_core::{BoxError, BreakerState, ConfigErrorKind, RejectKind, Rejected};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Requests are `(key, fail)`; the key is the breaker's.
fn key_of(request: &(&'static str, bool)) -> Option<String> {
    (!request.0.is_empty()).then(|| request.0.to_owned())
}

async fn fails_or_echoes((key, fail): (&'static str, bool)) -> Result<&'static str, BoxError> {
    if fail { Err("down".into()) } else { Ok(key) }
}

#[tokio::test]
async fn each_key_has_its_own_breaker() {
    let layer = CircuitBreakLayer::builder()
        .component("api")
        .no_failure_rate()
        .consecutive_failures(2)
        // Room for both keys whatever shard they hash to: with 16 keys in
        // 16 shards of one, "a" (open, never evicted) and "b" share a
        // shard 1 time in 16 (the hasher is seeded per process), and "b"
        // falls back to the default breaker.
        .build_keyed(key_of, 1024)
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(fails_or_echoes));

    for _ in 0..2 {
        assert!(svc.ready().await.unwrap().call(("a", true)).await.is_err());
    }
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(("a", false))
        .await
        .unwrap_err();
    let rejected = Rejected::find(&*err).expect("a is open");
    assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
    assert_eq!(rejected.component().as_str(), "api/a");

    // b never failed: its breaker is its own, and closed.
    assert_eq!(
        svc.ready().await.unwrap().call(("b", false)).await.unwrap(),
        "b"
    );
    assert_eq!(
        handle.get(&"a".to_owned()).unwrap().state(),
        BreakerState::Open
    );
    assert_eq!(
        handle.get(&"b".to_owned()).unwrap().state(),
        BreakerState::Closed
    );
    assert_eq!(handle.len(), 2);
}

#[tokio::test]
async fn requests_without_a_key_share_the_default_breaker() {
    let layer = CircuitBreakLayer::builder()
        .no_failure_rate()
        .consecutive_failures(1)
        .build_keyed(key_of, 16)
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(fails_or_echoes));
    assert!(svc.ready().await.unwrap().call(("", true)).await.is_err());
    assert_eq!(handle.default_breaker().state(), BreakerState::Open);
    assert!(handle.is_empty(), "no key, no keyed breaker");
    assert_eq!(
        svc.ready().await.unwrap().call(("k", false)).await.unwrap(),
        "k"
    );
}

#[tokio::test]
async fn a_hundred_thousand_keys_seen_one_after_another_keep_at_most_max_keys_breakers() {
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(3)
        .build_keyed(|n: &u32| Some(*n), 64)
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    for n in 0..100_000u32 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    }
    assert!(handle.len() <= 64, "kept {}", handle.len());
    assert!(
        handle.len() >= 16,
        "evicts only what it must: kept {}",
        handle.len()
    );
}

#[tokio::test]
async fn an_open_breaker_is_never_evicted_and_new_keys_fall_back_to_the_default() {
    let layer = CircuitBreakLayer::builder()
        .no_failure_rate()
        .consecutive_failures(1)
        .build_keyed(key_of, 1)
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(fails_or_echoes));
    assert!(svc.ready().await.unwrap().call(("a", true)).await.is_err());
    assert_eq!(
        handle.get(&"a".to_owned()).unwrap().state(),
        BreakerState::Open
    );

    // No room, and a is open: b goes through the default breaker.
    assert_eq!(
        svc.ready().await.unwrap().call(("b", false)).await.unwrap(),
        "b"
    );
    assert_eq!(handle.keys(), vec!["a".to_owned()]);
    assert_eq!(
        handle.default_breaker().metrics().calls,
        0,
        "consecutive only: no window"
    );
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(("a", false))
        .await
        .unwrap_err();
    assert_eq!(
        Rejected::find(&*err).unwrap().kind(),
        RejectKind::CircuitOpen,
        "a is still open"
    );

    // Reset by hand, a is idle again and can make room.
    handle.get(&"a".to_owned()).unwrap().reset();
    assert_eq!(
        svc.ready().await.unwrap().call(("c", false)).await.unwrap(),
        "c"
    );
    assert_eq!(handle.keys(), vec!["c".to_owned()]);
}

#[tokio::test]
async fn a_breaker_with_a_call_in_flight_is_not_evicted() {
    let layer = CircuitBreakLayer::builder()
        .build_keyed(|key: &&'static str| Some(*key), 1)
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = tower_test::mock::spawn_layer::<&'static str, (), _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let mut held = tokio_test::task::spawn(svc.call("a"));
    assert_pending!(held.poll());
    assert_ready_ok!(svc.poll_ready());
    let _other = svc.call("b");
    assert_eq!(
        handle.keys(),
        vec!["a"],
        "a is busy: b used the default breaker"
    );
    inner.next_request().await.unwrap().1.send_response(());
    assert_ready_ok!(held.poll());
}

#[test]
fn zero_max_keys_is_a_config_error() {
    let err = CircuitBreakLayer::builder()
        .build_keyed(|n: &u32| Some(*n), 0)
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Zero);
    assert_eq!(err.setting(), "max_keys");
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_nobody_came_back_to_probe_is_evicted_after_its_open_duration() {
    let layer = CircuitBreakLayer::builder()
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(std::time::Duration::from_secs(10))
        .build_keyed(key_of, 1)
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(fails_or_echoes));
    assert!(svc.ready().await.unwrap().call(("a", true)).await.is_err());
    // Still open: b must use the default breaker.
    assert_eq!(
        svc.ready().await.unwrap().call(("b", false)).await.unwrap(),
        "b"
    );
    assert_eq!(handle.keys(), vec!["a".to_owned()]);
    // Its open duration over and nobody probing: a makes room for c.
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert_eq!(
        svc.ready().await.unwrap().call(("c", false)).await.unwrap(),
        "c"
    );
    assert_eq!(handle.keys(), vec!["c".to_owned()]);
}

#[tokio::test]
async fn a_breaker_set_by_hand_is_never_evicted() {
    let layer = CircuitBreakLayer::builder().build_keyed(key_of, 1).unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(fails_or_echoes));
    assert_eq!(
        svc.ready().await.unwrap().call(("a", false)).await.unwrap(),
        "a"
    );
    handle.get(&"a".to_owned()).unwrap().disable();
    assert_eq!(
        svc.ready().await.unwrap().call(("b", false)).await.unwrap(),
        "b"
    );
    assert_eq!(
        handle.keys(),
        vec!["a".to_owned()],
        "a's manual state is kept"
    );
    assert_eq!(
        handle.get(&"a".to_owned()).unwrap().state(),
        BreakerState::Disabled
    );
}
