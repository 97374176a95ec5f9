//! The preset on an axum router, over a real socket on loopback: every
//! request is witnessed, and what the stack refuses is an http response.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::{MethodRouter, get};
use reflex::Preset;
use reflex::core::BoxError;
use reflex::witness::{Clock, Witness};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// A `GET` handler that answers `answer` once the test adds a permit to
/// `gate`.
fn held_at(gate: &Arc<Semaphore>, answer: &'static str) -> MethodRouter {
    let gate = gate.clone();
    get(move || {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            answer
        }
    })
}

/// The stack's refusal as an http response.
async fn refusal(err: BoxError) -> axum::response::Response {
    reflex::http::rejection_response(&*err)
}

/// Serves `app` on loopback: its address.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn get_status(addr: SocketAddr) -> (u16, Option<String>) {
    let (status, retry_after, _) = common::get(addr).await;
    (status.as_u16(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preset_on_an_axum_router_witnesses_requests_and_answers_refusals() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let preset = Preset::new("api")
        .witness(&witness)
        .shed(
            reflex::shed::ConcurrencyShedLayer::builder()
                .hard_limit(1)
                .retry_after(Duration::from_secs(3)),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let app = Router::new().route("/", held_at(&gate, "ok")).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(refusal))
            .layer(preset),
    );
    let addr = serve(app).await;

    // One request holds the only place; the next is shed, with a hint.
    let first = tokio::spawn(get_status(addr));
    while witness.cycle_now().component("api").unwrap().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(get_status(addr).await, (503, Some("3".to_owned())));
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), (200, None));
    gate.add_permits(1);
    assert_eq!(get_status(addr).await, (200, None));

    let snapshot = witness.cycle_now();
    let api = snapshot.component("api").unwrap();
    assert_eq!(
        api.succeeded, 2,
        "the first and the third ended since the last cycle"
    );
    assert!(witness.history().iter().any(|s| {
        s.component("api")
            .is_some_and(|c| c.rejected == vec![("shed".to_owned(), 1)])
    }));
}

/// All six layers from the preset on an axum router, the http dedup and
/// retry included, with no adapter: a request the shed layer refuses is
/// answered before its body is read, and one it admits goes through every
/// layer with its whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_shed_layer_refuses_is_answered_before_its_body_is_read() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::put;
    use reflex::dedup::DedupLayer;
    use reflex::retry::RetryLayer;
    use reflex::slot::SlotAdmissionLayer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let uploads = Arc::new(AtomicUsize::new(0));
    let counted = uploads.clone();
    let stack = Preset::new("api")
        .classifier(reflex::core::ServerErrorsAsFailures)
        .witness(&witness)
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(1))
        .dedup(DedupLayer::builder().http())
        .slot(SlotAdmissionLayer::builder().key(|req: &Request<Body>| {
            (req.method() == "PUT").then(|| req.uri().path().to_owned())
        }))
        .retry(RetryLayer::builder().http())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let handles = stack.handles().clone();
    let app = Router::new()
        .route("/hold", held_at(&gate, "held"))
        .route(
            "/upload",
            put(move |body: axum::body::Bytes| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { body.len().to_string() }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(refusal))
                .layer(stack),
        );
    let addr = serve(app).await;

    // One request holds the only place.
    let hold = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hold HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    });
    while handles.shed.metrics().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    // A PUT announcing a megabyte sends ten bytes and waits: only a stack
    // that reads no body before refusing can answer it.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"PUT /upload HTTP/1.1\r\nhost: api\r\ncontent-length: 1048576\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let mut head = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut head))
        .await
        .expect("the refusal came without the body")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(handles.shed.metrics().shed_total, 1);
    assert_eq!(uploads.load(Ordering::SeqCst), 0, "the handler never ran");
    drop(stream);

    gate.add_permits(1);
    assert!(hold.await.unwrap().ends_with("held"));
    // Admitted, a body goes through dedup, slot, retry (recorded for a
    // replay), the breaker and the timeout to the handler, whole.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = vec![b'x'; 100_000];
    stream
        .write_all(
            format!(
                "PUT /upload HTTP/1.1\r\nhost: api\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("100000"), "{answer}");
    assert_eq!(uploads.load(Ordering::SeqCst), 1);
    assert_eq!(handles.slot.metrics().started, 1);
    assert_eq!(
        handles.breaker.metrics().calls,
        2,
        "the hold and the upload"
    );
    assert_eq!(handles.retry.metrics().retries, 0);
}
