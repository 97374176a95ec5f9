//! [`Detector`]s of your own: what they see each cycle ([`Observation`])
//! and what they say ([`Finding`]).

use reflex_core::BoxError;

use crate::report::ChainLink;
use crate::snapshot::Snapshot;

/// What a detector sees each cycle.
#[derive(Debug)]
#[non_exhaustive]
pub struct Observation<'a> {
    /// The cycle's snapshot.
    pub snapshot: &'a Snapshot,
    /// Recent failed and refused calls, oldest first (the witness keeps
    /// the last 1 024 at most).
    pub events: &'a [ChainLink],
    /// Now, in milliseconds since the witness was built.
    pub now_ms: u64,
}

/// Something a detector of your own found, which the witness turns into a
/// [`Report`](crate::Report) of kind
/// [`DetectionKind::Custom`](crate::DetectionKind::Custom) (the detector's name).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// What triggered it, in a few words.
    pub trigger: String,
    /// The components involved: the report names them as its roots and
    /// carries their states and first failures.
    pub components: Vec<String>,
    /// What the detector concluded: the report's summary.
    pub decision: String,
}

impl Finding {
    /// A finding about `components`.
    pub fn new(
        trigger: impl Into<String>,
        components: Vec<String>,
        decision: impl Into<String>,
    ) -> Self {
        Self {
            trigger: trigger.into(),
            components,
            decision: decision.into(),
        }
    }
}

/// Looks at each cycle's observation and says what it finds. Runs on the
/// witness's cycle, off the request path: it may take its time, keep
/// state, and fail (the witness records the error in `last_error` and
/// goes on).
///
/// # Examples
///
/// A detector that reports any component refusing calls:
///
/// ```
/// use reflex_core::BoxError;
/// use reflex_witness::{Detector, Finding, Observation};
///
/// struct AnyRejection;
///
/// impl Detector for AnyRejection {
///     fn name(&self) -> &str {
///         "any_rejection"
///     }
///
///     fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
///         Ok(seen
///             .snapshot
///             .components
///             .iter()
///             .filter(|c| !c.rejected.is_empty())
///             .map(|c| Finding::new("rejections", vec![c.component.clone()], "refusing calls"))
///             .collect())
///     }
/// }
/// # let _ = AnyRejection;
/// ```
pub trait Detector: Send + 'static {
    /// A short, stable name: its reports' kind is
    /// [`DetectionKind::Custom`](crate::DetectionKind::Custom) of it.
    fn name(&self) -> &str;

    /// What this cycle's observation shows.
    ///
    /// # Errors
    ///
    /// Any error: the witness keeps it as `last_error` and goes on.
    fn inspect(&mut self, observation: &Observation<'_>) -> Result<Vec<Finding>, BoxError>;
}
