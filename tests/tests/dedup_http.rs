//! DedupLayer over `http`: which requests coalesce, response bodies shared
//! whole, a body over the limit sent whole to one and re-fetched by the
//! others, and requests without a key streamed through unbuffered.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};
use reflex_core::BoxError;
use reflex_dedup::{DedupLayer, HttpKey, Sharing};
use tokio::sync::{mpsc, watch};
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
            response.unwrap().extensions().get::<Sharing>(),
            Some(&Sharing::Own)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_default_key_tells_users_apart_by_authorization_and_cookie() {
    let (origin, calls, open) = origin(10);
    let layer = DedupLayer::builder()
        .cache(Duration::from_secs(60), 100)
        .build_http::<Empty<Bytes>>(HttpKey::new(), 1024)
        .unwrap();
    let svc = layer.layer(origin);
    let with = |name: header::HeaderName, value: &str| {
        Request::get("/me")
            .header(name, value)
            .body(Empty::new())
            .unwrap()
    };
    let as_user = |user: &str| with(header::AUTHORIZATION, user);
    // In flight: alice's two requests share one call; bob's is his own.
    let tasks = [as_user("alice"), as_user("alice"), as_user("bob")]
        .map(|request| tokio::spawn(svc.clone().oneshot(request)));
    tokio::task::yield_now().await;
    open.send_replace(true);
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.unwrap().unwrap());
    }
    let call_of = |response: &Response<_>| response.headers()["x-call"].clone();
    let sharing_of = |response: &Response<_>| response.extensions().get::<Sharing>().copied();
    assert_eq!(call_of(&responses[0]), call_of(&responses[1]));
    assert_eq!(sharing_of(&responses[0]), Some(Sharing::Shared));
    assert_ne!(call_of(&responses[2]), call_of(&responses[0]), "bob's own");
    assert_eq!(sharing_of(&responses[2]), Some(Sharing::Own));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Cached: each user gets their own answer back, nobody else's.
    let (alice, bob) = (call_of(&responses[0]), call_of(&responses[2]));
    for (user, call) in [("alice", alice), ("bob", bob)] {
        let cached = svc.clone().oneshot(as_user(user)).await.unwrap();
        assert_eq!(sharing_of(&cached), Some(Sharing::Cached));
        assert_eq!(call_of(&cached), call, "{user}'s own answer");
    }
    let carol = svc.clone().oneshot(as_user("carol")).await.unwrap();
    assert_eq!(
        sharing_of(&carol),
        Some(Sharing::Own),
        "not alice's or bob's"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Cookies tell sessions apart the same way.
    for session in ["id=1", "id=2"] {
        let response = svc
            .clone()
            .oneshot(with(header::COOKIE, session))
            .await
            .unwrap();
        assert_eq!(sharing_of(&response), Some(Sharing::Own));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

/// A response body whose chunks arrive when the test sends them.
struct Trickle(mpsc::Receiver<Bytes>);

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_streams_through_unbuffered_and_is_marked_own() {
    let (chunks, body) = mpsc::channel(8);
    let body = Arc::new(Mutex::new(Some(body)));
    let origin = tower::service_fn(move |_: Req| {
        let body = body.lock().unwrap().take().expect("one call");
        async move { Ok::<_, BoxError>(Response::new(Trickle(body))) }
    });
    let layer = DedupLayer::builder()
        .build_http::<Empty<Bytes>>(HttpKey::new(), 16)
        .unwrap();
    let post = Request::post("/upload").body(Empty::new()).unwrap();
    // The head comes back before a byte of the body was sent: nothing
    // reads the body ahead of the caller.
    let response = tokio::time::timeout(Duration::from_secs(1), layer.layer(origin).oneshot(post))
        .await
        .expect("the head is not held back by its body")
        .unwrap();
    assert_eq!(response.extensions().get::<Sharing>(), Some(&Sharing::Own));
    let reader = tokio::spawn(body_of(response));
    for chunk in ["0123456789", "abcdefghij", "ABCDEFGHIJ"] {
        tokio::time::sleep(Duration::from_millis(10)).await;
        chunks.send(Bytes::from(chunk)).await.unwrap();
    }
    drop(chunks);
    assert_eq!(
        reader.await.unwrap(),
        "0123456789abcdefghijABCDEFGHIJ",
        "whole, though over the limit"
    );
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
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
