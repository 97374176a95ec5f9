//! All six reflex layers on an axum router, from the preset, with refusals
//! mapped to http responses: the shortest correct use. It serves on
//! loopback, calls itself a few times, prints what it got, what each layer
//! counted and what the witness saw, and ends (`-- --serve` keeps serving).
//!
//! ```sh
//! cargo run -p example-axum
//! ```

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::Request;
use axum::routing::{get, put};
use reflex::Preset;
use reflex::core::{BoxError, ServerErrorsAsFailures};
use reflex::dedup::DedupLayer;
use reflex::retry::RetryLayer;
use reflex::shed::ConcurrencyShedLayer;
use reflex::slot::{Policy, SlotAdmissionLayer};
use reflex::witness::Witness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let witness = Witness::builder().start()?;
    let stack = Preset::new("hello")
        .classifier(ServerErrorsAsFailures)
        .witness(&witness)
        .shed(ConcurrencyShedLayer::builder().hard_limit(128))
        // Identical GETs in flight share one call and its response body.
        .dedup(DedupLayer::builder().http())
        // One write per job at a time: a newer one replaces a running one.
        .slot(
            SlotAdmissionLayer::builder()
                .key(|req: &Request<Body>| {
                    (req.method() == "PUT").then(|| req.uri().path().to_owned())
                })
                .policy(Policy::Replace),
        )
        // Idempotent requests retried, their bodies replayed.
        .retry(RetryLayer::builder().http())
        .timeout(Duration::from_secs(5))
        .build()?;
    let handles = stack.handles().clone();
    let app = Router::new()
        .route("/", get(|| async { "hello from behind reflex" }))
        .route(
            "/jobs/{id}",
            put(|body: String| async move { format!("stored {body}") }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    reflex::http::rejection_response::<Body>(&*err)
                }))
                .layer(stack),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{addr}/");

    for request in [
        "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        "PUT /jobs/7 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\nconnection: close\r\n\r\nv2",
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response.lines().next().unwrap_or_default();
        let body = response.rsplit("\r\n\r\n").next().unwrap_or_default();
        println!(
            "{} -> {status}: {body}",
            request.lines().next().unwrap_or_default()
        );
    }
    println!("shed    {:?}", handles.shed.metrics());
    println!("dedup   {:?}", handles.dedup.metrics());
    println!("slot    {:?}", handles.slot.metrics());
    println!("retry   {:?}", handles.retry.metrics());
    println!("breaker {:?}", handles.breaker.state());
    if let Some(hello) = witness.cycle_now().component("hello") {
        println!(
            "the witness saw {} requests, {} succeeded, p50 {:.2} ms",
            hello.requests,
            hello.succeeded,
            hello.p50_ms.unwrap_or_default()
        );
    }
    if std::env::args().any(|a| a == "--serve") {
        std::future::pending::<()>().await;
    }
    Ok(())
}
