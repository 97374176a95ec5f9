//! [`EdgeReflex`]: the built-in reflex, which acts on the edge of an
//! episode's root only: the root component's own breaker.
//!
//! It never acts on a component only because it is affected, and never on
//! an entry point (a component no other component was seen calling):
//! refusing users' requests because a dependency fails would turn a
//! partial outage into a whole one.

use reflex_core::{BreakerControl, BreakerState, ConfigError, ConfigErrorKind};

use crate::controls::Controls;
use crate::episode::Episode;
use crate::limits::LAYER;
use crate::measure::{Measure, MeasureKind, Reason, Until};
use crate::reflex::{Action, Reflex, Situation};
use crate::report::DetectionKind;

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
/// [`Witness::control`](crate::Witness::control) (as the preset does) or
/// [`Witness::control_breaker`](crate::Witness::control_breaker).
///
/// The root's own error rate in the cycle decides what is done; the
/// breaker's state only whether it is still to be done:
///
/// - **Blackout** (the root fails at least `blackout_at` of its own calls,
///   90% by default): trips its breaker open; the breaker's half-open
///   probes decide recovery. A breaker that already refuses or probes
///   (Open, HalfOpen) or was set by hand is left as it is: a blackout is
///   never throttled.
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

// === impl EdgeReflexBuilder ===

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

// === impl EdgeReflex ===

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
        let mut actions = self.undo(situation.closed, controls);
        let (k, blackout_at) = (self.k, self.blackout_at);
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
                let Some(rate) = situation
                    .snapshot
                    .component(name)
                    .and_then(|state| state.own_error_rate())
                else {
                    continue;
                };
                let held = self.held(episode.id, name);
                // The rate decides the measure; the breaker's state only
                // whether it is still to be taken. A blackout is never
                // throttled: a breaker that already refuses (or probes)
                // is left to its own probes.
                let measure = if rate >= blackout_at {
                    (!held.tripped && trip(breaker)).then(|| {
                        held.tripped = true;
                        Measure::new(
                            MeasureKind::TripBreaker,
                            name,
                            Reason::Blackout {
                                episode: episode.id,
                                error_rate: rate,
                            },
                            Until::ProbesSucceed,
                        )
                    })
                } else {
                    (!held.tripped && !held.throttled && throttle(breaker, Some(k))).then(|| {
                        held.throttled = true;
                        Measure::new(
                            MeasureKind::Throttle { k },
                            name,
                            Reason::Brownout {
                                episode: episode.id,
                                error_rate: rate,
                            },
                            Until::EpisodeCloses {
                                episode: episode.id,
                            },
                        )
                    })
                };
                actions.extend(measure.map(|what| Action::new(report, what)));
            }
        }
        actions
    }
}

impl EdgeReflex {
    /// Undoes what closed episodes held: stops the throttling it started
    /// (a trip needs no undoing: the breaker's probes have decided).
    fn undo(&mut self, closed: &[Episode], controls: &Controls) -> Vec<Action> {
        let mut actions = Vec::new();
        for episode in closed {
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
        actions
    }

    /// What is held for `component` in `episode`, new if nothing yet.
    fn held(&mut self, episode: u64, component: &str) -> &mut Held {
        let index = match self
            .held
            .iter()
            .position(|h| h.episode == episode && h.component == component)
        {
            Some(index) => index,
            None => {
                self.held.push(Held {
                    episode,
                    component: component.to_owned(),
                    tripped: false,
                    throttled: false,
                });
                self.held.len() - 1
            }
        };
        &mut self.held[index]
    }
}

#[cfg(test)]
mod tests;
