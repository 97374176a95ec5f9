//! The happy path allocates nothing. Its own test binary: the counting
//! allocator counts per thread, and this file runs one test.

use std::future::{Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use reflex_shed::ConcurrencyShedLayer;
use tower::{Layer, Service};

#[derive(Clone)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<u64, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

#[test]
fn admitting_and_completing_a_request_allocates_nothing() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .soft_limit(4)
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    let mut cx = Context::from_waker(Waker::noop());
    let mut one_call = |n| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let future = pin!(svc.call(n));
        match future.poll(&mut cx) {
            Poll::Ready(Ok(out)) => assert_eq!(out, n),
            other => panic!("unexpected {other:?}"),
        }
    };
    one_call(0);
    let info = allocation_counter::measure(|| {
        for n in 1..1000 {
            one_call(n);
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    assert_eq!(layer.handle().in_flight(), 0);
}
