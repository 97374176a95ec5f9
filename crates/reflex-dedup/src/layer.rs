//! [`DedupLayer`]: what a built dedup layer holds, and the services it
//! makes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use reflex_core::{DefaultClassifier, Handled};
use tower_layer::Layer;

use crate::handle::{DedupHandle, Stats};
use crate::service::Dedup;
use crate::settings::Settings;
use crate::share::{PlainResponses, Share};
use crate::shared::Shared;
use crate::{Inner, Key};

/// Identical requests in flight share one inner call. See the
/// [crate docs](crate); built by [`DedupBuilder`](crate::DedupBuilder),
/// from [`DedupLayer::builder`].
///
/// `Req` is the request type and `K` the key its key function `KF`
/// returns, both taken from the key function given to the builder; `H`
/// shares answers and `C` is the classifier that says which answers the
/// cache may keep.
///
/// # Clone
///
/// Clones share one handle (counts). Calls in flight and the cache belong
/// to each service the layer makes (each inner service), shared by that
/// service's clones.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_dedup::DedupLayer;
///
/// #[derive(Clone)]
/// struct Lookup { user: u64, fresh: bool }
///
/// let dedup = DedupLayer::builder()
///     .component("profiles")
///     // Fresh reads are never coalesced.
///     .key(|req: &Lookup| (!req.fresh).then_some(req.user))
///     .max_keys(10_000)
///     .wait_timeout(Duration::from_secs(2))
///     .cache(Duration::from_millis(500), 1_000)
///     .build()?;
/// assert_eq!(dedup.handle().metrics().in_flight_keys, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct DedupLayer<Req, K, KF, H = PlainResponses, C = DefaultClassifier> {
    key: KF,
    share: H,
    classifier: C,
    settings: Settings,
    stats: Arc<Stats>,
    _request: PhantomData<fn(&Req) -> K>,
}

// === impl DedupLayer ===

impl<Req, K, KF, H, C> DedupLayer<Req, K, KF, H, C> {
    /// A layer of checked `settings`.
    pub(crate) fn new(key: KF, share: H, classifier: C, settings: Settings) -> Self {
        Self {
            key,
            share,
            classifier,
            stats: Arc::new(Stats::new(
                settings.component.clone(),
                settings.sink.clone(),
            )),
            settings,
            _request: PhantomData,
        }
    }

    /// A handle to read keys in flight, coalesced requests and the cache.
    pub fn handle(&self) -> DedupHandle {
        DedupHandle::new(Arc::clone(&self.stats))
    }
}

impl<Req, K, KF, H, C> Handled for DedupLayer<Req, K, KF, H, C> {
    type Handle = DedupHandle;

    fn handle(&self) -> DedupHandle {
        Self::handle(self)
    }
}

impl<Req, K, KF: Clone, H: Clone, C: Clone> Clone for DedupLayer<Req, K, KF, H, C> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            share: self.share.clone(),
            classifier: self.classifier.clone(),
            settings: self.settings.clone(),
            stats: Arc::clone(&self.stats),
            _request: PhantomData,
        }
    }
}

impl<S, Req, K, KF, H, C> Layer<S> for DedupLayer<Req, K, KF, H, C>
where
    S: Inner<Req>,
    K: Key,
    KF: Clone,
    H: Share<S::Response> + Clone,
    C: Clone,
{
    type Service = Dedup<S, Req, K, KF, H, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Dedup::new(
            inner,
            Shared::new(
                &self.settings,
                self.key.clone(),
                self.share.clone(),
                self.classifier.clone(),
                Arc::clone(&self.stats),
            ),
        )
    }
}

impl<Req, K, KF, H, C> fmt::Debug for DedupLayer<Req, K, KF, H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
