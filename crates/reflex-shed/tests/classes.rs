//! Partitions and critical requests through the layer: who is admitted
//! when the limit is full, borrowing, giving back, the reserve.

use std::convert::Infallible;
use std::future::{Future, Pending, pending};
use std::pin::Pin;
use std::task::{Context, Waker};

use reflex_core::BoxError;
use reflex_shed::future::ResponseFuture;
use reflex_shed::{ConcurrencyShedLayer, Critical, ShedHandle};
use tower::{Layer, Service, service_fn};

/// A request: its tenant and whether it is critical.
#[derive(Debug, Clone, Copy)]
struct Req {
    tenant: &'static str,
    critical: bool,
}

fn req(tenant: &'static str) -> Req {
    Req {
        tenant,
        critical: false,
    }
}

fn never_answers(_: Req) -> Pending<Result<(), Infallible>> {
    pending()
}

type Running = ResponseFuture<Pending<Result<(), Infallible>>>;

/// Calls `svc` with `req`: the running call if admitted, `None` if shed.
fn admit<S>(svc: &mut S, req: Req) -> Option<S::Future>
where
    S: Service<Req>,
    S::Future: Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = svc.call(req);
    Pin::new(&mut future)
        .poll(&mut cx)
        .is_pending()
        .then_some(future)
}

/// Admits `req` until the layer sheds one; returns the running calls.
fn fill<S>(svc: &mut S, req: Req) -> Vec<S::Future>
where
    S: Service<Req>,
    S::Future: Unpin,
{
    std::iter::from_fn(|| admit(svc, req)).take(1000).collect()
}

/// A limit of 10 split 70/30 between tenants a and b, its handle, and a
/// service whose calls never answer.
fn a_70_b_30() -> (
    ShedHandle,
    impl Service<Req, Response = (), Error = BoxError, Future = Running>,
) {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .partition(|req: &Req| Some(req.tenant))
        .share("a", 0.7)
        .share("b", 0.3)
        .build()
        .unwrap();
    (layer.handle(), layer.layer(service_fn(never_answers)))
}

fn in_flight(handle: &ShedHandle) -> Vec<usize> {
    handle.partitions().iter().map(|p| p.in_flight).collect()
}

#[test]
fn partitions_get_their_share_when_both_are_busy() {
    let (handle, mut svc) = a_70_b_30();
    // b takes a slot and asks for no more yet: a fills all but one slot of
    // what b does not use.
    let b = admit(&mut svc, req("b")).unwrap();
    let mut a = fill(&mut svc, req("a"));
    assert_eq!(a.len(), 8, "one slot left for b's next request");
    let mut more_b = fill(&mut svc, req("b"));
    assert_eq!(more_b.len(), 1);
    // b was refused: it asks for more than it has, and is owed its share.
    // As a's calls finish, a may not take their slots back.
    a.pop();
    assert!(admit(&mut svc, req("a")).is_none(), "b is owed a slot");
    more_b.extend(fill(&mut svc, req("b")));
    assert_eq!(in_flight(&handle), [7, 3, 0]);
    let shares: Vec<f64> = handle.partitions().iter().map(|p| p.share).collect();
    assert_eq!(shares, [0.7, 0.3, 0.0], "listed shares, then the rest");
    assert!(handle.partitions()[0].shed_total >= 1);
    drop((a, b, more_b));
    assert_eq!(in_flight(&handle), [0, 0, 0]);
    assert_eq!(handle.metrics().in_flight, 0);
}

#[test]
fn an_idle_partitions_share_is_lent_and_given_back_first() {
    let (handle, mut svc) = a_70_b_30();
    // b has never been seen: a borrows all of it.
    let mut a: Vec<Running> = fill(&mut svc, req("a"));
    assert_eq!(a.len(), 10);
    // b arrives: refused (the limit is full) but now active...
    assert!(admit(&mut svc, req("b")).is_none());
    // ...so as a's calls finish, a may not take back b's share.
    for _ in 0..3 {
        a.pop();
        assert!(admit(&mut svc, req("a")).is_none(), "a is borrowing");
    }
    let b = fill(&mut svc, req("b"));
    assert_eq!(b.len(), 3, "b's share came back");
    assert_eq!(in_flight(&handle), [7, 3, 0]);
}

#[test]
fn requests_with_no_listed_key_share_what_is_left() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .partition(|req: &Req| (req.tenant != "anonymous").then_some(req.tenant))
        .share("a", 0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(never_answers));
    let a = admit(&mut svc, req("a")).unwrap();
    // The rest's share is 0.5 of 10; a is active, asks for no more than
    // its one call, and is left one slot.
    let rest = fill(&mut svc, req("anonymous"));
    assert_eq!(rest.len(), 8);
    let unlisted = fill(&mut svc, req("c"));
    assert!(unlisted.is_empty(), "an unlisted key is in the rest");
    assert_eq!(in_flight(&handle), [1, 8]);
    assert!(admit(&mut svc, req("a")).is_some(), "a finds its slot");
    drop((a, rest));
}

#[test]
fn critical_requests_keep_their_reserve_and_are_shed_last() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .critical(|req: &Req| req.critical.then_some(Critical))
        .critical_reserve(0.2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(never_answers));
    let normal = fill(&mut svc, req("a"));
    assert_eq!(normal.len(), 8, "two slots kept");
    let critical = Req {
        tenant: "a",
        critical: true,
    };
    let vip = fill(&mut svc, critical);
    assert_eq!(vip.len(), 2);
    assert_eq!(handle.metrics().critical_in_flight, 2);
    // A lowered limit still keeps a slot for them (20% of 5).
    drop(vip);
    handle.set_hard_limit(5).unwrap();
    drop(normal);
    let normal = fill(&mut svc, req("a"));
    assert_eq!(normal.len(), 4);
    assert!(admit(&mut svc, critical).is_some());
    assert_eq!(handle.metrics().critical_in_flight, 0, "the future dropped");
}

#[test]
fn critical_requests_come_before_partitions() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(10)
        .partition(|req: &Req| Some(req.tenant))
        .share("a", 0.5)
        .share("b", 0.5)
        .critical(|req: &Req| req.critical.then_some(Critical))
        .critical_reserve(0.2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(never_answers));
    let b = admit(&mut svc, req("b")).unwrap();
    // The partitions share the 8 the reserve leaves, 4 each; b asks for no
    // more than its one call, and a leaves it one slot and the reserve.
    let a = fill(&mut svc, req("a"));
    assert_eq!(a.len(), 6);
    let critical_b = Req {
        tenant: "b",
        critical: true,
    };
    let vip = fill(&mut svc, critical_b);
    assert_eq!(vip.len(), 3, "any free slot: b's one and the reserve");
    assert_eq!(in_flight(&handle), [6, 1, 0], "critical calls count apart");
    drop((a, b, vip));
}

#[cfg(feature = "http")]
#[test]
fn a_critical_extension_marks_an_http_request() {
    use reflex_shed::CriticalExtension;

    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(2)
        .critical_with(CriticalExtension)
        .critical_reserve(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|_: http::Request<()>| {
        pending::<Result<(), Infallible>>()
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut plain = svc.call(http::Request::new(()));
    assert!(Pin::new(&mut plain).poll(&mut cx).is_pending());
    let mut refused = svc.call(http::Request::new(()));
    assert!(
        Pin::new(&mut refused).poll(&mut cx).is_ready(),
        "one slot kept"
    );
    let mut marked = http::Request::new(());
    marked.extensions_mut().insert(Critical);
    let mut critical = svc.call(marked);
    assert!(Pin::new(&mut critical).poll(&mut cx).is_pending());
    assert_eq!(handle.metrics().critical_in_flight, 1);
}
