//! The http retry layer never sends a copy of a request whose body can no
//! longer be sent: the caller gets the last attempt's own result.
#![cfg(feature = "http")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use reflex_core::BoxError;
use reflex_retry::http::ReplayBody;
use reflex_retry::{Jitter, RetryLayer};
use reflex_tests::support::ChannelBody;
use tokio::sync::mpsc;
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Layer, ServiceExt, service_fn};

type Kept = Arc<Mutex<Option<ReplayBody<ChannelBody>>>>;

/// The first attempt of a PUT answers 503 while its body is still being
/// sent (as a connection does), and keeps the body; during the backoff
/// that body is read past the limit. No later attempt is made: the caller
/// gets the 503, counted as given up.
#[tokio::test(start_paused = true)]
async fn a_retry_whose_body_went_past_the_limit_during_the_backoff_ends_with_the_last_result() {
    // With an attempt left after the retry (a copy would be made), and
    // with the retry the last attempt (the kept copy itself would go).
    for max_attempts in [3, 2] {
        let layer = RetryLayer::builder()
            .http()
            .max_attempts(max_attempts)
            .backoff(Duration::from_millis(200), 2.0)
            .jitter(Jitter::None)
            .body_limit(8)
            .build()
            .unwrap();
        let handle = layer.handle();
        let kept: Kept = Arc::default();
        let calls = Arc::new(AtomicU32::new(0));
        let svc = layer.layer(service_fn({
            let (kept, calls) = (kept.clone(), calls.clone());
            move |req: Request<ReplayBody<ChannelBody>>| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                let kept = kept.clone();
                async move {
                    if first {
                        *kept.lock().unwrap() = Some(req.into_body());
                        return Ok(Response::builder().status(503).body(()).unwrap());
                    }
                    req.into_body().collect().await?;
                    Ok::<_, BoxError>(Response::new(()))
                }
            }
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Bytes::from("0123")).unwrap();
        let request = Request::put("/item").body(ChannelBody(rx)).unwrap();
        let mut call = task::spawn(svc.oneshot(request));
        assert_pending!(call.poll(), "the 503 is retried after the backoff");

        let mut first = kept.lock().unwrap().take().expect("the first attempt ran");
        let chunk = first.frame().await.unwrap().unwrap();
        assert_eq!(chunk.into_data().unwrap(), "0123");
        tx.send(Bytes::from("456789AB")).unwrap();
        let chunk = first.frame().await.unwrap().unwrap();
        assert_eq!(chunk.into_data().unwrap(), "456789AB", "past the limit");
        assert!(!first.is_replayable());

        tokio::time::advance(Duration::from_secs(1)).await;
        let response = assert_ready!(call.poll()).expect("the 503, not an error");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt sent");
        let m = handle.metrics();
        assert_eq!((m.retries, m.gave_up, m.retrying), (0, 1, 0));
    }
}

/// The kept copy goes past the limit while the retry waits for the inner
/// service to be ready: it is not sent either.
#[tokio::test(start_paused = true)]
async fn a_body_that_goes_past_the_limit_while_the_service_gets_ready_is_not_sent() {
    let layer = RetryLayer::builder()
        .http()
        .max_attempts(2)
        .jitter(Jitter::None)
        .body_limit(8)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut server) =
        tower_test::mock::spawn_layer::<Request<ReplayBody<ChannelBody>>, Response<()>, _>(layer);
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Bytes::from("0123")).unwrap();
    server.allow(1);
    assert_ready!(svc.poll_ready::<Request<ChannelBody>>()).unwrap();
    let request = Request::put("/item").body(ChannelBody(rx)).unwrap();
    let mut call = task::spawn(svc.call(request));
    assert_pending!(call.poll());
    let (first, respond) = server.next_request().await.expect("the first attempt");
    respond.send_response(Response::builder().status(502).body(()).unwrap());
    assert_pending!(call.poll(), "the 502 is retried after the backoff");

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_pending!(call.poll(), "the service is not ready");
    let mut first = first.into_body();
    assert_eq!(
        first.frame().await.unwrap().unwrap().into_data().unwrap(),
        "0123"
    );
    tx.send(Bytes::from("456789AB")).unwrap();
    assert!(first.frame().await.unwrap().is_ok());
    server.allow(1);
    let response = assert_ready!(call.poll()).expect("the 502, not an error");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_pending!(server.poll_request(), "no attempt sent");
    drop(call);
    let m = handle.metrics();
    assert_eq!((m.retries, m.gave_up, m.retrying), (0, 1, 0));
}
