//! [`DedupLayer`] and its [`DedupBuilder`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, DefaultClassifier, SignalSink, Sink};
use tower_layer::Layer;

use crate::KeyFn;
use crate::handle::{DedupHandle, Stats};
use crate::service::{Dedup, Shared};
use crate::share::{PlainResponses, Share};
use crate::table::{Cache, Table};
use crate::{Inner, Key};

const LAYER: &str = "dedup";

/// Identical requests in flight share one inner call. See the
/// [crate docs](crate).
///
/// `Req` is the request type and `K` the key its key function returns,
/// both taken from the key function given to the builder; `C` is the
/// classifier that says which answers the cache may keep.
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

/// Configures a [`DedupLayer`]; from [`DedupLayer::builder`]. A key
/// function is required: `build` exists once [`key`](Self::key) was given.
///
/// By default: identical requests wait on one call (no refusal), at most
/// 65 536 distinct keys in flight, no wait timeout, no cache, and (should
/// a cache be set) every `Ok` answer a success ([`DefaultClassifier`]).
///
/// # Examples
///
/// ```
/// use reflex_dedup::DedupLayer;
/// use reflex_core::ConfigErrorKind;
///
/// let err = DedupLayer::builder().key(|n: &u32| Some(*n)).max_keys(0).build().unwrap_err();
/// assert_eq!((err.setting(), err.kind()), ("max_keys", ConfigErrorKind::Zero));
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct DedupBuilder<Req = (), K = (), KF = NoKey, H = PlainResponses, C = DefaultClassifier> {
    key: KF,
    share: H,
    classifier: C,
    /// `false` while `classifier` is the default one: `build_http` then
    /// uses `ServerErrorsAsFailures` instead.
    pub(crate) classifier_given: bool,
    settings: Settings,
    _request: PhantomData<fn(&Req) -> K>,
}

/// The key function of a builder not yet given one.
#[derive(Debug, Clone, Copy)]
pub struct NoKey;

#[derive(Debug, Clone)]
struct Settings {
    component: Component,
    sink: Sink,
    refuse_duplicates: bool,
    max_keys: usize,
    wait_timeout: Option<Duration>,
    /// `(ttl, max_entries, max_bytes)`.
    cache: Option<(Duration, usize, usize)>,
    /// How long past its TTL a cached answer is served while it refreshes.
    stale: Option<Duration>,
}

// === impl DedupLayer ===

impl DedupLayer<(), (), NoKey> {
    /// Starts configuring a dedup layer.
    pub fn builder() -> DedupBuilder {
        DedupBuilder {
            key: NoKey,
            share: PlainResponses,
            classifier: DefaultClassifier,
            classifier_given: false,
            settings: Settings {
                component: Component::default(),
                sink: Sink::none(),
                refuse_duplicates: false,
                max_keys: 65_536,
                wait_timeout: None,
                cache: None,
                stale: None,
            },
            _request: PhantomData,
        }
    }
}

impl<Req, K, KF, H, C> DedupLayer<Req, K, KF, H, C> {
    /// A handle to read keys in flight, coalesced requests and the cache.
    pub fn handle(&self) -> DedupHandle {
        DedupHandle::new(Arc::clone(&self.stats))
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
        let settings = &self.settings;
        Dedup::new(
            inner,
            Shared {
                key: self.key.clone(),
                table: Table::new(settings.max_keys),
                cache: settings.cache.map(|(ttl, entries, bytes)| {
                    Cache::new(ttl, settings.stale.unwrap_or_default(), entries, bytes)
                }),
                refuse_duplicates: settings.refuse_duplicates,
                wait_timeout: settings.wait_timeout,
                share: self.share.clone(),
                classifier: self.classifier.clone(),
                stats: Arc::clone(&self.stats),
            },
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

// === impl DedupBuilder ===

impl<Req, K, KF, H, C> DedupBuilder<Req, K, KF, H, C> {
    /// How a request maps to its key: requests with equal keys in flight
    /// at once share one call; `None` passes the request through
    /// untouched. Required (this, or [`key_with`](Self::key_with)).
    pub fn key<Req2, K2, KF2>(self, key: KF2) -> DedupBuilder<Req2, K2, KF2, H, C>
    where
        KF2: Fn(&Req2) -> Option<K2>,
    {
        self.key_with(key)
    }

    /// As [`key`](Self::key), with a [`KeyFn`] of your own type (a
    /// closure is one too).
    pub fn key_with<Req2, K2, KF2>(self, key: KF2) -> DedupBuilder<Req2, K2, KF2, H, C>
    where
        KF2: KeyFn<Req2, K2>,
    {
        DedupBuilder {
            key,
            share: self.share,
            classifier: self.classifier,
            classifier_given: self.classifier_given,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// How answers are marked for their callers and weighed for the cache:
    /// a [`Share`](crate::Share). Defaults to [`PlainResponses`] (neither).
    pub fn share<H2>(self, share: H2) -> DedupBuilder<Req, K, KF, H2, C> {
        DedupBuilder {
            key: self.key,
            share,
            classifier: self.classifier,
            classifier_given: self.classifier_given,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// What counts as a success: a [`Classify`](reflex_core::Classify)
    /// over `Result<&Response, &BoxError>`, or a closure. The cache keeps
    /// only answers it calls a [`Success`](reflex_core::Outcome::Success)
    /// (an error is never kept, whatever it says); it changes nothing
    /// else: a failing answer is still shared with the requests waiting on
    /// its call, as every answer is. A `reflex` `Preset` gives the stack's
    /// classifier here. Defaults to [`DefaultClassifier`] (every
    /// `Ok` answer a success) for [`build`](Self::build), and to
    /// [`ServerErrorsAsFailures`](reflex_core::ServerErrorsAsFailures) (a
    /// 5xx is not kept) for `build_http`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::time::Duration;
    /// use reflex_core::{BoxError, Outcome};
    /// use reflex_dedup::DedupLayer;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let counted = calls.clone();
    /// let lookup = service_fn(move |id: u64| {
    ///     counted.fetch_add(1, Ordering::SeqCst);
    ///     async move { Ok::<_, BoxError>((id == 7).then(|| "seven".to_owned())) }
    /// });
    /// // Keep only the answers that found something.
    /// let dedup = DedupLayer::builder()
    ///     .key(|id: &u64| Some(*id))
    ///     .cache(Duration::from_secs(60), 100)
    ///     .classifier(|result: Result<&Option<String>, &BoxError>| match result {
    ///         Ok(Some(_)) => Outcome::Success,
    ///         _ => Outcome::Failure,
    ///     })
    ///     .build()?;
    /// let svc = dedup.layer(lookup);
    /// for id in [7, 7, 8, 8] {
    ///     svc.clone().oneshot(id).await?;
    /// }
    /// assert_eq!(calls.load(Ordering::SeqCst), 3, "7 was kept, 8 was not");
    /// # Ok(())
    /// # }
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> DedupBuilder<Req, K, KF, H, C2> {
        DedupBuilder {
            key: self.key,
            share: self.share,
            classifier,
            classifier_given: true,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// The classifier, and whether it was given (not the default).
    #[cfg(feature = "http")]
    pub(crate) fn take_classifier(self) -> (DedupBuilder<Req, K, KF, H>, C, bool) {
        (
            DedupBuilder {
                key: self.key,
                share: self.share,
                classifier: DefaultClassifier,
                classifier_given: false,
                settings: self.settings,
                _request: PhantomData,
            },
            self.classifier,
            self.classifier_given,
        )
    }

    /// The component the layer guards, named in rejections and signals.
    /// Defaults to [`Component::default`].
    pub fn component(mut self, component: impl Into<Component>) -> Self {
        self.settings.component = component.into();
        self
    }

    /// Where coalesced requests and cache hits are reported. Defaults to
    /// nowhere.
    pub fn sink(mut self, sink: impl SignalSink) -> Self {
        self.settings.sink = Sink::new(sink);
        self
    }

    /// Refuses a request whose key is in flight with
    /// `Rejected { InProgress }` at once, instead of letting it wait (the
    /// behaviour of a deduplicator that answers "in progress"). Defaults
    /// to off.
    pub fn refuse_duplicates(mut self) -> Self {
        self.settings.refuse_duplicates = true;
        self
    }

    /// The most distinct keys in flight at once (at least 1): a request
    /// with a new key beyond it is refused with `Rejected { DedupFull }`;
    /// one that joins a key in flight is not. Defaults to 65 536.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.settings.max_keys = keys;
        self
    }

    /// How long each request waits on a shared call (above zero): one that
    /// gives up gets [`WaitTimedOut`](crate::WaitTimedOut) and leaves the
    /// call to the others. Each waiting request then reads the clock once.
    /// One too long to add to the clock (`Duration::MAX`) is no timeout.
    /// Defaults to none.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.settings.wait_timeout = Some(timeout);
        self
    }

    /// Keeps successful answers for `ttl` (above zero), at most
    /// `max_entries` of them (at least 1), the oldest evicted first: a
    /// request whose key is cached gets a copy without any call. Only
    /// answers the [`classifier`](Self::classifier) calls a success and
    /// the [`Share`](crate::Share) agrees to share are kept, each for `ttl`
    /// or its [`max_age`](crate::Share::max_age) if shorter; errors never.
    /// A `ttl` too long to add to the clock (`Duration::MAX`) never
    /// expires. Each keyed request then reads the clock once. Defaults to
    /// no cache.
    pub fn cache(mut self, ttl: Duration, max_entries: usize) -> Self {
        let bytes = self.settings.cache.map_or(usize::MAX, |(_, _, b)| b);
        self.settings.cache = Some((ttl, max_entries, bytes));
        self
    }

    /// Serves a cached answer up to `window` (above zero) past its TTL
    /// while one request refreshes it: the first request to find it stale
    /// makes the call (and waits for it, as a leader does); every request
    /// meanwhile gets the stale copy at once, marked
    /// [`Sharing::Stale`](crate::Sharing::Stale), as is a request that
    /// finds it stale when [`max_keys`](Self::max_keys) keys are in flight
    /// (instead of `DedupFull`). Past the window, the answer is gone.
    /// Needs [`cache`](Self::cache). Defaults to off.
    pub fn serve_stale(mut self, window: Duration) -> Self {
        self.settings.stale = Some(window);
        self
    }

    /// Bounds the cache by weight too (bytes, for http bodies; see
    /// [`Share::weight`](crate::Share::weight)); an answer heavier than
    /// the bound is not kept. Needs [`cache`](Self::cache). Defaults to
    /// no bound.
    pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
        if let Some((_, _, b)) = &mut self.settings.cache {
            *b = bytes;
        } else {
            // Remembered as a cache with no TTL, which `build` refuses.
            self.settings.cache = Some((Duration::ZERO, 0, bytes));
        }
        self
    }
}

impl<Req, K, KF, H, C> DedupBuilder<Req, K, KF, H, C>
where
    KF: KeyFn<Req, K>,
{
    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_keys` is zero, the wait timeout is
    /// zero, or the cache has a zero TTL or entry bound (also when
    /// `cache_max_bytes` was set without `cache`), or the stale window is
    /// zero or set without a cache. The largest values (`usize::MAX`,
    /// `Duration::MAX`) are accepted and saturate: no bound, no expiry.
    pub fn build(self) -> Result<DedupLayer<Req, K, KF, H, C>, ConfigError> {
        let settings = self.settings;
        let zero = |setting: &'static str, reason: &'static str| {
            Err(ConfigError::new(
                LAYER,
                setting,
                ConfigErrorKind::Zero,
                reason,
            ))
        };
        if settings.max_keys == 0 {
            return zero("max_keys", "at least one key must fit");
        }
        if settings.wait_timeout.is_some_and(|t| t.is_zero()) {
            return zero("wait_timeout", "must be above zero");
        }
        match (settings.stale, settings.cache) {
            (Some(window), _) if window.is_zero() => {
                return zero("serve_stale", "the window must be above zero");
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    LAYER,
                    "serve_stale",
                    ConfigErrorKind::Missing,
                    "needs a cache (set it with `cache`)",
                ));
            }
            _ => {}
        }
        if let Some((ttl, entries, _)) = settings.cache {
            if ttl.is_zero() {
                return zero("cache", "the TTL must be above zero (set it with `cache`)");
            }
            if entries == 0 {
                return zero("cache", "at least one entry must fit");
            }
        }
        Ok(DedupLayer {
            key: self.key,
            share: self.share,
            classifier: self.classifier,
            stats: Arc::new(Stats::new(
                settings.component.clone(),
                settings.sink.clone(),
            )),
            settings,
            _request: PhantomData,
        })
    }
}

impl<Req, K, KF, H, C> fmt::Debug for DedupBuilder<Req, K, KF, H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
