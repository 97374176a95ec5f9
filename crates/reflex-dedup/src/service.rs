//! The [`Dedup`] service and what its clones and futures share.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use reflex_core::{BoxError, Classify, DefaultClassifier, RejectKind, Rejected, Signal};
use tokio::time::Instant;
use tower_service::Service;

use crate::KeyFn;
use crate::flight::LEADER;
use crate::future::{CallFuture, ResponseFuture, Waiter};
use crate::handle::Stats;
use crate::share::{Share, Sharing};
use crate::table::{Cache, IfLive, Joined, Lookup, Table};
use crate::{Inner, Key};

/// What a service made by the layer, its clones and their futures share:
/// the flights in progress and the cache of that one inner service.
pub(crate) struct Shared<S, Req, K, KF, H, C>
where
    S: Service<Req>,
    H: Share<S::Response>,
{
    pub(crate) key: KF,
    pub(crate) table: Table<K, CallFuture<S::Future>, S::Response, H::Shared>,
    pub(crate) cache: Option<Cache<K, H::Shared>>,
    pub(crate) refuse_duplicates: bool,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) share: H,
    /// Which answers the cache may keep.
    pub(crate) classifier: C,
    pub(crate) stats: Arc<Stats>,
}

/// Shares one inner call among identical requests in flight. Built by
/// [`DedupLayer`](crate::DedupLayer).
///
/// # Clone
///
/// Clones share the calls in flight and the cache: identical requests
/// through any clone coalesce. Services made by separate `layer` calls
/// wrap separate inner services and never share calls (their counts add up
/// in the one handle).
///
/// # Examples
///
/// ```
/// use reflex_dedup::DedupLayer;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = DedupLayer::builder().key(|n: &u64| Some(*n)).build()?;
/// let mut svc = layer.layer(service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct Dedup<S, Req, K, KF, H, C = DefaultClassifier>
where
    S: Service<Req>,
    H: Share<S::Response>,
{
    inner: S,
    shared: Arc<Shared<S, Req, K, KF, H, C>>,
}

// === impl Dedup ===

impl<S, Req, K, KF, H, C> Dedup<S, Req, K, KF, H, C>
where
    S: Service<Req>,
    H: Share<S::Response>,
{
    pub(crate) fn new(inner: S, shared: Shared<S, Req, K, KF, H, C>) -> Self {
        Self {
            inner,
            shared: Arc::new(shared),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, K, KF, H, C> Service<Req> for Dedup<S, Req, K, KF, H, C>
where
    S: Inner<Req> + Clone,
    K: Key,
    KF: KeyFn<Req, K>,
    H: Share<S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, K, KF, H, C>;

    /// Ready when the inner service is. A request that joins another's
    /// call does not use the readiness it was given.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.shared.key.key(&request) {
            None => ResponseFuture::direct(self.inner.call(request)),
            Some(key) => self.call_keyed(key, request),
        }
    }
}

impl<S, Req, K, KF, H, C> Dedup<S, Req, K, KF, H, C>
where
    S: Inner<Req> + Clone,
    K: Key,
    H: Share<S::Response>,
{
    fn call_keyed(&mut self, key: K, request: Req) -> ResponseFuture<S, Req, K, KF, H, C> {
        let shared = &self.shared;
        let stats = &shared.stats;
        let mut stale = None;
        if let Some(cache) = &shared.cache {
            match cache.get(&key, stats) {
                Lookup::Fresh(answer) => return cached(shared, &answer, Sharing::Cached),
                Lookup::Stale(answer) => stale = Some(answer),
                Lookup::Miss => {}
            }
        }
        let if_live = if stale.is_some() {
            IfLive::Skip
        } else if shared.refuse_duplicates {
            IfLive::Refuse
        } else {
            IfLive::Wait
        };
        // A wait timeout too long to be an instant is no timeout.
        let until = shared
            .wait_timeout
            .and_then(|t| Instant::now().checked_add(t));
        match shared.table.join(&key, if_live, stats) {
            Joined::Leader(flight) => {
                // The waiter exists before the inner call: a panic in
                // `call` drops it, which abandons the flight and frees the
                // key.
                let waiter = Waiter {
                    flight: Arc::clone(&flight),
                    id: LEADER,
                    key,
                    shared: Arc::clone(shared),
                    fallback: None,
                };
                flight.start(CallFuture::new(self.inner.call(request)));
                ResponseFuture::waiting(waiter, until)
            }
            Joined::Follower {
                flight,
                id,
                waiters,
            } => {
                stats.coalesced.fetch_add(1, Ordering::Relaxed);
                stats.emit(Signal::Coalesced { waiters });
                let waiter = Waiter {
                    flight,
                    id,
                    key,
                    shared: Arc::clone(shared),
                    // Kept should the answer not be shareable; the clone
                    // is polled ready before it is used.
                    fallback: Some((self.inner.clone(), request)),
                };
                ResponseFuture::waiting(waiter, until)
            }
            // A refresh is running: the stale answer meanwhile.
            Joined::InProgress => match &stale {
                Some(answer) => cached(shared, answer, Sharing::Stale),
                None => refuse(stats, RejectKind::InProgress),
            },
            // No room for a new key: a stale answer beats a refusal.
            Joined::Full => match &stale {
                Some(answer) => cached(shared, answer, Sharing::Stale),
                None => refuse(stats, RejectKind::DedupFull),
            },
        }
    }
}

/// A copy of a cached answer, marked.
fn cached<S, Req, K, KF, H, C>(
    shared: &Shared<S, Req, K, KF, H, C>,
    answer: &H::Shared,
    sharing: Sharing,
) -> ResponseFuture<S, Req, K, KF, H, C>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    let stats = &shared.stats;
    stats.cache_hits.fetch_add(1, Ordering::Relaxed);
    stats.emit(Signal::DedupCacheHit {
        stale: sharing == Sharing::Stale,
    });
    let mut response = shared.share.unshare(answer);
    shared.share.mark(&mut response, sharing);
    ResponseFuture::ready(Ok(response))
}

fn refuse<S, Req, K, KF, H, C>(
    stats: &Stats,
    kind: RejectKind,
) -> ResponseFuture<S, Req, K, KF, H, C>
where
    S: Inner<Req>,
    K: Key,
    H: Share<S::Response>,
{
    stats.refused.fetch_add(1, Ordering::Relaxed);
    ResponseFuture::ready(Err(Rejected::new(kind, stats.component.clone()).into()))
}

impl<S, Req, K, KF, H, C> Clone for Dedup<S, Req, K, KF, H, C>
where
    S: Service<Req> + Clone,
    H: Share<S::Response>,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Req, K, KF, H, C> fmt::Debug for Dedup<S, Req, K, KF, H, C>
where
    S: Service<Req> + fmt::Debug,
    H: Share<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("inner", &self.inner)
            .field("component", &self.shared.stats.component)
            .finish_non_exhaustive()
    }
}
