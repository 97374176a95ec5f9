//! Run with `cargo run -p example-shed`.
//!
//! A real axum server on loopback whose handler stands for a slow
//! dependency (40 ms a call), behind a `ConcurrencyShedLayer` with a hard
//! limit of 8 and a soft limit of 6. A built-in load runs in three phases:
//!
//! 1. a gentle load (4 clients): every request is served;
//! 2. a burst (48 clients): the layer holds 8 in flight and sheds the rest
//!    with `503 Service Unavailable` and `Retry-After`, at once, instead of
//!    letting them queue; the soft limit warns once per excursion;
//! 3. the same burst after an operator halves the limit through the
//!    layer's handle.
//!
//! It prints the signals the layer emits as they happen, and a summary of
//! each phase, then stops by itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reflex_core::{BoxError, Component, RejectKind, Rejected, Signal, SignalSink};
use reflex_shed::{ConcurrencyShedLayer, ShedHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::ServiceBuilder;

/// How long the "dependency" takes to answer.
const DEPENDENCY_LATENCY: Duration = Duration::from_millis(40);
/// How long each load phase lasts.
const PHASE: Duration = Duration::from_secs(2);

/// Forwards signals to a printer task: `emit` only queues, it never prints
/// on the request path.
#[derive(Debug, Clone)]
struct Forward(mpsc::UnboundedSender<(Component, Signal)>);

impl SignalSink for Forward {
    fn emit(&self, component: &Component, signal: Signal) {
        let _ = self.0.send((component.clone(), signal));
    }
}

/// Maps the layer's errors to responses: a shed is a 503 with
/// `Retry-After`; anything else a 500 that does not leak the error's text.
async fn map_error(err: BoxError) -> Response {
    match Rejected::find(&*err) {
        Some(rejected) if rejected.kind() == RejectKind::Shed => {
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            if let Some(after) = rejected.retry_after() {
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            response
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A number in `0..bound`, spread well enough for jitter; no `rand` needed.
fn jitter(bound: u64) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % bound
}

/// The "dependency": `DEPENDENCY_LATENCY`, give or take a quarter.
async fn slow_dependency() -> &'static str {
    let base = DEPENDENCY_LATENCY.as_millis() as u64;
    let millis = base * 3 / 4 + jitter(base / 2 + 1);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    "served\n"
}

/// One GET over a fresh connection; returns the status and `Retry-After`.
async fn get_once(addr: SocketAddr) -> Result<(StatusCode, Option<String>), BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/work")
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((response.status(), retry_after))
}

/// `clients` clients calling in a loop for `PHASE`; counts the statuses.
async fn load(addr: SocketAddr, clients: usize) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + PHASE;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(async move {
            let mut seen = BTreeMap::<String, usize>::new();
            while Instant::now() < deadline {
                let key = match get_once(addr).await {
                    Ok((status, Some(after))) => format!("{status} (Retry-After: {after})"),
                    Ok((status, None)) => status.to_string(),
                    Err(err) => format!("client error: {err}"),
                };
                let shed = key.starts_with("503");
                *seen.entry(key).or_default() += 1;
                if shed {
                    // A polite client backs off a little after a 503.
                    tokio::time::sleep(Duration::from_millis(10 + jitter(20))).await;
                }
            }
            seen
        });
    }
    let mut total = BTreeMap::new();
    while let Some(seen) = tasks.join_next().await {
        for (status, n) in seen.expect("client task") {
            *total.entry(status).or_default() += n;
        }
    }
    total
}

fn summary(phase: &str, statuses: &BTreeMap<String, usize>, handle: &ShedHandle) {
    println!("\n== {phase}");
    for (status, n) in statuses {
        println!("   {n:>6} x {status}");
    }
    let metrics = handle.metrics();
    println!(
        "   layer: hard limit {}, soft limit {:?}, in flight {}, shed so far {}",
        metrics.hard_limit, metrics.soft_limit, metrics.in_flight, metrics.shed_total
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt().with_target(false).init();

    let (signals, mut printer) = mpsc::unbounded_channel();
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .soft_limit(6)
        .retry_after(Duration::from_secs(1))
        .component("slow-dependency")
        .sink(Forward(signals))
        .build()?;
    let handle = shed.handle();
    tokio::spawn(async move {
        while let Some((component, signal)) = printer.recv().await {
            // Sheds are many; the summaries count them.
            if !matches!(signal, Signal::Shed { .. }) {
                println!("   signal from {component}: {signal:?}");
            }
        }
    });

    let app = Router::new().route("/work", get(slow_dependency)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(map_error))
            .layer(shed),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "serving on http://{addr}/work, a dependency of {DEPENDENCY_LATENCY:?} a call behind a shed limit of 8"
    );

    summary("gentle load: 4 clients", &load(addr, 4).await, &handle);
    summary("burst: 48 clients", &load(addr, 48).await, &handle);
    handle.set_hard_limit(4)?;
    summary(
        "burst after halving the hard limit to 4",
        &load(addr, 48).await,
        &handle,
    );

    server.abort();
    Ok(())
}
