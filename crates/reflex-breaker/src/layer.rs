//! [`CircuitBreakLayer`] and its [`CircuitBreakBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, DefaultClassifier, SignalSink, Sink};
use tower_layer::Layer;

use crate::backend::Backend;
use crate::config::{BreakerConfig, Window};
use crate::handle::BreakerHandle;
use crate::keyed::KeyedCircuitBreakLayer;
use crate::memory::MemoryBackend;
use crate::service::{CircuitBreak, Shared};

/// A circuit breaker for the services it wraps. See the [crate docs](crate).
///
/// # Clone
///
/// Clones share one breaker: every clone, and every service the layer
/// wraps, counts toward and is refused by the same state. Build one layer
/// per dependency.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_breaker::CircuitBreakLayer;
///
/// let breaker = CircuitBreakLayer::builder()
///     .component("payments")
///     .failure_rate(0.5)
///     .count_window(100)
///     .minimum_calls(20)
///     .consecutive_failures(5)
///     .open_duration(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(breaker.handle().state(), reflex_core::BreakerState::Closed);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct CircuitBreakLayer<C = DefaultClassifier, B = MemoryBackend> {
    shared: Arc<Shared<C, B>>,
}

/// Configures a [`CircuitBreakLayer`]; from [`CircuitBreakLayer::builder`].
///
/// Every trip condition is optional and any one trips. By default the
/// breaker trips on a failure rate of 50% over the last 100 calls once 20
/// calls are in the window, stays open 30 s, then admits 1 probe at a time
/// and closes after 1 successful probe.
///
/// # Examples
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
/// use reflex_core::ConfigErrorKind;
///
/// let err = CircuitBreakLayer::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::OutOfRange);
/// assert_eq!(err.setting(), "failure_rate");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakBuilder<C = DefaultClassifier> {
    classifier: C,
    /// Everything but the classifier, not yet validated.
    config: BreakerConfig,
    /// Defaults to the open duration, whatever it is set to.
    half_open_max_wait: Option<Duration>,
}

// === impl CircuitBreakLayer ===

impl CircuitBreakLayer {
    /// Starts configuring a breaker.
    pub fn builder() -> CircuitBreakBuilder {
        CircuitBreakBuilder {
            classifier: DefaultClassifier,
            config: BreakerConfig {
                component: Component::default(),
                sink: Sink::none(),
                consecutive_failures: None,
                failure_rate: Some(0.5),
                slow_call: None,
                window: Window::Count { calls: 100 },
                minimum_calls: 20,
                open_duration: Duration::from_secs(30),
                open_backoff: None,
                probes: 1,
                probe_successes: 1,
                half_open_max_wait: Duration::from_secs(30),
                count_echoes: false,
            },
            half_open_max_wait: None,
        }
    }
}

impl<C, B: Backend> CircuitBreakLayer<C, B> {
    /// A handle to read the breaker's state and counts and set its state by
    /// hand.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(
            Arc::clone(&self.shared.backend) as Arc<dyn Backend>,
            self.shared.component.clone(),
        )
    }
}

impl<C, B> Clone for CircuitBreakLayer<C, B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, C, B> Layer<S> for CircuitBreakLayer<C, B> {
    type Service = CircuitBreak<S, C, B>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreak::new(inner, Arc::clone(&self.shared))
    }
}

impl<C, B: Backend> fmt::Debug for CircuitBreakLayer<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakLayer")
            .field("component", &self.shared.component)
            .field("state", &self.shared.backend.state())
            .finish_non_exhaustive()
    }
}

// === impl CircuitBreakBuilder ===

impl<C> CircuitBreakBuilder<C> {
    /// What counts as a failure: a [`Classify`](reflex_core::Classify) over
    /// `Result<&Response, &BoxError>`, or a closure. Whatever it says,
    /// a [`Rejected`](reflex_core::Rejected) error from a layer inside the
    /// breaker is ignored (it says nothing of the dependency's health).
    /// Defaults to [`DefaultClassifier`]: `Ok` succeeds, `Err` fails.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakBuilder<C2> {
        CircuitBreakBuilder {
            classifier,
            config: self.config,
            half_open_max_wait: self.half_open_max_wait,
        }
    }

    /// The component the breaker guards, named in rejections, signals and
    /// logs. Defaults to [`Component::default`].
    pub fn component(mut self, component: impl Into<Component>) -> Self {
        self.config.component = component.into();
        self
    }

    /// Where transitions are reported. Defaults to nowhere.
    pub fn sink(mut self, sink: impl SignalSink) -> Self {
        self.config.sink = Sink::new(sink);
        self
    }

    /// Trips after `n` failures in a row (at least 1). Defaults to off.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.config.consecutive_failures = Some(n);
        self
    }

    /// Trips when failures reach this share of the calls in the window, in
    /// (0, 1], once [`minimum_calls`](Self::minimum_calls) are in it.
    /// Defaults to 0.5.
    pub fn failure_rate(mut self, threshold: f64) -> Self {
        self.config.failure_rate = Some(threshold);
        self
    }

    /// Turns the failure-rate trip off (to trip on consecutive failures or
    /// slow calls only).
    pub fn no_failure_rate(mut self) -> Self {
        self.config.failure_rate = None;
        self
    }

    /// Trips when calls taking at least `duration` (successful or not)
    /// reach `threshold` of the calls in the window, in (0, 1]. A slow
    /// half-open probe re-opens the breaker. Turning this on makes every
    /// call read the clock twice. Defaults to off.
    pub fn slow_calls(mut self, threshold: f64, duration: Duration) -> Self {
        self.config.slow_call = Some((threshold, duration));
        self
    }

    /// Rates are computed over the last `calls` calls, exactly (at most
    /// 2²⁰). Defaults to 100.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.config.window = Window::Count { calls };
        self
    }

    /// Rates are computed over the calls of the last `length`, kept in
    /// `buckets` buckets (1 to 1000, each at least a nanosecond long; a
    /// bucket leaves the window whole). Any length up to
    /// [`Duration::MAX`] is honoured: a window of 30 days holds 30 days of
    /// calls, and one too long for the breaker's clock (buckets over about
    /// 584 years) holds every call. Every call then reads the clock once.
    /// Defaults to a count window.
    pub fn time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.config.window = Window::Time { length, buckets };
        self
    }

    /// Rates trip only once the window holds this many calls (at least 1,
    /// at most a count window's size). Defaults to 20.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// How long the breaker stays open before it probes. Any duration
    /// above zero, up to [`Duration::MAX`]: the deadline saturates (a
    /// breaker open for longer than about 584 years never probes), and
    /// the rejections' `retry_after` is the time left, saturating at
    /// `u64::MAX − 1` nanoseconds. Defaults to 30 s.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.config.open_duration = duration;
        self
    }

    /// Grows the open duration by `factor` (at least 1, finite) on each
    /// re-open without a close in between, up to `cap` (at least the open
    /// duration); a close resets it. A growth past what a [`Duration`]
    /// holds is the cap, however many re-opens in a row. Defaults to off
    /// (the same open duration every time).
    pub fn open_backoff(mut self, factor: f64, cap: Duration) -> Self {
        self.config.open_backoff = Some((factor, cap));
        self
    }

    /// Probe calls a half-open breaker admits at once; others are refused
    /// as if open. Defaults to 1.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.probes = probes;
        self
    }

    /// Successful probes that close the breaker; a failed one re-opens it.
    /// Defaults to 1.
    pub fn probe_successes(mut self, successes: u32) -> Self {
        self.config.probe_successes = successes;
        self
    }

    /// How long a half-open breaker whose probes are all out waits for one
    /// to report before it re-opens, so probes that never finish cannot
    /// leave it stuck. Defaults to the open duration.
    pub fn half_open_max_wait(mut self, wait: Duration) -> Self {
        self.half_open_max_wait = Some(wait);
        self
    }

    /// Counts a failure even when it is an *echo*: when a call the request
    /// made below (to another component, followed by a witness layer)
    /// failed, was refused or was dropped while this call ran.
    ///
    /// By default an echo counts as the component's own success (its part
    /// of the call worked; the failure rate stays a rate over all its
    /// calls): a component failing because its dependency failed is not unhealthy
    /// itself, and its breaker opening would refuse even the requests that
    /// never needed the dependency. The dependency's own breaker, on its
    /// own stack, is the one to trip. Count echoes when there is no such
    /// breaker: when this breaker is the only one guarding the dependency
    /// (its calls leave the process without a witnessed stack of their
    /// own), or when a failure below must open this breaker whatever its
    /// origin. Without a witness layer above the breaker nothing is ever an
    /// echo, and this setting changes nothing. See
    /// [`reflex_core::origin`].
    pub fn count_echoes(mut self) -> Self {
        self.config.count_echoes = true;
        self
    }

    /// Checks the configuration and builds a breaker with its state in this
    /// process.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a rate is outside (0, 1], a window, count,
    /// duration or probe number is zero, the minimum number of calls exceeds
    /// a count window, the backoff factor is below 1 or its cap below the
    /// open duration, or no trip condition is left.
    pub fn build(self) -> Result<CircuitBreakLayer<C, MemoryBackend>, ConfigError> {
        self.build_with_backend(MemoryBackend::new)
    }

    /// Builds one breaker per key instead of one for all: `key` maps a
    /// request to its key (`None`: the shared default breaker), every key
    /// up to `max_keys` gets a breaker of its own, and beyond that idle
    /// ones are evicted. The breakers speak as this builder's component:
    /// keys never become components. See [`KeyedCircuitBreakLayer`].
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and when `max_keys` is zero.
    pub fn build_keyed<Request, K, F>(
        self,
        key: F,
        max_keys: usize,
    ) -> Result<KeyedCircuitBreakLayer<K, F, C>, ConfigError>
    where
        F: Fn(&Request) -> Option<K>,
        K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
        C: Clone,
    {
        if max_keys == 0 {
            return Err(ConfigError::new(
                crate::config::LAYER,
                "max_keys",
                reflex_core::ConfigErrorKind::Zero,
                "must be at least 1",
            ));
        }
        let classifier = self.classifier.clone();
        let config = self.config()?;
        Ok(KeyedCircuitBreakLayer::new(
            key, config, classifier, max_keys,
        ))
    }

    fn config(&self) -> Result<BreakerConfig, ConfigError> {
        let mut config = self.config.clone();
        config.half_open_max_wait = self.half_open_max_wait.unwrap_or(config.open_duration);
        config.validate()
    }

    /// As [`build`](Self::build), with the state in a backend of your own,
    /// made from the validated configuration.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_backend<B: Backend>(
        self,
        backend: impl FnOnce(BreakerConfig) -> B,
    ) -> Result<CircuitBreakLayer<C, B>, ConfigError> {
        let config = self.config()?;
        let component = config.component().clone();
        let count_echoes = config.count_echoes();
        Ok(CircuitBreakLayer {
            shared: Arc::new(Shared::new(
                Arc::new(backend(config)),
                self.classifier,
                component,
                count_echoes,
            )),
        })
    }
}

impl<C> fmt::Debug for CircuitBreakBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakBuilder")
            .field("config", &self.config)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .finish_non_exhaustive()
    }
}
