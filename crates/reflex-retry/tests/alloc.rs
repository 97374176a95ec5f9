//! A request that is not retried allocates nothing, unless it has a timer
//! and is still running at its first poll: then the timer's sleep is one
//! allocation.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use reflex_retry::RetryLayer;
use reflex_tests::support::{Echo, allocations_per_call};
use tower::{Layer, Service, service_fn};

#[test]
fn a_request_that_succeeds_at_once_allocates_nothing() {
    let budgeted = RetryLayer::builder().build().unwrap();
    let plain = RetryLayer::builder().no_budget().build().unwrap();
    assert_eq!(allocations_per_call(&mut budgeted.layer(Echo), 1000), 0.0);
    assert_eq!(allocations_per_call(&mut plain.layer(Echo), 1000), 0.0);
    // The 1001 requests funded their share of retries: the budget ran.
    let remaining = budgeted.handle().metrics().budget_remaining.unwrap();
    assert!(remaining >= 100 + 937 / 5, "{remaining} retries funded");
}

fn timer_context() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn timed() -> RetryLayer {
    RetryLayer::builder()
        .attempt_timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap()
}

#[test]
fn a_request_with_timers_answered_at_its_first_poll_allocates_nothing() {
    let runtime = timer_context();
    let _entered = runtime.enter();
    assert_eq!(allocations_per_call(&mut timed().layer(Echo), 1000), 0.0);
}

/// A future that is pending once, then ready with its request.
struct YieldOnce(Option<u64>, bool);

impl Future for YieldOnce {
    type Output = Result<u64, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.1, true) {
            return Poll::Ready(Ok(self.0.take().expect("polled after completion")));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn a_request_still_running_at_its_first_poll_arms_its_timer_with_one_allocation() {
    let runtime = timer_context();
    let _entered = runtime.enter();
    let mut svc = timed().layer(service_fn(|n: u64| YieldOnce(Some(n), false)));
    let mut cx = Context::from_waker(Waker::noop());
    let mut call = |n: u64| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut future = pin!(svc.call(n));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        match future.poll(&mut cx) {
            Poll::Ready(Ok(answer)) => answer,
            other => panic!("{other:?}"),
        }
    };
    call(0);
    let calls = 1000;
    let info = allocation_counter::measure(|| {
        for n in 0..calls {
            std::hint::black_box(call(n));
        }
    });
    assert_eq!(info.count_total, calls, "the timer's sleep, once a request");
}

/// Over http: a request whose body is empty, or that is not retried (not
/// idempotent), allocates nothing in the layer; only a body to record
/// costs allocations.
#[cfg(feature = "http")]
mod http {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use http::{Method, Request, Response};
    use http_body_util::{Empty, Full};
    use reflex_retry::RetryLayer;
    use reflex_retry::http::ReplayBody;
    use tower::{Layer, Service};

    /// Answers 200 at once, without reading the body.
    #[derive(Clone, Copy)]
    struct Ok200;

    impl<B> Service<Request<ReplayBody<B>>> for Ok200 {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<ReplayBody<B>>) -> Self::Future {
            ready(Ok(Response::new(())))
        }
    }

    /// Allocations per call of `requests` through a retry layer over
    /// `Ok200`, the requests made beforehand.
    fn allocations_per_request<B>(requests: Vec<Request<B>>) -> f64
    where
        B: http_body::Body,
    {
        let layer = RetryLayer::builder().http().build().unwrap();
        let mut svc = layer.layer(Ok200);
        let mut cx = Context::from_waker(Waker::noop());
        let calls = requests.len() as f64;
        let info = allocation_counter::measure(|| {
            for request in requests {
                assert!(Service::<Request<B>>::poll_ready(&mut svc, &mut cx).is_ready());
                let mut future = std::pin::pin!(svc.call(request));
                assert!(future.as_mut().poll(&mut cx).is_ready());
            }
        });
        info.count_total as f64 / calls
    }

    fn requests<B>(method: &Method, body: impl Fn() -> B) -> Vec<Request<B>> {
        (0..100)
            .map(|_| {
                let mut request = Request::new(body());
                *request.method_mut() = method.clone();
                request
            })
            .collect()
    }

    #[test]
    fn a_request_with_an_empty_body_or_not_retried_allocates_nothing() {
        assert_eq!(
            allocations_per_request(requests(&Method::GET, Empty::<Bytes>::new)),
            0.0
        );
        let full = || Full::new(Bytes::from_static(b"payload"));
        assert_eq!(allocations_per_request(requests(&Method::POST, full)), 0.0);
        assert!(
            allocations_per_request(requests(&Method::PUT, full)) > 0.0,
            "a body that may be sent again is recorded"
        );
    }
}
