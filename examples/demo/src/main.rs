//! The main job: three components behind reflex presets on a real http
//! server on loopback, and what the witness saw and did.
//!
//! `api` (the axum router) calls `auth`, which calls `db`. A built-in load
//! sends requests for 16 seconds while `db` is healthy, then slow, then
//! failing, then healthy again. The witness learns each component's
//! baseline and the api > auth > db chain, and judges by origin: the slow
//! db is one report naming db, with auth and api affected (their own work
//! did not slow, only their wait on db); the failing db is one report
//! naming db, with auth's and api's failures as its echoes, and the reflex
//! acts on db's edge alone (it throttles the calls sent to db, or trips
//! db's breaker in a blackout and lets its half-open probes decide when db
//! is back), undone when the episode ends. Each episode's end is printed
//! too. The snapshot is served as JSON at `/witness`, and the live page
//! of the stack (`reflex::telemetry::page`) at `/live/`: the graph of the
//! calls, each component's rates, latencies and breaker, the reports as
//! they come. Prometheus can scrape `/metrics`
//! (`reflex::telemetry::prometheus`).
//!
//! ```sh
//! cargo run -p example-demo                    # ends by itself after the load
//! cargo run -p example-demo -- --serve         # keeps serving afterwards
//! cargo run -p example-demo -- --loop          # runs the phases again and again
//! cargo run -p example-demo -- --serve --addr 127.0.0.1:3000
//! ```
//!
//! `--addr` says where to listen (default: a free port on 127.0.0.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reflex::Preset;
use reflex::breaker::{CircuitBreakBuilder, CircuitBreakLayer};
use reflex::core::BoxError;
use reflex::telemetry::page::LivePage;
use reflex::telemetry::prometheus::MetricsService;
use reflex::witness::{EdgeReflex, Snapshot, Witness};
use tokio::net::{TcpListener, TcpStream};
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

/// How `db` behaves.
const HEALTHY: u8 = 0;
const SLOW: u8 = 1;
const FAILING: u8 = 2;

/// A component's service: `()` in, `()` out.
type Component = BoxCloneSyncService<(), (), BoxError>;

/// The breaker of `db` and `auth`: open after 5 failures in a row, for 2 s,
/// so the demo's phases show it open and close.
fn quick_breaker() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(2))
}

/// `db`: 2 ms, or 60 ms while slow, or an error while failing.
fn db(witness: &Witness, mode: Arc<AtomicU8>) -> Result<Component, BoxError> {
    let preset = Preset::new("db")
        .witness(witness)
        .breaker(quick_breaker())
        .timeout(Duration::from_secs(1))
        .build()?;
    let svc = preset.service(service_fn(move |(): ()| {
        let mode = mode.load(Ordering::Relaxed);
        async move {
            match mode {
                SLOW => tokio::time::sleep(Duration::from_millis(60)).await,
                FAILING => return Err::<(), BoxError>("db: connection refused".into()),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
            Ok(())
        }
    }));
    Ok(BoxCloneSyncService::new(svc))
}

/// `auth`: 1 ms of its own, then `db`.
fn auth(witness: &Witness, db: Component) -> Result<Component, BoxError> {
    let preset = Preset::new("auth")
        .witness(witness)
        .breaker(quick_breaker())
        .build()?;
    let svc = preset.service(service_fn(move |(): ()| {
        let db = db.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            db.oneshot(()).await
        }
    }));
    Ok(BoxCloneSyncService::new(svc))
}

async fn handle_api(State(auth): State<Component>) -> Response {
    match auth.oneshot(()).await {
        Ok(()) => "ok".into_response(),
        Err(err) => reflex::http::rejection_response::<Body>(&*err),
    }
}

async fn handle_witness(State(witness): State<Witness>) -> Response {
    let latest = witness.latest_snapshot();
    let reports: Vec<_> = witness.reports().iter().map(|r| (**r).clone()).collect();
    let body =
        serde_json::json!({ "snapshot": &*latest, "reports": reports, "health": witness.health() });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<StatusCode, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// Prints what a snapshot says that matters: its reports, read as an
/// incident summary, the reflexes' actions, and the episodes that ended
/// (`ended`: those already told).
fn print(
    snapshot: &Snapshot,
    witness: &Witness,
    ended: &mut Vec<u64>,
    started: tokio::time::Instant,
) {
    let at = started.elapsed().as_secs_f64();
    for report in &snapshot.reports {
        let episode = report
            .episode
            .map(|id| format!("#{id} "))
            .unwrap_or_default();
        println!("[{at:5.1}s] REPORT {episode}{}", report.summary);
        for root in &report.roots {
            println!("         root: {} ({:?})", root.component, root.kind);
        }
        for affected in &report.affected {
            println!(
                "         affected: {} (through {})",
                affected.component,
                affected.path.join(" -> ")
            );
        }
        if !report.causal_chain.is_empty() {
            // Each event once, where it first happened, with its count:
            // the failures of many requests interleave (db, auth, api, auth,
            // api, ...), and an operator wants the path, not the interleaving.
            let mut links: Vec<(String, usize)> = Vec::new();
            for link in &report.causal_chain {
                let event = format!("{} {}", link.component, link.what);
                match links.iter_mut().find(|(seen, _)| *seen == event) {
                    Some((_, count)) => *count += 1,
                    None => links.push((event, 1)),
                }
            }
            let chain: Vec<String> = links
                .iter()
                .take(6)
                .map(|(event, count)| match count {
                    1 => event.clone(),
                    n => format!("{event} (x{n})"),
                })
                .collect();
            println!("         causal chain: {}", chain.join(" -> "));
        }
        for action in &report.actions {
            println!("         action: {action}");
        }
    }
    for action in &snapshot.actions {
        if !snapshot.reports.iter().any(|r| r.actions.contains(action)) {
            println!("[{at:5.1}s] ACTION {action}");
        }
    }
    for episode in witness.episodes() {
        let Some(ended_ms) = episode.ended_ms else {
            continue;
        };
        if ended.contains(&episode.id) {
            continue;
        }
        ended.push(episode.id);
        let roots: Vec<&str> = episode.roots.iter().map(|r| r.component.as_str()).collect();
        println!(
            "[{at:5.1}s] RESOLVED #{} {}: back within its baseline, {:.1} s after it began",
            episode.id,
            roots.join(", "),
            ended_ms.saturating_sub(episode.since_ms) as f64 / 1000.0
        );
    }
}

/// What the command line asks.
struct Args {
    /// Keep serving after the load.
    serve: bool,
    /// Run the phases again and again.
    repeat: bool,
    /// Where to listen.
    addr: SocketAddr,
}

fn args() -> Result<Args, BoxError> {
    let mut args = Args {
        serve: false,
        repeat: false,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--serve" => args.serve = true,
            "--loop" => args.repeat = true,
            "--addr" => {
                let addr = given
                    .next()
                    .ok_or("--addr needs an address, e.g. 127.0.0.1:3000")?;
                args.addr = addr.parse()?;
            }
            other => {
                return Err(
                    format!("unknown argument {other}: --serve, --loop, --addr ADDR").into(),
                );
            }
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Args {
        serve,
        repeat,
        addr,
    } = args()?;
    let witness = Witness::builder()
        .interval(Duration::from_millis(500))
        // Five minutes of snapshots: what the live page's charts show when
        // it opens.
        .history_limit(600)
        .call_patterns(40, 3.0)
        .reflex(EdgeReflex::default())
        .start()?;
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let db = db(&witness, mode.clone())?;
    let auth = auth(&witness, db)?;

    let api = Preset::new("api")
        .classifier(reflex::core::ServerErrorsAsFailures)
        .witness(&witness)
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(64))
        .build()?;
    let app = Router::new()
        .route("/", get(handle_api).with_state(auth))
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    reflex::http::rejection_response::<Body>(&*err)
                }))
                .layer(api),
        )
        .merge(
            Router::new()
                .route("/witness", get(handle_witness))
                .with_state(witness.clone()),
        )
        .nest_service("/live", LivePage::new(&witness))
        .route_service("/metrics", MetricsService::new(&witness));
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("reflex demo on http://{addr}/ (snapshot at http://{addr}/witness)");
    println!("live page at http://{addr}/live/, Prometheus metrics at http://{addr}/metrics");
    println!("phases: 0-4 s healthy, 4-8 s db slow, 8-12 s db failing, 12-16 s healthy\n");

    let started = tokio::time::Instant::now();
    let mut snapshots = witness.subscribe();
    let told = witness.clone();
    let printer = tokio::spawn(async move {
        let mut ended = Vec::new();
        while let Ok(snapshot) = snapshots.recv().await {
            print(&snapshot, &told, &mut ended, started);
        }
    });

    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let phases = [
        ("healthy", HEALTHY),
        ("db slow", SLOW),
        ("db failing", FAILING),
        ("healthy again", HEALTHY),
    ];
    let rounds = if repeat { usize::MAX } else { 1 };
    for (phase, (name, behaviour)) in (0..rounds).flat_map(|_| phases.iter().copied().enumerate()) {
        mode.store(behaviour, Ordering::Relaxed);
        println!(
            "[{:5.1}s] --- phase {}: {name}",
            started.elapsed().as_secs_f64(),
            phase + 1
        );
        let until = tokio::time::Instant::now() + Duration::from_secs(4);
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        while tokio::time::Instant::now() < until {
            ticks.tick().await;
            let (ok, refused) = (ok.clone(), refused.clone());
            tokio::spawn(async move {
                match fetch(addr, "/").await {
                    Ok(StatusCode::OK) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            });
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = witness.health();
    println!(
        "\n{} requests answered, {} refused or failed; the witness followed {} components, learned {} call pattern(s), wrote {} report(s), took {} action(s); open breakers now: {:?}",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        health.components,
        health.patterns_learned,
        health.reports,
        health.actions,
        health.open_breakers,
    );
    if serve {
        println!("serving on http://{addr}/ (live page at http://{addr}/live/) until interrupted");
        std::future::pending::<()>().await;
    }
    printer.abort();
    Ok(())
}
