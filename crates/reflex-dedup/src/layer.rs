//! [`DedupLayer`] and its [`DedupBuilder`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, SignalSink, Sink};
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
/// both taken from the key function given to the builder.
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
pub struct DedupLayer<Req, K, KF, H = PlainResponses> {
    key: KF,
    share: H,
    settings: Settings,
    stats: Arc<Stats>,
    _request: PhantomData<fn(&Req) -> K>,
}

/// Configures a [`DedupLayer`]; from [`DedupLayer::builder`]. A key
/// function is required: `build` exists once [`key`](Self::key) was given.
///
/// By default: identical requests wait on one call (no refusal), at most
/// 65 536 distinct keys in flight, no wait timeout, no cache.
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
pub struct DedupBuilder<Req = (), K = (), KF = NoKey, H = PlainResponses> {
    key: KF,
    share: H,
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

impl<Req, K, KF, H> DedupLayer<Req, K, KF, H> {
    /// A handle to read keys in flight, coalesced requests and the cache.
    pub fn handle(&self) -> DedupHandle {
        DedupHandle::new(Arc::clone(&self.stats))
    }
}

impl<Req, K, KF: Clone, H: Clone> Clone for DedupLayer<Req, K, KF, H> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            share: self.share.clone(),
            settings: self.settings.clone(),
            stats: Arc::clone(&self.stats),
            _request: PhantomData,
        }
    }
}

impl<S, Req, K, KF, H> Layer<S> for DedupLayer<Req, K, KF, H>
where
    S: Inner<Req>,
    K: Key,
    KF: Clone,
    H: Share<S::Response> + Clone,
{
    type Service = Dedup<S, Req, K, KF, H>;

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
                stats: Arc::clone(&self.stats),
            },
        )
    }
}

impl<Req, K, KF, H> fmt::Debug for DedupLayer<Req, K, KF, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

// === impl DedupBuilder ===

impl<Req, K, KF, H> DedupBuilder<Req, K, KF, H> {
    /// How a request maps to its key: requests with equal keys in flight
    /// at once share one call; `None` passes the request through
    /// untouched. Required (this, or [`key_with`](Self::key_with)).
    pub fn key<Req2, K2, KF2>(self, key: KF2) -> DedupBuilder<Req2, K2, KF2, H>
    where
        KF2: Fn(&Req2) -> Option<K2>,
    {
        self.key_with(key)
    }

    /// As [`key`](Self::key), with a [`KeyFn`] of your own type (a
    /// closure is one too).
    pub fn key_with<Req2, K2, KF2>(self, key: KF2) -> DedupBuilder<Req2, K2, KF2, H>
    where
        KF2: KeyFn<Req2, K2>,
    {
        DedupBuilder {
            key,
            share: self.share,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// How answers are marked for their callers and weighed for the cache:
    /// a [`Share`](crate::Share). Defaults to [`PlainResponses`] (neither).
    pub fn share<H2>(self, share: H2) -> DedupBuilder<Req, K, KF, H2> {
        DedupBuilder {
            key: self.key,
            share,
            settings: self.settings,
            _request: PhantomData,
        }
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
    /// Defaults to none.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.settings.wait_timeout = Some(timeout);
        self
    }

    /// Keeps successful answers for `ttl` (above zero), at most
    /// `max_entries` of them (at least 1), the oldest evicted first: a
    /// request whose key is cached gets a copy without any call. Failures
    /// are never kept. Each keyed request then reads the clock once.
    /// Defaults to no cache.
    pub fn cache(mut self, ttl: Duration, max_entries: usize) -> Self {
        let bytes = self.settings.cache.map_or(usize::MAX, |(_, _, b)| b);
        self.settings.cache = Some((ttl, max_entries, bytes));
        self
    }

    /// Serves a cached answer up to `window` (above zero) past its TTL
    /// while one request refreshes it: the first request to find it stale
    /// makes the call (and waits for it, as a leader does); every request
    /// meanwhile gets the stale copy at once, marked
    /// [`Sharing::Stale`](crate::Sharing::Stale). Past the window, the
    /// answer is gone. Needs [`cache`](Self::cache). Defaults to off.
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

impl<Req, K, KF, H> DedupBuilder<Req, K, KF, H>
where
    KF: KeyFn<Req, K>,
{
    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_keys` is zero, the wait timeout is
    /// zero, or the cache has a zero TTL or entry bound (also when
    /// `cache_max_bytes` was set without `cache`).
    pub fn build(self) -> Result<DedupLayer<Req, K, KF, H>, ConfigError> {
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
            stats: Arc::new(Stats::new(
                settings.component.clone(),
                settings.sink.clone(),
            )),
            settings,
            _request: PhantomData,
        })
    }
}

impl<Req, K, KF, H> fmt::Debug for DedupBuilder<Req, K, KF, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
