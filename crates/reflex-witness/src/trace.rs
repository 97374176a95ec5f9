//! The witness's reports as `tracing` events: one WARN event per report,
//! its parts as fields.

use std::fmt::Write;

use crate::report::Report;

/// Emits `report` as one WARN event. Not rate-limited: the judgement
/// writes one report per episode (a call pattern's, once per episode too),
/// so a burning dependency is one event, not one per cycle.
pub(crate) fn report(report: &Report) {
    if !tracing::enabled!(tracing::Level::WARN) {
        return;
    }
    let roots = join(report.roots.iter().map(|r| r.component.as_str()), ",");
    let affected = join(report.affected.iter().map(|a| a.component.as_str()), ",");
    let mut actions = String::new();
    for (i, action) in report.actions.iter().enumerate() {
        let _ = write!(actions, "{}{action}", if i == 0 { "" } else { "; " });
    }
    tracing::warn!(
        kind = report.kind.as_str(),
        episode = report.episode,
        roots = %roots,
        affected = %affected,
        actions = %actions,
        since_ms = report.since_ms,
        cycle = report.cycle,
        summary = %report.summary,
        "witness report"
    );
}

fn join<'a>(parts: impl Iterator<Item = &'a str>, separator: &str) -> String {
    parts.collect::<Vec<_>>().join(separator)
}
