//! [`RetryBuilder`]: configures and validates a [`RetryLayer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Classified, ConfigError, DefaultClassifier, LayerBuilder};

use crate::backoff::Jitter;
use crate::layer::RetryLayer;
use crate::policy::DefaultPolicy;
use crate::service::Retry;
use crate::settings::{BudgetSettings, Settings};

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
/// `R` says how the layer takes requests: as they come, copied by the
/// policy ([`CopiedRequests`]), or, with feature `http`, as `http` requests
/// whose bodies it records to send them again (`ReplayedBodies`, from
/// `RetryBuilder::http`).
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
pub struct RetryBuilder<P = DefaultPolicy, C = DefaultClassifier, R = CopiedRequests> {
    policy: P,
    classifier: C,
    pub(crate) requests: R,
    pub(crate) settings: Settings,
}

/// How a [`RetryBuilder`]'s layer takes requests by default: as they come,
/// copied for each retry by its [`Policy`](crate::Policy).
///
/// # Examples
///
/// ```
/// use reflex_retry::{CopiedRequests, RetryBuilder, RetryLayer};
///
/// let _plain: RetryBuilder<_, _, CopiedRequests> = RetryLayer::builder();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopiedRequests;

// === impl RetryLayer ===

impl RetryLayer {
    /// Starts configuring a retry layer.
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            policy: DefaultPolicy,
            classifier: DefaultClassifier,
            requests: CopiedRequests,
            settings: Settings::default(),
        }
    }
}

// === impl Retry ===

impl Retry<()> {
    /// A retry layer with the default configuration: a shorthand for
    /// `RetryLayer::builder().build()`.
    ///
    /// # Errors
    ///
    /// None with the defaults; the `Result` is the builder's.
    ///
    /// ```
    /// let layer = reflex_retry::Retry::layer()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn layer() -> Result<RetryLayer, ConfigError> {
        RetryLayer::builder().build()
    }
}

// === impl RetryBuilder ===

impl<P, C> RetryBuilder<P, C, CopiedRequests> {
    /// Which failed attempts are retried, and how requests are copied for
    /// it: a [`Policy`](crate::Policy). Defaults to [`DefaultPolicy`]
    /// (requests are `Clone`; every failure is retried).
    pub fn policy<P2>(self, policy: P2) -> RetryBuilder<P2, C> {
        RetryBuilder {
            policy,
            classifier: self.classifier,
            requests: CopiedRequests,
            settings: self.settings,
        }
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_attempts`, the backoff's base, the
    /// attempt timeout, the deadline or the wait for an open breaker is
    /// zero, the multiplier is below 1 or not finite, the cap is below the
    /// base, the wait for an open breaker is above the cap, or the budget
    /// is invalid (see [`RetryBudget::new`](crate::RetryBudget::new)).
    pub fn build(self) -> Result<RetryLayer<P, C>, ConfigError> {
        self.build_layer()
    }
}

impl<P, C, R> RetryBuilder<P, C, R> {
    /// What counts as a failure: a [`Classify`](reflex_core::Classify)
    /// over `Result<&Response, &BoxError>`, or a closure. Only failures are
    /// offered to the policy; a success or an ignored outcome is final.
    /// Defaults to [`DefaultClassifier`]: `Ok` succeeds, `Err` fails (with
    /// feature `http`, `RetryBuilder::http` sets `RetryableResponses`).
    pub fn classifier<C2>(self, classifier: C2) -> RetryBuilder<P, C2, R> {
        RetryBuilder {
            policy: self.policy,
            classifier,
            requests: self.requests,
            settings: self.settings,
        }
    }

    reflex_core::component_and_sink!(settings);

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
    /// layer. See [`RetryBudget`](crate::RetryBudget), whose `new` takes
    /// the same arguments in the same order. Defaults to 0.2, 10 and 10 s.
    pub fn budget(mut self, ratio: f64, min_per_sec: u32, ttl: Duration) -> Self {
        self.settings.budget = Some(BudgetSettings {
            ratio,
            min_per_sec,
            ttl,
        });
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

    /// The same settings with another policy, classifier and way of
    /// taking requests.
    #[cfg(feature = "http")]
    pub(crate) fn retyped<P2, C2, R2>(
        self,
        policy: P2,
        classifier: C2,
        requests: R2,
    ) -> RetryBuilder<P2, C2, R2> {
        RetryBuilder {
            policy,
            classifier,
            requests,
            settings: self.settings,
        }
    }

    /// Checks everything but the requests' settings and builds the layer
    /// that retries them.
    pub(crate) fn build_layer(self) -> Result<RetryLayer<P, C>, ConfigError> {
        self.settings.layer(self.policy, self.classifier)
    }
}

impl<P, C> LayerBuilder for RetryBuilder<P, C, CopiedRequests> {
    type Layer = RetryLayer<P, C>;

    reflex_core::layer_builder_methods!(settings);
}

/// Retry judges outcomes: the stack's classifier replaces the builder's,
/// as [`classifier`](RetryBuilder::classifier) does. (The http builder keeps
/// a 429 worth retrying on top of it: see
/// [`OrRetryable`](crate::http::OrRetryable).)
impl<P, C, C2> Classified<C2> for RetryBuilder<P, C, CopiedRequests>
where
    RetryBuilder<P, C2, CopiedRequests>: LayerBuilder,
{
    type Builder = RetryBuilder<P, C2, CopiedRequests>;

    fn classified_by(self, classifier: C2) -> Self::Builder {
        self.classifier(classifier)
    }
}

impl<P, C, R: fmt::Debug> fmt::Debug for RetryBuilder<P, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("requests", &self.requests)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
