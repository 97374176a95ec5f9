//! Causal chains: the recorded failed and refused calls read as
//! [`ChainLink`]s of a report.

use reflex_core::RejectKind;

use crate::events::{Event, FAILED, FAILED_BELOW, REJECT_KINDS};
use crate::report::{ChainLink, LinkKind};

/// A recorded event as a link of a causal chain, its component named from
/// `names` (by index).
pub(crate) fn link(event: &Event, names: &[&str]) -> ChainLink {
    ChainLink {
        at_ms: event.at_ms,
        component: name_of(event, names).to_owned(),
        what: match event.kind {
            FAILED => LinkKind::Failed,
            FAILED_BELOW => LinkKind::FailedBelow,
            code => LinkKind::Refused(
                REJECT_KINDS
                    .get(usize::from(code).saturating_sub(1))
                    .copied()
                    .unwrap_or(RejectKind::Shed),
            ),
        },
    }
}

/// The name of the component of `event` (empty when unknown).
pub(crate) fn name_of<'a>(event: &Event, names: &[&'a str]) -> &'a str {
    names.get(event.component).copied().unwrap_or("")
}
