//! Reflexes: what the witness does about what it finds, through the
//! layers' controls ([`BreakerControl`], [`ShedControl`] of reflex-core).
//!
//! The built-in [`EdgeReflex`] acts on the edge of an episode's root only:
//! the root component's own breaker. It never acts on a component only
//! because it is affected, and never on an entry point (a component no
//! other component was seen calling): refusing users' requests because a
//! dependency fails would turn a partial outage into a whole one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use reflex_core::{BreakerControl, BreakerState, ConfigError, ConfigErrorKind, ShedControl};
use serde::Serialize;

use crate::builder::LAYER;
use crate::detect::DetectionKind;
use crate::episode::Episode;
use crate::snapshot::Snapshot;

/// The layers' controls a witness was given, by component.
#[derive(Default)]
pub struct Controls {
    breakers: HashMap<String, Arc<dyn BreakerControl>>,
    sheds: HashMap<String, Arc<dyn ShedControl>>,
}

impl Controls {
    /// The breaker of `component`, if the witness was given it.
    pub fn breaker(&self, component: &str) -> Option<&dyn BreakerControl> {
        self.breakers.get(component).map(|b| &**b)
    }

    /// The shed layer of `component`, if the witness was given it.
    pub fn shed(&self, component: &str) -> Option<&dyn ShedControl> {
        self.sheds.get(component).map(|s| &**s)
    }

    pub(crate) fn add_breaker(&mut self, component: String, control: Arc<dyn BreakerControl>) {
        self.breakers.insert(component, control);
    }

    pub(crate) fn add_shed(&mut self, component: String, control: Arc<dyn ShedControl>) {
        self.sheds.insert(component, control);
    }
}

impl fmt::Debug for Controls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controls")
            .field("breakers", &self.breakers.keys().collect::<Vec<_>>())
            .field("sheds", &self.sheds.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What was done to a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeasureKind {
    /// Opened the breaker now; its own half-open probes decide recovery.
    TripBreaker,
    /// Throttled calls adaptively (client-side adaptive throttling: a call
    /// is refused with probability `max(0, (requests - k × accepts) /
    /// (requests + 1))` over the breaker's recent calls).
    Throttle {
        /// The multiplier `k`.
        k: f64,
    },
    /// Undid a [`Throttle`](Self::Throttle).
    StopThrottling,
    /// Something a reflex of your own did.
    Custom(String),
}

/// Why it was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The episode's root fails almost all its calls.
    Blackout {
        /// The episode.
        episode: u64,
        /// The root's own error rate in the cycle.
        error_rate: f64,
    },
    /// The episode's root fails a fraction of its calls.
    Brownout {
        /// The episode.
        episode: u64,
        /// The root's own error rate in the cycle.
        error_rate: f64,
    },
    /// The episode closed: what was done for it is undone.
    EpisodeClosed {
        /// The episode.
        episode: u64,
    },
    /// A reason of a reflex of your own.
    Custom(String),
}

impl Reason {
    /// The episode it is about, if any.
    pub fn episode(&self) -> Option<u64> {
        match self {
            Self::Blackout { episode, .. }
            | Self::Brownout { episode, .. }
            | Self::EpisodeClosed { episode } => Some(*episode),
            Self::Custom(_) => None,
        }
    }
}

/// Until when it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Until {
    /// Until the breaker's own half-open probes succeed.
    ProbesSucceed,
    /// Until the episode closes.
    EpisodeCloses {
        /// The episode.
        episode: u64,
    },
    /// Done at once: an undoing.
    Done,
}

/// What a reflex did: what, on which component, why, until when.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Measure {
    /// What was done.
    pub what: MeasureKind,
    /// To which component's layer.
    pub component: String,
    /// Why.
    pub why: Reason,
    /// Until when.
    pub until: Until,
}

impl Measure {
    /// A measure on `component`.
    pub fn new(what: MeasureKind, component: impl Into<String>, why: Reason, until: Until) -> Self {
        Self {
            what,
            component: component.into(),
            why,
            until,
        }
    }
}

impl fmt::Display for Measure {
    /// One line an operator reads: what, on whom, why, until when.
    ///
    /// ```
    /// use reflex_witness::{Measure, MeasureKind, Reason, Until};
    ///
    /// let trip = Measure::new(
    ///     MeasureKind::TripBreaker,
    ///     "db",
    ///     Reason::Blackout { episode: 3, error_rate: 0.98 },
    ///     Until::ProbesSucceed,
    /// );
    /// assert_eq!(
    ///     trip.to_string(),
    ///     "tripped db's breaker: blackout of episode 3 (98.0% own errors), until its probes succeed"
    /// );
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = &self.component;
        match &self.what {
            MeasureKind::TripBreaker => write!(f, "tripped {who}'s breaker")?,
            MeasureKind::Throttle { k } => write!(f, "throttled calls to {who} (k = {k})")?,
            MeasureKind::StopThrottling => write!(f, "stopped throttling calls to {who}")?,
            MeasureKind::Custom(what) => write!(f, "{what} ({who})")?,
        }
        match &self.why {
            Reason::Blackout {
                episode,
                error_rate,
            } => write!(
                f,
                ": blackout of episode {episode} ({:.1}% own errors)",
                error_rate * 100.0
            )?,
            Reason::Brownout {
                episode,
                error_rate,
            } => write!(
                f,
                ": brownout of episode {episode} ({:.1}% own errors)",
                error_rate * 100.0
            )?,
            Reason::EpisodeClosed { episode } => write!(f, ": episode {episode} closed")?,
            Reason::Custom(why) => write!(f, ": {why}")?,
        }
        match &self.until {
            Until::ProbesSucceed => f.write_str(", until its probes succeed"),
            Until::EpisodeCloses { episode } => write!(f, ", until episode {episode} closes"),
            Until::Done => Ok(()),
        }
    }
}

/// Something a reflex did, with the report it answers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Action {
    /// The index, in the cycle's reports, of the report it answers; `None`
    /// for an action on an episode opened earlier (or its undoing).
    pub report: Option<usize>,
    /// What was done.
    pub what: Measure,
}

impl Action {
    /// An action answering the cycle's report `report`, if any.
    pub fn new(report: Option<usize>, what: Measure) -> Self {
        Self { report, what }
    }
}

/// What a reflex sees each cycle: the snapshot (with its reports), the
/// open episodes, the ones that closed, and who calls whom.
#[derive(Debug)]
#[non_exhaustive]
pub struct Situation<'a> {
    /// The cycle's snapshot and its reports.
    pub snapshot: &'a Snapshot,
    /// The episodes open after this cycle.
    pub open: &'a [Episode],
    /// The episodes this cycle closed.
    pub closed: &'a [Episode],
    pub(crate) callers: &'a HashMap<String, Vec<String>>,
}

impl Situation<'_> {
    /// The components seen calling `component` (empty: an entry point, as
    /// far as the witness knows).
    pub fn callers(&self, component: &str) -> &[String] {
        self.callers.get(component).map_or(&[], Vec::as_slice)
    }

    /// The index, in the cycle's reports, of episode `id`'s report, when
    /// this cycle opened it.
    pub fn report_of(&self, id: u64) -> Option<usize> {
        self.snapshot
            .reports
            .iter()
            .position(|r| r.episode == Some(id))
    }
}

/// Turns a cycle's judgement into actions on the layers. Runs on the
/// witness's cycle, after the detectors; its actions are written into the
/// reports they answer, the episodes they are about, and the cycle's
/// snapshot, and counted in the witness's health.
pub trait Reflex: Send + 'static {
    /// A short, stable name.
    fn name(&self) -> &str;

    /// What to do about this cycle.
    fn react(&mut self, situation: &Situation<'_>, controls: &Controls) -> Vec<Action>;
}

/// Opens a Closed breaker now; its own half-open probes decide recovery
/// (nothing to undo when the episode closes: by then they have).
fn trip(breaker: &dyn BreakerControl) -> bool {
    let was = breaker.state();
    breaker.trip();
    was == BreakerState::Closed
}

/// Starts (`Some(k)`) or stops (`None`) the breaker's adaptive throttling;
/// `false` when the control refuses.
fn throttle(breaker: &dyn BreakerControl, k: Option<f64>) -> bool {
    breaker.throttle(k).is_ok()
}

/// The default multiplier of [`EdgeReflex`]'s throttling: a quarter of
/// the root's calls failing holds back 1.75% of them.
pub const DEFAULT_K: f64 = 1.31;

/// Acts on the edge of an episode's root, and only there: the root
/// component's own breaker, given with
/// [`Witness::control_breaker`](crate::Witness::control_breaker).
///
/// - **Blackout** (the root fails at least `blackout_at` of its own calls,
///   90% by default): trips its breaker open; the breaker's half-open
///   probes decide recovery.
/// - **Brownout** (an own error-rate episode below that): throttles the
///   calls sent to it adaptively with multiplier `k`: a call is refused
///   with probability about `1 - k·a`, `a` the share of the root's recent
///   calls that succeeded (client-side adaptive throttling over admitted
///   calls: see the breaker's docs). With the default `k` of 1.31, a root
///   failing a quarter of its calls gets 1.75% fewer, so that the callers'
///   successes fall by less than 2 points while the root is relieved; half
///   failing, 35% fewer; four fifths, 74%. (The SRE book's `k` of 2 refuses
///   nothing until more than half fail: no relief in a brownout.)
/// - Never on a component only affected, never on an entry point (no
///   caller seen), never for a latency episode (a slow root is not helped
///   by refusing its callers).
/// - Each measure says what, why and until when, and is undone when the
///   episode closes.
///
/// # Examples
///
/// ```
/// use reflex_witness::{EdgeReflex, Witness};
///
/// let witness = Witness::builder().reflex(EdgeReflex::default()).build()?;
/// # let _ = witness;
/// let err = EdgeReflex::builder().throttle_k(0.5).build().unwrap_err();
/// assert_eq!(err.setting(), "edge_reflex.throttle_k");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct EdgeReflex {
    k: f64,
    blackout_at: f64,
    held: Vec<Held>,
}

#[derive(Debug, Clone)]
struct Held {
    episode: u64,
    component: String,
    tripped: bool,
    throttled: bool,
}

/// Configures an [`EdgeReflex`]; from [`EdgeReflex::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EdgeReflexBuilder {
    k: f64,
    blackout_at: f64,
}

impl EdgeReflexBuilder {
    /// The adaptive throttling's multiplier `k` (a finite number, at least
    /// 1): calls are refused only while fewer than `1/k` of them succeed,
    /// about `1 - k·a` of them when a share `a` does. Defaults to 1.31.
    pub fn throttle_k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The own error rate at or above which the root is in a blackout and
    /// its breaker is tripped (in (0, 1]). Defaults to 0.9.
    pub fn blackout_at(mut self, rate: f64) -> Self {
        self.blackout_at = rate;
        self
    }

    /// The reflex.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `k` is not a finite number of at least 1, or
    /// the blackout rate is not in (0, 1].
    pub fn build(self) -> Result<EdgeReflex, ConfigError> {
        if !(self.k.is_finite() && self.k >= 1.0) {
            return Err(ConfigError::new(
                LAYER,
                "edge_reflex.throttle_k",
                ConfigErrorKind::OutOfRange,
                format!("must be a finite number of at least 1, got {}", self.k),
            ));
        }
        if !(self.blackout_at > 0.0 && self.blackout_at <= 1.0) {
            return Err(ConfigError::new(
                LAYER,
                "edge_reflex.blackout_at",
                ConfigErrorKind::OutOfRange,
                format!("must be in (0, 1], got {}", self.blackout_at),
            ));
        }
        Ok(EdgeReflex {
            k: self.k,
            blackout_at: self.blackout_at,
            held: Vec::new(),
        })
    }
}

impl EdgeReflex {
    /// Starts configuring one.
    pub fn builder() -> EdgeReflexBuilder {
        EdgeReflexBuilder {
            k: DEFAULT_K,
            blackout_at: 0.9,
        }
    }
}

impl Default for EdgeReflex {
    fn default() -> Self {
        Self {
            k: DEFAULT_K,
            blackout_at: 0.9,
            held: Vec::new(),
        }
    }
}

impl Reflex for EdgeReflex {
    fn name(&self) -> &str {
        "edge_reflex"
    }

    fn react(&mut self, situation: &Situation<'_>, controls: &Controls) -> Vec<Action> {
        let mut actions = Vec::new();
        // Undo what closed episodes held.
        for episode in situation.closed {
            let why = Reason::EpisodeClosed {
                episode: episode.id,
            };
            self.held.retain(|held| {
                if held.episode != episode.id {
                    return true;
                }
                if let Some(breaker) = controls.breaker(&held.component) {
                    if held.throttled && throttle(breaker, None) {
                        actions.push(Action::new(
                            None,
                            Measure::new(
                                MeasureKind::StopThrottling,
                                held.component.clone(),
                                why.clone(),
                                Until::Done,
                            ),
                        ));
                    }
                }
                false
            });
        }
        for episode in situation.open {
            let report = situation.report_of(episode.id);
            for root in &episode.roots {
                let name = root.component.as_str();
                if root.kind != DetectionKind::OwnErrorRate || situation.callers(name).is_empty() {
                    continue;
                }
                let Some(breaker) = controls.breaker(name) else {
                    continue;
                };
                // The root's own error rate this cycle, as the judgement
                // reads it (its own breaker's refusals included).
                let Some(rate) = situation.snapshot.component(name).and_then(|state| {
                    let failed = crate::judgement::own_failures(state);
                    let n = crate::judgement::judged_requests(state);
                    (n > 0).then(|| failed as f64 / n as f64)
                }) else {
                    continue;
                };
                let index = match self
                    .held
                    .iter()
                    .position(|h| h.episode == episode.id && h.component == name)
                {
                    Some(index) => index,
                    None => {
                        self.held.push(Held {
                            episode: episode.id,
                            component: name.to_owned(),
                            tripped: false,
                            throttled: false,
                        });
                        self.held.len() - 1
                    }
                };
                let held = &mut self.held[index];
                if rate >= self.blackout_at && !held.tripped && trip(breaker) {
                    held.tripped = true;
                    actions.push(Action::new(
                        report,
                        Measure::new(
                            MeasureKind::TripBreaker,
                            name,
                            Reason::Blackout {
                                episode: episode.id,
                                error_rate: rate,
                            },
                            Until::ProbesSucceed,
                        ),
                    ));
                } else if !held.tripped && !held.throttled && throttle(breaker, Some(self.k)) {
                    held.throttled = true;
                    actions.push(Action::new(
                        report,
                        Measure::new(
                            MeasureKind::Throttle { k: self.k },
                            name,
                            Reason::Brownout {
                                episode: episode.id,
                                error_rate: rate,
                            },
                            Until::EpisodeCloses {
                                episode: episode.id,
                            },
                        ),
                    ));
                }
            }
        }
        actions
    }
}
