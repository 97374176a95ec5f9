//! A request with no key costs nothing more than the check.

use reflex_dedup::DedupLayer;
use reflex_tests::support::{Echo, allocations_per_call};
use tower::Layer;

#[test]
fn a_request_without_a_key_allocates_nothing() {
    let layer = DedupLayer::builder()
        .key(|n: &u64| (*n == u64::MAX).then_some(*n))
        .build()
        .unwrap();
    assert_eq!(allocations_per_call(&mut layer.layer(Echo), 1000), 0.0);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}

/// Over `http`: a request `HttpKey` does not key (a POST) goes through
/// the `http()` layer, its response unbuffered and unmarked.
#[cfg(feature = "http")]
mod http {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Empty;
    use reflex_dedup::{DedupLayer, Sharing};
    use tower::{Layer, Service};

    type Body = Empty<Bytes>;

    /// An origin that answers at once, with a head that allocates nothing
    /// (no header, no extension).
    #[derive(Clone, Copy)]
    struct EmptyOrigin;

    impl Service<Request<Body>> for EmptyOrigin {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            ready(Ok(Response::new(Empty::new())))
        }
    }

    /// One whole call, no runtime: `poll_ready`, `call`, one poll.
    fn call<S>(svc: &mut S, request: Request<Body>) -> S::Response
    where
        S: Service<Request<Body>>,
        S::Error: std::fmt::Debug,
    {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        match pin!(svc.call(request)).poll(&mut cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(err)) => panic!("failed: {err:?}"),
            Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn a_request_without_a_key_through_the_http_layer_allocates_nothing() {
        let layer = DedupLayer::builder().http().build().unwrap();
        let mut svc = layer.layer(EmptyOrigin);
        // Requests are built outside the count: only the layer's work is.
        let mut posts: Vec<_> = (0..1001)
            .map(|_| Request::post("/upload").body(Empty::new()).unwrap())
            .collect();
        let first = call(&mut svc, posts.pop().unwrap());
        let mut responses = Vec::with_capacity(posts.len());
        let info = allocation_counter::measure(|| {
            for post in posts.drain(..) {
                responses.push(call(&mut svc, post));
            }
        });
        assert_eq!(info.count_total, 0, "no allocation for 1000 POSTs");
        assert_eq!(first.extensions().get::<Sharing>(), None, "unmarked");
        assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    }
}
