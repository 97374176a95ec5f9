//! Retry over an open breaker, over real sockets on loopback: the preset
//! (shed, retry, breaker) in front of an axum handler whose dependency is
//! down (every answer a 503), and a bounded burst of concurrent clients.
//!
//! Once the breaker is open, a retry does not sleep until it probes while
//! holding a shed permit: each request comes back at once, refused with
//! `CircuitOpen` (503 and a `Retry-After`), and the shed layer never fills.
//! Waiting for the breaker is an opt-in with a cap; the last two tests
//! check it does what `docs/retry.md` says, on either side of the cap.
//!
//! Every burst is bounded in requests (200 from 50 tasks) and in time, and
//! assertions are on counts and kinds, not on latency percentiles.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use http::{Request, Response, StatusCode};
use reflex::Preset;
use reflex::breaker::CircuitBreakLayer;
use reflex::core::signal::Recorder;
use reflex::core::{BoxError, BreakerState, Rejected, RetryReason, ServerErrorsAsFailures, Signal};
use reflex::retry::http::ReplayBody;
use reflex::retry::{Jitter, RetryBuilder, RetryLayer};
use reflex::shed::ConcurrencyShedLayer;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};

/// The shed layer's limit, and the soft limit below which a burst of
/// fast refusals stays (a soft-limit excursion is a signal, not a shed).
const HARD_LIMIT: usize = 20;
const SOFT_LIMIT: usize = 10;
const TASKS: usize = 50;
const REQUESTS_PER_TASK: usize = 4;
/// How long one request may take before the client counts it slow, and
/// how long a whole burst may take: generous, for a loaded machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
const BURST_TIMEOUT: Duration = Duration::from_secs(20);

/// What a client got back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// The handler's own 503: the request reached the dependency.
    Dependency,
    /// A 503 refusal of the stack, with its `Retry-After` in seconds and
    /// the kind the error handler wrote in the body (`CircuitOpen`, `Shed`).
    Refused {
        kind: String,
        retry_after: u64,
    },
    /// No answer within [`CLIENT_TIMEOUT`].
    Slow,
    Other(u16),
}

/// The server side of a soak: where it listens, and what it saw.
struct Server {
    addr: SocketAddr,
    /// Calls that reached the handler.
    hits: Arc<AtomicUsize>,
    /// Every signal of the shed layer, the retry layer and the breaker.
    signals: Arc<Recorder>,
}

/// Serves the preset (shed, `retry`, a breaker that trips after three
/// failures in a row and stays open `open_for`) in front of a handler that
/// answers 503, on 127.0.0.1:0.
async fn serve(retry: RetryBuilder, open_for: Duration) -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let signals = Arc::new(Recorder::with_capacity(100_000));
    let counted = hits.clone();
    let handler = service_fn(move |_request: Request<ReplayBody<Body>>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body(Body::empty())
                    .unwrap(),
            )
        }
    });
    let preset = Preset::new("api")
        .classifier(ServerErrorsAsFailures)
        .shed(
            ConcurrencyShedLayer::builder()
                .hard_limit(HARD_LIMIT)
                .soft_limit(SOFT_LIMIT)
                .sink(signals.clone()),
        )
        .breaker(
            CircuitBreakLayer::builder()
                .consecutive_failures(3)
                .open_duration(open_for)
                .sink(signals.clone()),
        )
        .retry(
            retry
                .http()
                .backoff(Duration::from_millis(1), 1.0)
                .jitter(Jitter::None)
                .max_attempts(3)
                .sink(signals.clone()),
        )
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|err: BoxError| async move {
            // The standard mapping, and the kind in the body, so that the
            // client can tell an open breaker from a full shed layer.
            let response = reflex::http::rejection_response::<Body>(&*err);
            let kind = Rejected::find(&*err).map(|r| format!("{:?}", r.kind()));
            response.map(|body| kind.map_or(body, Body::from))
        }))
        .layer(preset)
        .service(handler);
    let app = Router::new().route_service("/", stack);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        hits,
        signals,
    }
}

/// One `GET /`, read as an [`Answer`].
async fn get(addr: SocketAddr) -> Answer {
    let Ok((status, retry_after, body)) =
        tokio::time::timeout(CLIENT_TIMEOUT, common::get(addr)).await
    else {
        return Answer::Slow;
    };
    match (status.as_u16(), retry_after) {
        (503, None) if body.is_empty() => Answer::Dependency,
        (503, Some(after)) => Answer::Refused {
            kind: String::from_utf8(body.to_vec()).unwrap(),
            retry_after: after.parse().unwrap(),
        },
        (status, _) => Answer::Other(status),
    }
}

/// A burst of `TASKS` tasks sending `REQUESTS_PER_TASK` requests each, one
/// after the other: how many got each answer.
async fn burst(addr: SocketAddr) -> BTreeMap<Answer, usize> {
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            tokio::spawn(async move {
                let mut answers = Vec::with_capacity(REQUESTS_PER_TASK);
                for _ in 0..REQUESTS_PER_TASK {
                    answers.push(get(addr).await);
                }
                answers
            })
        })
        .collect();
    let all = tokio::time::timeout(BURST_TIMEOUT, async {
        let mut counts = BTreeMap::new();
        for task in tasks {
            for answer in task.await.unwrap() {
                *counts.entry(answer).or_insert(0) += 1;
            }
        }
        counts
    })
    .await
    .expect("the burst ended in time");
    assert_eq!(
        all.values().sum::<usize>(),
        TASKS * REQUESTS_PER_TASK,
        "one answer per request"
    );
    all
}

/// Opens the breaker: one request, whose three attempts all fail at the
/// dependency. The caller gets the last attempt's own 503.
async fn trip(server: &Server) {
    assert_eq!(get(server.addr).await, Answer::Dependency);
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    assert!(
        server.signals.signals().iter().any(|(_, s)| matches!(
            s,
            Signal::BreakerTransition {
                to: BreakerState::Open,
                ..
            }
        )),
        "the breaker opened"
    );
    server.signals.clear();
}

/// Serves the preset with `retry` and a breaker that stays open
/// `open_for`, trips the breaker, and sends a burst: the server and how
/// many got each answer.
async fn burst_over_an_open_breaker(
    retry: RetryBuilder,
    open_for: Duration,
) -> (Server, BTreeMap<Answer, usize>) {
    let server = serve(retry, open_for).await;
    trip(&server).await;
    let answers = burst(server.addr).await;
    (server, answers)
}

/// Signals the shed layer sent: sheds, and excursions over the soft limit.
fn shed_signals(server: &Server) -> (usize, usize) {
    let signals = server.signals.signals();
    let sheds = signals
        .iter()
        .filter(|(_, s)| matches!(s, Signal::Shed { .. }))
        .count();
    let excursions = signals
        .iter()
        .filter(|(_, s)| matches!(s, Signal::SoftLimitExceeded { .. }))
        .count();
    (sheds, excursions)
}

/// The breaker's waits the retry layer made.
fn breaker_waits(server: &Server) -> Vec<Duration> {
    server
        .signals
        .signals()
        .into_iter()
        .filter_map(|(_, s)| match s {
            Signal::RetryAttempt {
                delay,
                reason: RetryReason::CircuitOpen,
                ..
            } => Some(delay),
            _ => None,
        })
        .collect()
}

/// Every answer of a burst that met an open breaker and did not wait: a
/// `CircuitOpen` refusal with the breaker's `Retry-After` (at most its
/// open time), and nothing shed, slow or sent to the dependency; the shed
/// layer stayed below its soft limit all along.
fn assert_failed_fast(server: &Server, answers: &BTreeMap<Answer, usize>, open_for: Duration) {
    let mut refusals = 0;
    for (answer, count) in answers {
        match answer {
            Answer::Refused { kind, retry_after } if kind == "CircuitOpen" => {
                assert!(
                    (1..=open_for.as_secs()).contains(retry_after),
                    "Retry-After {retry_after}"
                );
                refusals += count;
            }
            other => panic!("{count} × {other:?}: {answers:?}"),
        }
    }
    assert_eq!(refusals, TASKS * REQUESTS_PER_TASK);
    assert_eq!(server.hits.load(Ordering::SeqCst), 3, "none reached it");
    assert_eq!(
        shed_signals(server),
        (0, 0),
        "nothing shed, and never more than {SOFT_LIMIT} of {HARD_LIMIT} in flight"
    );
    assert!(breaker_waits(server).is_empty(), "no retry waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_an_open_breaker_retries_fail_fast_and_never_fill_the_shed_limit() {
    let open_for = Duration::from_secs(30);
    let (server, answers) = burst_over_an_open_breaker(RetryLayer::builder(), open_for).await;
    assert_failed_fast(&server, &answers, open_for);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_wait_beyond_the_opt_in_cap_fails_fast_as_without_it() {
    let open_for = Duration::from_secs(30);
    let (server, answers) = burst_over_an_open_breaker(
        RetryLayer::builder().wait_for_open_breaker(Duration::from_secs(1)),
        open_for,
    )
    .await;
    assert_failed_fast(&server, &answers, open_for);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_wait_within_the_opt_in_cap_is_waited_and_never_longer_than_the_cap() {
    // The breaker probes 200 ms after it opens; the retry layer waits for
    // up to a second.
    let open_for = Duration::from_millis(200);
    let cap = Duration::from_secs(1);
    let (server, answers) =
        burst_over_an_open_breaker(RetryLayer::builder().wait_for_open_breaker(cap), open_for)
            .await;
    for (answer, count) in &answers {
        match answer {
            // A probe that failed at the dependency, or a request that
            // found the breaker open (or its probe out) and ran out of
            // attempts, or one refused by a shed layer full of waiting
            // requests: what waiting costs.
            Answer::Dependency => {}
            Answer::Refused { kind, .. } if kind == "CircuitOpen" || kind == "Shed" => {}
            other => panic!("{count} × {other:?}: {answers:?}"),
        }
    }
    let waits = breaker_waits(&server);
    assert!(!waits.is_empty(), "retries waited for the breaker");
    assert!(
        waits.iter().all(|wait| *wait <= open_for && *wait <= cap),
        "each wait is the breaker's, within the cap: {waits:?}"
    );
}
