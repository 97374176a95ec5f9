//! The reflex preset on both sides of a hyper 1 connection: on the server
//! (through hyper-util's tower adapter, refusals mapped to responses), and
//! around a hyper-util client (retrying idempotent requests, bodies sent
//! again whole). It serves on loopback, calls itself, prints what it got
//! and what the witness saw, and ends.
//!
//! ```sh
//! cargo run -p example-hyper
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use reflex::Preset;
use reflex::core::{BoxError, ServerErrorsAsFailures};
use reflex::retry::RetryLayer;
use reflex::retry::http::ReplayBody;
use reflex::witness::Witness;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let witness = Witness::builder().start()?;

    // The server: unavailable for its first request, then fine.
    let hits = Arc::new(AtomicUsize::new(0));
    let handler = tower::service_fn(move |request: Request<Incoming>| {
        let n = hits.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = request.into_body().collect().await?.to_bytes();
            let status = if n == 0 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            Ok::<_, BoxError>(Response::builder().status(status).body(Full::new(body))?)
        }
    });
    let server = ServiceBuilder::new()
        .map_result(|result: Result<Response<Full<Bytes>>, BoxError>| {
            Ok::<_, BoxError>(result.unwrap_or_else(|err| reflex::http::rejection_response(&*err)))
        })
        .layer(
            Preset::new("server")
                .classifier(ServerErrorsAsFailures)
                .witness(&witness)
                .build()?,
        )
        .service(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(server.clone());
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    println!("serving on http://{addr}/");

    // The client: retries the 503, sending the body again (the preset's
    // retry layer hands the client a `ReplayBody`).
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new()
        .layer(
            Preset::new("client")
                .classifier(ServerErrorsAsFailures)
                .witness(&witness)
                .retry(
                    RetryLayer::builder()
                        .http()
                        .backoff(Duration::from_millis(20), 2.0),
                )
                .timeout(Duration::from_secs(5))
                .build()?,
        )
        .service(client);
    let request =
        Request::put(format!("http://{addr}/item/1")).body(Full::new(Bytes::from_static(b"v2")))?;
    let response = client.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("PUT /item/1 -> {status} {body:?}");

    let snapshot = witness.cycle_now();
    for state in &snapshot.components {
        println!(
            "{}: {} requests, {} succeeded, {} failed, {} retries",
            state.component, state.requests, state.succeeded, state.failed, state.retries
        );
    }
    Ok(())
}
