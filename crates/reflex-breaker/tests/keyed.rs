//! Per-key breakers: `CircuitBreakBuilder::key`, then `build()`.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use reflex_breaker::{CircuitBreakBuilder, CircuitBreakLayer, KeyedBreakerHandle};
use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, BreakerState, Component, ConfigErrorKind, RejectKind, Rejected, Signal,
    TransitionReason,
};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Requests are `(key, fail)`; the key is the breaker's.
fn key_of(request: &(&'static str, bool)) -> Option<String> {
    (!request.0.is_empty()).then(|| request.0.to_owned())
}

async fn fails_or_echoes((key, fail): (&'static str, bool)) -> Result<&'static str, BoxError> {
    if fail { Err("down".into()) } else { Ok(key) }
}

/// A breaker per name ([`key_of`]) from `builder`, at most `max_keys` of
/// them, around [`fails_or_echoes`]: its handle and its service.
fn by_name(
    builder: CircuitBreakBuilder,
    max_keys: usize,
) -> (
    KeyedBreakerHandle<String>,
    impl Service<(&'static str, bool), Response = &'static str, Error = BoxError>,
) {
    let layer = builder.key(key_of).max_keys(max_keys).build().unwrap();
    (layer.handle(), layer.layer(service_fn(fails_or_echoes)))
}

/// The state of the breaker kept for `key`.
fn state_of(handle: &KeyedBreakerHandle<String>, key: &str) -> BreakerState {
    handle.get(&key.to_owned()).expect("kept").state()
}

/// One request through `svc`, once it is ready.
async fn send<S, Req>(svc: &mut S, request: Req) -> Result<S::Response, BoxError>
where
    S: Service<Req, Error = BoxError>,
{
    svc.ready().await.unwrap().call(request).await
}

#[tokio::test]
async fn each_key_has_its_own_breaker() {
    let (handle, mut svc) = by_name(
        CircuitBreakLayer::builder()
            .component("api")
            .consecutive_failures(2),
        2,
    );

    for _ in 0..2 {
        assert!(send(&mut svc, ("a", true)).await.is_err());
    }
    let err = send(&mut svc, ("a", false)).await.unwrap_err();
    let rejected = Rejected::find(&*err).expect("a is open");
    assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
    assert_eq!(
        rejected.component().as_str(),
        "api",
        "a key is not a component"
    );

    // b never failed: its breaker is its own, and closed.
    assert_eq!(send(&mut svc, ("b", false)).await.unwrap(), "b");
    assert_eq!(state_of(&handle, "a"), BreakerState::Open);
    assert_eq!(state_of(&handle, "b"), BreakerState::Closed);
    assert_eq!(handle.len(), 2);
}

#[tokio::test]
async fn requests_without_a_key_share_the_default_breaker() {
    let (handle, mut svc) = by_name(CircuitBreakLayer::builder().consecutive_failures(1), 16);
    assert!(send(&mut svc, ("", true)).await.is_err());
    assert_eq!(handle.default_breaker().state(), BreakerState::Open);
    assert!(handle.is_empty(), "no key, no keyed breaker");
    assert_eq!(send(&mut svc, ("k", false)).await.unwrap(), "k");
}

#[tokio::test]
async fn a_hundred_thousand_keys_seen_one_after_another_keep_at_most_max_keys_breakers() {
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(3)
        .key(|n: &u32| Some(*n))
        .max_keys(64)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    for n in 0..100_000u32 {
        assert_eq!(send(&mut svc, n).await.unwrap(), n);
    }
    assert_eq!(
        handle.len(),
        64,
        "never more than max_keys, and evicts only what it must"
    );
}

#[tokio::test]
async fn an_open_breaker_is_never_evicted_and_new_keys_fall_back_to_the_default() {
    let (handle, mut svc) = by_name(CircuitBreakLayer::builder().consecutive_failures(1), 1);
    assert!(send(&mut svc, ("a", true)).await.is_err());
    assert_eq!(state_of(&handle, "a"), BreakerState::Open);

    // No room, and a is open: b goes through the default breaker.
    assert_eq!(send(&mut svc, ("b", false)).await.unwrap(), "b");
    assert_eq!(handle.keys(), vec!["a".to_owned()]);
    assert_eq!(
        handle.default_breaker().metrics().calls,
        0,
        "consecutive only: no window"
    );
    let err = send(&mut svc, ("a", false)).await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).unwrap().kind(),
        RejectKind::CircuitOpen,
        "a is still open"
    );

    // Reset by hand, a is idle again and can make room.
    handle.get(&"a".to_owned()).unwrap().reset();
    assert_eq!(send(&mut svc, ("c", false)).await.unwrap(), "c");
    assert_eq!(handle.keys(), vec!["c".to_owned()]);
}

#[tokio::test]
async fn a_breaker_with_a_call_in_flight_is_not_evicted() {
    let layer = CircuitBreakLayer::builder()
        .key(|key: &&'static str| Some(*key))
        .max_keys(1)
        .build()
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
        .key(|n: &u32| Some(*n))
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Zero);
    assert_eq!(err.setting(), "max_keys");
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_nobody_came_back_to_probe_is_evicted_after_its_open_duration() {
    let (handle, mut svc) = by_name(
        CircuitBreakLayer::builder()
            .consecutive_failures(1)
            .open_duration(std::time::Duration::from_secs(10)),
        1,
    );
    assert!(send(&mut svc, ("a", true)).await.is_err());
    // Still open: b must use the default breaker.
    assert_eq!(send(&mut svc, ("b", false)).await.unwrap(), "b");
    assert_eq!(handle.keys(), vec!["a".to_owned()]);
    // Its open duration over and nobody probing: a makes room for c.
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert_eq!(send(&mut svc, ("c", false)).await.unwrap(), "c");
    assert_eq!(handle.keys(), vec!["c".to_owned()]);
}

#[tokio::test]
async fn a_breaker_set_by_hand_is_never_evicted() {
    let (handle, mut svc) = by_name(CircuitBreakLayer::builder(), 1);
    assert_eq!(send(&mut svc, ("a", false)).await.unwrap(), "a");
    handle.get(&"a".to_owned()).unwrap().disable();
    assert_eq!(send(&mut svc, ("b", false)).await.unwrap(), "b");
    assert_eq!(
        handle.keys(),
        vec!["a".to_owned()],
        "a's manual state is kept"
    );
    assert_eq!(state_of(&handle, "a"), BreakerState::Disabled);
}

#[tokio::test(start_paused = true)]
async fn a_full_layer_with_every_breaker_busy_sends_new_keys_to_the_default_breaker() {
    let layer = CircuitBreakLayer::builder()
        .key(|n: &u32| Some(*n))
        .max_keys(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    // Keys 0 and 1 never answer: their breakers stay busy.
    let mut svc = layer.layer(service_fn(|n: u32| async move {
        if n < 2 {
            std::future::pending::<()>().await;
        }
        Ok::<_, BoxError>(n)
    }));
    let held: Vec<_> = (0..2).map(|n| svc.call(n)).collect();
    for n in 2..102 {
        assert_eq!(send(&mut svc, n).await.unwrap(), n);
    }
    let metrics = handle.metrics();
    assert_eq!((metrics.keys, metrics.max_keys), (2, 2));
    assert_eq!(metrics.evictions_total, 0);
    assert_eq!(metrics.overflowed_total, 100);
    assert_eq!(
        metrics.default_breaker.calls, 100,
        "the default breaker counted them"
    );
    let mut keys = handle.keys();
    keys.sort_unstable();
    assert_eq!(keys, vec![0, 1]);

    // The calls end: their breakers are idle, and a new key takes a place
    // (at once, or within the 10 ms a fruitless search is not repeated).
    drop(held);
    tokio::time::advance(std::time::Duration::from_millis(10)).await;
    assert_eq!(send(&mut svc, 500).await.unwrap(), 500);
    assert!(handle.get(&500).is_some());
    assert_eq!(handle.metrics().evictions_total, 1);
    assert_eq!(handle.metrics().overflowed_total, 100);
}

#[test]
fn a_keyed_layer_keeps_1024_keys_unless_told_otherwise() {
    let layer = CircuitBreakLayer::builder()
        .key(|n: &u32| Some(*n))
        .build()
        .unwrap();
    assert_eq!(layer.handle().metrics().max_keys, 1024);
}

// === the bound is the layer's, not a shard's ===

/// Requests are `(key, fail)` with numbered keys.
async fn numbered((key, fail): (u32, bool)) -> Result<u32, BoxError> {
    if fail { Err("down".into()) } else { Ok(key) }
}

fn numbered_key(request: &(u32, bool)) -> Option<u32> {
    Some(request.0)
}

/// A breaker per number, each tripping on its first failure, at most
/// `max_keys` of them, around [`numbered`]: its handle and its service.
fn by_number(
    max_keys: usize,
) -> (
    KeyedBreakerHandle<u32>,
    impl Service<(u32, bool), Response = u32, Error = BoxError>,
) {
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .key(numbered_key)
        .max_keys(max_keys)
        .build()
        .unwrap();
    (layer.handle(), layer.layer(service_fn(numbered)))
}

#[tokio::test]
async fn every_key_up_to_max_keys_gets_a_breaker_of_its_own() {
    let (handle, mut svc) = by_number(16);
    for key in 0..16 {
        assert_eq!(send(&mut svc, (key, false)).await.unwrap(), key);
    }
    let kept: BTreeSet<u32> = handle.keys().into_iter().collect();
    assert_eq!(kept, (0..16).collect(), "all 16 keys are kept");

    // Trip key 5: only key 5 is open.
    assert!(send(&mut svc, (5, true)).await.is_err());
    for key in 0..16 {
        let expected = if key == 5 {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        assert_eq!(handle.get(&key).unwrap().state(), expected, "key {key}");
        let answer = send(&mut svc, (key, false)).await;
        assert_eq!(answer.is_ok(), key != 5, "key {key}");
    }
    assert_eq!(handle.default_breaker().state(), BreakerState::Closed);
    assert_eq!(
        handle.default_breaker().metrics().transitions_total,
        0,
        "never used"
    );
}

#[tokio::test]
async fn the_key_past_max_keys_evicts_exactly_one_idle_breaker() {
    let (handle, mut svc) = by_number(16);
    for key in 0..17 {
        send(&mut svc, (key, false)).await.unwrap();
    }
    let kept: BTreeSet<u32> = handle.keys().into_iter().collect();
    assert_eq!(kept.len(), 16);
    assert!(kept.contains(&16), "the new key is kept");
    assert_eq!(
        (0..16).filter(|key| !kept.contains(key)).count(),
        1,
        "one evicted"
    );
}

#[tokio::test]
async fn a_new_key_evicts_the_one_idle_breaker_wherever_it_is_kept() {
    let (handle, mut svc) = by_number(16);
    // 15 keys open (never evicted within their open duration), key 15
    // closed: whatever shard key 16 hashes to, key 15 must make room.
    for key in 0..15 {
        assert!(send(&mut svc, (key, true)).await.is_err());
    }
    send(&mut svc, (15, false)).await.unwrap();
    assert_eq!(handle.len(), 16);
    send(&mut svc, (16, true)).await.unwrap_err();
    let kept: BTreeSet<u32> = handle.keys().into_iter().collect();
    assert_eq!(kept, (0..15).chain([16]).collect());
    assert_eq!(
        handle.get(&16).unwrap().state(),
        BreakerState::Open,
        "its own breaker"
    );
    assert_eq!(handle.default_breaker().state(), BreakerState::Closed);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_max_keys_keeps_every_key_up_to_it_each_with_its_own_state(
        max_keys in 1usize..200,
        keys in prop::collection::vec(0u32..400, 1..300),
        tripped in any::<prop::sample::Index>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (handle, mut svc) = by_number(max_keys);
            let mut distinct = BTreeSet::new();
            for &key in &keys {
                prop_assert_eq!(send(&mut svc, (key, false)).await.unwrap(), key);
                distinct.insert(key);
                prop_assert_eq!(handle.len(), distinct.len().min(max_keys));
            }
            let kept: BTreeSet<u32> = handle.keys().into_iter().collect();
            if distinct.len() <= max_keys {
                prop_assert_eq!(&kept, &distinct, "every key is kept");
            } else {
                prop_assert!(kept.is_subset(&distinct));
            }
            // Trip one kept key: it alone is open.
            let kept: Vec<u32> = kept.into_iter().collect();
            let victim = kept[tripped.index(kept.len())];
            prop_assert!(send(&mut svc, (victim, true)).await.is_err());
            for &key in &kept {
                let state = handle.get(&key).unwrap().state();
                if key == victim {
                    prop_assert_eq!(state, BreakerState::Open);
                } else {
                    prop_assert_eq!(state, BreakerState::Closed, "key {}", key);
                }
            }
            prop_assert_eq!(handle.default_breaker().state(), BreakerState::Closed);
            Ok(())
        })?;
    }
}

// === keys are not components ===

#[tokio::test]
async fn three_hundred_keys_tripping_report_keyed_transitions_under_the_one_component() {
    let recorder = Arc::new(Recorder::with_capacity(10_000));
    let layer = CircuitBreakLayer::builder()
        .component("api")
        .sink(recorder.clone())
        .consecutive_failures(1)
        .key(|(key, _): &(Option<u32>, bool)| *key)
        .max_keys(512)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|(key, fail): (Option<u32>, bool)| async move {
        if fail {
            Err::<_, BoxError>("down".into())
        } else {
            Ok(key)
        }
    }));
    for key in (0..300).map(Some).chain([None]) {
        assert!(send(&mut svc, (key, true)).await.is_err());
        let err = send(&mut svc, (key, false)).await.unwrap_err();
        let rejected = Rejected::find(&*err).expect("open");
        assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
        assert_eq!(rejected.component().as_str(), "api", "key {key:?}");
    }
    assert_eq!(handle.len(), 300);
    // A manual change of one key's breaker is a keyed transition too.
    handle.get(&7).unwrap().reset();
    assert_eq!(handle.get(&7).unwrap().component().as_str(), "api");

    let signals = recorder.signals();
    assert_eq!(
        signals.len(),
        302,
        "300 keys and the default tripped, one reset"
    );
    for (component, signal) in &signals {
        assert_eq!(component, &Component::new("api"));
        assert!(
            matches!(signal, Signal::KeyedBreakerTransition { .. }),
            "not a keyed transition: {signal:?}"
        );
    }
    let trips = signals
        .iter()
        .filter(|(_, signal)| {
            *signal
                == Signal::KeyedBreakerTransition {
                    from: BreakerState::Closed,
                    to: BreakerState::Open,
                    reason: TransitionReason::ConsecutiveFailures,
                }
        })
        .count();
    assert_eq!(trips, 301);
}
