//! DedupLayer over `http`: which requests coalesce (never two hosts),
//! response bodies shared whole, an answer that may not be shared (a body
//! over the limit, a cookie, `private`, a `Vary` the key does not hold)
//! sent whole to one and re-fetched by the others, what the cache keeps
//! (successes, for their `max-age`; a refresh that may not be kept leaves
//! no stale copy), requests without a key streamed through unbuffered and
//! unmarked, a response not known to fit (SSE, a long poll) handed over at
//! once, and the layer in an `axum` `Router` with no body type named,
//! nested routes kept apart.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};
use reflex_core::{BoxError, Classify, Outcome, ServerErrorsAsFailures};
use reflex_dedup::http::ResponseBody;
use reflex_dedup::{DedupLayer, HttpDedup, HttpDedupBuilder, HttpDedupLayer, HttpKey, Sharing};
use reflex_tests::support::ChannelBody;
use tokio::sync::{mpsc, watch};
use tower::{Layer, Service, ServiceExt};

type Req = Request<Empty<Bytes>>;

/// What an origin is: a service of [`Req`]s, answered with whole bodies.
trait OriginService:
    Service<Req, Response = Response<Full<Bytes>>, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> OriginService for S where
    S: Service<Req, Response = Response<Full<Bytes>>, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// An origin: the service, its call count, and its gate (shut at first).
type Origin<S> = (S, Arc<AtomicUsize>, watch::Sender<bool>);

/// An origin whose answers wait for a gate: a body of `size` bytes naming
/// the path, a header, and a trailer-free end.
fn origin(size: usize) -> Origin<impl OriginService> {
    scripted(size, |_| Response::builder())
}

/// As [`origin`], with the head of each answer begun by `head` (status,
/// headers) for its request.
fn scripted(
    size: usize,
    head: impl Fn(&Req) -> http::response::Builder + Clone + Send + Sync + 'static,
) -> Origin<impl OriginService> {
    answering(move |req, _| (head(req), size))
}

/// An origin whose answers wait for a gate: `answer` begins the head of
/// the answer of call `n` to a request and says its body's size; the head
/// gets `x-call: n`, the body names the path and the call.
fn answering(
    answer: impl Fn(&Req, usize) -> (http::response::Builder, usize) + Clone + Send + Sync + 'static,
) -> Origin<impl OriginService> {
    let calls = Arc::new(AtomicUsize::new(0));
    let (open, gate) = watch::channel(false);
    let counted = calls.clone();
    let svc = tower::service_fn(move |req: Req| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let mut gate = gate.clone();
        let (head, size) = answer(&req, n);
        async move {
            gate.wait_for(|open| *open).await.map_err(|_| "gate gone")?;
            let mut body = format!("{} #{n} ", req.uri()).into_bytes();
            body.resize(size.max(body.len()), b'.');
            Ok::<_, BoxError>(
                head.header("x-call", n.to_string())
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
        }
    });
    (svc, calls, open)
}

/// Heads for [`scripted`]: a 404 for `/missing`, `status` for the rest.
fn missing_or(
    status: u16,
) -> impl Fn(&Req) -> http::response::Builder + Clone + Send + Sync + 'static {
    move |req| {
        let missing = req.uri().path() == "/missing";
        Response::builder().status(if missing { 404 } else { status })
    }
}

fn get(path: &str) -> Req {
    Request::get(path).body(Empty::new()).unwrap()
}

/// A GET of `path` with the header `name: value`.
fn get_with(path: &str, name: HeaderName, value: &str) -> Req {
    Request::get(path)
        .header(name, value)
        .body(Empty::new())
        .unwrap()
}

fn get_at(host: &str, path: &str) -> Req {
    get_with(path, header::HOST, host)
}

/// The `http` layer's builder, with a body limit of 1 KiB.
fn http() -> HttpDedupBuilder {
    DedupLayer::builder().http().body_limit(1024)
}

/// As [`http`], caching up to 100 answers for a minute.
fn caching() -> HttpDedupBuilder {
    http().cache(Duration::from_secs(60), 100)
}

/// An origin behind the layer a builder made.
struct Rig<S, C = ServerErrorsAsFailures> {
    layer: HttpDedupLayer<C>,
    svc: HttpDedup<S, C>,
    calls: Arc<AtomicUsize>,
    open: watch::Sender<bool>,
}

/// `origin` behind the layer `builder` makes.
fn behind<S, C>((origin, calls, open): Origin<S>, builder: HttpDedupBuilder<C>) -> Rig<S, C> {
    let layer = builder.build().unwrap();
    let svc = layer.layer(origin);
    Rig {
        layer,
        svc,
        calls,
        open,
    }
}

/// A response through a [`Rig`].
type Answer = Response<ResponseBody<Full<Bytes>>>;

impl<S, C> Rig<S, C>
where
    HttpDedup<S, C>:
        Service<Req, Response = Answer, Error = BoxError, Future: Send> + Clone + Send + 'static,
{
    /// The calls the origin got so far.
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Opens the origin's gate: its answers come at once from now on.
    fn open(&self) {
        self.open.send_replace(true);
    }

    /// The response to `request`.
    async fn send(&self, request: Req) -> Answer {
        self.svc.clone().oneshot(request).await.unwrap()
    }

    /// Sends `requests` at once (the first one first) while the origin's
    /// gate is shut, then opens it: every response, in order. The gate
    /// stays open.
    async fn at_once(&self, requests: Vec<Req>) -> Vec<Answer> {
        self.open.send_replace(false);
        let mut tasks = Vec::new();
        for request in requests {
            tasks.push(tokio::spawn(self.svc.clone().oneshot(request)));
            tokio::task::yield_now().await;
        }
        self.open();
        let mut responses = Vec::new();
        for task in tasks {
            responses.push(task.await.unwrap().unwrap());
        }
        responses
    }
}

async fn body_of<B>(response: Response<B>) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    response.into_body().collect().await.unwrap().to_bytes()
}

fn sharing_of<B>(response: &Response<B>) -> Option<Sharing> {
    response.extensions().get::<Sharing>().copied()
}

fn call_of<B>(response: &Response<B>) -> String {
    response.headers()["x-call"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn identical_gets_share_one_call_and_each_gets_the_whole_response() {
    let rig = behind(origin(100), http());
    for response in rig.at_once((0..8).map(|_| get("/a")).collect()).await {
        assert_eq!(call_of(&response), "0");
        assert_eq!(sharing_of(&response), Some(Sharing::Shared));
        let body = body_of(response).await;
        assert_eq!(body.len(), 100);
        assert!(body.starts_with(b"/a #0 "));
    }
    assert_eq!(rig.calls(), 1);
}

#[tokio::test]
async fn posts_and_different_varied_headers_do_not_coalesce() {
    let rig = behind(
        origin(10),
        http().key_with(HttpKey::new().vary(header::AUTHORIZATION)),
    );
    rig.open();
    let as_user = |user: &str| get_with("/me", header::AUTHORIZATION, user);
    let post = || Request::post("/me").body(Empty::new()).unwrap();
    let (a, b, c, d) = tokio::join!(
        rig.send(as_user("alice")),
        rig.send(as_user("bob")),
        rig.send(post()),
        rig.send(post()),
    );
    for response in [a, b] {
        assert_eq!(sharing_of(&response), Some(Sharing::Own));
    }
    for response in [c, d] {
        assert_eq!(sharing_of(&response), None, "not keyed: not marked");
    }
    assert_eq!(rig.calls(), 4);
}

#[tokio::test]
async fn the_default_key_tells_users_apart_by_authorization_and_cookie() {
    let rig = behind(origin(10), caching());
    let as_user = |user: &str| get_with("/me", header::AUTHORIZATION, user);
    // In flight: alice's two requests share one call; bob's is his own.
    let responses = rig
        .at_once(vec![as_user("alice"), as_user("alice"), as_user("bob")])
        .await;
    assert_eq!(call_of(&responses[0]), call_of(&responses[1]));
    assert_eq!(sharing_of(&responses[0]), Some(Sharing::Shared));
    assert_ne!(call_of(&responses[2]), call_of(&responses[0]), "bob's own");
    assert_eq!(sharing_of(&responses[2]), Some(Sharing::Own));
    assert_eq!(rig.calls(), 2);
    // Cached: each user gets their own answer back, nobody else's.
    let (alice, bob) = (call_of(&responses[0]), call_of(&responses[2]));
    for (user, call) in [("alice", alice), ("bob", bob)] {
        let cached = rig.send(as_user(user)).await;
        assert_eq!(sharing_of(&cached), Some(Sharing::Cached));
        assert_eq!(call_of(&cached), call, "{user}'s own answer");
    }
    let carol = rig.send(as_user("carol")).await;
    assert_eq!(
        sharing_of(&carol),
        Some(Sharing::Own),
        "not alice's or bob's"
    );
    assert_eq!(rig.calls(), 3);
    // Cookies tell sessions apart the same way.
    for session in ["id=1", "id=2"] {
        let response = rig.send(get_with("/me", header::COOKIE, session)).await;
        assert_eq!(sharing_of(&response), Some(Sharing::Own));
    }
    assert_eq!(rig.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_post_streams_through_unbuffered_and_unmarked() {
    let (chunks, body) = mpsc::unbounded_channel();
    let body = Arc::new(Mutex::new(Some(body)));
    let origin = tower::service_fn(move |_: Req| {
        let body = body.lock().unwrap().take().expect("one call");
        async move { Ok::<_, BoxError>(Response::new(ChannelBody(body))) }
    });
    let layer = DedupLayer::builder().http().body_limit(16).build().unwrap();
    let post = Request::post("/upload").body(Empty::new()).unwrap();
    // The head comes back before a byte of the body was sent: nothing
    // reads the body ahead of the caller.
    let response = tokio::time::timeout(Duration::from_secs(1), layer.layer(origin).oneshot(post))
        .await
        .expect("the head is not held back by its body")
        .unwrap();
    assert_eq!(response.extensions().get::<Sharing>(), None);
    let reader = tokio::spawn(body_of(response));
    for chunk in ["0123456789", "abcdefghij", "ABCDEFGHIJ"] {
        tokio::time::sleep(Duration::from_millis(10)).await;
        chunks.send(Bytes::from(chunk)).unwrap();
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
    let rig = behind(origin(5_000), http());
    let mut responses = rig.at_once((0..4).map(|_| get("/big")).collect()).await;
    let followers = responses.split_off(1);
    let leader = responses.pop().unwrap();
    assert_eq!(call_of(&leader), "0");
    let body = body_of(leader).await;
    assert_eq!(body.len(), 5_000, "nothing cut");
    assert!(body.starts_with(b"/big #0 "));
    for response in followers {
        assert_ne!(call_of(&response), "0", "its own call");
        assert_eq!(sharing_of(&response), Some(Sharing::Own));
        assert_eq!(body_of(response).await.len(), 5_000);
    }
    assert_eq!(rig.calls(), 4);
    assert_eq!(rig.layer.handle().metrics().in_flight_keys, 0);
}

/// A body of unknown length that sends one event and then nothing, never
/// ending: an SSE stream, or a long poll.
struct Open(bool);

impl http_body::Body for Open {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from("data: 1\n\n")))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_not_known_to_fit_is_handed_over_at_once_and_the_others_make_their_own_calls() {
    let heads: [&'static [(&str, &str)]; 3] = [
        &[("content-type", "text/event-stream")],
        // A long poll: no length said.
        &[],
        // Longer than the limit (1 KiB).
        &[("content-length", "5000")],
    ];
    for head in heads {
        let calls = Arc::new(AtomicUsize::new(0));
        let (open, gate) = watch::channel(false);
        let counted = calls.clone();
        let origin = tower::service_fn(move |_: Req| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let mut gate = gate.clone();
            async move {
                gate.wait_for(|open| *open).await.map_err(|_| "gate gone")?;
                let mut response = Response::builder().header("x-call", n.to_string());
                for (name, value) in head {
                    response = response.header(*name, *value);
                }
                Ok::<_, BoxError>(response.body(Open(false)).unwrap())
            }
        });
        // A held response would time out (the paused clock runs on).
        let layer = caching()
            .wait_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let svc = layer.layer(origin);
        let leader = tokio::spawn(svc.clone().oneshot(get("/events")));
        tokio::task::yield_now().await;
        let follower = tokio::spawn(svc.clone().oneshot(get("/events")));
        tokio::task::yield_now().await;
        open.send_replace(true);
        for (response, call) in [(leader, "0"), (follower, "1")] {
            let response = response.await.unwrap().expect("answered, not held");
            assert_eq!(call_of(&response), call, "{head:?}");
            assert_eq!(sharing_of(&response), Some(Sharing::Own));
            let mut body = response.into_body();
            let event = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(event, "data: 1\n\n");
        }
        let again = svc.clone().oneshot(get("/events")).await.unwrap();
        assert_eq!(sharing_of(&again), Some(Sharing::Own), "not cached");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let metrics = layer.handle().metrics();
        assert_eq!((metrics.coalesced, metrics.in_flight_keys), (1, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn cached_responses_are_weighed_by_their_body() {
    // The cache set before `http()`, kept by it.
    let builder = DedupLayer::builder()
        .cache(Duration::from_secs(60), 100)
        .cache_max_bytes(700)
        .http()
        .body_limit(1024);
    let rig = behind(origin(300), builder);
    rig.open();
    for path in ["/1", "/2", "/3"] {
        rig.send(get(path)).await;
    }
    let m = rig.layer.handle().metrics();
    assert_eq!(
        (m.cache_entries, m.cache_bytes),
        (2, 600),
        "700 bytes hold two"
    );
    let cached = rig.send(get("/3")).await;
    assert_eq!(sharing_of(&cached), Some(Sharing::Cached));
    assert_eq!(body_of(cached).await.len(), 300);
    assert_eq!(rig.calls(), 3);
}

#[tokio::test]
async fn two_virtual_hosts_do_not_share_a_call() {
    let rig = behind(origin(10), http());
    // A server sees `GET /` in origin form: only `Host` tells them apart.
    let responses = rig
        .at_once(vec![
            get_at("a.example", "/"),
            get_at("b.example", "/"),
            get_at("a.example", "/"),
        ])
        .await;
    assert_eq!(rig.calls(), 2, "one call per host");
    assert_eq!(call_of(&responses[0]), call_of(&responses[2]));
    assert_eq!(sharing_of(&responses[0]), Some(Sharing::Shared));
    assert_ne!(call_of(&responses[1]), call_of(&responses[0]), "b's own");
    assert_eq!(sharing_of(&responses[1]), Some(Sharing::Own));
}

#[tokio::test]
async fn two_virtual_hosts_do_not_share_a_cached_answer() {
    let rig = behind(origin(10), caching());
    rig.open();
    let a = rig.send(get_at("a.example", "/")).await;
    let b = rig.send(get_at("b.example", "/")).await;
    assert_eq!(sharing_of(&b), Some(Sharing::Own), "not a's cached answer");
    assert_eq!(rig.calls(), 2);
    // Each host gets its own answer back from the cache.
    for (host, first) in [("a.example", &a), ("b.example", &b)] {
        let cached = rig.send(get_at(host, "/")).await;
        assert_eq!(sharing_of(&cached), Some(Sharing::Cached));
        assert_eq!(call_of(&cached), call_of(first), "{host}'s own answer");
    }
    // A request in absolute form is keyed by its URI's authority.
    let c = rig
        .send(get_with("http://c.example/", header::HOST, "a.example"))
        .await;
    assert_eq!(sharing_of(&c), Some(Sharing::Own));
    assert_eq!(rig.calls(), 3);
}

#[tokio::test]
async fn an_answer_that_sets_a_cookie_is_neither_shared_nor_cached() {
    let origin = scripted(10, |_| {
        Response::builder().header(header::SET_COOKIE, "session=anonymous-1")
    });
    let rig = behind(origin, caching());
    let responses = rig.at_once(vec![get("/"), get("/"), get("/")]).await;
    assert_eq!(rig.calls(), 3, "each its own call");
    let mut seen: Vec<_> = responses.iter().map(call_of).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "nobody got another's cookie");
    for response in &responses {
        assert_eq!(sharing_of(response), Some(Sharing::Own));
    }
    let again = rig.send(get("/")).await;
    assert_eq!(sharing_of(&again), Some(Sharing::Own), "not cached");
    assert_eq!(rig.calls(), 4);
    assert_eq!(rig.layer.handle().metrics().cache_entries, 0);
}

/// Inner calls made for two identical GETs at once then a third, through
/// a caching layer keyed by `key`, when every answer carries `headers`.
async fn calls_for(key: HttpKey, headers: &'static [(HeaderName, &'static str)]) -> usize {
    let origin = scripted(10, move |_| {
        headers
            .iter()
            .fold(Response::builder(), |head, (name, value)| {
                head.header(name, *value)
            })
    });
    let rig = behind(origin, caching().key_with(key));
    rig.at_once(vec![get("/"), get("/")]).await;
    rig.send(get("/")).await;
    rig.calls()
}

#[tokio::test]
async fn a_private_or_no_store_answer_is_neither_shared_nor_cached() {
    const CACHE_CONTROL: HeaderName = header::CACHE_CONTROL;
    for headers in [
        &[(CACHE_CONTROL, "private")][..],
        &[(CACHE_CONTROL, "no-cache, private")],
        &[(CACHE_CONTROL, r#"PRIVATE="set-cookie, x-user""#)],
        &[(CACHE_CONTROL, "no-store")],
        &[(CACHE_CONTROL, "public"), (CACHE_CONTROL, "No-Store")],
    ] {
        assert_eq!(calls_for(HttpKey::new(), headers).await, 3, "{headers:?}");
    }
    let public = &[(CACHE_CONTROL, "public, max-age=60")];
    assert_eq!(
        calls_for(HttpKey::new(), public).await,
        1,
        "shared and kept"
    );
}

#[tokio::test]
async fn an_answer_that_varies_on_a_header_the_key_does_not_hold_is_not_shared() {
    let vary = |value| -> &'static [(HeaderName, &'static str)] {
        match value {
            "accept-encoding" => &[(header::VARY, "Accept-Encoding")],
            "*" => &[(header::VARY, "*")],
            "cookie" => &[(header::VARY, "Cookie, Host")],
            _ => unreachable!(),
        }
    };
    let by_encoding = || HttpKey::new().vary(header::ACCEPT_ENCODING);
    assert_eq!(calls_for(HttpKey::new(), vary("accept-encoding")).await, 3);
    assert_eq!(calls_for(by_encoding(), vary("accept-encoding")).await, 1);
    assert_eq!(calls_for(by_encoding(), vary("*")).await, 3);
    assert_eq!(calls_for(HttpKey::new(), vary("cookie")).await, 1, "keyed");
    let without_cookie = HttpKey::new().ignore(&header::COOKIE);
    assert_eq!(calls_for(without_cookie, vary("cookie")).await, 3);
}

#[tokio::test]
async fn a_server_error_is_shared_in_flight_but_not_cached_by_default() {
    let rig = behind(scripted(10, missing_or(503)), caching());
    let responses = rig.at_once(vec![get("/down"), get("/down")]).await;
    assert_eq!(rig.calls(), 1, "one call for both");
    for response in &responses {
        assert_eq!(response.status(), 503);
        assert_eq!(sharing_of(response), Some(Sharing::Shared));
    }
    let again = rig.send(get("/down")).await;
    assert_eq!(sharing_of(&again), Some(Sharing::Own), "a 5xx is not kept");
    assert_eq!(rig.calls(), 2);
    // A 404 is no failure of the origin: kept.
    rig.send(get("/missing")).await;
    let cached = rig.send(get("/missing")).await;
    assert_eq!(sharing_of(&cached), Some(Sharing::Cached));
    assert_eq!(rig.calls(), 3);
}

/// Calls a 404 a failure, and everything else a success.
#[derive(Clone, Copy)]
struct NotFoundFails;

impl<B> Classify<Response<B>, BoxError> for NotFoundFails {
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        match result {
            Ok(response) if response.status() == 404 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[tokio::test]
async fn a_given_classifier_decides_what_is_cached() {
    let rig = behind(
        scripted(10, missing_or(200)),
        caching().classifier(NotFoundFails),
    );
    rig.open();
    for path in ["/missing", "/missing", "/up", "/up"] {
        rig.send(get(path)).await;
    }
    assert_eq!(rig.calls(), 3, "the 404 was not kept, the 200 was");
}

#[tokio::test]
async fn a_status_a_cache_may_not_keep_unasked_is_shared_in_flight_but_not_cached() {
    let origin = scripted(10, |req| match req.uri().path() {
        "/limited" => Response::builder().status(429),
        "/moved" => Response::builder()
            .status(302)
            .header(header::LOCATION, "/x"),
        "/denied" => Response::builder().status(401),
        // Told how long: kept, whatever the status.
        "/limited-60" => Response::builder()
            .status(429)
            .header(header::CACHE_CONTROL, "max-age=60"),
        _ => Response::builder().status(204),
    });
    let rig = behind(origin, caching());
    let responses = rig.at_once(vec![get("/limited"), get("/limited")]).await;
    assert_eq!(rig.calls(), 1, "shared in flight");
    assert_eq!(sharing_of(&responses[1]), Some(Sharing::Shared));
    for (path, kept) in [
        ("/limited", false),
        ("/moved", false),
        ("/denied", false),
        ("/limited-60", true),
        ("/no-content", true),
    ] {
        let before = rig.calls();
        rig.send(get(path)).await;
        let again = rig.send(get(path)).await;
        assert_eq!(sharing_of(&again) == Some(Sharing::Cached), kept, "{path}");
        let made = rig.calls() - before;
        assert_eq!(made, if kept { 1 } else { 2 }, "{path}");
    }
}

#[tokio::test]
async fn a_ranged_or_conditional_get_never_shares_with_a_plain_one() {
    for (name, value) in [
        (header::RANGE, "bytes=0-1"),
        (header::IF_NONE_MATCH, "\"v1\""),
        (header::IF_MODIFIED_SINCE, "Sun, 29 Nov 2026 10:00:00 GMT"),
    ] {
        let rig = behind(origin(10), caching());
        let special = || get_with("/", name.clone(), value);
        let responses = rig.at_once(vec![get("/"), special(), get("/")]).await;
        assert_eq!(rig.calls(), 2, "{name}: its own call");
        assert_ne!(call_of(&responses[1]), call_of(&responses[0]), "{name}");
        assert_eq!(call_of(&responses[2]), call_of(&responses[0]), "{name}");
        // Nor is the plain answer served to it from the cache.
        let cached = rig.send(special()).await;
        assert_eq!(call_of(&cached), call_of(&responses[1]), "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_kept_no_longer_than_its_max_age() {
    let origin = scripted(10, |req| {
        let cache_control = match req.uri().path() {
            "/zero" => "max-age=0",
            "/three" => "public, Max-Age=3",
            "/shared-two" => "max-age=60, s-maxage=2",
            "/huge" => "max-age=999999999999999999999999999999",
            "/no-cache" => "no-cache",
            _ => "public",
        };
        Response::builder().header(header::CACHE_CONTROL, cache_control)
    });
    let rig = behind(origin, http().cache(Duration::from_secs(10), 100));
    rig.open();
    let sharing = async |path: &'static str| sharing_of(&rig.send(get(path)).await).unwrap();
    for path in [
        "/zero",
        "/three",
        "/shared-two",
        "/huge",
        "/no-cache",
        "/ttl",
    ] {
        assert_eq!(sharing(path).await, Sharing::Own, "{path}");
    }
    for (path, kept) in [("/zero", false), ("/no-cache", false), ("/three", true)] {
        let expected = if kept { Sharing::Cached } else { Sharing::Own };
        assert_eq!(sharing(path).await, expected, "{path}");
    }
    tokio::time::advance(Duration::from_millis(2500)).await;
    assert_eq!(sharing("/three").await, Sharing::Cached, "within 3 s");
    assert_eq!(sharing("/shared-two").await, Sharing::Own, "s-maxage wins");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(sharing("/three").await, Sharing::Own, "past 3 s");
    assert_eq!(sharing("/huge").await, Sharing::Cached);
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(
        sharing("/huge").await,
        Sharing::Own,
        "the TTL still bounds it"
    );
    assert_eq!(sharing("/ttl").await, Sharing::Own, "past the TTL");
    assert_eq!(rig.calls(), 12);
}

/// How the refresh of a kept answer comes back.
#[derive(Debug, Clone, Copy)]
enum Refresh {
    SetsACookie,
    Private,
    NoStore,
    ServerError,
    OverTheLimit,
}

/// An origin whose first answer (`x-call: 0`, 10 bytes) may be kept and
/// whose later answers come back as `refresh` says, once the gate is open.
fn refreshed_as(refresh: Refresh) -> Origin<impl OriginService> {
    answering(move |_, n| {
        let head = Response::builder();
        if n == 0 {
            return (head, 10);
        }
        match refresh {
            Refresh::SetsACookie => (head.header(header::SET_COOKIE, "session=1"), 10),
            Refresh::Private => (head.header(header::CACHE_CONTROL, "private"), 10),
            Refresh::NoStore => (head.header(header::CACHE_CONTROL, "no-store"), 10),
            Refresh::ServerError => (head.status(503), 10),
            Refresh::OverTheLimit => (head, 5_000),
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_may_not_be_kept_removes_the_stale_answer() {
    for refresh in [
        Refresh::SetsACookie,
        Refresh::Private,
        Refresh::NoStore,
        Refresh::ServerError,
        Refresh::OverTheLimit,
    ] {
        let builder = http()
            .cache(Duration::from_secs(5), 100)
            .serve_stale(Duration::from_secs(60));
        let rig = behind(refreshed_as(refresh), builder);
        rig.open();
        let cache_entries = || rig.layer.handle().metrics().cache_entries;
        let first = rig.send(get("/")).await;
        assert_eq!(call_of(&first), "0");
        assert_eq!(cache_entries(), 1, "{refresh:?}");
        tokio::time::advance(Duration::from_secs(6)).await;
        // Stale, no refresh running: this request refreshes it.
        let refreshed = rig.send(get("/")).await;
        assert_eq!(call_of(&refreshed), "1", "{refresh:?}");
        assert_eq!(cache_entries(), 0, "{refresh:?}");
        // The old answer is not served any more, not even stale.
        rig.open.send_replace(false);
        let mut a = tokio_test::task::spawn(rig.send(get("/")));
        let mut b = tokio_test::task::spawn(rig.send(get("/")));
        tokio_test::assert_pending!(a.poll(), "{refresh:?}");
        tokio_test::assert_pending!(b.poll(), "{refresh:?}: not the stale answer");
        rig.open();
        for response in [a.await, b.await] {
            assert_ne!(call_of(&response), "0", "{refresh:?}");
            assert_ne!(sharing_of(&response), Some(Sharing::Stale), "{refresh:?}");
        }
    }
}

#[tokio::test]
async fn every_service_of_one_http_layer_shares_its_calls_and_its_cache() {
    let (origin, calls, open) = origin(10);
    let layer = caching().build().unwrap();
    // Two services of one layer, as a framework that wraps a route per
    // connection makes them.
    let first = tokio::spawn(layer.layer(origin.clone()).oneshot(get("/")));
    tokio::task::yield_now().await;
    let second = tokio::spawn(layer.layer(origin.clone()).oneshot(get("/")));
    tokio::task::yield_now().await;
    open.send_replace(true);
    for response in [first.await.unwrap(), second.await.unwrap()] {
        assert_eq!(sharing_of(&response.unwrap()), Some(Sharing::Shared));
    }
    let third = layer.layer(origin).oneshot(get("/")).await.unwrap();
    assert_eq!(sharing_of(&third), Some(Sharing::Cached));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Counts its calls and answers `item {id}`.
fn items(calls: Arc<AtomicUsize>) -> axum::routing::MethodRouter {
    axum::routing::get(
        move |axum::extract::Path(id): axum::extract::Path<u32>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            format!("item {id}")
        },
    )
}

#[tokio::test]
async fn the_http_layer_sits_in_an_axum_router_with_no_body_type_named() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = caching().build().unwrap();
    let app = axum::Router::new()
        .route("/items/{id}", items(calls.clone()))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: BoxError| async { http::StatusCode::SERVICE_UNAVAILABLE },
                ))
                .layer(layer.clone()),
        );
    let get = || {
        Request::get("/items/7")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for sharing in [Sharing::Own, Sharing::Cached] {
        let response = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(sharing_of(&response), Some(sharing));
        assert_eq!(body_of(response).await, "item 7");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.handle().metrics().cache_hits, 1);
}

/// An `axum` response, as it is.
fn into_axum_response<R: axum::response::IntoResponse>(response: R) -> axum::response::Response {
    response.into_response()
}

#[tokio::test]
async fn one_layer_takes_any_request_body_and_answers_an_axum_response_body() {
    let layer = DedupLayer::builder().http().build().unwrap();
    let echo = |req: Request<_>| async move {
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(req.uri().to_string()))))
    };
    // The same layer over services of two request body types.
    let empty = layer.layer(tower::service_fn(|req: Req| echo(req.map(|_| ()))));
    let axum_body = layer.layer(tower::service_fn(|req: Request<axum::body::Body>| {
        echo(req.map(|_| ()))
    }));
    let a = empty.oneshot(get("/a")).await.unwrap();
    let b = axum_body
        .oneshot(Request::get("/b").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(body_of(into_axum_response(a)).await, "/a");
    assert_eq!(body_of(into_axum_response(b)).await, "/b");
}

/// An `axum` router answering `GET /items` with `{version} items`.
fn versioned(version: &'static str) -> axum::Router {
    axum::Router::new().route(
        "/items",
        axum::routing::get(move || async move { format!("{version} items") }),
    )
}

/// `router` behind `dedup`, its errors answered with a 503.
fn layered(router: axum::Router, dedup: &HttpDedupLayer) -> axum::Router {
    router.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: BoxError| async { http::StatusCode::SERVICE_UNAVAILABLE },
            ))
            .layer(dedup.clone()),
    )
}

/// GETs `/v1/items` then `/v2/items` twice through `app`: each answered
/// by its own route, the second time from the cache.
async fn versions_apart<S>(app: S, dedup: &HttpDedupLayer)
where
    S: Service<Request<axum::body::Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    for sharing in [Sharing::Own, Sharing::Cached] {
        for version in ["v1", "v2"] {
            let get = Request::get(format!("/{version}/items"))
                .header(header::HOST, "a.example")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(get).await.unwrap();
            assert_eq!(sharing_of(&response), Some(sharing), "{version}");
            assert_eq!(body_of(response).await, format!("{version} items"));
        }
    }
    assert_eq!(dedup.handle().metrics().cache_hits, 2);
}

#[tokio::test]
async fn on_the_outer_router_the_layer_keeps_nested_routes_apart() {
    let dedup = caching().build().unwrap();
    let app = axum::Router::new()
        .nest("/v1", versioned("v1"))
        .nest("/v2", versioned("v2"));
    // Where the URI is whole: after `nest`, on the outer router.
    versions_apart(layered(app, &dedup), &dedup).await;
}

/// The whole URI, kept by the outer router (as `axum`'s `OriginalUri`).
#[derive(Clone)]
struct Whole(http::Uri);

#[tokio::test]
async fn on_nested_routers_the_layer_keys_by_the_original_uri_it_is_given() {
    let dedup = caching()
        .key_with(HttpKey::new().original_uri(|ext| ext.get::<Whole>().map(|w| w.0.clone())))
        .build()
        .unwrap();
    // Clones of one layer on two nested routers: each sees `/items`.
    let app = axum::Router::new()
        .nest("/v1", layered(versioned("v1"), &dedup))
        .nest("/v2", layered(versioned("v2"), &dedup));
    let app = tower::service_fn(move |mut req: Request<axum::body::Body>| {
        let whole = Whole(req.uri().clone());
        req.extensions_mut().insert(whole);
        app.clone().oneshot(req)
    });
    versions_apart(app, &dedup).await;
}
