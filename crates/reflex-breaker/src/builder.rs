//! [`CircuitBreakBuilder`]: the settings of a breaker, and the key that
//! makes it one breaker per key. Building is in `build.rs`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, DefaultClassifier, KeyFn, NoKey, Sink};

use crate::config::{BreakerConfig, LAYER, Window};
use crate::logs::Logs;

/// The failure rate a breaker trips on when no trip rule was chosen.
pub(crate) const DEFAULT_FAILURE_RATE: f64 = 0.5;
/// The most keys a keyed breaker keeps, unless told otherwise.
pub(crate) const DEFAULT_MAX_KEYS: usize = 1024;

/// Configures a [`CircuitBreakLayer`](crate::CircuitBreakLayer); from
/// [`CircuitBreakLayer::builder`](crate::CircuitBreakLayer::builder).
///
/// # Trip rules
///
/// A breaker trips on the rules you choose:
/// [`consecutive_failures`](Self::consecutive_failures),
/// [`failure_rate`](Self::failure_rate) and
/// [`slow_calls`](Self::slow_calls). Rules chosen together all apply, and
/// any one of them trips the breaker. When you choose none, the default
/// rule applies: a failure rate of 50% over the last 100 calls, once 20
/// calls are in the window. Choosing any rule replaces that default: a
/// breaker given only `consecutive_failures(3)` trips on three failures in
/// a row and on nothing else, however high its failure rate.
///
/// The window the rates are computed over ([`count_window`](Self::count_window),
/// [`time_window`](Self::time_window), [`minimum_calls`](Self::minimum_calls))
/// is a setting of the rate rules, not a rule.
///
/// Otherwise the breaker stays open 30 s, then admits 1 probe at a time
/// and closes after 1 successful probe.
///
/// # Keys
///
/// [`key`](Self::key) (or [`key_with`](Self::key_with)) makes the layer
/// one breaker per key, a
/// [`KeyedCircuitBreakLayer`](crate::KeyedCircuitBreakLayer), with
/// [`max_keys`](Self::max_keys) bounding the keys kept. Until then the
/// builder's key type is [`Unkeyed`] and its key function
/// [`NoKey`](reflex_core::NoKey), and `build()` makes one breaker for
/// every request. The type parameters are the classifier `C`, then the
/// request `Req`, the key `K` and the key function `KF`, as for every
/// keyed layer of reflex.
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
///
/// Choosing a rule replaces the default failure rate; rules chosen
/// together all apply. Against a dependency failing every other call (a
/// failure rate of 50%, never two failures in a row):
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
/// use reflex_core::BreakerState;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let only_in_a_row = CircuitBreakLayer::builder().consecutive_failures(2);
/// let both = CircuitBreakLayer::builder().consecutive_failures(2).failure_rate(0.5);
/// for (builder, opens) in [(only_in_a_row, false), (both, true)] {
///     let layer = builder.build()?;
///     let handle = layer.handle();
///     let mut calls = 0;
///     let mut svc = layer.layer(service_fn(move |()| {
///         calls += 1;
///         let result = if calls % 2 == 0 { Err("down") } else { Ok(()) };
///         async move { result }
///     }));
///     for _ in 0..20 {
///         let _ = svc.ready().await?.call(()).await;
///     }
///     assert_eq!(handle.state() == BreakerState::Open, opens);
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakBuilder<C = DefaultClassifier, Req = (), K = Unkeyed, KF = NoKey> {
    pub(crate) classifier: C,
    /// Everything but the classifier, not yet validated; the trip rules as
    /// chosen (none: the default applies at build).
    pub(crate) config: BreakerConfig,
    /// Defaults to the open duration, whatever it is set to.
    pub(crate) half_open_max_wait: Option<Duration>,
    pub(crate) max_keys: usize,
    pub(crate) key: KF,
    pub(crate) _key: PhantomData<fn(&Req) -> Option<K>>,
}

/// The key type of a [`CircuitBreakBuilder`] given no key: one breaker for
/// every request. No value of it exists.
///
/// # Examples
///
/// ```
/// use reflex_breaker::{CircuitBreakBuilder, Unkeyed};
/// use reflex_core::{DefaultClassifier, NoKey};
///
/// let _builder: CircuitBreakBuilder<DefaultClassifier, (), Unkeyed, NoKey> =
///     reflex_breaker::CircuitBreakLayer::builder();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unkeyed {}

// === impl CircuitBreakBuilder ===

impl CircuitBreakBuilder {
    pub(crate) fn new() -> Self {
        Self {
            classifier: DefaultClassifier,
            config: BreakerConfig {
                component: Component::default(),
                sink: Sink::none(),
                consecutive_failures: None,
                failure_rate: None,
                slow_call: None,
                window: Window::Count { calls: 100 },
                minimum_calls: 20,
                open_duration: Duration::from_secs(30),
                open_backoff: None,
                probes: 1,
                probe_successes: 1,
                half_open_max_wait: Duration::from_secs(30),
                count_echoes: false,
                logs: Arc::new(Logs::new()),
            },
            half_open_max_wait: None,
            max_keys: DEFAULT_MAX_KEYS,
            key: NoKey,
            _key: PhantomData,
        }
    }
}

impl<C, Req, K, KF> CircuitBreakBuilder<C, Req, K, KF> {
    /// What counts as a failure: a [`Classify`](reflex_core::Classify) over
    /// `Result<&Response, &BoxError>`, or a closure. Whatever it says,
    /// a [`Rejected`](reflex_core::Rejected) error from a layer inside the
    /// breaker is ignored (it says nothing of the dependency's health).
    /// Defaults to [`DefaultClassifier`]: `Ok` succeeds, `Err` fails.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakBuilder<C2, Req, K, KF> {
        CircuitBreakBuilder {
            classifier,
            config: self.config,
            half_open_max_wait: self.half_open_max_wait,
            max_keys: self.max_keys,
            key: self.key,
            _key: PhantomData,
        }
    }

    /// One breaker per key instead of one for all: `key` maps a request to
    /// its key, typed in the closure's signature (`|req: &Request<B>| ..`);
    /// `None` sends the request through the layer's default breaker. Every
    /// key up to [`max_keys`](Self::max_keys) gets a breaker of its own,
    /// with this builder's settings. The breakers speak as this builder's
    /// component: keys never become components. `build()` then makes a
    /// [`KeyedCircuitBreakLayer`](crate::KeyedCircuitBreakLayer). Defaults
    /// to no key: one breaker for all.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_breaker::CircuitBreakLayer;
    ///
    /// let layer = CircuitBreakLayer::builder()
    ///     .key(|host: &String| Some(host.clone()))
    ///     .max_keys(256)
    ///     .build()?;
    /// assert!(layer.handle().is_empty());
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn key<Req2, K2, F>(self, key: F) -> CircuitBreakBuilder<C, Req2, K2, F>
    where
        F: Fn(&Req2) -> Option<K2>,
    {
        self.key_with(key)
    }

    /// As [`key`](Self::key), with any [`KeyFn`] (a closure is one too).
    pub fn key_with<Req2, K2, KF2>(self, key: KF2) -> CircuitBreakBuilder<C, Req2, K2, KF2>
    where
        KF2: KeyFn<Req2, K2>,
    {
        CircuitBreakBuilder {
            classifier: self.classifier,
            config: self.config,
            half_open_max_wait: self.half_open_max_wait,
            max_keys: self.max_keys,
            key,
            _key: PhantomData,
        }
    }

    reflex_core::component_and_sink!(config);

    /// Trips after `n` failures in a row (at least 1). A trip rule: see
    /// [Trip rules](Self#trip-rules). Defaults to off.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.config.consecutive_failures = Some(n);
        self
    }

    /// Trips when failures reach this share of the calls in the window, in
    /// (0, 1], once [`minimum_calls`](Self::minimum_calls) are in it. A
    /// trip rule: see [Trip rules](Self#trip-rules). Defaults to 0.5 when
    /// no trip rule is chosen, and to off when another one is.
    pub fn failure_rate(mut self, threshold: f64) -> Self {
        self.config.failure_rate = Some(threshold);
        self
    }

    /// Trips when calls taking at least `duration` (successful or not)
    /// reach `threshold` of the calls in the window, in (0, 1]. A slow
    /// half-open probe re-opens the breaker. Turning this on makes every
    /// call read the clock twice. A trip rule: see
    /// [Trip rules](Self#trip-rules). Defaults to off.
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
    /// calls): a component failing because its dependency failed is not
    /// unhealthy itself, and its breaker opening would refuse even the
    /// requests that never needed the dependency. The dependency's own
    /// breaker, on its own stack, is the one to trip. Count echoes when
    /// there is no such breaker: when this breaker is the only one guarding
    /// the dependency (its calls leave the process without a witnessed
    /// stack of their own), or when a failure below must open this breaker
    /// whatever its origin. Without a witness layer above the breaker
    /// nothing is ever an echo, and this setting changes nothing. See
    /// [`reflex_core::origin`]. Defaults to off.
    pub fn count_echoes(mut self) -> Self {
        self.config.count_echoes = true;
        self
    }

    /// The configuration to build, validated: the default trip rule filled
    /// in when none was chosen, the half-open wait defaulted to the open
    /// duration.
    pub(crate) fn config(&self) -> Result<BreakerConfig, ConfigError> {
        let mut config = self.config.clone();
        if config.consecutive_failures.is_none()
            && config.failure_rate.is_none()
            && config.slow_call.is_none()
        {
            config.failure_rate = Some(DEFAULT_FAILURE_RATE);
        }
        config.half_open_max_wait = self.half_open_max_wait.unwrap_or(config.open_duration);
        // The built layer's own limiters, their clock starting now.
        config.logs = Arc::new(Logs::new());
        config.validate()
    }
}

impl<C, Req, K, KF: KeyFn<Req, K>> CircuitBreakBuilder<C, Req, K, KF> {
    /// The most keys with a breaker of their own (at least 1). A new key
    /// beyond it evicts an idle breaker, or goes through the default
    /// breaker when none is idle; see
    /// [`KeyedCircuitBreakLayer`](crate::KeyedCircuitBreakLayer#memory).
    /// Defaults to 1024.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// `max_keys`, if valid.
    pub(crate) fn checked_max_keys(&self) -> Result<usize, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_keys",
                ConfigErrorKind::Zero,
                "must be at least 1",
            ));
        }
        Ok(self.max_keys)
    }
}

impl<C, Req, K, KF> fmt::Debug for CircuitBreakBuilder<C, Req, K, KF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakBuilder")
            .field("config", &self.config)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}
