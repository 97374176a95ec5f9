//! Small pieces every layer's tests and benches share: an inner service
//! that costs nothing, one call driven without a runtime, allocations
//! counted per call, a layer over a mock and a call to it in a task, and
//! an http body the test feeds chunk by chunk.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use reflex_core::BoxError;
use tokio::sync::mpsc;
use tokio_test::task::Spawn;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

/// An inner service that is always ready and answers at once: what remains
/// of a call's cost is the layers' own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// One whole call on the current thread, no runtime: `poll_ready`, `call`,
/// poll the response to completion, drop it. Panics if anything is pending
/// or fails: the benches measure the happy path only.
#[inline]
pub fn call_once<S>(svc: &mut S, req: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("not ready: {other:?}"),
    }
    let response = pin!(svc.call(req));
    match response.poll(&mut cx) {
        Poll::Ready(Ok(out)) => out,
        Poll::Ready(Err(err)) => panic!("failed: {err:?}"),
        Poll::Pending => panic!("pending"),
    }
}

/// Heap allocations per call of [`call_once`], over `calls` calls after one
/// warm-up call.
pub fn allocations_per_call<S>(svc: &mut S, calls: u64) -> f64
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    call_once(svc, 0);
    let info = allocation_counter::measure(|| {
        for n in 0..calls {
            std::hint::black_box(call_once(svc, n));
        }
    });
    info.count_total as f64 / calls as f64
}

/// The service `layer` makes over a tower-test mock, and the mock's
/// handle.
pub fn over_mock<L, Req, Res>(layer: L) -> (L::Service, mock::Handle<Req, Res>)
where
    L: Layer<mock::Mock<Req, Res>>,
{
    let (inner, handle) = mock::pair();
    (layer.layer(inner), handle)
}

/// `req` called on `svc` once it is ready, in a tokio-test task that is not
/// polled yet.
pub async fn spawn_call<S, Req>(svc: &mut S, req: Req) -> Spawn<S::Future>
where
    S: Service<Req>,
    S::Error: fmt::Debug,
{
    tokio_test::task::spawn(svc.ready().await.unwrap().call(req))
}

/// Runs `future` to its end on a new current-thread runtime whose clock is
/// paused (time jumps to the next timer when nothing else can run): for
/// property tests and benches that need tokio's time but no `#[tokio::test]`.
pub fn block_on_paused<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

/// An http body fed through a channel: each chunk the test sends is a data
/// frame, it is pending until one comes (keeping the waker of its last poll
/// only), and it ends when the sender is dropped.
#[derive(Debug)]
pub struct ChannelBody(pub mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}
