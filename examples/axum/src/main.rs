//! The reflex preset on an axum router, with refusals mapped to http
//! responses. It serves on loopback, calls itself a few times, prints what
//! it got and what the witness saw, and ends (`-- --serve` keeps serving).
//!
//! ```sh
//! cargo run -p example-axum
//! ```

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use reflex::Preset;
use reflex::core::{BoxError, ServerErrorsAsFailures};
use reflex::witness::Witness;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let witness = Witness::builder().start()?;
    let preset = Preset::new("hello")
        .classifier(ServerErrorsAsFailures)
        .witness(&witness)
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(128))
        .timeout(Duration::from_secs(5))
        .build()?;
    let app = Router::new()
        .route("/", get(|| async { "hello from behind reflex" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    reflex::http::rejection_response::<Body>(&*err)
                }))
                .layer(preset),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{addr}/");

    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        println!("{}", response.lines().next().unwrap_or_default());
    }
    let snapshot = witness.cycle_now();
    if let Some(hello) = snapshot.component("hello") {
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
