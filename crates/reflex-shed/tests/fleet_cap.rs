//! The fleet cap (`ShedHandle::set_fleet_cap`): the seam a fleet-wide
//! budget steers. It bounds the limit in force whatever else sets it, may
//! be 0, and leaves the layer's own inputs alone.

use std::convert::Infallible;
use std::future::{Future, Pending, pending};
use std::pin::Pin;
use std::task::{Context, Waker};

use reflex_core::signal::Recorder;
use reflex_core::{ConfigErrorKind, RejectKind, Rejected, ShedControl, Signal};
use reflex_shed::{Adaptive, ConcurrencyShedLayer, Critical, LimitSource, ShedHandle};
use tower::{Layer, Service, service_fn};

fn never_answers(_: bool) -> Pending<Result<(), Infallible>> {
    pending()
}

/// Calls `svc`: the running call if admitted, the rejection if shed.
fn admit<S>(svc: &mut S, critical: bool) -> Result<S::Future, reflex_core::BoxError>
where
    S: Service<bool, Error = reflex_core::BoxError>,
    S::Future: Future<Output = Result<S::Response, S::Error>> + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = svc.call(critical);
    match Pin::new(&mut future).poll(&mut cx) {
        std::task::Poll::Pending => Ok(future),
        std::task::Poll::Ready(Ok(_)) => panic!("never_answers answered"),
        std::task::Poll::Ready(Err(error)) => Err(error),
    }
}

fn fixed(
    limit: usize,
) -> (
    ShedHandle,
    impl Service<bool, Error = reflex_core::BoxError, Future: Unpin>,
) {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(limit)
        .component("db")
        .build()
        .unwrap();
    (layer.handle(), layer.layer(service_fn(never_answers)))
}

#[test]
fn a_fleet_cap_of_zero_sheds_every_request_even_a_critical_one() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .critical(|critical: &bool| critical.then_some(Critical))
        .critical_reserve(0.2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(never_answers));
    let running = admit(&mut svc, false).unwrap();

    handle.set_fleet_cap(Some(0)).unwrap();
    for critical in [false, true] {
        let error = admit(&mut svc, critical).expect_err("shed");
        let rejected = Rejected::find(&*error).expect("a rejection");
        assert_eq!(rejected.kind(), RejectKind::Shed);
    }
    let metrics = handle.metrics();
    assert_eq!(metrics.hard_limit, 0);
    assert_eq!(metrics.in_flight, 1, "the running call goes on");
    assert_eq!(metrics.shed_total, 2);
    assert!(metrics.soft_depth_ratio().is_finite());
    drop(running);
    assert_eq!(handle.metrics().in_flight, 0, "and gives its permit back");

    handle.set_fleet_cap(None).unwrap();
    assert!(admit(&mut svc, false).is_ok(), "lifted: admitted again");
}

#[test]
fn the_fleet_cap_bounds_a_fixed_limit_and_the_metrics_show_it() {
    let (handle, mut svc) = fixed(50);
    handle.set_fleet_cap(Some(2)).unwrap();
    let metrics = handle.metrics();
    assert_eq!(metrics.hard_limit, 2);
    assert_eq!(metrics.fleet_cap, Some(2));
    assert_eq!(metrics.local_limit, 50);
    assert_eq!(metrics.limit_source, LimitSource::Fleet);
    assert_eq!(ShedControl::hard_limit(&handle), 2, "the limit in force");

    let running: Vec<_> = (0..2).map(|_| admit(&mut svc, false).unwrap()).collect();
    assert!(admit(&mut svc, false).is_err(), "the third is over the cap");

    // Above the layer's own limit, the cap does not bind.
    handle.set_fleet_cap(Some(80)).unwrap();
    let metrics = handle.metrics();
    assert_eq!((metrics.hard_limit, metrics.fleet_cap), (50, Some(80)));
    assert_eq!(metrics.limit_source, LimitSource::Fixed);
    drop(running);
}

#[test]
fn a_reflex_still_lowers_the_limit_beneath_the_fleet_cap_and_raises_it_back() {
    let (handle, _svc) = fixed(50);
    handle.set_fleet_cap(Some(12)).unwrap();
    handle.set_hard_limit(5).unwrap();
    let metrics = handle.metrics();
    assert_eq!((metrics.hard_limit, metrics.local_limit), (5, 5));
    assert_eq!(metrics.limit_source, LimitSource::Fixed);
    handle.set_hard_limit(50).unwrap();
    assert_eq!(handle.metrics().hard_limit, 12, "the fleet cap again");
    // And the fleet cap moves without touching the layer's own limit.
    handle.set_fleet_cap(Some(30)).unwrap();
    assert_eq!(handle.metrics().hard_limit, 30);
    handle.set_fleet_cap(None).unwrap();
    assert_eq!(handle.metrics().hard_limit, 50);
}

#[test]
fn the_fleet_cap_bounds_a_pin_and_an_adaptive_cap() {
    let handle = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient().initial(40))
        .build()
        .unwrap()
        .handle();
    handle.pin_limit(Some(30)).unwrap();
    handle.set_fleet_cap(Some(20)).unwrap();
    assert_eq!(handle.metrics().hard_limit, 20);
    assert_eq!(handle.metrics().limit_source, LimitSource::Fleet);
    // A reflex's cap below both wins.
    handle.set_hard_limit(8).unwrap();
    let metrics = handle.metrics();
    assert_eq!(
        (metrics.hard_limit, metrics.limit_source),
        (8, LimitSource::Capped)
    );
    assert_eq!(metrics.pinned, Some(30));
    handle.set_hard_limit(30).unwrap();
    handle.pin_limit(None).unwrap();
    assert_eq!(
        handle.metrics().hard_limit,
        20,
        "the fleet cap under the estimate"
    );
    handle.set_fleet_cap(None).unwrap();
    assert_eq!(handle.metrics().hard_limit, 40);
}

#[test]
fn a_fleet_cap_change_emits_no_signal_and_an_oversized_one_is_refused() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let handle = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .component("db")
        .sink(recorder.clone())
        .build()
        .unwrap()
        .handle();
    handle.set_fleet_cap(Some(3)).unwrap();
    handle.set_fleet_cap(Some(0)).unwrap();
    assert!(
        !recorder
            .signals()
            .iter()
            .any(|(_, s)| matches!(s, Signal::HardLimitChanged { .. })),
        "as frequent as a budget's renewals: no signal"
    );
    let error = handle.set_fleet_cap(Some(usize::MAX)).unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::OutOfRange);
    assert_eq!(handle.metrics().fleet_cap, Some(0), "nothing changed");
}
