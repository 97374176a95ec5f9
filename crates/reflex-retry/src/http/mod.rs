//! Retrying `http` requests (feature `http`):
//! [`RetryLayer::builder().http()`](crate::RetryBuilder::http) builds an
//! [`HttpRetryLayer`], whose services take `Request<B>` and call the
//! service inside with `Request<ReplayBody<B>>`, retrying per
//! [`HttpPolicy`] (idempotent methods; connect errors, 502, 503, 504 and
//! 429; `Retry-After`), with [`RetryableResponses`] as the classifier.
//!
//! A [`ReplayBody`] is recorded as the service inside reads it, up to
//! [`body_limit`](crate::RetryBuilder::body_limit) bytes (64 KiB by
//! default), so that a retry sends it again; nothing is read before the
//! request gets to the layer, which can sit anywhere in a stack (below a
//! shed layer, as usual) with no adapter above it.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use reflex_retry::RetryLayer;
//! use reflex_retry::http::ReplayBody;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let retry = RetryLayer::builder().http().build()?;
//! let handle = retry.handle();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let mut svc = retry.layer(service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
//!     let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let body = req.into_body().collect().await?.to_bytes();
//!         assert_eq!(body, "v2", "the whole body, on every attempt");
//!         let status = if call == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, reflex_core::BoxError>(Response::builder().status(status).body(()).unwrap())
//!     }
//! }));
//! let request = Request::put("http://db/item/1").body(Full::new(Bytes::from("v2")))?;
//! let response = svc.ready().await?.call(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(handle.metrics().retries, 1);
//! # Ok(())
//! # }
//! ```

mod body;
mod builder;
mod classify;
mod layer;
mod policy;
mod recording;
mod wakers;

pub use body::ReplayBody;
pub use builder::{HttpRetryBuilder, ReplayedBodies};
pub use classify::{OrRetryable, RetryableResponses};
pub use layer::{HttpRetry, HttpRetryLayer};
pub use policy::HttpPolicy;
