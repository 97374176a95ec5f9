//! [`LivePage`]: the tower service, and its routes.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use reflex_witness::Witness;
use tower_service::Service;

use super::body::PageBody;
use super::builder::LivePageBuilder;
use super::events::{EventStream, StreamSlot};
use super::html;

/// The live page of a witness: a tower service answering `/` (the page),
/// `/snapshot.json` and `/events` relative to where it is mounted (see
/// [the module](super)). Any request body type; the response body is a
/// [`PageBody`]; it never fails.
///
/// # Clone
///
/// Clones share the witness, the page and the count of open streams
/// (so [`LivePageBuilder::max_streams`] bounds them all together).
///
/// # Examples
///
/// ```
/// use http::{Request, StatusCode};
/// use http_body_util::BodyExt;
/// use reflex_telemetry::page::LivePage;
/// use reflex_witness::Witness;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let witness = Witness::builder().build()?;
/// witness.cycle_now();
/// let page = LivePage::new(&witness);
/// let response = page
///     .oneshot(Request::get("/snapshot.json").body(())?)
///     .await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// let json = response.into_body().collect().await?.to_bytes();
/// assert!(json.starts_with(b"{\"cycle\":1,"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LivePage {
    shared: Arc<Shared>,
}

struct Shared {
    witness: Witness,
    html: Bytes,
    window: Duration,
    keep_alive: Duration,
    max_streams: usize,
    max_stream_age: Duration,
    open_streams: Arc<AtomicUsize>,
}

// === impl LivePage ===

impl LivePage {
    /// The page of `witness`, with the default settings
    /// ([`LivePageBuilder`] says them).
    pub fn new(witness: &Witness) -> Self {
        Self::from_builder(LivePageBuilder::new(witness))
    }

    /// A builder for the page of `witness`.
    pub fn builder(witness: &Witness) -> LivePageBuilder {
        LivePageBuilder::new(witness)
    }

    pub(crate) fn from_builder(builder: LivePageBuilder) -> Self {
        let LivePageBuilder {
            witness,
            window,
            keep_alive,
            max_streams,
            max_stream_age,
        } = builder;
        Self {
            shared: Arc::new(Shared {
                html: html::render(window),
                witness,
                window,
                keep_alive,
                max_streams,
                max_stream_age,
                open_streams: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// Event streams open now (clients reading `/events`).
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::Acquire)
    }

    /// The answer to `method` on `path` (relative to the mount point).
    fn respond(&self, method: &Method, path: &str) -> Response<PageBody> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let head = method == Method::HEAD;
        match path {
            "" | "/" => self.page(head),
            "/snapshot.json" => self.snapshot(head),
            "/events" => self.events(head),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn page(&self, head: bool) -> Response<PageBody> {
        let mut response = Response::new(body(head, self.shared.html.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(html::CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }

    fn snapshot(&self, head: bool) -> Response<PageBody> {
        let latest = self.shared.witness.latest_snapshot();
        let Ok(json) = serde_json::to_vec(&*latest) else {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the snapshot did not serialize\n",
            );
        };
        let mut response = Response::new(body(head, Bytes::from(json)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn events(&self, head: bool) -> Response<PageBody> {
        let shared = &self.shared;
        let body = if head {
            PageBody::empty()
        } else {
            let Some(slot) = StreamSlot::take(&shared.open_streams, shared.max_streams) else {
                let mut response = plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many live streams open\n",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return response;
            };
            PageBody::events(EventStream::new(
                &shared.witness,
                shared.window,
                shared.keep_alive,
                shared.max_stream_age,
                slot,
            ))
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells nginx-like proxies not to buffer the stream.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

impl<B> Service<Request<B>> for LivePage {
    type Response = Response<PageBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<PageBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.uri().path())))
    }
}

impl fmt::Debug for LivePage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LivePage")
            .field("window", &self.shared.window)
            .field("keep_alive", &self.shared.keep_alive)
            .field("max_streams", &self.shared.max_streams)
            .field("max_stream_age", &self.shared.max_stream_age)
            .field("open_streams", &self.open_streams())
            .finish_non_exhaustive()
    }
}

/// `bytes`, or nothing for a HEAD request.
fn body(head: bool, bytes: Bytes) -> PageBody {
    if head {
        PageBody::empty()
    } else {
        PageBody::from(bytes)
    }
}

/// A short plain-text answer.
fn plain(status: StatusCode, text: &'static str) -> Response<PageBody> {
    let mut response = Response::new(PageBody::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
