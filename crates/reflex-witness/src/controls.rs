//! [`Controls`]: the layers' controls a witness was given, by component,
//! for its reflexes to steer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use reflex_core::{BreakerControl, Control, ShedControl};

/// The layers' controls a witness was given, by component
/// ([`Witness::control`](crate::Witness::control)): what a
/// [`Reflex`](crate::Reflex) may act on.
///
/// # Examples
///
/// ```
/// use reflex_witness::{Action, Controls, Reflex, Situation};
///
/// /// Does nothing, but says which breakers it could trip.
/// struct Census;
///
/// impl Reflex for Census {
///     fn name(&self) -> &str {
///         "census"
///     }
///
///     fn react(&mut self, situation: &Situation<'_>, controls: &Controls) -> Vec<Action> {
///         for state in &situation.snapshot.components {
///             let steerable = controls.breaker(&state.component).is_some();
///             println!("{}: breaker steerable: {steerable}", state.component);
///         }
///         Vec::new()
///     }
/// }
/// # let _ = Census;
/// ```
#[derive(Default)]
pub struct Controls {
    breakers: HashMap<String, Arc<dyn BreakerControl>>,
    sheds: HashMap<String, Arc<dyn ShedControl>>,
}

// === impl Controls ===

impl Controls {
    /// The breaker of `component`, if the witness was given it.
    pub fn breaker(&self, component: &str) -> Option<&dyn BreakerControl> {
        self.breakers.get(component).map(|b| &**b)
    }

    /// The shed layer of `component`, if the witness was given it.
    pub fn shed(&self, component: &str) -> Option<&dyn ShedControl> {
        self.sheds.get(component).map(|s| &**s)
    }

    /// Keeps `control` as `component`'s, in place of one of its kind given
    /// before. A kind of control no reflex of this witness steers is
    /// dropped.
    pub(crate) fn add(&mut self, component: String, control: Control) {
        match control {
            Control::Breaker(breaker) => {
                self.breakers.insert(component, breaker);
            }
            Control::Shed(shed) => {
                self.sheds.insert(component, shed);
            }
            _ => {}
        }
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
