//! Reflexes: what the witness does about what it finds, through the
//! layers' controls ([`BreakerControl`], [`ShedControl`] of reflex-core).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{BreakerControl, BreakerState, ShedControl};

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

/// Something a reflex did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Action {
    /// The index, in the cycle's reports, of the report it answers; `None`
    /// for an action of its own (restoring what an earlier one changed).
    pub report: Option<usize>,
    /// What was done, in a few words.
    pub what: String,
}

impl Action {
    /// An action answering the cycle's report `report`, if any.
    pub fn new(report: Option<usize>, what: impl Into<String>) -> Self {
        Self {
            report,
            what: what.into(),
        }
    }
}

/// Turns a cycle's reports into actions on the layers. Runs on the
/// witness's cycle, after the detectors; its actions are written into the
/// reports they answer and counted in the witness's health.
pub trait Reflex: Send + 'static {
    /// A short, stable name.
    fn name(&self) -> &str;

    /// What to do about this cycle (its snapshot carries its reports).
    fn react(&mut self, snapshot: &Snapshot, controls: &Controls) -> Vec<Action>;
}

/// On a cascade, forces the failing components' breakers open and lowers
/// their shed limits, for at least `hold`; restores both once the hold has
/// passed and the component had no failed call in a cycle.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_witness::{CascadeReflex, Witness};
///
/// let witness = Witness::builder()
///     .reflex(CascadeReflex::new(Duration::from_secs(30), 0.5))
///     .build()?;
/// # let _ = witness;
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CascadeReflex {
    hold: Duration,
    shed_factor: f64,
    held: Vec<Held>,
}

#[derive(Debug, Clone)]
struct Held {
    component: String,
    until_ms: u64,
    forced: bool,
    shed_was: Option<usize>,
}

impl CascadeReflex {
    /// Holds breakers open and shed limits at `shed_factor` (in (0, 1];
    /// clamped) of what they were for at least `hold`.
    pub fn new(hold: Duration, shed_factor: f64) -> Self {
        Self {
            hold,
            shed_factor: if shed_factor.is_finite() {
                shed_factor.clamp(f64::MIN_POSITIVE, 1.0)
            } else {
                1.0
            },
            held: Vec::new(),
        }
    }
}

impl Reflex for CascadeReflex {
    fn name(&self) -> &str {
        "cascade_reflex"
    }

    fn react(&mut self, snapshot: &Snapshot, controls: &Controls) -> Vec<Action> {
        let now = snapshot.observed_at_ms;
        let until = now.saturating_add(u64::try_from(self.hold.as_millis()).unwrap_or(u64::MAX));
        let mut actions = Vec::new();
        for (index, report) in snapshot.reports.iter().enumerate() {
            if report.detector != "cascade" {
                continue;
            }
            for state in &report.components {
                let name = &state.component;
                if let Some(held) = self.held.iter_mut().find(|h| &h.component == name) {
                    held.until_ms = until;
                    continue;
                }
                let mut held = Held {
                    component: name.clone(),
                    until_ms: until,
                    forced: false,
                    shed_was: None,
                };
                if let Some(breaker) = controls.breaker(name) {
                    if breaker.state() != BreakerState::ForcedOpen {
                        breaker.force_open();
                        held.forced = true;
                        actions.push(Action::new(
                            Some(index),
                            format!("forced {name}'s breaker open"),
                        ));
                    }
                }
                if let Some(shed) = controls.shed(name) {
                    let was = shed.hard_limit();
                    let lower = ((was as f64 * self.shed_factor) as usize).max(1);
                    if lower < was && shed.set_hard_limit(lower).is_ok() {
                        held.shed_was = Some(was);
                        actions.push(Action::new(
                            Some(index),
                            format!("lowered {name}'s shed limit from {was} to {lower}"),
                        ));
                    }
                }
                self.held.push(held);
            }
        }
        self.held.retain(|held| {
            let quiet = snapshot
                .component(&held.component)
                .is_none_or(|state| state.failed == 0);
            if now < held.until_ms || !quiet {
                return true;
            }
            let name = &held.component;
            if held.forced {
                if let Some(breaker) = controls.breaker(name) {
                    breaker.reset();
                    actions.push(Action::new(None, format!("reset {name}'s breaker")));
                }
            }
            if let (Some(was), Some(shed)) = (held.shed_was, controls.shed(name)) {
                if shed.set_hard_limit(was).is_ok() {
                    actions.push(Action::new(
                        None,
                        format!("restored {name}'s shed limit to {was}"),
                    ));
                }
            }
            false
        });
        actions
    }
}
