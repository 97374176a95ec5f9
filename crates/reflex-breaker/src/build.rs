//! Building a [`CircuitBreakBuilder`]: one breaker until a key is given,
//! one per key after; and the builder's part of the contract every reflex
//! builder shares ([`LayerBuilder`], [`Classified`]).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use reflex_core::{Classified, ConfigError, KeyFn, LayerBuilder};

use crate::backend::Backend;
use crate::builder::CircuitBreakBuilder;
use crate::config::BreakerConfig;
use crate::keyed::KeyedCircuitBreakLayer;
use crate::layer::CircuitBreakLayer;
use crate::memory::MemoryBackend;
use crate::shared::Shared;

// === impl CircuitBreakBuilder (one breaker) ===

impl<C> CircuitBreakBuilder<C> {
    /// Checks the configuration and builds a breaker with its state in this
    /// process.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a rate is outside (0, 1], a window, count,
    /// duration or probe number is zero, the minimum number of calls exceeds
    /// a count window, or the backoff factor is below 1 or its cap below the
    /// open duration.
    pub fn build(self) -> Result<CircuitBreakLayer<C, MemoryBackend>, ConfigError> {
        self.build_with_backend(MemoryBackend::new)
    }

    /// As [`build`](Self::build), with the state in a backend of your own,
    /// made from the validated configuration.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_breaker::{CircuitBreakLayer, MemoryBackend};
    ///
    /// let layer = CircuitBreakLayer::builder()
    ///     .consecutive_failures(3)
    ///     .build_with_backend(|config| {
    ///         assert_eq!(config.consecutive_failures(), Some(3));
    ///         MemoryBackend::new(config)
    ///     })?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn build_with_backend<B: Backend>(
        self,
        backend: impl FnOnce(BreakerConfig) -> B,
    ) -> Result<CircuitBreakLayer<C, B>, ConfigError> {
        let config = self.config()?;
        let component = config.component().clone();
        let count_echoes = config.count_echoes();
        let logs = Arc::clone(&config.logs);
        Ok(CircuitBreakLayer::new(Shared::new(
            Arc::new(backend(config)),
            self.classifier,
            component,
            count_echoes,
            logs,
        )))
    }
}

/// One breaker for the whole layer: the builder of a [`CircuitBreakLayer`].
impl<C> LayerBuilder for CircuitBreakBuilder<C> {
    type Layer = CircuitBreakLayer<C, MemoryBackend>;

    reflex_core::layer_builder_methods!(config);
}

// === impl CircuitBreakBuilder (one breaker per key) ===

impl<C, Req, K, KF> CircuitBreakBuilder<C, Req, K, KF>
where
    KF: KeyFn<Req, K>,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    C: Clone,
{
    /// Checks the configuration and builds one breaker per key, each with
    /// this builder's settings, at most [`max_keys`](Self::max_keys) of
    /// them. See [`KeyedCircuitBreakLayer`].
    ///
    /// # Errors
    ///
    /// As the unkeyed `build`, and when `max_keys` is zero.
    pub fn build(self) -> Result<KeyedCircuitBreakLayer<K, KF, C>, ConfigError> {
        let config = self.config()?;
        let max_keys = self.checked_max_keys()?;
        Ok(KeyedCircuitBreakLayer::new(
            self.key,
            config,
            self.classifier,
            max_keys,
        ))
    }
}

/// One breaker per key: the builder of a [`KeyedCircuitBreakLayer`].
impl<C, Req, K, KF> LayerBuilder for CircuitBreakBuilder<C, Req, K, KF>
where
    KF: KeyFn<Req, K>,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    C: Clone,
{
    type Layer = KeyedCircuitBreakLayer<K, KF, C>;

    reflex_core::layer_builder_methods!(config);
}

/// The breaker judges outcomes: the stack's classifier replaces the
/// builder's ([`classifier`](CircuitBreakBuilder::classifier)).
impl<C, C2, Req, K, KF> Classified<C2> for CircuitBreakBuilder<C, Req, K, KF>
where
    CircuitBreakBuilder<C2, Req, K, KF>: LayerBuilder,
{
    type Builder = CircuitBreakBuilder<C2, Req, K, KF>;

    fn classified_by(self, classifier: C2) -> Self::Builder {
        self.classifier(classifier)
    }
}
