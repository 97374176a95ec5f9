//! The adaptive limit through the layer: what counts as a sample, the
//! classifier's part, pinning, and a witness's cap. The estimators'
//! arithmetic is tested in `src/gradient/tests.rs` and `src/aimd.rs`; their
//! targets on a simulated dependency in the workspace's
//! `tests/tests/adaptive_targets.rs`.

use std::convert::Infallible;
use std::future::{Future, pending};
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use reflex_core::layer::Handled;
use reflex_core::{BoxError, Classified, Control, LayerBuilder, Outcome, ShedControl};
use reflex_shed::{Adaptive, ConcurrencyShedLayer, LimitSource};
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// An adaptive layer whose windows close after every sample.
fn aimd() -> ConcurrencyShedLayer {
    ConcurrencyShedLayer::builder()
        .adaptive(
            Adaptive::aimd()
                .initial(10)
                .floor(2)
                .backoff(0.5)
                .min_samples(1)
                .window(MS),
        )
        .build()
        .unwrap()
}

/// A call that takes `latency` and fails when `fail`.
async fn call(latency: Duration, fail: bool) -> Result<(), std::io::Error> {
    tokio::time::sleep(latency).await;
    if fail {
        Err(std::io::Error::other("down"))
    } else {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_a_drop_that_backs_an_aimd_limit_off() {
    let layer = aimd();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|fail: bool| call(10 * MS, fail)));
    svc.ready().await.unwrap().call(false).await.unwrap();
    let before = handle.metrics().hard_limit;
    tokio::time::advance(2 * MS).await;
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    let metrics = handle.metrics();
    assert_eq!(metrics.hard_limit, before / 2, "{metrics:?}");
    assert_eq!(metrics.limit_source, LimitSource::Adaptive);
    assert_eq!(metrics.adaptive.unwrap().limit, before / 2);
}

#[tokio::test(start_paused = true)]
async fn refused_and_cancelled_calls_are_no_samples() {
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::aimd().initial(1).min_samples(1).window(MS))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|_: ()| pending::<Result<(), Infallible>>()));
    let mut cx = Context::from_waker(Waker::noop());
    // One call runs (and is then dropped: cancelled); the next is refused.
    let mut running = svc.call(());
    assert!(Pin::new(&mut running).poll(&mut cx).is_pending());
    let refused = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(reflex_core::Rejected::find(&*refused).is_some());
    drop(running);
    tokio::time::advance(10 * MS).await;
    let metrics = handle.metrics();
    assert_eq!(metrics.in_flight, 0);
    assert_eq!(metrics.adaptive.unwrap().windows, 0, "nothing completed");
    assert_eq!(metrics.hard_limit, 1, "no near-zero sample moved it");
}

#[tokio::test(start_paused = true)]
async fn an_aimd_timeout_makes_a_slow_success_a_drop() {
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(
            Adaptive::aimd()
                .initial(8)
                .backoff(0.5)
                .timeout(50 * MS)
                .min_samples(1)
                .window(MS),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|latency: Duration| call(latency, false)));
    svc.ready().await.unwrap().call(10 * MS).await.unwrap();
    assert_eq!(handle.metrics().hard_limit, 8, "fast and unused: it holds");
    tokio::time::advance(2 * MS).await;
    svc.ready().await.unwrap().call(80 * MS).await.unwrap();
    assert_eq!(handle.metrics().hard_limit, 4);
}

#[tokio::test(start_paused = true)]
async fn the_stack_classifier_decides_what_counts() {
    // A stack that calls every outcome ignored: no window ever closes.
    let builder = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::aimd().initial(4).min_samples(1).window(MS))
        .classified_by(|_: Result<&(), &BoxError>| Outcome::Ignored);
    let layer = LayerBuilder::build(builder).unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|fail: bool| call(MS, fail)));
    for fail in [true, false, true] {
        let _ = svc.ready().await.unwrap().call(fail).await;
        tokio::time::advance(2 * MS).await;
    }
    assert_eq!(handle.metrics().adaptive.unwrap().windows, 0);
    assert_eq!(handle.metrics().hard_limit, 4);
}

#[tokio::test(start_paused = true)]
async fn a_gradient_limit_measures_latency_and_reports_it() {
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(
            Adaptive::gradient()
                .initial(4)
                .min_samples(5)
                .window(100 * MS),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: ()| call(20 * MS, false)));
    for _ in 0..5 {
        svc.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(
        handle.metrics().adaptive.unwrap().windows,
        0,
        "the first window lasts a window from its first sample"
    );
    for _ in 0..2 {
        svc.clone().oneshot(()).await.unwrap();
    }
    let adaptive = handle.metrics().adaptive.unwrap();
    assert_eq!(adaptive.windows, 1, "closed at 120 ms, with min_samples");
    let no_load = adaptive.no_load_latency.unwrap();
    assert!(no_load >= 19 * MS && no_load <= 22 * MS, "{no_load:?}");
    assert_eq!(adaptive.latency.map(|l| l >= 19 * MS), Some(true));
}

#[test]
fn a_pin_holds_the_limit_until_it_is_let_go() {
    let layer = aimd();
    let handle = layer.handle();
    handle.pin_limit(Some(3)).unwrap();
    let metrics = handle.metrics();
    assert_eq!((metrics.hard_limit, metrics.pinned), (3, Some(3)));
    assert_eq!(metrics.limit_source, LimitSource::Pinned);
    assert_eq!(metrics.adaptive.unwrap().limit, 10, "the estimator goes on");
    assert!(handle.pin_limit(Some(0)).is_err());
    assert!(handle.pin_limit(Some(usize::MAX)).is_err());
    assert_eq!(
        handle.metrics().hard_limit,
        3,
        "a refused pin changes nothing"
    );
    handle.pin_limit(None).unwrap();
    assert_eq!(handle.metrics().hard_limit, 10);
    assert_eq!(handle.metrics().limit_source, LimitSource::Adaptive);
}

#[test]
fn a_fixed_limit_can_be_pinned_too() {
    let handle = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .build()
        .unwrap()
        .handle();
    handle.pin_limit(Some(2)).unwrap();
    handle.set_hard_limit(20).unwrap();
    assert_eq!(handle.metrics().hard_limit, 2, "the pin wins");
    handle.pin_limit(None).unwrap();
    assert_eq!(handle.metrics().hard_limit, 20);
    assert_eq!(handle.metrics().limit_source, LimitSource::Fixed);
}

#[test]
fn a_reflex_lowers_an_adaptive_limit_until_it_restores_it() {
    let layer = aimd();
    let Some(Control::Shed(control)) = Handled::control(&layer) else {
        panic!("a shed control");
    };
    let handle = layer.handle();
    // The reflex reads the limit, lowers it, and later puts back what it read.
    let read = control.hard_limit();
    control.set_hard_limit(4).unwrap();
    let metrics = handle.metrics();
    assert_eq!((metrics.hard_limit, metrics.cap), (4, Some(4)));
    assert_eq!(metrics.limit_source, LimitSource::Capped);
    // A pin above the cap stays under it.
    handle.pin_limit(Some(9)).unwrap();
    assert_eq!(handle.metrics().hard_limit, 4);
    handle.pin_limit(None).unwrap();
    ShedControl::set_hard_limit(&handle, read).unwrap();
    let metrics = handle.metrics();
    assert_eq!(
        (metrics.hard_limit, metrics.cap),
        (read, None),
        "the cap is lifted"
    );
    assert_eq!(metrics.limit_source, LimitSource::Adaptive);
}

#[test]
fn a_fixed_layer_reports_no_estimator() {
    let metrics = ConcurrencyShedLayer::builder()
        .hard_limit(5)
        .build()
        .unwrap()
        .handle()
        .metrics();
    assert_eq!(metrics.adaptive, None);
    assert_eq!((metrics.pinned, metrics.cap), (None, None));
    assert_eq!(metrics.critical_in_flight, 0);
}

#[test]
fn an_adaptive_layer_keeps_the_soft_limit_in_proportion() {
    let handle = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient().initial(100))
        .soft_limit(80)
        .build()
        .unwrap()
        .handle();
    handle.pin_limit(Some(50)).unwrap();
    assert_eq!(handle.metrics().soft_limit, Some(40));
}
