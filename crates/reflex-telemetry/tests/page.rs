//! The live page's routes: the page, the snapshot as JSON, the event
//! stream (its backlog, each new snapshot and report, a client that falls
//! behind, keep-alives, the bound on streams), and the whole served by
//! axum over a real socket, ending a stream when its client goes away.
#![cfg(feature = "page")]

use std::time::Duration;

use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use reflex_core::{BoxError, ConfigErrorKind};
use reflex_telemetry::page::{LivePage, PageBody};
use reflex_witness::{Detector, Finding, Observation, Witness};
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};

/// A detector that reports `db` each cycle in which db failed.
struct DbFailures;

impl Detector for DbFailures {
    fn name(&self) -> &str {
        "db_failures"
    }

    fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        let failed = seen.snapshot.component("db").map_or(0, |db| db.failed);
        Ok((failed > 0)
            .then(|| {
                Finding::new(
                    "db failed",
                    vec!["db".to_owned()],
                    format!("db failed {failed} times"),
                )
            })
            .into_iter()
            .collect())
    }
}

/// A witness without a runtime (cycled by hand), with the detector above.
fn witness(history: usize) -> Witness {
    Witness::builder()
        .history_limit(history)
        .detector(DbFailures)
        .build()
        .unwrap()
}

/// `ok` requests and `failed` ones through db's witness layer.
async fn traffic(witness: &Witness, ok: usize, failed: usize) {
    let layer = witness.layer("db").build().unwrap();
    for fail in std::iter::repeat_n(false, ok).chain(std::iter::repeat_n(true, failed)) {
        let svc = layer.layer(service_fn(move |(): ()| async move {
            if fail {
                Err::<(), BoxError>("down".into())
            } else {
                Ok(())
            }
        }));
        let _ = svc.oneshot(()).await;
    }
}

async fn get(page: &LivePage, method: Method, path: &str) -> http::Response<PageBody> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    page.clone().oneshot(request).await.unwrap()
}

async fn text(response: http::Response<PageBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The next chunk of an event stream, within 5 s.
async fn next_chunk(body: &mut PageBody) -> String {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a chunk within 5 s")
        .expect("the stream goes on")
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

/// Every chunk of an event stream ready now (its backlog, on the first
/// call), each checked to hold at most one snapshot, together.
fn ready_chunks(body: &mut PageBody) -> String {
    use http_body::Body;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut all = String::new();
    while let std::task::Poll::Ready(Some(frame)) =
        std::pin::Pin::new(&mut *body).poll_frame(&mut cx)
    {
        let chunk = String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap();
        assert!(cycles(&events(&chunk)).len() <= 1, "{chunk}");
        all.push_str(&chunk);
    }
    all
}

/// The events of a chunk: (name, value).
fn events(chunk: &str) -> Vec<(String, Value)> {
    chunk
        .split("\n\n")
        .filter_map(|event| {
            let name = event.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

fn cycles(events: &[(String, Value)]) -> Vec<u64> {
    events
        .iter()
        .filter(|(name, _)| name == "snapshot")
        .map(|(_, v)| v["cycle"].as_u64().unwrap())
        .collect()
}

fn report_cycles(events: &[(String, Value)]) -> Vec<u64> {
    events
        .iter()
        .filter(|(name, _)| name == "report")
        .map(|(_, v)| v["cycle"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_page_is_one_html_document_that_loads_nothing_from_elsewhere() {
    let page = LivePage::new(&witness(8));
    let response = get(&page, Method::GET, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = text(response).await;
    assert!(html.starts_with("<!doctype html>"));
    for needed in [
        "id=\"graph\"",
        "id=\"components\"",
        "id=\"reports\"",
        "<script>",
        "<style>",
    ] {
        assert!(html.contains(needed), "the page lacks {needed}");
    }
    // The only URL in it is SVG's namespace, which is a name, not a
    // place to load from.
    let without_namespace = html.replace("'http://www.w3.org/2000/svg'", "");
    for external in ["http:", "https:", "//cdn", "src=", "@import", "url(http"] {
        assert!(
            !without_namespace.contains(external),
            "the page names {external}"
        );
    }
}

#[tokio::test]
async fn snapshot_json_is_the_latest_snapshot() {
    let witness = witness(8);
    traffic(&witness, 3, 1).await;
    witness.cycle_now();
    let page = LivePage::new(&witness);
    let response = get(&page, Method::GET, "/snapshot.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let json: Value = serde_json::from_str(&text(response).await).unwrap();
    let expected = serde_json::to_value(&*witness.latest_snapshot()).unwrap();
    assert_eq!(json, expected);
    assert_eq!(json["cycle"], 1);
    assert_eq!(json["components"][0]["component"], "db");
    assert_eq!(json["components"][0]["failed"], 1);
}

#[tokio::test]
async fn other_paths_are_404_other_methods_405_and_head_has_no_body() {
    let page = LivePage::new(&witness(8));
    for path in ["/nope", "/snapshot", "/events/", "/index.html"] {
        let response = get(&page, Method::GET, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let response = get(&page, Method::POST, "/").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    for path in ["/", "/snapshot.json", "/events"] {
        let response = get(&page, Method::HEAD, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(text(response).await.is_empty(), "{path}");
    }
    assert_eq!(page.open_streams(), 0, "a HEAD opens no stream");
}

#[tokio::test]
async fn a_stream_opens_with_the_window_and_the_kept_reports_then_sends_each_snapshot() {
    let witness = witness(8);
    for _ in 0..3 {
        traffic(&witness, 2, 1).await;
        witness.cycle_now();
    }
    let page = LivePage::new(&witness);
    let response = get(&page, Method::GET, "/events").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    assert_eq!(page.open_streams(), 1);

    let backlog = ready_chunks(&mut body);
    assert!(backlog.starts_with("retry: 2000\n\n"), "{backlog}");
    let opening = events(&backlog);
    assert_eq!(opening[0].0, "hello");
    assert_eq!(opening[0].1["cycle"], 3);
    assert_eq!(opening[0].1["window_ms"], 300_000);
    assert_eq!(opening[0].1["reports_shown"], 64);
    assert_eq!(cycles(&opening), [1, 2, 3]);
    assert_eq!(report_cycles(&opening), [1, 2, 3]);

    traffic(&witness, 1, 2).await;
    witness.cycle_now();
    let next = events(&next_chunk(&mut body).await);
    assert_eq!(cycles(&next), [4]);
    assert_eq!(report_cycles(&next), [4]);
    let report = &next[1].1;
    assert_eq!(report["roots"][0]["component"], "db");
    assert_eq!(report["summary"], "db failed 2 times");

    drop(body);
    assert_eq!(page.open_streams(), 0);
}

#[tokio::test]
async fn a_client_that_falls_behind_skips_to_the_latest_and_keeps_every_report() {
    // The witness's channel holds 16 snapshots: 20 unread ones overflow it.
    let witness = witness(2);
    let page = LivePage::new(&witness);
    let mut body = get(&page, Method::GET, "/events").await.into_body();
    let opening = events(&ready_chunks(&mut body));
    assert_eq!(cycles(&opening), Vec::<u64>::new(), "nothing yet");
    assert_eq!(opening[0].1["interval_ms"], Value::Null, "not known yet");

    for _ in 0..20 {
        traffic(&witness, 1, 1).await;
        witness.cycle_now();
    }
    let caught_up = events(&next_chunk(&mut body).await);
    assert_eq!(cycles(&caught_up), [20], "only the latest snapshot");
    assert_eq!(report_cycles(&caught_up), (1..=20).collect::<Vec<_>>());

    traffic(&witness, 1, 1).await;
    witness.cycle_now();
    let next = events(&next_chunk(&mut body).await);
    assert_eq!(cycles(&next), [21]);
    assert_eq!(report_cycles(&next), [21]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_sends_a_comment_every_keep_alive() {
    let witness = witness(8);
    let page = LivePage::builder(&witness)
        .keep_alive(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut body = get(&page, Method::GET, "/events").await.into_body();
    next_chunk(&mut body).await;
    let start = tokio::time::Instant::now();
    assert_eq!(next_chunk(&mut body).await, ": keep-alive\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    // A snapshot sent puts the next comment a whole keep-alive later.
    tokio::time::advance(Duration::from_secs(1)).await;
    traffic(&witness, 1, 0).await;
    witness.cycle_now();
    assert_eq!(cycles(&events(&next_chunk(&mut body).await)), [1]);
    let sent = tokio::time::Instant::now();
    assert_eq!(next_chunk(&mut body).await, ": keep-alive\n\n");
    assert_eq!(sent.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn streams_beyond_the_bound_are_refused_until_one_ends() {
    let page = LivePage::builder(&witness(8))
        .max_streams(1)
        .build()
        .unwrap();
    let first = get(&page, Method::GET, "/events").await;
    assert_eq!(first.status(), StatusCode::OK);
    let refused = get(&page, Method::GET, "/events").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
    assert_eq!(page.open_streams(), 1);
    // The page and the snapshot are still served.
    let html = get(&page, Method::GET, "/").await;
    assert_eq!(html.status(), StatusCode::OK);
    drop(first);
    assert_eq!(page.open_streams(), 0);
    let again = get(&page, Method::GET, "/events").await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[test]
fn the_builder_refuses_settings_out_of_range() {
    let witness = witness(8);
    let day = Duration::from_secs(24 * 60 * 60);
    let cases = [
        (
            LivePage::builder(&witness).window(Duration::from_millis(999)),
            "window",
            ConfigErrorKind::OutOfRange,
        ),
        (
            LivePage::builder(&witness).window(day + Duration::from_secs(1)),
            "window",
            ConfigErrorKind::OutOfRange,
        ),
        (
            LivePage::builder(&witness).keep_alive(Duration::ZERO),
            "keep_alive",
            ConfigErrorKind::OutOfRange,
        ),
        (
            LivePage::builder(&witness).keep_alive(Duration::MAX),
            "keep_alive",
            ConfigErrorKind::OutOfRange,
        ),
        (
            LivePage::builder(&witness).max_streams(0),
            "max_streams",
            ConfigErrorKind::Zero,
        ),
        (
            LivePage::builder(&witness).max_stream_age(Duration::from_millis(999)),
            "max_stream_age",
            ConfigErrorKind::OutOfRange,
        ),
        (
            LivePage::builder(&witness).max_stream_age(Duration::MAX),
            "max_stream_age",
            ConfigErrorKind::OutOfRange,
        ),
    ];
    for (builder, setting, kind) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!((err.setting(), err.kind()), (setting, kind));
        assert_eq!(err.layer(), "live page");
    }
    let edges = LivePage::builder(&witness)
        .window(day)
        .keep_alive(Duration::from_millis(1))
        .max_streams(usize::MAX)
        .max_stream_age(day)
        .build();
    assert!(edges.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_stream_ends_at_its_age_and_frees_its_place() {
    let witness = witness(8);
    let page = LivePage::builder(&witness)
        .keep_alive(Duration::from_secs(4))
        .max_stream_age(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut body = get(&page, Method::GET, "/events").await.into_body();
    let start = tokio::time::Instant::now();
    ready_chunks(&mut body);
    // Keep-alives, a snapshot: the stream goes on until its age.
    for _ in 0..2 {
        assert_eq!(next_chunk(&mut body).await, ": keep-alive\n\n");
    }
    traffic(&witness, 1, 0).await;
    witness.cycle_now();
    assert_eq!(cycles(&events(&next_chunk(&mut body).await)), [1]);
    // The next keep-alive would be at 12 s: the stream ends at 10 s.
    let end = tokio::time::timeout(Duration::from_secs(120), body.frame()).await;
    assert!(matches!(end, Ok(None)), "ended");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert!(http_body::Body::is_end_stream(&body));
    drop(body);
    assert_eq!(page.open_streams(), 0);
}

#[tokio::test(start_paused = true)]
async fn hello_tells_the_interval_as_the_median_time_per_cycle() {
    let witness = Witness::builder()
        .clock(reflex_witness::Clock::Tokio)
        .build()
        .unwrap();
    // A cycle a second, one run early by hand, and a quiet one (not kept).
    for step in [1_000, 1_000, 1_000, 100, 2_000] {
        tokio::time::advance(Duration::from_millis(step)).await;
        if step != 2_000 {
            traffic(&witness, 1, 0).await;
        }
        witness.cycle_now();
    }
    tokio::time::advance(Duration::from_millis(900)).await;
    traffic(&witness, 1, 0).await;
    witness.cycle_now();
    let page = LivePage::new(&witness);
    let mut body = get(&page, Method::GET, "/events").await.into_body();
    let opening = events(&ready_chunks(&mut body));
    // Per cycle: 1000, 1000, 100, (2000 + 900) / 2 = 1450: the median 1000.
    assert_eq!(opening[0].1["interval_ms"], 1_000);
}

/// Over a real socket: axum serves the page under `/live`, a client reads
/// the stream then goes away, and the stream ends (the keep-alive's write
/// fails) and frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_axum_a_stream_ends_when_its_client_goes_away() {
    use hyper_util::rt::TokioIo;

    let witness = Witness::builder()
        .interval(Duration::from_millis(20))
        .start()
        .unwrap();
    let page = LivePage::builder(&witness)
        .keep_alive(Duration::from_millis(20))
        .build()
        .unwrap();
    let app = axum::Router::new().nest_service("/live", page.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get("/live/events")
        .header(header::HOST, "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.into_data().unwrap().starts_with(b"retry: 2000"));
    assert_eq!(page.open_streams(), 1);

    drop(body);
    drop(sender);
    connection.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while page.open_streams() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort();
}
