//! End-to-end load: the same axum server on loopback without the reflex
//! preset, with it (witness, shed, breaker), and with it and a timeout,
//! under a keep-alive
//! load of 32 connections, 3 s each in turn, 8 rounds; prints
//! requests per second, each round's ratios, and the median ratios. Run with `cargo bench -p reflex-benches --bench e2e_axum`.
//!
//! Client and server share the machine's cores, as they share them in
//! both runs. Not a criterion bench: throughput over a fixed time.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reflex::Preset;
use reflex::core::{BoxError, ServerErrorsAsFailures};
use reflex::witness::Witness;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

const CONNECTIONS: usize = 32;
const SECONDS: u64 = 3;
const ROUNDS: usize = 8;

fn plain() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn with_preset(witness: &Witness, name: &str, timeout: Option<Duration>) -> Router {
    let preset = Preset::new(name)
        .classifier(ServerErrorsAsFailures)
        .witness(witness)
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(1024))
        .maybe_timeout(timeout)
        .build()
        .expect("valid");
    plain().layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|err: BoxError| async move {
                reflex::http::rejection_response::<Body>(&*err)
            }))
            .layer(preset),
    )
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Requests per second over `SECONDS`, `CONNECTIONS` keep-alive clients.
async fn load(addr: SocketAddr) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = tokio::time::Instant::now() + Duration::from_secs(SECONDS);
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            while tokio::time::Instant::now() < until {
                let request = hyper::Request::get("/")
                    .header(hyper::header::HOST, "localhost")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let response = sender.send_request(request).await.expect("response");
                assert!(response.status().is_success());
                response.into_body().collect().await.expect("body");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / SECONDS as f64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let witness = Witness::builder().start().expect("witness");
        // Warm all up, then alternate: without, with, with + timeout.
        let bare = serve(plain()).await;
        let preset = serve(with_preset(&witness, "api", None)).await;
        let timed = serve(with_preset(&witness, "api-timeout", Some(Duration::from_secs(5)))).await;
        for addr in [bare, preset, timed] {
            let _ = load(addr).await;
        }
        let (mut ratios, mut timed_ratios) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let without = load(bare).await;
            let with = load(preset).await;
            let with_timeout = load(timed).await;
            ratios.push(with / without);
            timed_ratios.push(with_timeout / without);
            println!(
                "round {round}: without {without:.0} req/s; preset {with:.0} ({:.1}%); preset + timeout {with_timeout:.0} ({:.1}%)",
                with / without * 100.0,
                with_timeout / without * 100.0
            );
        }
        for (name, ratios) in [("preset", &mut ratios), ("preset + timeout", &mut timed_ratios)] {
            ratios.sort_by(f64::total_cmp);
            let median = (ratios[ROUNDS / 2 - 1] + ratios[ROUNDS / 2]) / 2.0;
            println!("{name}: median ratio over {ROUNDS} rounds {:.1}%", median * 100.0);
        }
        let snapshot = witness.cycle_now();
        if let Some(api) = snapshot.component("api") {
            println!(
                "the witness saw the preset's last cycle: p50 {:.3} ms, p99 {:.3} ms",
                api.p50_ms.unwrap_or_default(),
                api.p99_ms.unwrap_or_default()
            );
        }
    });
}
