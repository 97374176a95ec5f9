//! The Closed happy path allocates nothing. Its own test binary: the
//! counting allocator counts per thread, and this file runs one test.

use std::future::{Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use reflex_breaker::CircuitBreakLayer;
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

fn calls_allocate<L: Layer<Echo>>(layer: &L) -> u64
where
    L::Service: Service<u64, Response = u64, Error: std::fmt::Debug>,
{
    let mut svc = layer.layer(Echo);
    let mut cx = Context::from_waker(Waker::noop());
    let mut one_call = |n| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        match pin!(svc.call(n)).poll(&mut cx) {
            Poll::Ready(Ok(out)) => assert_eq!(out, n),
            other => panic!("unexpected {other:?}"),
        }
    };
    one_call(0);
    allocation_counter::measure(|| {
        for n in 1..1000 {
            one_call(n);
        }
    })
    .count_total
}

#[test]
fn a_closed_breaker_admits_and_records_without_allocating() {
    let count_window = CircuitBreakLayer::builder()
        .consecutive_failures(5)
        .slow_calls(0.5, Duration::from_secs(1))
        .build()
        .unwrap();
    let time_window = CircuitBreakLayer::builder()
        .time_window(Duration::from_secs(10), 10)
        .build()
        .unwrap();
    assert_eq!(calls_allocate(&count_window), 0);
    assert_eq!(calls_allocate(&time_window), 0);
    assert_eq!(
        count_window.handle().metrics().calls,
        100,
        "the window is full of successes"
    );
}
