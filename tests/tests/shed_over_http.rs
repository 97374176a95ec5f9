//! ConcurrencyShedLayer in front of a real axum server, over loopback.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use reflex_core::{BoxError, RejectKind, Rejected};
use reflex_shed::ConcurrencyShedLayer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_sheds_over_its_limit_with_503_and_recovers() {
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(2)
        .retry_after(Duration::from_millis(2500))
        .component("api")
        .build()
        .unwrap();
    let handle = shed.handle();

    // The handler reports that it entered, then waits at a closed gate.
    let gate = Arc::new(Semaphore::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let handler = {
        let gate = gate.clone();
        move || async move {
            entered_tx.send(()).unwrap();
            let _pass = gate.acquire().await.unwrap();
            "done"
        }
    };
    let app = Router::new().route("/", get(handler)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(async |err: BoxError| {
                let rejected = Rejected::find(&*err).expect("only rejections here");
                assert_eq!(rejected.kind(), RejectKind::Shed);
                let secs = rejected.retry_after().unwrap().as_secs_f64().ceil() as u64;
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, secs.to_string())],
                    rejected.to_string(),
                )
                    .into_response()
            }))
            .layer(shed),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let first = tokio::spawn(common::get(addr));
    let second = tokio::spawn(common::get(addr));
    entered.recv().await.unwrap();
    entered.recv().await.unwrap();
    assert_eq!(handle.metrics().in_flight, 2);

    // The third is answered at once, without reaching the handler.
    let (status, retry_after, body) = common::get(addr).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("3"));
    assert_eq!(body, "api: request shed");
    assert!(entered.try_recv().is_err(), "the handler never saw it");
    assert_eq!(handle.metrics().shed_total, 1);

    gate.add_permits(2);
    for held in [first, second] {
        let (status, _, body) = held.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "done");
    }
    assert_eq!(handle.metrics().in_flight, 0);

    // And the server serves again.
    gate.add_permits(1);
    assert_eq!(common::get(addr).await.0, StatusCode::OK);
    server.abort();
}
