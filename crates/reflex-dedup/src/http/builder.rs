//! [`HttpDedupBuilder`]: how an [`HttpDedupLayer`] is configured, checked
//! and built; from [`DedupBuilder::http`].

use std::fmt;

use reflex_core::{Classified, ConfigError, ConfigErrorKind, LayerBuilder, ServerErrorsAsFailures};

use super::key::HttpKey;
use super::layer::HttpDedupLayer;
use crate::builder::DedupBuilder;
use crate::settings::{LAYER, Settings};

/// The body limit by default: 64 KiB.
const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Configures an [`HttpDedupLayer`]; from [`DedupBuilder::http`].
///
/// Keyed by [`HttpKey::new`] (GET and HEAD, by method, authority, URI and
/// the headers that tell users and ranges apart) unless given another
/// with [`key_with`](Self::key_with); response bodies shared up to
/// [`body_limit`](Self::body_limit) bytes (64 KiB by default); a 5xx never
/// cached ([`ServerErrorsAsFailures`]) unless another
/// [`classifier`](Self::classifier) is given. Its other settings are the
/// plain builder's, with the same defaults, and those given to the plain
/// builder before [`http`](DedupBuilder::http) are kept.
///
/// Every service of the layer it builds shares one table and one cache,
/// keyed by the URI each service sees: put the layer where the URI is
/// whole (in `axum`, on the outer router, after `nest`; a prefix stripped
/// before the layer makes `/v1/items` and `/v2/items` one key), or key by
/// the whole URI with [`HttpKey::original_uri`]. A response whose head
/// does not show that its body fits the limit (`text/event-stream`, no
/// length known, a `Content-Length` over it) is handed over at once,
/// unread and unshared.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::header::ACCEPT_LANGUAGE;
/// use reflex_dedup::{DedupLayer, HttpKey};
///
/// let dedup = DedupLayer::builder()
///     .component("catalog")
///     .http()
///     .key_with(HttpKey::new().vary(ACCEPT_LANGUAGE))
///     .body_limit(256 * 1024)
///     .cache(Duration::from_secs(1), 10_000)
///     .build()?;
/// # let _ = dedup;
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct HttpDedupBuilder<C = ServerErrorsAsFailures> {
    key: HttpKey,
    classifier: C,
    settings: Settings,
    body_limit: usize,
}

// === impl DedupBuilder (http) ===

impl DedupBuilder {
    /// Deduplicates `http` requests instead: keyed by an [`HttpKey`],
    /// response bodies read up to a limit and shared when their headers
    /// allow it (else the answer goes whole to the request that started
    /// the call, and the others make their own calls; see the
    /// [`http` module](super)). The settings given so far are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_dedup::DedupLayer;
    ///
    /// let layer = DedupLayer::builder().max_keys(1_000).http().build()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn http(self) -> HttpDedupBuilder {
        HttpDedupBuilder {
            key: HttpKey::new(),
            classifier: ServerErrorsAsFailures,
            settings: self.into_settings(),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

// === impl HttpDedupBuilder ===

impl<C> HttpDedupBuilder<C> {
    /// How requests are keyed, and which methods are: requests with equal
    /// keys in flight at once share one call; a request whose method the
    /// key does not name passes through untouched. Its headers are also
    /// the ones a `Vary` may name for an answer to be shared. Defaults to
    /// [`HttpKey::new`].
    pub fn key_with(mut self, key: HttpKey) -> Self {
        self.key = key;
        self
    }

    /// The largest response body shared and cached, in bytes (at least 1):
    /// a larger one goes whole to the request that started the call,
    /// nothing cut, and is not cached. Only a body known to fit is read
    /// before the response is handed over (its size hint or
    /// `Content-Length` within the limit); an event stream, a body of
    /// unknown length or one over the limit goes at once, unread. Defaults
    /// to 64 KiB.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Which answers the cache may keep: a
    /// [`Classify`](reflex_core::Classify) over
    /// `Result<&Response<CallBody>, &BoxError>` (see
    /// [`CallBody`](super::CallBody)), or a closure; as
    /// [`DedupBuilder::classifier`]. Defaults to [`ServerErrorsAsFailures`]
    /// (a 5xx is not kept; it is still shared with the requests that
    /// waited on its call).
    pub fn classifier<C2>(self, classifier: C2) -> HttpDedupBuilder<C2> {
        HttpDedupBuilder {
            key: self.key,
            classifier,
            settings: self.settings,
            body_limit: self.body_limit,
        }
    }

    crate::settings::settings_setters!();

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the body limit is zero, or as
    /// [`DedupBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_core::ConfigErrorKind;
    /// use reflex_dedup::DedupLayer;
    ///
    /// let err = DedupLayer::builder().http().body_limit(0).build().unwrap_err();
    /// assert_eq!((err.setting(), err.kind()), ("body_limit", ConfigErrorKind::Zero));
    /// ```
    pub fn build(self) -> Result<HttpDedupLayer<C>, ConfigError> {
        if self.body_limit == 0 {
            return Err(ConfigError::new(
                LAYER,
                "body_limit",
                ConfigErrorKind::Zero,
                "must be at least one byte",
            ));
        }
        self.settings.check()?;
        Ok(HttpDedupLayer::new(
            self.key,
            self.classifier,
            &self.settings,
            self.body_limit,
        ))
    }
}

impl<C> LayerBuilder for HttpDedupBuilder<C> {
    type Layer = HttpDedupLayer<C>;

    reflex_core::layer_builder_methods!(settings);
}

/// The stack's classifier decides which answers the cache keeps.
impl<C, C2> Classified<C2> for HttpDedupBuilder<C> {
    type Builder = HttpDedupBuilder<C2>;

    fn classified_by(self, classifier: C2) -> Self::Builder {
        self.classifier(classifier)
    }
}

impl<C> fmt::Debug for HttpDedupBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDedupBuilder")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
