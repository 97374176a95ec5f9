//! [`Reflex`]es: what the witness does about what it finds, through the
//! layers' controls ([`Controls`]), and what each one sees
//! ([`Situation`]) and does ([`Action`]) each cycle.

use std::collections::HashMap;

use crate::controls::Controls;
use crate::episode::Episode;
use crate::measure::Measure;
use crate::snapshot::Snapshot;

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

// === impl Action ===

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

// === impl Situation ===

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
///
/// # Examples
///
/// A reflex that only says what it would do (a dry run):
///
/// ```
/// use reflex_witness::{Action, Controls, Measure, MeasureKind, Reason, Reflex, Situation, Until, Witness};
///
/// struct DryRun;
///
/// impl Reflex for DryRun {
///     fn name(&self) -> &str {
///         "dry_run"
///     }
///
///     fn react(&mut self, situation: &Situation<'_>, controls: &Controls) -> Vec<Action> {
///         situation
///             .open
///             .iter()
///             .flat_map(|episode| &episode.roots)
///             .filter(|root| controls.breaker(&root.component).is_some())
///             .map(|root| {
///                 Action::new(
///                     None,
///                     Measure::new(
///                         MeasureKind::Custom("would trip".into()),
///                         root.component.clone(),
///                         Reason::Custom("dry run".into()),
///                         Until::Done,
///                     ),
///                 )
///             })
///             .collect()
///     }
/// }
///
/// let witness = Witness::builder().reflex(DryRun).build()?;
/// # let _ = witness;
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub trait Reflex: Send + 'static {
    /// A short, stable name.
    fn name(&self) -> &str;

    /// What to do about this cycle.
    fn react(&mut self, situation: &Situation<'_>, controls: &Controls) -> Vec<Action>;
}
