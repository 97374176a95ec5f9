//! `DedupLayer`: one inner call for many identical requests.
//!
//! Singleflight inside a tower stack: a key function maps each request to
//! an optional key, and requests with equal keys in flight at once share
//! one inner call. The first (the leader) makes the call; the others (the
//! followers) wait for it and receive a clone of its answer. Requests with
//! no key pass straight through.
//!
//! # Guarantees
//!
//! - **The call belongs to all its waiters, not to the leader.** Whichever
//!   waiter is polled drives the shared call (no task is spawned): if the
//!   caller that started it drops its future, the call goes on for the
//!   others; when the last waiter leaves, the inner call is dropped (no
//!   orphan work).
//! - **Exactly one outcome per request.** A response is cloned for every
//!   waiter. The error of a call nobody else waited on reaches its caller
//!   untouched; the error of a shared call reaches each waiter as a
//!   [`SharedError`] around the one inner error (its `source`, so
//!   `Rejected::find` sees through it). A call that panics gives the other
//!   waiters `Rejected { DedupAborted }`.
//! - **Only successes are cached.** The cache keeps an answer only if the
//!   [`classifier`](DedupBuilder::classifier) (the stack's, in a preset)
//!   calls it a success and its [`Share`] agrees to share it, and for no
//!   longer than [`Share::max_age`] allows within the TTL. Errors are never
//!   cached. A failing answer is still shared with the requests waiting on
//!   its call: they asked at the same time.
//! - **The cache holds a key's latest answer or nothing.** After a call
//!   for a key ends, the cache keeps its answer, or, when that answer may
//!   not be kept (a failure, an error, an answer that cannot be shared or
//!   has no age left), takes out the one kept before: a refresh the origin
//!   refuses to have kept is not answered for by the old copy.
//! - **Never another client's answer** (feature `http`, with
//!   `DedupBuilder::http`): requests for two hosts never share; an
//!   answer that sets a cookie, is `private` or `no-store`, or varies on a
//!   header the key does not hold goes only to the request that made it
//!   (see the `http` module).
//! - **No stuck key.** A key leaves the table when its call ends, when its
//!   last waiter leaves, and when its call panics (in `call` or in the
//!   future): the next request for it makes a new call.
//! - **Bounded.** At most [`max_keys`](DedupBuilder::max_keys) distinct
//!   keys in flight (a new key beyond it is refused with
//!   `Rejected { DedupFull }`, unless a stale answer for it is cached:
//!   then that answer is served); the optional cache is bounded by entries
//!   and by weight, the oldest evicted first; with
//!   [`serve_stale`](DedupBuilder::serve_stale), an answer past its TTL is
//!   served while one request refreshes it. A duration too long to add to
//!   the clock (`Duration::MAX`) saturates: it never expires.
//! - **Per-waiter timeout.** A waiter that gives up
//!   ([`wait_timeout`](DedupBuilder::wait_timeout)) leaves the others and
//!   the call untouched.
//! - **Told apart.** A [`Share`] marks each answer to a keyed request
//!   with its [`Sharing`] (own, shared, cached, stale), as Go's
//!   singleflight returns `shared`; a follower that had to make its own
//!   call is marked own. A request without a key is not marked.
//! - **Free without a key.** A request whose key is `None` costs the key
//!   function and a branch: no lock, no allocation (over `http` too).
//! - **One way in.** [`DedupBuilder`] (and, for `http`, its
//!   `HttpDedupBuilder`) is a [`LayerBuilder`](reflex_core::LayerBuilder)
//!   that takes the stack's classifier
//!   ([`Classified`](reflex_core::Classified)); the layers are
//!   [`Handled`](reflex_core::Handled), and [`DedupHandle`] reads the
//!   [`DedupMetrics`] ([`LayerHandle`](reflex_core::LayerHandle)).
//! - **Observable.** [`Signal::Coalesced`](reflex_core::Signal::Coalesced)
//!   and [`Signal::DedupCacheHit`](reflex_core::Signal::DedupCacheHit);
//!   `tracing` events per request at `TRACE`/`DEBUG` (never with the key),
//!   refusals and wait timeouts summed up at `INFO`/`WARN` once per
//!   interval at most (`docs/dedup.md`, "Logs");
//!   [`DedupHandle`] reads keys in flight, coalesced requests, cache hits
//!   and size.
//!
//! # What it does not do
//!
//! - Keyed requests take a shard lock of the table (16 shards) and
//!   allocate the shared call's state; with the cache on, one more lock.
//! - A follower does not use the readiness its `poll_ready` obtained.
//! - Responses must be `Clone`, and the call's future and response `Send`.
//!
//! # Examples
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use reflex_dedup::DedupLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = calls.clone();
//! let slow_lookup = service_fn(move |user: u64| {
//!     counted.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         tokio::task::yield_now().await;
//!         Ok::<_, std::io::Error>(format!("user {user}"))
//!     }
//! });
//! let dedup = DedupLayer::builder().key(|user: &u64| Some(*user)).build()?;
//! let svc = dedup.layer(slow_lookup);
//!
//! let (a, b) = tokio::join!(svc.clone().oneshot(7), svc.clone().oneshot(7));
//! assert_eq!(a?, "user 7");
//! assert_eq!(b?, "user 7");
//! assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for both");
//! assert_eq!(dedup.handle().metrics().coalesced, 1);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod cache;
mod error;
mod flight;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod keyed;
mod layer;
mod logs;
mod service;
mod settings;
mod share;
mod shared;
mod table;
mod wait;

pub use builder::DedupBuilder;
pub use error::{SharedError, WaitTimedOut};
pub use handle::{DedupHandle, DedupMetrics};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{
    HttpDedup, HttpDedupBuilder, HttpDedupLayer, HttpKey, HttpShare, RequestKey, SharedResponse,
};
pub use layer::DedupLayer;
// The key function of every keyed reflex layer, and the key of a builder
// not given one yet: `reflex_dedup::KeyFn` is `reflex_core::KeyFn`.
pub use reflex_core::{KeyFn, NoKey};
pub use service::Dedup;
pub use share::{PlainResponses, Share, Sharing};

/// The inner services the layer wraps, in one name: their errors convert
/// into [`BoxError`](reflex_core::BoxError), their futures and responses
/// can move to whichever task drives a shared call.
pub trait Inner<Req>:
    tower_service::Service<
        Req,
        Error: Into<reflex_core::BoxError>,
        Future: Send + 'static,
        Response: Send + 'static,
    >
{
}

impl<S, Req> Inner<Req> for S
where
    S: tower_service::Service<Req>,
    S::Error: Into<reflex_core::BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
}

/// What a dedup key must be, in one name: hashable, comparable, clonable.
pub trait Key: std::hash::Hash + Eq + Clone {}

impl<K: std::hash::Hash + Eq + Clone> Key for K {}

/// The future of a shared call, as its flight holds it: boxed (so
/// `Unpin`), its error a `BoxError`, free to move to whichever task
/// drives it.
pub(crate) trait Call<Res>:
    std::future::Future<Output = Result<Res, reflex_core::BoxError>> + Unpin + Send + 'static
{
}

impl<F, Res> Call<Res> for F where
    F: std::future::Future<Output = Result<Res, reflex_core::BoxError>> + Unpin + Send + 'static
{
}
