//! Public behaviour of `ConcurrencyShedLayer`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reflex_core::signal::Recorder;
use reflex_core::{BoxError, Component, ConfigErrorKind, RejectKind, Rejected, Signal};
use reflex_shed::{ConcurrencyShed, ConcurrencyShedLayer, DEFAULT_RETRY_AFTER};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn layer(hard: usize) -> ConcurrencyShedLayer {
    ConcurrencyShedLayer::builder()
        .hard_limit(hard)
        .component("db")
        .build()
        .unwrap()
}

type Svc = tower_test::mock::Spawn<ConcurrencyShed<mock::Mock<u32, u32>>>;
type Response =
    tokio_test::task::Spawn<reflex_shed::future::ResponseFuture<mock::future::ResponseFuture<u32>>>;

/// Drives `svc` ready and calls it.
fn call(svc: &mut Svc, n: u32) -> Response {
    assert_ready_ok!(svc.poll_ready());
    tokio_test::task::spawn(svc.call(n))
}

fn rejection(err: &BoxError) -> &Rejected {
    Rejected::find(&**err).unwrap_or_else(|| panic!("not a rejection: {err:?}"))
}

#[tokio::test]
async fn shed_refuses_the_request_over_the_hard_limit_at_once() {
    let layer = layer(2);
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(svc.poll_ready());
    let mut first = tokio_test::task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut second = tokio_test::task::spawn(svc.call("b"));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert_eq!(handle.metrics().in_flight, 2);

    // The third is refused by a future that is ready on its first poll.
    assert_ready_ok!(svc.poll_ready(), "poll_ready never sheds");
    let mut third = tokio_test::task::spawn(svc.call("c"));
    let err = assert_ready!(third.poll()).unwrap_err();
    let rejected = rejection(&err);
    assert_eq!(rejected.kind(), RejectKind::Shed);
    assert_eq!(rejected.component().as_str(), "db");
    assert_eq!(
        rejected.retry_after(),
        Some(DEFAULT_RETRY_AFTER),
        "a refusal always says when to come back"
    );
    assert_eq!(handle.metrics().shed_total, 1);
    assert_eq!(handle.metrics().in_flight, 2);

    // Only the two admitted requests reached the inner service.
    for expected in ["a", "b"] {
        let (req, send) = inner.next_request().await.unwrap();
        assert_eq!(req, expected);
        send.send_response("ok");
    }
    assert_pending!(inner.poll_request(), "the shed request never reached inner");
    assert_eq!(assert_ready!(first.poll()).unwrap(), "ok");
    assert_eq!(assert_ready!(second.poll()).unwrap(), "ok");
    assert_eq!(handle.metrics().in_flight, 0);
}

#[tokio::test]
async fn a_shed_rejection_carries_the_configured_retry_after() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(1)
        .retry_after(Duration::from_millis(1500))
        .build()
        .unwrap();
    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(
        rejection(&err).retry_after(),
        Some(Duration::from_millis(1500))
    );
}

#[tokio::test]
async fn a_permit_is_released_when_the_response_completes_not_when_it_is_dropped() {
    let layer = layer(1);
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<(), (), _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let mut response = tokio_test::task::spawn(svc.call(()));
    assert_pending!(response.poll());
    inner.next_request().await.unwrap().1.send_response(());
    assert_ready_ok!(response.poll());
    // Still holding the completed future: the permit is already back.
    assert_eq!(handle.metrics().in_flight, 0);
    assert_ready_ok!(svc.poll_ready());
    let _next = svc.call(());
    assert_eq!(handle.metrics().in_flight, 1);
}

#[tokio::test]
async fn an_inner_service_that_is_not_ready_is_waited_for_not_shed() {
    let layer = layer(8);
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<(), (), _>(layer);
    inner.allow(0);
    assert_pending!(svc.poll_ready());
    assert_pending!(svc.poll_ready());
    assert_eq!(
        handle.metrics().shed_total,
        0,
        "waiting on the inner service is not shedding"
    );
    inner.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
}

/// What the inner service saw: calls running now, the most ever running at
/// once, and calls started.
#[derive(Debug, Default)]
struct Tracker {
    current: AtomicUsize,
    highest: AtomicUsize,
    calls: AtomicUsize,
}

/// An inner service that records into `tracker`, and yields a few times
/// inside each call.
fn tracking_service(
    tracker: Arc<Tracker>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(move |req: u32| {
        let tracker = tracker.clone();
        // Counted in `call`, once the layer has admitted the request.
        let now = tracker.current.fetch_add(1, Ordering::SeqCst) + 1;
        tracker.highest.fetch_max(now, Ordering::SeqCst);
        tracker.calls.fetch_add(1, Ordering::SeqCst);
        async move {
            for _ in 0..(req % 4) {
                tokio::task::yield_now().await;
            }
            tracker.current.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(req)
        }
    })
}

/// Calls `svc` from `tasks` tasks, `calls` times each or until `stop` is
/// set; returns how many calls were admitted and how many shed.
async fn hammer(
    svc: impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static,
    tasks: u32,
    calls: u32,
    stop: Arc<AtomicBool>,
) -> (usize, usize) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let mut svc = svc.clone();
        let stop = stop.clone();
        set.spawn(async move {
            let (mut admitted, mut shed) = (0, 0);
            for c in (0..calls).take_while(|_| !stop.load(Ordering::Relaxed)) {
                match svc.ready().await.unwrap().call(t + c).await {
                    Ok(_) => admitted += 1,
                    Err(err) => {
                        assert_eq!(rejection(&err).kind(), RejectKind::Shed);
                        shed += 1;
                        // A shed is ready at once and touches no tokio
                        // resource: without a yield a shed task would spin
                        // and starve the admitted calls of their worker.
                        tokio::task::yield_now().await;
                    }
                }
            }
            (admitted, shed)
        });
    }
    let mut totals = (0, 0);
    while let Some(result) = set.join_next().await {
        let (admitted, shed) = result.unwrap();
        totals.0 += admitted;
        totals.1 += shed;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_limit_holds_under_many_concurrent_tasks() {
    let layer = layer(5);
    let handle = layer.handle();
    let tracker = Arc::new(Tracker::default());
    let svc = layer.layer(tracking_service(tracker.clone()));

    let (admitted, shed) = hammer(svc, 64, 200, Arc::default()).await;

    assert!(
        tracker.highest.load(Ordering::SeqCst) <= 5,
        "limit exceeded"
    );
    assert_eq!(admitted + shed, 64 * 200, "every request had one outcome");
    assert_eq!(shed as u64, handle.metrics().shed_total);
    assert!(admitted > 0);
    assert!(shed > 0, "64 tasks against a limit of 5 must shed some");
    assert_eq!(handle.metrics().in_flight, 0);
    assert_eq!(tracker.current.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn set_hard_limit_takes_effect_for_the_next_request_up_and_down() {
    let layer = layer(2);
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<u32, u32, _>(layer);
    let mut held = vec![call(&mut svc, 1), call(&mut svc, 2)];
    let mut shed = call(&mut svc, 3);
    assert!(assert_ready!(shed.poll()).is_err());

    handle.set_hard_limit(3).unwrap();
    let mut third = call(&mut svc, 4);
    assert_pending!(third.poll(), "a raised limit admits the next request");
    held.push(third);
    assert_eq!(handle.metrics().in_flight, 3);

    handle.set_hard_limit(1).unwrap();
    assert_eq!(
        handle.metrics().in_flight,
        3,
        "a lowered limit cancels nothing"
    );
    for n in 5..7 {
        let mut refused = call(&mut svc, n);
        assert!(assert_ready!(refused.poll()).is_err());
        // Finish one admitted request: still at or above the new limit.
        let (_, send) = inner.next_request().await.unwrap();
        send.send_response(0);
        let mut done = held.remove(0);
        assert_ready_ok!(done.poll());
    }
    assert_eq!(handle.metrics().in_flight, 1);
    let mut refused = call(&mut svc, 7);
    assert!(assert_ready!(refused.poll()).is_err());

    let (_, send) = inner.next_request().await.unwrap();
    send.send_response(0);
    assert_ready_ok!(held.remove(0).poll());
    assert_eq!(handle.metrics().in_flight, 0);
    let mut admitted = call(&mut svc, 8);
    assert_pending!(admitted.poll(), "back under the lowered limit");
    assert_eq!(handle.metrics().shed_total, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_hard_limit_holds_under_load_once_the_excess_has_drained() {
    let layer = layer(16);
    let handle = layer.handle();
    let tracker = Arc::new(Tracker::default());
    let svc = layer.layer(tracking_service(tracker.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(hammer(svc, 64, u32::MAX, stop.clone()));

    // Lower the limit while the load runs, wait for the excess admitted
    // under the old limit to drain, then watch the new limit hold over the
    // next 500 calls.
    let watch = async |limit: usize| {
        handle.set_hard_limit(limit).unwrap();
        while handle.metrics().in_flight > limit {
            tokio::task::yield_now().await;
        }
        tracker.highest.store(0, Ordering::SeqCst);
        let start = tracker.calls.load(Ordering::SeqCst);
        while tracker.calls.load(Ordering::SeqCst) < start + 500 && !load.is_finished() {
            tokio::task::yield_now().await;
        }
        assert!(!load.is_finished(), "the load ended before the window did");
        tracker.highest.load(Ordering::SeqCst)
    };
    let seen_at_2 = watch(2).await;
    let seen_at_6 = watch(6).await;
    stop.store(true, Ordering::Relaxed);
    let (admitted, shed) = load.await.unwrap();

    assert!(
        (1..=2).contains(&seen_at_2),
        "saw {seen_at_2} in flight under limit 2 (0: the load was not running)"
    );
    assert!(
        (1..=6).contains(&seen_at_6),
        "saw {seen_at_6} in flight under limit 6 (0: the load was not running)"
    );
    assert_eq!(shed as u64, handle.metrics().shed_total);
    assert!(admitted >= 1000);
    assert_eq!(handle.metrics().in_flight, 0);
    assert_eq!(tracker.current.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn crossing_the_soft_limit_signals_once_per_excursion() {
    let recorder = Arc::new(Recorder::default());
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(20)
        .soft_limit(10)
        .component("api")
        .sink(recorder.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<u32, u32, _>(layer);

    let mut held = Vec::new();
    let excursion = |svc: &mut Svc, held: &mut Vec<Response>| {
        // Up to 15 in flight: above the soft limit from the 11th.
        while held.len() < 15 {
            let mut f = call(svc, 0);
            assert_pending!(f.poll());
            held.push(f);
        }
    };
    excursion(&mut svc, &mut held);
    assert!(handle.metrics().soft_depth_ratio() > 1.0);

    // Dip under the soft limit and climb back: no new signal.
    let finish = async |held: &mut Vec<Response>, inner: &mut mock::Handle<u32, u32>, n| {
        for _ in 0..n {
            inner.next_request().await.unwrap().1.send_response(0);
            assert_ready_ok!(held.remove(0).poll());
        }
    };
    finish(&mut held, &mut inner, 5).await;
    assert_eq!(handle.metrics().in_flight, 10);
    assert_eq!(handle.metrics().soft_depth_ratio(), 1.0);
    finish(&mut held, &mut inner, 4).await;
    excursion(&mut svc, &mut held);
    // Fall to the low-water mark (half the soft limit): the excursion ends.
    finish(&mut held, &mut inner, 10).await;
    assert_eq!(handle.metrics().in_flight, 5);
    // A second excursion.
    excursion(&mut svc, &mut held);

    let api = Component::new("api");
    assert_eq!(
        recorder.signals(),
        vec![
            (
                api.clone(),
                Signal::SoftLimitExceeded {
                    in_flight: 11,
                    soft_limit: 10
                }
            ),
            (
                api.clone(),
                Signal::SoftLimitRecovered {
                    in_flight: 5,
                    soft_limit: 10
                }
            ),
            (
                api,
                Signal::SoftLimitExceeded {
                    in_flight: 11,
                    soft_limit: 10
                }
            ),
        ]
    );
}

#[tokio::test]
async fn sheds_and_limit_changes_are_signalled() {
    let recorder = Arc::new(Recorder::default());
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(1)
        .component("db")
        .sink(recorder.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    assert_ready_ok!(svc.poll_ready());
    let _ = svc.call(()).await;
    handle.set_hard_limit(3).unwrap();
    handle.set_hard_limit(3).unwrap();

    let db = Component::new("db");
    assert_eq!(
        recorder.signals(),
        vec![
            (
                db.clone(),
                Signal::Shed {
                    in_flight: 1,
                    hard_limit: 1
                }
            ),
            (db, Signal::HardLimitChanged { from: 1, to: 3 }),
        ],
        "setting the limit it already has is not a change"
    );
}

#[test]
fn set_hard_limit_refuses_zero_and_keeps_the_old_limit() {
    let layer = layer(4);
    let handle = layer.handle();
    let err = handle.set_hard_limit(0).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Zero);
    assert_eq!(err.setting(), "hard_limit");
    assert_eq!(handle.metrics().hard_limit, 4);
}

#[test]
fn the_soft_limit_follows_the_hard_limit_in_proportion() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(100)
        .soft_limit(80)
        .build()
        .unwrap();
    let handle = layer.handle();
    handle.set_hard_limit(10).unwrap();
    assert_eq!(handle.metrics().soft_limit, Some(8));
    handle.set_hard_limit(1).unwrap();
    assert_eq!(
        handle.metrics().soft_limit,
        None,
        "no room below a hard limit of 1"
    );
    handle.set_hard_limit(100).unwrap();
    assert_eq!(
        handle.metrics().soft_limit,
        Some(80),
        "no drift after changes"
    );
}

#[test]
fn without_a_soft_limit_the_depth_ratio_is_against_the_hard_limit() {
    let layer = layer(4);
    let handle = layer.handle();
    assert_eq!(handle.metrics().soft_limit, None);
    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    assert_eq!(handle.metrics().soft_depth_ratio(), 0.25);
}

#[test]
fn config_errors_name_the_setting_and_the_problem() {
    let builder = ConcurrencyShedLayer::builder;
    for (config, setting, kind) in [
        (builder(), "hard_limit", ConfigErrorKind::Missing),
        (builder().hard_limit(0), "hard_limit", ConfigErrorKind::Zero),
        (
            builder().hard_limit(usize::MAX),
            "hard_limit",
            ConfigErrorKind::OutOfRange,
        ),
        (
            builder().hard_limit(8).soft_limit(0),
            "soft_limit",
            ConfigErrorKind::Zero,
        ),
        (
            builder().hard_limit(8).soft_limit(8),
            "soft_limit",
            ConfigErrorKind::NotBelow,
        ),
    ] {
        let err = config.build().unwrap_err();
        assert_eq!((err.setting(), err.kind()), (setting, kind), "{err}");
    }
    assert_eq!(
        builder()
            .hard_limit(8)
            .soft_limit(8)
            .build()
            .unwrap_err()
            .to_string(),
        "invalid shed config: soft_limit must be below hard_limit (soft_limit 8, hard_limit 8)"
    );
}

#[test]
fn clones_of_a_layer_share_one_budget() {
    let layer = layer(1);
    let twin = layer.clone();
    let (mut a, _ia) = mock::spawn_layer::<(), (), _>(layer.clone());
    let (mut b, _ib) = mock::spawn_layer::<(), (), _>(twin);
    assert_ready_ok!(a.poll_ready());
    let _held = a.call(());
    assert_ready_ok!(b.poll_ready());
    let mut refused = tokio_test::task::spawn(b.call(()));
    assert!(assert_ready!(refused.poll()).is_err());
    assert_eq!(layer.handle().metrics().shed_total, 1);
}

/// On a limit change, a reflex sets the limit again through the handle.
#[derive(Clone, Default)]
struct SetsLimitOnChange(Arc<std::sync::OnceLock<reflex_shed::ShedHandle>>);

impl reflex_core::SignalSink for SetsLimitOnChange {
    fn emit(&self, _: &Component, signal: Signal) {
        if let (Signal::HardLimitChanged { to: 2, .. }, Some(handle)) = (signal, self.0.get()) {
            handle.set_hard_limit(3).unwrap();
        }
    }
}

#[test]
fn a_sink_that_steers_the_layer_on_a_limit_change_does_not_deadlock() {
    let sink = SetsLimitOnChange::default();
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(4)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    sink.0.set(handle.clone()).ok().unwrap();
    handle.set_hard_limit(2).unwrap();
    assert_eq!(
        handle.metrics().hard_limit,
        3,
        "the sink's own change landed"
    );
}

#[test]
fn the_layer_hands_a_reflex_its_hard_limit_as_a_shed_control() {
    use reflex_core::{Control, Handled};

    let layer = layer(8);
    let Some(Control::Shed(control)) = layer.control() else {
        panic!("a shed layer's control is its hard limit");
    };
    assert_eq!(control.hard_limit(), 8);
    control.set_hard_limit(2).unwrap();
    assert!(control.set_hard_limit(0).is_err());
    assert_eq!(control.hard_limit(), 2);
    assert_eq!(Handled::handle(&layer).metrics().hard_limit, 2, "one layer");
}

#[tokio::test]
async fn a_stack_builds_the_shed_as_any_layer_and_its_classifier_changes_nothing() {
    use reflex_core::{Classified, DefaultClassifier, LayerBuilder, LayerHandle, Sink};

    let recorder = Arc::new(Recorder::default());
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(1)
        .retry_after(Duration::from_secs(3))
        .classified_by(DefaultClassifier);
    let layer = LayerBuilder::component(layer, Component::new("queue"));
    let layer = LayerBuilder::sink(layer, Sink::new(recorder.clone()));
    let layer = LayerBuilder::build(layer).unwrap();
    let handle = layer.handle();
    assert_eq!(LayerHandle::component(&handle).as_str(), "queue");
    assert_eq!(handle.retry_after(), Duration::from_secs(3));

    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _held = svc.call(());
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(rejection(&err).component().as_str(), "queue");
    assert_eq!(rejection(&err).retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(LayerHandle::metrics(&handle).shed_total, 1);
    assert_eq!(recorder.signals().len(), 1, "the shed went to the sink");
}

#[test]
fn the_handle_tells_what_a_refusal_tells_its_caller_by_default() {
    assert_eq!(layer(1).handle().retry_after(), DEFAULT_RETRY_AFTER);
}
