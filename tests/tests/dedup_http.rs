//! DedupLayer over `http`: which requests coalesce, response bodies shared
//! whole, and a body over the limit sent whole to one and re-fetched by
//! the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Empty, Full};
use reflex_core::BoxError;
use reflex_dedup::{DedupLayer, HttpKey, Sharing};
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};

type Req = Request<Empty<Bytes>>;

/// An origin whose answers wait for a gate: a body of `size` bytes naming
/// the path, a header, and a trailer-free end.
fn origin(
    size: usize,
) -> (
    impl Service<Req, Response = Response<Full<Bytes>>, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static,
    Arc<AtomicUsize>,
    watch::Sender<bool>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (open, gate) = watch::channel(false);
    let counted = calls.clone();
    let svc = tower::service_fn(move |req: Req| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let mut gate = gate.clone();
        async move {
            gate.wait_for(|open| *open).await.map_err(|_| "gate gone")?;
            let mut body = format!("{} #{n} ", req.uri()).into_bytes();
            body.resize(size.max(body.len()), b'.');
            Ok::<_, BoxError>(
                Response::builder()
                    .header("x-call", n.to_string())
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
        }
    });
    (svc, calls, open)
}

fn get(path: &str) -> Req {
    Request::get(path).body(Empty::new()).unwrap()
}

async fn body_of<B: http_body::Body<Error = BoxError>>(response: Response<B>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn identical_gets_share_one_call_and_each_gets_the_whole_response() {
    let (origin, calls, open) = origin(100);
    let layer = DedupLayer::builder()
        .build_http::<Empty<Bytes>>(HttpKey::new(), 1024)
        .unwrap();
    let svc = layer.layer(origin);
    let tasks: Vec<_> = (0..8)
        .map(|_| tokio::spawn(svc.clone().oneshot(get("/a"))))
        .collect();
    tokio::task::yield_now().await;
    open.send_replace(true);
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.headers()["x-call"], "0");
        assert_eq!(
            response.extensions().get::<Sharing>(),
            Some(&Sharing::Shared)
        );
        let body = body_of(response).await;
        assert_eq!(body.len(), 100);
        assert!(body.starts_with(b"/a #0 "));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn posts_and_different_varied_headers_do_not_coalesce() {
    let (origin, calls, open) = origin(10);
    open.send_replace(true);
    let layer = DedupLayer::builder()
        .build_http::<Empty<Bytes>>(HttpKey::new().vary(header::AUTHORIZATION), 1024)
        .unwrap();
    let svc = layer.layer(origin);
    let as_user = |user: &str| {
        Request::get("/me")
            .header(header::AUTHORIZATION, user)
            .body(Empty::new())
            .unwrap()
    };
    let post = || Request::post("/me").body(Empty::new()).unwrap();
    let (a, b, c, d) = tokio::join!(
        svc.clone().oneshot(as_user("alice")),
        svc.clone().oneshot(as_user("bob")),
        svc.clone().oneshot(post()),
        svc.clone().oneshot(post()),
    );
    for response in [a, b, c, d] {
        assert_eq!(
            response
                .unwrap()
                .extensions()
                .get::<Sharing>()
                .copied()
                .unwrap_or(Sharing::Own),
            Sharing::Own
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_body_over_the_limit_goes_whole_to_the_leader_and_the_others_fetch_their_own() {
    let (origin, calls, open) = origin(5_000);
    let layer = DedupLayer::builder()
        .build_http::<Empty<Bytes>>(HttpKey::new(), 1024)
        .unwrap();
    let svc = layer.layer(origin);
    let leader = tokio::spawn(svc.clone().oneshot(get("/big")));
    tokio::task::yield_now().await;
    let followers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(get("/big"))))
        .collect();
    tokio::task::yield_now().await;
    open.send_replace(true);
    let leader = leader.await.unwrap().unwrap();
    assert_eq!(leader.headers()["x-call"], "0");
    let body = body_of(leader).await;
    assert_eq!(body.len(), 5_000, "nothing cut");
    assert!(body.starts_with(b"/big #0 "));
    for follower in followers {
        let response = follower.await.unwrap().unwrap();
        assert_ne!(response.headers()["x-call"], "0", "its own call");
        assert_eq!(body_of(response).await.len(), 5_000);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}

#[tokio::test(start_paused = true)]
async fn cached_responses_are_weighed_by_their_body() {
    let (origin, calls, open) = origin(300);
    open.send_replace(true);
    let layer = DedupLayer::builder()
        .cache(Duration::from_secs(60), 100)
        .cache_max_bytes(700)
        .build_http::<Empty<Bytes>>(HttpKey::new(), 1024)
        .unwrap();
    let svc = layer.layer(origin);
    for path in ["/1", "/2", "/3"] {
        svc.clone().oneshot(get(path)).await.unwrap();
    }
    let m = layer.handle().metrics();
    assert_eq!(
        (m.cache_entries, m.cache_bytes),
        (2, 600),
        "700 bytes hold two"
    );
    let cached = svc.clone().oneshot(get("/3")).await.unwrap();
    assert_eq!(cached.extensions().get::<Sharing>(), Some(&Sharing::Cached));
    assert_eq!(body_of(cached).await.len(), 300);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
