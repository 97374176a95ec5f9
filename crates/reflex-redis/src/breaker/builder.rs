//! [`SharedBreakerBuilder`]: the settings of a shared breaker, and the
//! start of its task.

use std::sync::Arc;
use std::time::Duration;

use reflex_breaker::{BreakerConfig, CircuitBreakBuilder, CircuitBreakLayer, MemoryBackend};
use reflex_core::{ConfigError, ConfigErrorKind};

use super::SharedBreaker;
use super::state::{Inner, Settings};
use super::task;
use super::wire::{FleetWindow, RateRule, scope, ttl_ms};
use crate::fleet::Fleet;

const LAYER: &str = "shared_breaker";

/// Configures a [`SharedBreaker`]; see [`SharedBreaker::builder`].
#[must_use = "a builder does nothing until `backend`, `build` or `layer` is called"]
#[derive(Debug, Clone)]
pub struct SharedBreakerBuilder {
    fleet: Fleet,
    flush_every: Duration,
    fleet_rate: bool,
}

// === impl SharedBreakerBuilder ===

impl SharedBreakerBuilder {
    pub(super) fn new(fleet: &Fleet) -> Self {
        Self {
            fleet: fleet.clone(),
            flush_every: Duration::from_millis(100),
            fleet_rate: true,
        }
    }

    /// How often the counts of the fleet rate go to Redis (one script per
    /// interval, when there were calls): the fleet judges its rate at most
    /// this late. Between 1 ms and an hour. Defaults to 100 ms.
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Judge the breaker's rate rules over the fleet's calls too (they
    /// still apply to this replica's alone). Off: only trips and closes are
    /// shared. Defaults to on; does nothing for a breaker with no rate rule.
    pub fn fleet_rate(mut self, on: bool) -> Self {
        self.fleet_rate = on;
        self
    }

    /// Checks the settings and gives what
    /// [`build_with_backend`](reflex_breaker::CircuitBreakBuilder::build_with_backend)
    /// takes: each call makes a breaker with the layer's configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `flush_every` is zero or above an hour.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use reflex_breaker::CircuitBreakLayer;
    /// use reflex_redis::{Fleet, SharedBreaker};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
    /// let layer = CircuitBreakLayer::builder()
    ///     .component("payments")
    ///     .consecutive_failures(5)
    ///     .build_with_backend(SharedBreaker::builder(&fleet).backend()?)?;
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn backend(self) -> Result<impl FnOnce(BreakerConfig) -> SharedBreaker, ConfigError> {
        self.check()?;
        Ok(move |config| self.start(config))
    }

    /// As [`backend`](Self::backend), for one configuration at hand.
    ///
    /// # Errors
    ///
    /// As [`backend`](Self::backend).
    pub fn build(self, config: BreakerConfig) -> Result<SharedBreaker, ConfigError> {
        self.check()?;
        Ok(self.start(config))
    }

    /// Builds `breaker` on a shared breaker: the layer, and the breaker
    /// for its [`stats`](SharedBreaker::stats) (the layer's
    /// [`handle`](CircuitBreakLayer::handle) reads and sets its state).
    ///
    /// # Errors
    ///
    /// As [`backend`](Self::backend), and as `breaker`'s
    /// [`build`](CircuitBreakBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use reflex_breaker::CircuitBreakLayer;
    /// use reflex_redis::{Fleet, SharedBreaker};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
    /// let (layer, breaker) = SharedBreaker::builder(&fleet)
    ///     .layer(CircuitBreakLayer::builder().component("db").consecutive_failures(5))?;
    /// println!("{:?}: {:?}", layer.handle().state(), breaker.stats());
    /// # Ok(()) }
    /// ```
    pub fn layer<C>(
        self,
        breaker: CircuitBreakBuilder<C>,
    ) -> Result<(CircuitBreakLayer<C, SharedBreaker>, SharedBreaker), ConfigError> {
        let make = self.backend()?;
        let mut kept = None;
        let layer = breaker.build_with_backend(|config| {
            let shared = make(config);
            kept = Some(shared.clone());
            shared
        })?;
        let shared = kept.expect("a layer that was built made its backend");
        Ok((layer, shared))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.flush_every.is_zero() {
            return Err(ConfigError::new(
                LAYER,
                "flush_every",
                ConfigErrorKind::Zero,
                "must be above zero",
            ));
        }
        if self.flush_every < Duration::from_millis(1)
            || self.flush_every > Duration::from_secs(3600)
        {
            return Err(ConfigError::new(
                LAYER,
                "flush_every",
                ConfigErrorKind::OutOfRange,
                format!(
                    "must be between 1 ms and an hour, got {:?}",
                    self.flush_every
                ),
            ));
        }
        Ok(())
    }

    /// Makes the breaker and starts its task on the fleet's runtime.
    fn start(self, config: BreakerConfig) -> SharedBreaker {
        let fleet = self.fleet;
        let component = config.component().clone();
        fleet.attach(&component);
        let name = component.as_str();
        let keys = fleet.keys();
        let count_rate =
            self.fleet_rate && (config.failure_rate().is_some() || config.slow_call().is_some());
        let settings = Settings {
            scope: scope(name),
            open_key: keys.key("cb", name, "open"),
            probes_key: keys.key("cb", name, "probes"),
            window_key: keys.key("cb", name, "window"),
            flush_every: self.flush_every,
            count_rate,
            slow_call: config
                .slow_call()
                .filter(|_| count_rate)
                .map(|(_, slow)| slow),
            window: FleetWindow::of(config.window()),
            rule: RateRule {
                minimum_calls: u64::from(config.minimum_calls()),
                failure_rate: config.failure_rate(),
                slow_rate: config.slow_call().map(|(threshold, _)| threshold),
            },
            probes: config.probes(),
            lease_ttl_ms: ttl_ms(config.half_open_max_wait()),
            open_ms: ttl_ms(config.open_duration()),
        };
        let inner = Arc::new(Inner::new(MemoryBackend::new(config), fleet, settings));
        task::spawn(&inner);
        SharedBreaker { inner }
    }
}
