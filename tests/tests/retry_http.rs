//! RetryLayer over `http`: which methods and statuses are retried,
//! `Retry-After` in both forms, request bodies recorded as they are read and
//! sent again (or, too large, sent once), the layer in a stack below a shed
//! layer and over an axum router, on a paused clock.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use reflex_core::{
    BoxError, Classified, ConfigErrorKind, DefaultClassifier, Handled, LayerBuilder, LayerHandle,
    ServerErrorsAsFailures, Sink,
};
use reflex_retry::http::{HttpRetryBuilder, HttpRetryLayer, ReplayBody};
use reflex_retry::{Jitter, RetryLayer};
use reflex_shed::ConcurrencyShedLayer;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const LIMIT: usize = 16;

/// What the inner service received on one call.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// One scripted answer: a status with optional `Retry-After`, or an error.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16, Option<&'static str>),
    Error,
}

#[derive(Clone, Default)]
struct Server {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn new(answers: impl IntoIterator<Item = Answer>) -> Self {
        Self {
            answers: Arc::new(Mutex::new(answers.into_iter().collect())),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn gaps(&self) -> Vec<Duration> {
        self.seen().windows(2).map(|w| w[1].at - w[0].at).collect()
    }
}

type ResponseFuture =
    Pin<Box<dyn std::future::Future<Output = Result<Response<()>, BoxError>> + Send>>;

impl<B> Service<Request<ReplayBody<B>>> for Server
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<()>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody<B>>) -> ResponseFuture {
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Status(200, None));
        let seen = self.seen.clone();
        Box::pin(async move {
            let at = Instant::now();
            let collected = request.into_body().collect().await?;
            let trailers = collected.trailers().cloned();
            seen.lock().unwrap().push(Seen {
                at,
                body: collected.to_bytes(),
                trailers,
            });
            match answer {
                Answer::Error => Err("connection reset".into()),
                Answer::Status(status, retry_after) => {
                    let mut response = Response::builder().status(status);
                    if let Some(value) = retry_after {
                        response = response.header("retry-after", value);
                    }
                    Ok(response.body(()).unwrap())
                }
            }
        })
    }
}

fn builder() -> HttpRetryBuilder {
    RetryLayer::builder()
        .http()
        .no_budget()
        .jitter(Jitter::None)
        .backoff(Duration::from_millis(100), 2.0)
        .max_delay(Duration::from_secs(60))
        .max_attempts(3)
        .body_limit(LIMIT)
}

fn layer() -> HttpRetryLayer {
    builder().build().unwrap()
}

fn request<B>(method: Method, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri("http://db/item")
        .body(body)
        .unwrap()
}

async fn send<B>(server: &Server, request: Request<B>) -> Result<Response<()>, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    send_through(&layer(), server, request).await
}

async fn send_through<B>(
    layer: &HttpRetryLayer,
    server: &Server,
    request: Request<B>,
) -> Result<Response<()>, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut svc = layer.layer(server.clone());
    ServiceExt::<Request<B>>::ready(&mut svc)
        .await?
        .call(request)
        .await
}

#[tokio::test(start_paused = true)]
async fn idempotent_methods_are_retried_and_others_are_sent_once() {
    for (method, retried) in [
        (Method::GET, true),
        (Method::HEAD, true),
        (Method::OPTIONS, true),
        (Method::PUT, true),
        (Method::DELETE, true),
        (Method::TRACE, true),
        (Method::POST, false),
        (Method::PATCH, false),
        (Method::CONNECT, false),
    ] {
        let server = Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
        let response = send(&server, request(method.clone(), Empty::<Bytes>::new()))
            .await
            .unwrap();
        // Retried: the second answer, after two calls; or its one answer.
        let expected = if retried { (200, 2) } else { (503, 1) };
        assert_eq!(
            (response.status().as_u16(), server.seen().len()),
            expected,
            "{method}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn only_502_503_504_429_and_errors_are_retried() {
    for (status, retried) in [
        (502, true),
        (503, true),
        (504, true),
        (429, true),
        (500, false),
        (501, false),
        (404, false),
        (409, false),
        (200, false),
    ] {
        let server = Server::new([Answer::Status(status, None), Answer::Status(204, None)]);
        let response = send(&server, request(Method::GET, Empty::<Bytes>::new()))
            .await
            .unwrap();
        let expected = if retried { 204 } else { status };
        assert_eq!(response.status(), expected, "status {status}");
    }
    let server = Server::new([Answer::Error, Answer::Status(200, None)]);
    let response = send(&server, request(Method::GET, Empty::<Bytes>::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a transport error is retried");
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_replaces_the_backoff_on_429_and_503() {
    for status in [429, 503] {
        let server = Server::new([Answer::Status(status, Some("7")), Answer::Status(200, None)]);
        send(&server, request(Method::GET, Empty::<Bytes>::new()))
            .await
            .unwrap();
        assert_eq!(server.gaps(), vec![Duration::from_secs(7)], "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_the_time_until_it() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
    let date: &'static str = Box::leak(date.into_boxed_str());
    let server = Server::new([Answer::Status(503, Some(date)), Answer::Status(200, None)]);
    send(&server, request(Method::GET, Empty::<Bytes>::new()))
        .await
        .unwrap();
    let gap = server.gaps()[0];
    // Whole seconds: the date is rounded down to its second.
    assert!(
        gap > Duration::from_secs(3) && gap <= Duration::from_secs(5),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_huge_or_misplaced_retry_after_is_ignored_for_the_backoff() {
    for (status, value) in [
        (503, "soon"),
        (503, "-5"),
        (503, "1.5"),
        (429, "99999999"),
        (429, "Sun, 06 Nov 2994 08:49:37 GMT"),
        // Only 429 and 503 are read.
        (502, "7"),
    ] {
        let server = Server::new([
            Answer::Status(status, Some(value)),
            Answer::Status(200, None),
        ]);
        send(&server, request(Method::GET, Empty::<Bytes>::new()))
            .await
            .unwrap();
        assert_eq!(
            server.gaps(),
            vec![Duration::from_millis(100)],
            "{status} {value:?}"
        );
    }
}

/// A body of set chunks, of unknown length, optionally ending in trailers
/// or an error.
struct Chunks {
    frames: VecDeque<Result<http_body::Frame<Bytes>, &'static str>>,
}

impl Chunks {
    fn new(chunks: &[&'static str]) -> Self {
        Self {
            frames: chunks
                .iter()
                .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
                .collect(),
        }
    }

    fn with_trailers(mut self, trailers: HeaderMap) -> Self {
        self.frames
            .push_back(Ok(http_body::Frame::trailers(trailers)));
        self
    }

    fn failing(mut self) -> Self {
        self.frames.push_back(Err("the client went away"));
        self
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front().map(|f| f.map_err(Into::into)))
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_within_the_limit_is_sent_whole_on_every_attempt() {
    let server = Server::new([
        Answer::Status(502, None),
        Answer::Error,
        Answer::Status(200, None),
    ]);
    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", HeaderValue::from_static("abc"));
    let body = Chunks::new(&["put ", "this ", "back"]).with_trailers(trailers.clone());
    let response = send(&server, request(Method::PUT, body)).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for attempt in &seen {
        assert_eq!(attempt.body, "put this back");
        assert_eq!(attempt.trailers.as_ref(), Some(&trailers));
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_whole_and_not_retried() {
    // 20 bytes read in chunks, over a limit of 16: found out while reading.
    let server = Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
    let body = Chunks::new(&["0123456789", "abcdefghij"]);
    let response = send(&server, request(Method::PUT, body)).await.unwrap();
    assert_eq!(response.status(), 503, "not retried: its body is gone");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "0123456789abcdefghij", "nothing truncated");

    // Known too large up front: not read before it is sent.
    let server = Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
    let body = Full::new(Bytes::from(vec![b'x'; LIMIT + 1]));
    let response = send(&server, request(Method::PUT, body)).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(server.seen()[0].body.len(), LIMIT + 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_exactly_at_the_limit_is_replayed() {
    let server = Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
    let body = Full::new(Bytes::from(vec![b'y'; LIMIT]));
    let response = send(&server, request(Method::PUT, body)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.seen().len(), 2);
    assert!(server.seen().iter().all(|s| s.body.len() == LIMIT));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_while_read_fails_the_request_and_is_not_retried() {
    // Sent again, the body would end after "part": a 200 with a truncated
    // body.
    let server = Server::new([Answer::Status(200, None), Answer::Status(200, None)]);
    let layer = layer();
    let body = Chunks::new(&["part"]).failing();
    let err = send_through(&layer, &server, request(Method::PUT, body))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the client went away");
    assert!(server.seen().is_empty(), "no attempt read a whole body");
    assert_eq!(layer.handle().metrics().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn headers_method_and_uri_are_the_same_on_every_attempt() {
    /// Method, URI and `x-request-id` of one attempt.
    type Line = (Method, String, Option<HeaderValue>);
    #[derive(Clone, Default)]
    struct Echo(Arc<Mutex<Vec<Line>>>);
    impl Service<Request<ReplayBody<Empty<Bytes>>>> for Echo {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, request: Request<ReplayBody<Empty<Bytes>>>) -> Self::Future {
            let mut seen = self.0.lock().unwrap();
            seen.push((
                request.method().clone(),
                request.uri().to_string(),
                request.headers().get("x-request-id").cloned(),
            ));
            let status = if seen.len() == 1 { 504 } else { 200 };
            std::future::ready(Ok(Response::builder().status(status).body(()).unwrap()))
        }
    }
    let echo = Echo::default();
    let mut svc = layer().layer(echo.clone());
    let request = Request::delete("http://db/item/9")
        .header("x-request-id", "r-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = echo.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].2.as_ref().map(|v| v.to_str().unwrap()), Some("r-1"));
}

#[tokio::test(start_paused = true)]
async fn no_limit_settings_and_a_retry_after_of_u64_max_seconds_end_in_the_503_not_a_panic() {
    // `Duration::MAX` is how a config says "no limit"; the server asks for
    // the largest whole number of seconds it can write.
    let server = Server::new([
        Answer::Status(503, Some("18446744073709551615")),
        Answer::Status(200, None),
    ]);
    let layer = RetryLayer::builder()
        .http()
        .deadline(Duration::MAX)
        .attempt_timeout(Duration::MAX)
        .max_delay(Duration::MAX)
        .body_limit(LIMIT)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = send_through(&layer, &server, request(Method::GET, Empty::<Bytes>::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "the answer that asked for the wait");
    assert_eq!(server.seen().len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(layer.handle().metrics().retrying, 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_retry_returns_the_last_response_itself_and_signals_the_refusal() {
    let recorder = Arc::new(reflex_core::signal::Recorder::default());
    let server = Server::new([Answer::Status(503, Some("1")), Answer::Status(200, None)]);
    // No floor, no share: the budget never funds a retry.
    let layer = RetryLayer::builder()
        .http()
        .budget(0.0, 0, Duration::from_secs(10))
        .component("origin")
        .sink(recorder.clone())
        .body_limit(LIMIT)
        .build()
        .unwrap();
    let response = send_through(&layer, &server, request(Method::GET, Empty::<Bytes>::new()))
        .await
        .expect("the response, not an error of the retry layer");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1", "untouched");
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        recorder.signals(),
        vec![(
            reflex_core::Component::new("origin"),
            reflex_core::Signal::RetryBudgetExhausted { attempt: 2 }
        )]
    );
    assert_eq!(layer.handle().metrics().budget_exhausted, 1);
}

/// A body that never sends anything, and counts how often it was polled.
struct Silent(Arc<AtomicUsize>);

impl http_body::Body for Silent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_reaches_the_inner_service_before_its_body_is_read() {
    // An inner service that answers from the head alone: 503, then 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = tower::service_fn(move |_request: Request<ReplayBody<Silent>>| {
        let call = counted.fetch_add(1, Ordering::SeqCst);
        let status = if call == 0 { 503 } else { 200 };
        std::future::ready(Ok::<_, Infallible>(
            Response::builder().status(status).body(()).unwrap(),
        ))
    });
    let polls = Arc::new(AtomicUsize::new(0));
    let request = request(Method::PUT, Silent(polls.clone()));
    let response = layer().layer(inner).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "retried, its body never read");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        polls.load(Ordering::SeqCst),
        0,
        "nothing read ahead of the service"
    );
}

#[tokio::test(start_paused = true)]
async fn below_a_shed_layer_the_layer_retries_with_no_adapter_above() {
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(4)
        .build()
        .unwrap();
    let shed_handle = shed.handle();
    let retry = layer();
    let server = Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
    // The shed layer sees `Request<Chunks>`; the server `Request<ReplayBody<Chunks>>`.
    let stack = ServiceBuilder::new()
        .layer(shed)
        .layer(retry.clone())
        .service(server.clone());
    let body = Chunks::new(&["put ", "it"]);
    let response = stack.oneshot(request(Method::PUT, body)).await.unwrap();
    assert_eq!(response.status(), 200);
    let bodies: Vec<_> = server.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies, ["put it", "put it"]);
    assert_eq!(retry.handle().metrics().retries, 1);
    assert_eq!(shed_handle.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn an_axum_router_can_be_the_inner_service() {
    /// An axum `Route` takes `Request<B>` for any body of `Bytes` that is
    /// `Send + 'static` with errors into `BoxError`: a `ReplayBody` is one.
    fn takes_replay_bodies<S: Service<Request<ReplayBody<axum::body::Body>>>>() {}
    takes_replay_bodies::<axum::routing::Route>();

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = axum::Router::new().route(
        "/item",
        axum::routing::put(move |body: Bytes| {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = if call == 0 {
                    http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    http::StatusCode::OK
                };
                (status, body)
            }
        }),
    );
    let svc = layer().layer(router);
    let request = Request::put("http://db/item")
        .body(axum::body::Body::from("v2"))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "v2", "the second attempt read the whole body");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Builds any part of a stack as a preset does: the stack's classifier,
/// its component and sink, then `build`.
fn build_part<P, C>(part: P, classifier: C) -> <P::Builder as LayerBuilder>::Layer
where
    P: Classified<C>,
{
    part.classified_by(classifier)
        .component(reflex_core::Component::new("origin"))
        .sink(Sink::none())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_http_builder_is_a_layer_builder_and_takes_the_stacks_classifier() {
    let answers = || [Answer::Status(429, None), Answer::Status(200, None)];
    // With its own classifier, a 429 is a failure, and retried.
    let own: HttpRetryLayer = builder().build().unwrap();
    let server = Server::new(answers());
    assert_eq!(send_through_any(&own, &server).await.status(), 200);
    assert_eq!(LayerHandle::metrics(&Handled::handle(&own)).retries, 1);
    // With the stack's `ServerErrorsAsFailures` (a 429 says nothing of the
    // dependency's health), a 429 is still worth asking again.
    let stacks: HttpRetryLayer<_> = build_part(builder(), ServerErrorsAsFailures);
    let server = Server::new(answers());
    assert_eq!(send_through_any(&stacks, &server).await.status(), 200);
    assert_eq!(server.seen().len(), 2);
    assert_eq!(Handled::handle(&stacks).component().as_str(), "origin");
    // The stack's classifier can add failures, never take the http
    // retry's away: with the default classifier (every `Ok` a success), or
    // one that calls every answer a success, a 503 is still retried.
    let unhealthy = || Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
    let default: HttpRetryLayer<_> = build_part(builder(), DefaultClassifier);
    let server = unhealthy();
    assert_eq!(send_through_any(&default, &server).await.status(), 200);
    assert_eq!(server.seen().len(), 2);
    let content = |_: Result<&Response<()>, &BoxError>| reflex_core::Outcome::Success;
    let lenient: HttpRetryLayer<_> = build_part(builder(), content);
    let server = unhealthy();
    assert_eq!(send_through_any(&lenient, &server).await.status(), 200);
    assert_eq!(server.seen().len(), 2);
    // The plain builder too.
    let plain: RetryLayer = build_part(RetryLayer::builder(), DefaultClassifier);
    assert_eq!(plain.handle().component().as_str(), "origin");
}

/// One `GET` through a layer with any classifier.
async fn send_through_any<C>(layer: &HttpRetryLayer<C>, server: &Server) -> Response<()>
where
    C: reflex_core::Classify<Response<()>, BoxError>,
{
    let svc = layer.layer(server.clone());
    let request = request(Method::GET, Empty::<Bytes>::new());
    ServiceExt::<Request<Empty<Bytes>>>::oneshot(svc, request)
        .await
        .unwrap()
}

#[test]
fn a_body_limit_of_zero_is_refused() {
    let err = RetryLayer::builder()
        .http()
        .body_limit(0)
        .build()
        .unwrap_err();
    assert_eq!(
        (err.setting(), err.kind()),
        ("body_limit", ConfigErrorKind::Zero)
    );
    let limit = RetryLayer::builder().http().build().unwrap().body_limit();
    assert_eq!(limit, 64 * 1024, "the default");
}

#[tokio::test(start_paused = true)]
async fn a_preset_with_the_default_classifier_still_retries_a_503() {
    let stack = reflex::Preset::new("origin")
        .no_breaker()
        .retry(builder())
        .build()
        .unwrap();
    let server = Server::new([Answer::Status(503, None), Answer::Status(200, None)]);
    let svc = stack.service(server.clone());
    let request = request(Method::GET, Empty::<Bytes>::new());
    let response = ServiceExt::<Request<Empty<Bytes>>>::oneshot(svc, request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.seen().len(), 2);
}
