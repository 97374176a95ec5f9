//! [`HttpDedupLayer`]: a built `http` dedup layer, and the services it
//! makes.

use std::fmt;
use std::sync::Arc;

use reflex_core::{Handled, ServerErrorsAsFailures};
use tower_layer::Layer;

use super::key::HttpKey;
use super::service::{HttpDedup, HttpShared};
use super::share::HttpShare;
use crate::handle::{DedupHandle, Stats};
use crate::settings::Settings;
use crate::shared::Shared;

/// Identical `http` requests in flight share one inner call and its
/// response body; from [`HttpDedupBuilder`](super::HttpDedupBuilder)
/// (`DedupLayer::builder().http()`). See the [module docs](super).
///
/// It takes any request body and any inner service: the services it makes
/// ([`HttpDedup`]) take `Request<B>` for the `B` their inner service takes,
/// so it sits in a stack (an `axum` `Router`, a `ServiceBuilder`, a
/// `reflex` `Preset`) as any layer does. `C` is the classifier that says
/// which answers the cache may keep.
///
/// # Clone
///
/// Clones, and every service the layer makes, share one table of calls in
/// flight, one cache and one handle: an `http` key names a resource
/// (method, authority, URI, keyed headers) whichever service answers it,
/// and a framework may wrap one route more than once (`axum` applies a
/// router's layers per connection, or per request before
/// `with_state`), which must not leave each copy with a table of its own.
/// Build one layer per backend when two inner services answer the same
/// request differently.
///
/// **Put it where the URI is whole.** The key holds the URI as the
/// wrapped service sees it: under a router that strips a prefix first
/// (`axum`'s `nest`), clones of one layer put on two nested routers see
/// `/v1/items` and `/v2/items` both as `/items`, and hand one the other's
/// answer (and cache it for both). Put the layer on the outer router,
/// after `nest` (`Router::new().nest("/v1", v1).nest("/v2", v2).layer(..)`),
/// or key by the whole URI the router kept with
/// [`HttpKey::original_uri`](super::HttpKey::original_uri).
///
/// # Examples
///
/// ```
/// use reflex_dedup::DedupLayer;
///
/// let dedup = DedupLayer::builder().component("catalog").http().body_limit(8 * 1024).build()?;
/// assert_eq!(dedup.body_limit(), 8 * 1024);
/// assert_eq!(dedup.handle().metrics().in_flight_keys, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct HttpDedupLayer<C = ServerErrorsAsFailures> {
    shared: Arc<HttpShared<C>>,
    body_limit: usize,
}

// === impl HttpDedupLayer ===

impl<C> HttpDedupLayer<C> {
    /// A layer of checked `settings`.
    pub(crate) fn new(key: HttpKey, classifier: C, settings: &Settings, body_limit: usize) -> Self {
        let stats = Stats::new(settings.component.clone(), settings.sink.clone());
        let share = HttpShare::keyed_by(&key);
        Self {
            shared: Arc::new(Shared::new(
                settings,
                key,
                share,
                classifier,
                Arc::new(stats),
            )),
            body_limit,
        }
    }

    /// A handle to read keys in flight, coalesced requests and the cache.
    pub fn handle(&self) -> DedupHandle {
        DedupHandle::new(Arc::clone(&self.shared.stats))
    }

    /// The largest response body shared, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The key of its requests.
    pub fn key(&self) -> &HttpKey {
        &self.shared.key
    }
}

impl<C> Handled for HttpDedupLayer<C> {
    type Handle = DedupHandle;

    fn handle(&self) -> DedupHandle {
        Self::handle(self)
    }
}

impl<S, C> Layer<S> for HttpDedupLayer<C> {
    type Service = HttpDedup<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpDedup::new(inner, Arc::clone(&self.shared), self.body_limit)
    }
}

impl<C> Clone for HttpDedupLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            body_limit: self.body_limit,
        }
    }
}

impl<C> fmt::Debug for HttpDedupLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDedupLayer")
            .field("component", &self.shared.stats.component)
            .field("key", &self.shared.key)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
