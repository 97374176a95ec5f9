//! [`Adaptive`]: a limit the layer finds by itself, [`Gradient`] on latency
//! or [`Aimd`] on outcomes, and what the builder checks of it.

use std::fmt;
use std::time::Duration;

use reflex_core::ConfigError;

use crate::config::{AdaptiveConfig, AimdConfig, AlgorithmConfig, GradientConfig, nanos};
use crate::validate;

/// The lowest limit an adaptive limit goes to, unless configured: 1.
pub const DEFAULT_FLOOR: usize = 1;
/// The highest limit an adaptive limit goes to, unless configured: 1 000.
pub const DEFAULT_CEILING: usize = 1000;
/// The limit an adaptive limit starts from, unless configured: 20 (brought
/// within the floor and the ceiling).
pub const DEFAULT_INITIAL: usize = 20;
/// How often an adaptive limit is recomputed, unless configured: every
/// 500 ms (and every [`DEFAULT_MIN_SAMPLES`] samples at least).
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(500);
/// The completed calls a window needs before it counts, unless configured.
pub const DEFAULT_MIN_SAMPLES: u32 = 25;

/// An adaptive limit for
/// [`ConcurrencyShedBuilder::adaptive`](crate::ConcurrencyShedBuilder::adaptive):
/// made from [`Adaptive::gradient`] or [`Adaptive::aimd`].
///
/// How each works, and what it guarantees, is in `docs/shed.md`
/// ("Adaptive limit").
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_shed::{Adaptive, ConcurrencyShedLayer};
///
/// let layer = ConcurrencyShedLayer::builder()
///     .adaptive(Adaptive::gradient().floor(4).ceiling(512).initial(32))
///     .build()?;
/// assert_eq!(layer.handle().metrics().hard_limit, 32);
///
/// let aimd = ConcurrencyShedLayer::builder()
///     .adaptive(Adaptive::aimd().backoff(0.8).timeout(Duration::from_secs(2)))
///     .build()?;
/// assert_eq!(aimd.handle().metrics().hard_limit, 20);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Adaptive {
    common: Common,
    algorithm: Algorithm,
}

/// A limit on latency: the layer compares the latency of completed calls
/// with the dependency's latency without load, and keeps the limit where
/// calls queue no more than the [`tolerance`](Self::tolerance) allows.
/// From [`Adaptive::gradient`]; every setter has a default.
#[derive(Clone)]
#[must_use = "an adaptive limit does nothing until given to `ConcurrencyShedBuilder::adaptive`"]
pub struct Gradient {
    common: Common,
    tolerance: f64,
    smoothing: f64,
    probe_interval: Duration,
    probe_depth: f64,
    seed: Option<u64>,
}

/// A limit on outcomes: additive increase while calls succeed,
/// multiplicative decrease on a drop (a failure by the stack's classifier,
/// or a call slower than [`timeout`](Self::timeout)). From
/// [`Adaptive::aimd`]; every setter has a default.
#[derive(Clone)]
#[must_use = "an adaptive limit does nothing until given to `ConcurrencyShedBuilder::adaptive`"]
pub struct Aimd {
    common: Common,
    backoff: f64,
    increase: usize,
    timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Common {
    floor: usize,
    ceiling: usize,
    initial: Option<usize>,
    window: Duration,
    min_samples: u32,
}

#[derive(Debug, Clone)]
enum Algorithm {
    Gradient(Gradient),
    Aimd(Aimd),
}

// === impl Adaptive ===

impl Adaptive {
    /// A [`Gradient`] limit with its defaults.
    pub fn gradient() -> Gradient {
        Gradient {
            common: Common::default(),
            tolerance: 0.05,
            smoothing: 0.5,
            probe_interval: Duration::from_secs(30),
            probe_depth: 0.25,
            seed: None,
        }
    }

    /// An [`Aimd`] limit with its defaults.
    pub fn aimd() -> Aimd {
        Aimd {
            common: Common::default(),
            backoff: 0.9,
            increase: 1,
            timeout: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<AdaptiveConfig, ConfigError> {
        let c = self.common;
        validate::hard_limit("floor", c.floor)?;
        validate::hard_limit("ceiling", c.ceiling)?;
        validate::not_above("floor", c.floor, "ceiling", c.ceiling)?;
        let initial = match c.initial {
            Some(initial) => {
                validate::hard_limit("initial", initial)?;
                validate::not_above("floor", c.floor, "initial", initial)?;
                validate::not_above("initial", initial, "ceiling", c.ceiling)?;
                initial
            }
            None => DEFAULT_INITIAL.clamp(c.floor, c.ceiling),
        };
        validate::not_zero("window", c.window)?;
        validate::not_zero("min_samples", c.min_samples)?;
        let algorithm = match &self.algorithm {
            Algorithm::Gradient(g) => {
                validate::fraction("tolerance", g.tolerance, false)?;
                validate::fraction("smoothing", g.smoothing, false)?;
                validate::not_zero("probe_interval", g.probe_interval)?;
                validate::open_fraction("probe_depth", g.probe_depth)?;
                AlgorithmConfig::Gradient(GradientConfig {
                    tolerance: g.tolerance,
                    smoothing: g.smoothing,
                    probe_interval_ns: nanos(g.probe_interval),
                    probe_depth: g.probe_depth,
                    seed: g.seed,
                })
            }
            Algorithm::Aimd(a) => {
                validate::open_fraction("backoff", a.backoff)?;
                validate::not_zero("increase", a.increase)?;
                if let Some(timeout) = a.timeout {
                    validate::not_zero("timeout", timeout)?;
                }
                AlgorithmConfig::Aimd(AimdConfig {
                    backoff: a.backoff,
                    increase: a.increase as f64,
                    timeout_ns: a.timeout.map(nanos),
                })
            }
        };
        Ok(AdaptiveConfig {
            floor: c.floor,
            ceiling: c.ceiling,
            initial,
            window_ns: nanos(c.window),
            min_samples: u64::from(c.min_samples),
            algorithm,
        })
    }
}

impl fmt::Debug for Adaptive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.algorithm {
            Algorithm::Gradient(g) => g.fmt(f),
            Algorithm::Aimd(a) => a.fmt(f),
        }
    }
}

impl From<Gradient> for Adaptive {
    fn from(gradient: Gradient) -> Self {
        Self {
            common: gradient.common,
            algorithm: Algorithm::Gradient(gradient),
        }
    }
}

impl From<Aimd> for Adaptive {
    fn from(aimd: Aimd) -> Self {
        Self {
            common: aimd.common,
            algorithm: Algorithm::Aimd(aimd),
        }
    }
}

impl Default for Common {
    fn default() -> Self {
        Self {
            floor: DEFAULT_FLOOR,
            ceiling: DEFAULT_CEILING,
            initial: None,
            window: DEFAULT_WINDOW,
            min_samples: DEFAULT_MIN_SAMPLES,
        }
    }
}

/// The setters both algorithms share.
macro_rules! common_setters {
    () => {
        /// The lowest the limit goes, whatever the samples say (at least 1).
        /// Defaults to [`DEFAULT_FLOOR`]. A probe of the no-load latency
        /// never goes below it either, but is not made of it: the floor is
        /// only a bound.
        pub fn floor(mut self, floor: usize) -> Self {
            self.common.floor = floor;
            self
        }

        /// The highest the limit goes. Defaults to [`DEFAULT_CEILING`].
        pub fn ceiling(mut self, ceiling: usize) -> Self {
            self.common.ceiling = ceiling;
            self
        }

        /// The limit before any sample, between the floor and the ceiling.
        /// Defaults to [`DEFAULT_INITIAL`], brought within them.
        pub fn initial(mut self, initial: usize) -> Self {
            self.common.initial = Some(initial);
            self
        }

        /// How long the samples of one recomputation are gathered for: the
        /// limit changes at most once per window, and a window lasts until
        /// it holds [`min_samples`](Self::min_samples) too. Defaults to
        /// [`DEFAULT_WINDOW`].
        pub fn window(mut self, window: Duration) -> Self {
            self.common.window = window;
            self
        }

        /// The completed calls a window needs before the limit is
        /// recomputed from it (at least 1). The first window closes at this
        /// many, however short. Defaults to [`DEFAULT_MIN_SAMPLES`].
        pub fn min_samples(mut self, min_samples: u32) -> Self {
            self.common.min_samples = min_samples;
            self
        }
    };
}

// === impl Gradient ===

impl Gradient {
    common_setters!();

    /// The queue allowed: how much slower than without load (in the mean
    /// of a window's middle half) calls may get before the limit comes
    /// down, in `(0, 1]`.
    /// Below it, and while the limit is used, the limit grows. A window
    /// with too few or too spread samples to tell that much needs a
    /// larger difference (twice its latency's standard error). Defaults to
    /// 0.05: 5%.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How much of the way to the measured capacity one window takes the
    /// limit down, in `(0, 1]` (1: all of it at once). Defaults to 0.5.
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How often a window in which calls stay well below the limit
    /// measures the no-load latency again (for free), and how often calls
    /// still slow at the floor, where no probe has room, are the measure
    /// (a raise of the tolerance at most); each interval is drawn within
    /// ±25% of this (jitter, so that replicas do not probe together). Under
    /// load no probe runs on a timer: one runs when the windows say the
    /// no-load latency is stale (fewer calls in flight, and slower), and
    /// none under a steady overload. Defaults to 30 s.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// How far below the limit the first probe, which checks the first
    /// window's guess of the no-load latency, steps at a time, in `(0, 1)`:
    /// it goes on down for as long as each step makes calls faster in
    /// proportion to the fewer calls in flight (they all queued). Later
    /// probes go to what the dependency serves. Defaults to 0.25.
    pub fn probe_depth(mut self, depth: f64) -> Self {
        self.probe_depth = depth;
        self
    }

    /// The seed of the probe interval's jitter, for a simulation that
    /// must run the same every time. Defaults to one drawn per layer and
    /// process, so that replicas do not probe together.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl fmt::Debug for Gradient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gradient")
            .field("floor", &self.common.floor)
            .field("ceiling", &self.common.ceiling)
            .field("initial", &self.common.initial)
            .field("window", &self.common.window)
            .field("min_samples", &self.common.min_samples)
            .field("tolerance", &self.tolerance)
            .field("smoothing", &self.smoothing)
            .field("probe_interval", &self.probe_interval)
            .field("probe_depth", &self.probe_depth)
            .field("seed", &self.seed)
            .finish()
    }
}

// === impl Aimd ===

impl Aimd {
    common_setters!();

    /// What a window with a drop multiplies the limit by, in `(0, 1)`.
    /// Defaults to 0.9.
    pub fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }

    /// How much a window without drops, in which the limit was used, adds
    /// to it per round trip (per latency the window lasted; at most
    /// doubling it). Defaults to 1.
    pub fn increase(mut self, increase: usize) -> Self {
        self.increase = increase;
        self
    }

    /// A call slower than this is a drop even when it succeeded. Defaults
    /// to none: only failures are drops.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl fmt::Debug for Aimd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aimd")
            .field("floor", &self.common.floor)
            .field("ceiling", &self.common.ceiling)
            .field("initial", &self.common.initial)
            .field("window", &self.common.window)
            .field("min_samples", &self.common.min_samples)
            .field("backoff", &self.backoff)
            .field("increase", &self.increase)
            .field("timeout", &self.timeout)
            .finish()
    }
}
