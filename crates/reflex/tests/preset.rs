//! The preset's own promises: a part that is off is not in the stack, a
//! timeout decided at run time, typed errors for bad settings, nothing
//! registered by a preset that fails to build, and the witness steering the
//! root's breaker among those the presets built.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use reflex::Preset;
use reflex::core::{BoxError, ConfigErrorKind, RejectKind, Rejected};
use reflex::retry::RetryLayer;
use reflex::witness::{Clock, EdgeReflex, Witness};
use tower::{Service, ServiceExt, service_fn};

/// A service whose calls never end.
fn stuck() -> impl Service<u32, Response = u32, Error = BoxError, Future: Unpin> + Clone {
    service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>())
}

/// Calls `svc` `n` times, keeping every response future, and says how many
/// were refused by the shed layer at once.
fn shed_of<S>(mut svc: S, n: usize) -> (usize, Vec<S::Future>)
where
    S: Service<u32, Error = BoxError>,
    S::Future: Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut kept = Vec::new();
    let mut shed = 0;
    for i in 0..n {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut future = svc.call(i as u32);
        match std::pin::Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready(Err(err)) => {
                assert_eq!(
                    Rejected::find(&*err).map(Rejected::kind),
                    Some(RejectKind::Shed)
                );
                shed += 1;
            }
            Poll::Ready(Ok(_)) => panic!("a stuck call ended"),
            Poll::Pending => kept.push(future),
        }
    }
    (shed, kept)
}

#[test]
fn a_request_the_default_preset_sheds_is_a_503_that_says_when_to_come_back() {
    // The README's preset: a hard limit and no `retry_after` of its own.
    let mut svc = Preset::new("payments")
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(1))
        .build()
        .unwrap()
        .service(stuck());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let _held = svc.call(1);
    assert!(svc.poll_ready(&mut cx).is_ready());
    let Poll::Ready(Err(err)) = pin!(svc.call(2)).poll(&mut cx) else {
        panic!("the second request was not refused at once");
    };
    let response = reflex::http::rejection_response::<String>(&*err);
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[test]
fn the_shed_layer_is_on_by_default_and_gone_when_turned_off() {
    let on = Preset::new("db").build().unwrap().service(stuck());
    let (shed, _kept) = shed_of(on, 1_100);
    assert_eq!(shed, 1_100 - 1_024, "the default hard limit is 1 024");

    let off = Preset::new("db")
        .no_shed()
        .build()
        .unwrap()
        .service(stuck());
    let (shed, kept) = shed_of(off, 1_100);
    assert_eq!((shed, kept.len()), (0, 1_100));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_decided_at_run_time_is_there_when_some_and_absent_when_none() {
    let some = Preset::new("db")
        .maybe_timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap()
        .service(stuck());
    let started = tokio::time::Instant::now();
    let err = some.oneshot(1).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    let none = Preset::new("db")
        .maybe_timeout(None)
        .build()
        .unwrap()
        .service(stuck());
    // The first poll makes the call (and would start a timeout's sleep).
    let mut call = pin!(none.oneshot(1));
    assert!(futures_poll(call.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(3_600)).await;
    assert!(futures_poll(call.as_mut()).is_pending());
}

fn futures_poll<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_zero_timeout_is_refused_either_way() {
    for preset in [
        Preset::new("db")
            .timeout(Duration::ZERO)
            .build()
            .map(|_| ()),
        Preset::new("db")
            .maybe_timeout(Some(Duration::ZERO))
            .build()
            .map(|_| ()),
    ] {
        let err = preset.unwrap_err();
        assert_eq!(
            (err.setting(), err.kind()),
            ("timeout", ConfigErrorKind::Zero)
        );
    }
}

#[test]
fn a_preset_that_fails_to_build_registers_nothing_with_the_witness() {
    let witness = Witness::builder().build().unwrap();
    let err = Preset::new("db")
        .witness(&witness)
        .retry(RetryLayer::builder().max_attempts(0))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_attempts");
    assert_eq!(witness.health().components, 0);

    Preset::new("db").witness(&witness).build().unwrap();
    assert_eq!(witness.health().components, 1);
}

#[test]
fn a_preset_refused_by_a_full_witness_registers_nothing_either() {
    let witness = Witness::builder().max_components(1).build().unwrap();
    Preset::new("api").witness(&witness).build().unwrap();
    // Its last fallible step, the witness's component, fails: the shed
    // layer and breaker were built, but are not the witness's to steer.
    let err = Preset::new("db").witness(&witness).build().unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::OutOfRange, "{err}");
    assert_eq!(witness.health().components, 1);
}

#[tokio::test(start_paused = true)]
async fn the_witness_trips_only_the_root_s_breaker_among_those_the_presets_registered() {
    let (actions, breaker_of) = db_goes_down_below_auth_and_api(true).await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(
        actions[0].starts_with("tripped db's breaker"),
        "{actions:?}"
    );
    assert_eq!(
        breaker_of("db").as_deref(),
        Some(reflex::core::BreakerState::Open.as_str())
    );
    for victim in ["api", "auth"] {
        assert_eq!(
            breaker_of(victim).as_deref(),
            Some(reflex::core::BreakerState::Closed.as_str()),
            "{victim}: its failures were db's echoes"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_component_kept_out_of_the_reflexes_is_reported_but_never_steered() {
    let (actions, _) = db_goes_down_below_auth_and_api(false).await;
    assert_eq!(
        actions,
        Vec::<String>::new(),
        "db's preset said no_reflexes()"
    );
}

/// api calls auth calls db, each behind a preset with a witness whose
/// reflex is `EdgeReflex`; db fails every call after eight healthy cycles.
/// Gives the actions of the one report (db the root), and each
/// component's breaker state as the witness sees it.
async fn db_goes_down_below_auth_and_api(
    db_reflexes: bool,
) -> (Vec<String>, impl Fn(&str) -> Option<String>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tower::util::BoxCloneSyncService;

    type Svc = BoxCloneSyncService<u32, u32, BoxError>;
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .reflex(EdgeReflex::default())
        .build()
        .unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let failing = down.clone();
    let db = Preset::new("db").witness(&witness);
    let db = if db_reflexes { db } else { db.no_reflexes() };
    let db: Svc =
        BoxCloneSyncService::new(db.build().unwrap().service(service_fn(move |n: u32| {
            let failing = failing.load(Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if failing {
                    Err::<u32, BoxError>("db down".into())
                } else {
                    Ok(n)
                }
            }
        })));
    let calling = |name: &'static str, below: Svc| -> Svc {
        BoxCloneSyncService::new(
            Preset::new(name)
                .witness(&witness)
                .build()
                .unwrap()
                .service(service_fn(move |n: u32| below.clone().oneshot(n))),
        )
    };
    let api = calling("api", calling("auth", db));
    let seen = witness.clone();
    let breaker_of = move |name: &str| {
        seen.cycle_now()
            .component(name)
            .and_then(|c| c.breaker.clone())
    };
    // Healthy cycles teach the witness each component's baseline.
    for _ in 0..8 {
        for n in 0..40 {
            api.clone().oneshot(n).await.unwrap();
        }
        witness.cycle_now();
    }
    down.store(true, Ordering::Relaxed);
    for n in 0..40 {
        let _ = api.clone().oneshot(n).await;
    }
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.reports.len(), 1, "{:#?}", snapshot.reports);
    let report = &snapshot.reports[0];
    assert_eq!(report.roots[0].component, "db");
    let actions: Vec<String> = report.actions.iter().map(ToString::to_string).collect();
    (actions, breaker_of)
}

#[tokio::test(start_paused = true)]
async fn the_dedup_cache_keeps_only_what_the_presets_classifier_calls_a_success() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use reflex::core::Outcome;

    // The inner service answers 500 first, then 200: a status as a number.
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_: u32| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<u32, BoxError>(if n == 0 { 500 } else { 200 }) }
    });
    let dedup = reflex::dedup::DedupLayer::builder()
        .key(|req: &u32| Some(*req))
        .cache(Duration::from_secs(60), 16);
    let svc = Preset::new("db")
        .classifier(|result: Result<&u32, &BoxError>| match result {
            Ok(status) if *status < 500 => Outcome::Success,
            _ => Outcome::Failure,
        })
        .no_breaker()
        .dedup(dedup)
        .build()
        .unwrap()
        .service(inner);

    assert_eq!(svc.clone().oneshot(7).await.unwrap(), 500);
    assert_eq!(
        svc.clone().oneshot(7).await.unwrap(),
        200,
        "the failure was not cached: a second call was made"
    );
    assert_eq!(
        svc.clone().oneshot(7).await.unwrap(),
        200,
        "the success was"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_witness_steering_a_preset_s_layers_still_stops_with_its_last_handle() {
    use tokio::sync::broadcast::error::RecvError;

    let witness = Witness::builder().clock(Clock::Tokio).start().unwrap();
    let mut snapshots = witness.subscribe();
    // The preset gives the witness its breaker's and shed layer's handles,
    // which report to the witness in turn.
    let stack = Preset::new("db").witness(&witness).build().unwrap();
    drop(stack);
    drop(witness);
    // The channel's sender lives in the witness: closed once it is freed.
    let heard = tokio::time::timeout(Duration::from_secs(60), snapshots.recv()).await;
    assert!(
        matches!(heard, Ok(Err(RecvError::Closed))),
        "the witness outlived its handles: {heard:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_preset_hands_back_the_handle_of_every_layer_it_built() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let stack = Preset::new("db")
        .witness(&witness)
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(3))
        .dedup(
            reflex::dedup::DedupLayer::builder()
                .key(|n: &u32| Some(*n))
                .cache(Duration::from_secs(60), 16),
        )
        .slot(reflex::slot::SlotAdmissionLayer::builder().key(|n: &u32| Some(*n)))
        .retry(reflex::retry::RetryLayer::builder().max_attempts(2))
        .build()
        .unwrap();
    let handles = stack.handles().clone();
    let svc = stack.service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    for n in [1, 2, 2] {
        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n);
    }
    assert_eq!(handles.shed.metrics().hard_limit, 3);
    assert_eq!(handles.shed.component().as_str(), "db");
    // The second 2 is answered from the dedup cache, above the slot layer,
    // retry and the breaker.
    assert_eq!(handles.dedup.metrics().cache_hits, 1);
    assert_eq!(handles.slot.metrics().started, 2);
    assert_eq!(handles.retry.metrics().retries, 0);
    assert!(handles.retry.metrics().budget_remaining.is_some());
    assert_eq!(handles.breaker.metrics().calls, 2);
    assert_eq!(
        handles
            .witness
            .cycle_now()
            .component("db")
            .map(|c| c.succeeded),
        Some(3),
        "the witness handle is the preset's witness"
    );
}

#[test]
fn a_part_that_is_off_has_no_handle_and_one_decided_at_run_time_has_one_when_on() {
    let stack = Preset::new("db")
        .no_breaker()
        .retry(reflex::Toggle::new(Some(
            reflex::retry::RetryLayer::builder(),
        )))
        .dedup(reflex::Toggle::new(None::<()>.map(|()| {
            reflex::dedup::DedupLayer::builder().key(|n: &u32| Some(*n))
        })))
        .build()
        .unwrap();
    let handles = stack.handles();
    let () = handles.breaker;
    let () = handles.witness;
    assert!(handles.retry.is_some());
    assert!(handles.dedup.is_none());
    let svc = stack.service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    drop(svc);
}
