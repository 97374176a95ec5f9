//! [`RetryLayer`] and its [`RetryBuilder`].

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, DefaultClassifier, SignalSink, Sink};
use tower_layer::Layer;

use crate::handle::{RetryHandle, Stats};
use crate::service::{DelayFn, Delays, Retry, Shared};
use crate::{Backoff, DefaultPolicy, Jitter, RetryBudget};

pub(crate) const LAYER: &str = "retry";

/// Retries failed calls of the services it wraps, within a budget. See
/// the [crate docs](crate).
///
/// # Clone
///
/// Clones share one budget and one set of counts: build one layer per
/// dependency, and clone it for every service that calls that dependency.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_retry::{Jitter, RetryLayer};
///
/// let retry = RetryLayer::builder()
///     .component("payments")
///     .max_attempts(4)
///     .backoff(Duration::from_millis(50), 2.0)
///     .jitter(Jitter::Equal)
///     .budget(0.1, 5, Duration::from_secs(10))
///     .attempt_timeout(Duration::from_millis(500))
///     .deadline(Duration::from_secs(3))
///     .build()?;
/// assert_eq!(retry.handle().metrics().retries, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct RetryLayer<P = DefaultPolicy, C = DefaultClassifier> {
    shared: Arc<Shared<P, C>>,
}

/// Configures a [`RetryLayer`]; from [`RetryLayer::builder`].
///
/// By default: 3 attempts; full-jitter exponential backoff from 100 ms,
/// doubling, capped at 60 s; a budget of 20% of the requests of the last
/// 10 s plus 10 retries a second (Finagle's defaults); no per-attempt
/// timeout and no deadline; an open breaker below ends retrying at once
/// (see [`wait_for_open_breaker`](Self::wait_for_open_breaker)); every
/// `Err` is a failure and every failure is retried ([`DefaultPolicy`],
/// [`DefaultClassifier`]).
///
/// # Examples
///
/// ```
/// use reflex_retry::RetryLayer;
/// use reflex_core::ConfigErrorKind;
///
/// let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::Zero);
/// assert_eq!(err.setting(), "max_attempts");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryBuilder<P = DefaultPolicy, C = DefaultClassifier> {
    policy: P,
    classifier: C,
    settings: Settings,
}

/// Everything but the policy and the classifier, not yet validated.
struct Settings {
    component: Component,
    sink: Sink,
    max_attempts: u32,
    base: Duration,
    multiplier: f64,
    cap: Duration,
    jitter: Jitter,
    delay_fn: Option<DelayFn>,
    /// `(ratio, min_per_sec, ttl)`, or no budget.
    budget: Option<(f64, u32, Duration)>,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    open_breaker_wait: Option<Duration>,
}

// === impl RetryLayer ===

impl RetryLayer {
    /// Starts configuring a retry layer.
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            policy: DefaultPolicy,
            classifier: DefaultClassifier,
            settings: Settings {
                component: Component::default(),
                sink: Sink::none(),
                max_attempts: 3,
                base: Duration::from_millis(100),
                multiplier: 2.0,
                cap: Duration::from_secs(60),
                jitter: Jitter::Full,
                delay_fn: None,
                budget: Some((0.2, 10, Duration::from_secs(10))),
                attempt_timeout: None,
                deadline: None,
                open_breaker_wait: None,
            },
        }
    }
}

impl<P, C> RetryLayer<P, C> {
    /// A handle to read what the layer did and the budget it has left.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(Arc::clone(&self.shared.stats))
    }
}

impl<P, C> Clone for RetryLayer<P, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, P, C> Layer<S> for RetryLayer<P, C> {
    type Service = Retry<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.shared))
    }
}

impl<P, C> fmt::Debug for RetryLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("component", self.shared.component())
            .field("max_attempts", &self.shared.max_attempts)
            .field("attempt_timeout", &self.shared.attempt_timeout)
            .field("deadline", &self.shared.deadline)
            .field("open_breaker_wait", &self.shared.open_breaker_wait)
            .finish_non_exhaustive()
    }
}

// === impl RetryBuilder ===

impl<P, C> RetryBuilder<P, C> {
    /// Which failed attempts are retried, and how requests are copied for
    /// it: a [`Policy`](crate::Policy). Defaults to [`DefaultPolicy`]
    /// (requests are `Clone`; every failure is retried).
    pub fn policy<P2>(self, policy: P2) -> RetryBuilder<P2, C> {
        RetryBuilder {
            policy,
            classifier: self.classifier,
            settings: self.settings,
        }
    }

    /// What counts as a failure: a [`Classify`](reflex_core::Classify)
    /// over `Result<&Response, &BoxError>`, or a closure. Only failures are
    /// offered to the policy; a success or an ignored outcome is final.
    /// Defaults to [`DefaultClassifier`]: `Ok` succeeds, `Err` fails.
    pub fn classifier<C2>(self, classifier: C2) -> RetryBuilder<P, C2> {
        RetryBuilder {
            policy: self.policy,
            classifier,
            settings: self.settings,
        }
    }

    /// The component the layer retries for, named in signals and logs.
    /// Defaults to [`Component::default`].
    pub fn component(mut self, component: impl Into<Component>) -> Self {
        self.settings.component = component.into();
        self
    }

    /// Where retries and budget refusals are reported. Defaults to nowhere.
    pub fn sink(mut self, sink: impl SignalSink) -> Self {
        self.settings.sink = Sink::new(sink);
        self
    }

    /// Attempts per request, the first included (at least 1; 1 turns
    /// retrying off; `u32::MAX` is as many as the budget and the deadline
    /// allow). Defaults to 3.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// The delay before the first retry (above zero), and the factor (at
    /// least 1) it grows by for each retry after. Defaults to 100 ms and 2.
    pub fn backoff(mut self, base: Duration, multiplier: f64) -> Self {
        self.settings.base = base;
        self.settings.multiplier = multiplier;
        self
    }

    /// The longest delay before a retry, whatever computed it: backoff,
    /// a custom delay function, or the server's `Retry-After` (a longer one
    /// is ignored, and the backoff used). `Duration::MAX` sets no limit, but
    /// a delay of more than a century ends retrying instead: the caller
    /// gets the result that asked for it. Defaults to 60 s.
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.settings.cap = cap;
        self
    }

    /// How delays are spread around their exponential value. Defaults to
    /// [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.settings.jitter = jitter;
        self
    }

    /// Replaces the backoff with a function of the retry's number (1 for
    /// the first) and the delay before the previous retry (zero for the
    /// first). Its delays are still capped by
    /// [`max_delay`](Self::max_delay). Defaults to the backoff.
    pub fn delay_fn(
        mut self,
        delay: impl Fn(u32, Duration) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.settings.delay_fn = Some(Arc::new(delay));
        self
    }

    /// Limits retries to `ratio` of the requests of the last `ttl` (0 to
    /// 1000; 0.2 is one retry per five requests), plus `min_per_sec`
    /// retries a second whatever the traffic, shared by every clone of the
    /// layer. See [`RetryBudget`]. Defaults to 0.2, 10 and 10 s.
    pub fn budget(mut self, ratio: f64, min_per_sec: u32, ttl: Duration) -> Self {
        self.settings.budget = Some((ratio, min_per_sec, ttl));
        self
    }

    /// Turns the budget off: every request may use all its attempts. An
    /// outage then multiplies the load on the dependency by the attempts.
    pub fn no_budget(mut self) -> Self {
        self.settings.budget = None;
        self
    }

    /// Gives each attempt at most this long (above zero); an attempt that
    /// runs out is dropped and counts as a failed attempt
    /// ([`TimedOut`](crate::TimedOut)). Each attempt with a timer reads the
    /// clock once. A timeout of more than a century (`Duration::MAX`, say)
    /// is none. Defaults to none.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = Some(timeout);
        self
    }

    /// Gives the whole request, every attempt and wait included, at most
    /// this long (above zero): no retry starts that could not begin before
    /// it, and an attempt still running when it passes is dropped. A
    /// deadline more than a century away (`Duration::MAX`, say) is none.
    /// Defaults to none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// Waits for an open breaker below, at most `max_wait` (above zero, at
    /// most [`max_delay`](Self::max_delay)): an attempt refused with
    /// [`CircuitOpen`](reflex_core::RejectKind::CircuitOpen) whose
    /// `retry_after` is within `max_wait`, and would end before the
    /// request's deadline, is retried after that `retry_after` instead of
    /// the backoff (a retry like any other: it takes an attempt and a
    /// retry from the budget).
    ///
    /// Defaults to no wait: a `CircuitOpen` ends retrying at once, and the
    /// caller gets the rejection, with its `retry_after`. A request waiting
    /// for the breaker holds what the layers above gave it (a shed
    /// permit, a slot) for as long as it waits, which is why it is off
    /// until asked for, and bounded.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflex_retry::RetryLayer;
    ///
    /// // Wait for a breaker that probes within 200 ms; fail fast otherwise.
    /// let retry = RetryLayer::builder()
    ///     .wait_for_open_breaker(Duration::from_millis(200))
    ///     .build()?;
    /// # let _ = retry;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn wait_for_open_breaker(mut self, max_wait: Duration) -> Self {
        self.settings.open_breaker_wait = Some(max_wait);
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_attempts`, the backoff's base, the
    /// attempt timeout, the deadline or the wait for an open breaker is
    /// zero, the multiplier is below 1 or not finite, the cap is below the
    /// base, the wait for an open breaker is above the cap, or the budget
    /// is invalid (see [`RetryBudget::new`]).
    pub fn build(self) -> Result<RetryLayer<P, C>, ConfigError> {
        if self.settings.max_attempts == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_attempts",
                ConfigErrorKind::Zero,
                "at least one attempt is needed",
            ));
        }
        for (setting, duration) in [
            ("attempt_timeout", self.settings.attempt_timeout),
            ("deadline", self.settings.deadline),
            ("wait_for_open_breaker", self.settings.open_breaker_wait),
        ] {
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(
                    LAYER,
                    setting,
                    ConfigErrorKind::Zero,
                    "must be above zero",
                ));
            }
        }
        let backoff = Backoff::new(
            self.settings.base,
            self.settings.multiplier,
            self.settings.cap,
            self.settings.jitter,
        )?;
        if self
            .settings
            .open_breaker_wait
            .is_some_and(|wait| wait > self.settings.cap)
        {
            return Err(ConfigError::new(
                LAYER,
                "wait_for_open_breaker",
                ConfigErrorKind::OutOfRange,
                "must not be above max_delay, the cap on every wait before a retry",
            ));
        }
        let delays = match self.settings.delay_fn {
            Some(f) => Delays::Custom {
                f,
                cap: self.settings.cap,
            },
            None => Delays::Backoff(backoff),
        };
        let budget = self
            .settings
            .budget
            .map(|(ratio, min_per_sec, ttl)| RetryBudget::new(ttl, min_per_sec, ratio))
            .transpose()?;
        let seed = RandomState::new().hash_one(0u8);
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                policy: self.policy,
                classifier: self.classifier,
                sink: self.settings.sink,
                max_attempts: self.settings.max_attempts,
                delays,
                attempt_timeout: self.settings.attempt_timeout,
                deadline: self.settings.deadline,
                open_breaker_wait: self.settings.open_breaker_wait,
                stats: Arc::new(Stats::new(self.settings.component, budget, seed)),
            }),
        })
    }
}

impl<P, C> fmt::Debug for RetryBuilder<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("component", &self.settings.component)
            .field("max_attempts", &self.settings.max_attempts)
            .field("base", &self.settings.base)
            .field("multiplier", &self.settings.multiplier)
            .field("cap", &self.settings.cap)
            .field("jitter", &self.settings.jitter)
            .field("budget", &self.settings.budget)
            .field("attempt_timeout", &self.settings.attempt_timeout)
            .field("deadline", &self.settings.deadline)
            .field("open_breaker_wait", &self.settings.open_breaker_wait)
            .finish_non_exhaustive()
    }
}
