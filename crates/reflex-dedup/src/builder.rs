//! [`DedupBuilder`]: how a [`DedupLayer`] is configured, checked and
//! built.

use std::fmt;
use std::marker::PhantomData;

use reflex_core::{Classified, ConfigError, DefaultClassifier, KeyFn, LayerBuilder, NoKey};

use crate::layer::DedupLayer;
use crate::settings::Settings;
use crate::share::PlainResponses;

/// Configures a [`DedupLayer`]; from [`DedupLayer::builder`]. A key
/// function is required: `build` exists once [`key`](Self::key) (or
/// [`key_with`](Self::key_with)) was given. For `http`, see
/// `http()` (feature `http`).
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
    settings: Settings,
    _request: PhantomData<fn(&Req) -> K>,
}

// === impl DedupLayer (builder) ===

impl DedupLayer<(), (), NoKey> {
    /// Starts configuring a dedup layer.
    pub fn builder() -> DedupBuilder {
        DedupBuilder {
            key: NoKey,
            share: PlainResponses,
            classifier: DefaultClassifier,
            settings: Settings::default(),
            _request: PhantomData,
        }
    }
}

// === impl DedupBuilder ===

impl DedupBuilder {
    /// The settings given so far, for a builder of another kind.
    #[cfg(feature = "http")]
    pub(crate) fn into_settings(self) -> Settings {
        self.settings
    }
}

impl<Req, K, KF, H, C> DedupBuilder<Req, K, KF, H, C> {
    /// How a request maps to its key: requests with equal keys in flight
    /// at once share one call; `None` passes the request through
    /// untouched. Required (this, or [`key_with`](Self::key_with)).
    pub fn key<Req2, K2, F>(self, key: F) -> DedupBuilder<Req2, K2, F, H, C>
    where
        F: Fn(&Req2) -> Option<K2>,
    {
        self.key_with(key)
    }

    /// As [`key`](Self::key), with a [`KeyFn`] of your own type (a
    /// closure is one too).
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_dedup::{DedupLayer, KeyFn};
    ///
    /// /// Keys a text by its first bytes, as many as it holds.
    /// struct ByPrefix(usize);
    ///
    /// impl KeyFn<String, String> for ByPrefix {
    ///     fn key(&self, path: &String) -> Option<String> {
    ///         path.get(..self.0).map(str::to_owned)
    ///     }
    /// }
    ///
    /// let layer = DedupLayer::builder().key_with(ByPrefix(8)).build()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn key_with<Req2, K2, KF2>(self, key: KF2) -> DedupBuilder<Req2, K2, KF2, H, C>
    where
        KF2: KeyFn<Req2, K2>,
    {
        DedupBuilder {
            key,
            share: self.share,
            classifier: self.classifier,
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
    /// classifier here ([`Classified`]). Defaults to [`DefaultClassifier`]
    /// (every `Ok` answer a success).
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
            settings: self.settings,
            _request: PhantomData,
        }
    }

    crate::settings::settings_setters!();
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
        self.settings.check()?;
        Ok(DedupLayer::new(
            self.key,
            self.share,
            self.classifier,
            self.settings,
        ))
    }
}

impl<Req, K, KF, H, C> LayerBuilder for DedupBuilder<Req, K, KF, H, C>
where
    KF: KeyFn<Req, K>,
{
    type Layer = DedupLayer<Req, K, KF, H, C>;

    reflex_core::layer_builder_methods!(settings);
}

/// The stack's classifier decides which answers the cache keeps.
impl<Req, K, KF, H, C, C2> Classified<C2> for DedupBuilder<Req, K, KF, H, C>
where
    KF: KeyFn<Req, K>,
{
    type Builder = DedupBuilder<Req, K, KF, H, C2>;

    fn classified_by(self, classifier: C2) -> Self::Builder {
        self.classifier(classifier)
    }
}

impl<Req, K, KF, H, C> fmt::Debug for DedupBuilder<Req, K, KF, H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
