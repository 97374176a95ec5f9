//! Deduplicating `http` requests (feature `http`): an [`HttpDedupLayer`],
//! from `DedupLayer::builder().http()` ([`HttpDedupBuilder`]), keys
//! requests with an [`HttpKey`] (method, authority, URI, `Authorization`,
//! `Cookie`, `Range` and the conditional headers, plus the headers you
//! name, for GET and HEAD by default), reads response bodies up to a limit
//! and shares them ([`HttpShare`]). Its services ([`HttpDedup`]) take any
//! request body and answer a [`ResponseBody`]: it sits in an `axum`
//! `Router` or a `reflex` `Preset` as any layer does.
//!
//! # Whose answer is shared
//!
//! Requests share a call only when their keys are equal: same method,
//! same authority (the URI's when it has one, else the `Host` header, so
//! two virtual hosts never share), same URI, same values of the keyed
//! headers. Even then, an answer goes to one request only (the one that
//! started the call gets it whole; every other waiter makes its own call,
//! and its answer is marked [`Sharing::Own`]), and is never cached, when:
//!
//! - its body is over the limit (nothing is truncated);
//! - its head does not show that its body fits the limit (see below);
//! - it carries `Set-Cookie`;
//! - its `Cache-Control` says `private` or `no-store` (in any case, in any
//!   position of the list, with or without a value: `no-cache, private`,
//!   `PRIVATE="set-cookie"`);
//! - it has a `Vary` on a header the key does not hold (`Vary: *`
//!   always). The key holds `Host` and the headers of its [`HttpKey`]
//!   (`Authorization`, `Cookie`, `Range` and the `If-*` headers by
//!   default, plus those named with [`vary`](HttpKey::vary)): a
//!   `Vary: Accept-Encoding` answer is shared only with
//!   `.vary(ACCEPT_ENCODING)`.
//!
//! # Streams are not held back
//!
//! A response body is read before the response is handed over only when
//! its head shows that it fits the limit: the body is at its end, its size
//! hint is bounded within the limit (a whole body's is exact: `Full`, an
//! `axum` handler's string), or its `Content-Length` is. Any other
//! response goes to the request that started the call at once, its body
//! unread and streamed through, marked [`Sharing::Own`], not cached, and
//! the requests that joined its call make their own calls (as for a
//! `Set-Cookie` answer): `Content-Type: text/event-stream` (SSE), a body of
//! unknown length (a long poll, a chunked stream from a proxied origin),
//! a `Content-Length` over the limit. So an SSE or long-poll route behind
//! the layer answers at once, and no `wait_timeout` cuts it.
//!
//! # Where to put it: where the URI is whole
//!
//! Every service a layer makes shares one table and one cache, keyed by
//! the URI each service sees. Under a router that strips a prefix before
//! the layer (`axum`'s `nest`, the layer put on the nested routers),
//! `/v1/items` and `/v2/items` both reach it as `/items`: one would get
//! the other's answer. Put the layer on the outer router, after `nest`,
//! where the URI is whole; or key by the whole URI the router kept in the
//! extensions with [`HttpKey::original_uri`].
//!
//! # What the cache keeps
//!
//! With [`cache`](HttpDedupBuilder::cache), a shareable answer is kept
//! only if the classifier calls it a success (by default
//! [`ServerErrorsAsFailures`](reflex_core::ServerErrorsAsFailures): a 5xx
//! is not kept; it is still shared with the requests that waited on its
//! call, as singleflight does), for the layer's TTL or less:
//! `Cache-Control: s-maxage` (or else `max-age`), minus `Age`, when
//! shorter; not at all for `max-age=0`, `no-cache`, or a `max-age` that is
//! not a number. `Expires` is not read. Without a `max-age` or `s-maxage`,
//! only the statuses a cache may keep unasked (RFC 9111 §4.2.2: 200, 203,
//! 204, 206, 300, 301, 308, 404, 405, 410, 414, 501) are kept: a 429, a 401
//! or a 302 is shared in flight, never cached. An answer that may not be
//! kept takes the one kept before out of the cache: a refresh answered
//! with a cookie, `private`, `no-store`, a 5xx or a body over the limit
//! leaves no stale copy behind.
//!
//! # Marks
//!
//! Each response to a keyed request carries its [`Sharing`] in its
//! extensions. The response to a request without a key (a POST, by
//! default) carries none (marking it would cost an allocation on a path
//! that otherwise has none), and is not buffered at all: it streams
//! through.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Empty, Full};
//! use reflex_dedup::{DedupLayer, HttpKey, Sharing};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dedup = DedupLayer::builder()
//!     .component("catalog")
//!     .http()
//!     .key_with(HttpKey::new().vary(http::header::ACCEPT_LANGUAGE))
//!     .body_limit(64 * 1024)
//!     .build()?;
//! let svc = dedup.layer(service_fn(|req: Request<Empty<Bytes>>| async move {
//!     tokio::task::yield_now().await;
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(req.uri().to_string()))))
//! }));
//! let get = || Request::get("/items/7").body(Empty::<Bytes>::new()).unwrap();
//! let (a, b) = tokio::join!(svc.clone().oneshot(get()), svc.clone().oneshot(get()));
//! let (a, b) = (a?, b?);
//! assert_eq!(a.extensions().get::<Sharing>(), Some(&Sharing::Shared));
//! assert_eq!(b.into_body().collect().await?.to_bytes(), "/items/7");
//! assert_eq!(dedup.handle().metrics().coalesced, 1);
//! # Ok(())
//! # }
//! ```
//!
//! [`Sharing`]: crate::Sharing
//! [`Sharing::Own`]: crate::Sharing::Own

mod body;
mod builder;
mod call;
mod future;
mod headers;
mod key;
mod layer;
mod service;
mod share;

pub use body::{BoxBody, CallBody, ResponseBody};
pub use builder::HttpDedupBuilder;
pub use future::ResponseFuture;
pub use key::{HttpKey, RequestKey};
pub use layer::HttpDedupLayer;
pub use service::HttpDedup;
pub use share::{HttpShare, SharedResponse};
