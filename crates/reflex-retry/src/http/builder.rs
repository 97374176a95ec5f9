//! [`HttpRetryBuilder`]: [`RetryBuilder::http`], the request body limit,
//! and the build of an [`HttpRetryLayer`].

use reflex_core::{Classified, ConfigError, ConfigErrorKind, LayerBuilder};

use super::classify::{OrRetryable, RetryableResponses};
use super::layer::HttpRetryLayer;
use super::policy::HttpPolicy;
use crate::LAYER;
use crate::builder::{CopiedRequests, RetryBuilder};

/// The default [`body_limit`](RetryBuilder::body_limit): 64 KiB.
const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Configures an [`HttpRetryLayer`]; from
/// [`RetryLayer::builder().http()`](RetryBuilder::http). Every setting of
/// [`RetryBuilder`] is there, and [`body_limit`](RetryBuilder::body_limit).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_retry::RetryLayer;
/// use reflex_retry::http::HttpRetryBuilder;
///
/// let builder: HttpRetryBuilder = RetryLayer::builder()
///     .http()
///     .max_attempts(2)
///     .backoff(Duration::from_millis(20), 2.0)
///     .body_limit(8 * 1024);
/// let retry = builder.build()?;
/// assert_eq!(retry.body_limit(), 8 * 1024);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub type HttpRetryBuilder<C = RetryableResponses> = RetryBuilder<HttpPolicy, C, ReplayedBodies>;

/// How an [`HttpRetryBuilder`]'s layer takes requests: `http` requests,
/// whose bodies it records as they are read, up to a limit, to send them
/// again.
///
/// # Examples
///
/// ```
/// use reflex_retry::http::{HttpPolicy, ReplayedBodies, RetryableResponses};
/// use reflex_retry::{RetryBuilder, RetryLayer};
///
/// let _http: RetryBuilder<HttpPolicy, RetryableResponses, ReplayedBodies> =
///     RetryLayer::builder().http().body_limit(1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayedBodies {
    body_limit: usize,
}

// === impl RetryBuilder (http) ===

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<P, C> RetryBuilder<P, C, CopiedRequests> {
    /// Retries `http` requests: the builder of an [`HttpRetryLayer`], whose
    /// services take `Request<B>` and call the service inside with
    /// `Request<ReplayBody<B>>` (see [`ReplayBody`](crate::http::ReplayBody)).
    /// The policy becomes [`HttpPolicy`] and the classifier
    /// [`RetryableResponses`]; every other setting stays.
    pub fn http(self) -> HttpRetryBuilder {
        self.retyped(
            HttpPolicy,
            RetryableResponses,
            ReplayedBodies {
                body_limit: DEFAULT_BODY_LIMIT,
            },
        )
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<C> RetryBuilder<HttpPolicy, C, ReplayedBodies> {
    /// The most data of a request body recorded to send it again, in bytes
    /// (above zero). A body found larger, by its size hint or while it is
    /// read, is sent once, whole, and its request is not retried. Defaults
    /// to 64 KiB.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.requests.body_limit = bytes;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`RetryBuilder::build`], and a [`ConfigError`] when the body
    /// limit is zero.
    pub fn build(self) -> Result<HttpRetryLayer<C>, ConfigError> {
        let body_limit = self.requests.body_limit;
        if body_limit == 0 {
            return Err(ConfigError::new(
                LAYER,
                "body_limit",
                ConfigErrorKind::Zero,
                "must be above zero: a limit of zero would retry only empty bodies",
            ));
        }
        Ok(HttpRetryLayer::new(self.build_layer()?, body_limit))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<C> LayerBuilder for RetryBuilder<HttpPolicy, C, ReplayedBodies> {
    type Layer = HttpRetryLayer<C>;

    reflex_core::layer_builder_methods!(settings);
}

/// The stack's classifier joined to [`RetryableResponses`]
/// ([`OrRetryable`]): the stack's classifier may add failures, never take
/// away the ones the http retry knows are worth asking again (a 5xx, a
/// 429, an `Err`), so a preset with the default classifier still retries
/// a 503.
impl<C, C2> Classified<C2> for RetryBuilder<HttpPolicy, C, ReplayedBodies> {
    type Builder = RetryBuilder<HttpPolicy, OrRetryable<C2>, ReplayedBodies>;

    fn classified_by(self, classifier: C2) -> Self::Builder {
        self.classifier(OrRetryable(classifier))
    }
}
