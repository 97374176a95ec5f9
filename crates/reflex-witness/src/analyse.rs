//! The cycle's judgement: own errors and self time against baselines
//! (episodes and their reports), call patterns, detectors of your own, and
//! the reflexes over all of it.

use std::sync::PoisonError;

use crate::detect::{ChainLink, DetectionKind, LinkKind, Observation, Report, Root};
use crate::episode::Episode;
use crate::events::Event;
use crate::reflex::{Action, Situation};
use crate::registry::{FAILED, FAILED_BELOW, REJECT_KINDS};
use crate::runtime::Inner;
use crate::snapshot::Snapshot;

/// A recorded event as a link of a causal chain.
pub(crate) fn link(event: &Event, names: &[&str]) -> ChainLink {
    ChainLink {
        at_ms: event.at_ms,
        component: names.get(event.component).copied().unwrap_or("").to_owned(),
        what: match event.kind {
            FAILED => LinkKind::Failed,
            FAILED_BELOW => LinkKind::FailedBelow,
            code => LinkKind::Refused(
                REJECT_KINDS
                    .get(usize::from(code).saturating_sub(1))
                    .copied()
                    .unwrap_or(reflex_core::RejectKind::Shed),
            ),
        },
    }
}

impl Inner {
    /// Judges the cycle's `snapshot` (with each component's first failures
    /// of the cycle), then runs the call patterns and the detectors of
    /// your own; their reports, and the error of the last detector that
    /// failed.
    pub(crate) fn detect(
        &self,
        snapshot: &Snapshot,
        first_failures: &[Event],
        now_ms: u64,
    ) -> (Vec<Report>, Option<String>) {
        let names: Vec<&str> = self
            .registry
            .cells()
            .iter()
            .map(|cell| cell.name.get().map_or("", |c| c.as_str()))
            .collect();
        let mut reports = Vec::new();
        // The roots of the episodes open after this cycle's judgement: a
        // chain slow because of one of them is that episode, not news.
        let mut explained: Vec<String> = Vec::new();
        if let Some(judge) = &self.judge {
            let mut judge = judge.lock().unwrap_or_else(PoisonError::into_inner);
            reports.extend(judge.judge(snapshot, first_failures, &names));
            explained.extend(
                judge
                    .episodes
                    .iter()
                    .filter(|e| e.is_open())
                    .flat_map(|e| e.roots.iter().map(|r| r.component.clone())),
            );
        }
        let plain = |kind: DetectionKind, components: Vec<String>, summary: String| Report {
            episode: None,
            cycle: snapshot.cycle,
            at_ms: now_ms,
            kind: kind.clone(),
            roots: components
                .iter()
                .map(|component| Root {
                    component: component.clone(),
                    kind: kind.clone(),
                    evidence: None,
                })
                .collect(),
            since_ms: now_ms,
            affected: Vec::new(),
            components: snapshot
                .components
                .iter()
                .filter(|c| components.contains(&c.component))
                .cloned()
                .collect(),
            causal_chain: first_failures
                .iter()
                .filter(|e| {
                    names
                        .get(e.component)
                        .is_some_and(|n| components.iter().any(|c| c == n))
                })
                .take(self.chain_limit)
                .map(|e| link(e, &names))
                .collect(),
            summary,
            actions: Vec::new(),
        };
        if let Some(learner) = &self.learner {
            let mut learner = learner.lock().unwrap_or_else(PoisonError::into_inner);
            let (words, next) = self.calls.since(learner.cursor);
            learner.cursor = next;
            for found in learner.learn(snapshot.cycle, words, &names) {
                let members = match &found.kind {
                    DetectionKind::NewCallPattern { chain }
                    | DetectionKind::SlowCallPattern { chain, .. } => chain.clone(),
                    _ => Vec::new(),
                };
                let slow = matches!(found.kind, DetectionKind::SlowCallPattern { .. });
                if slow && members.iter().any(|m| explained.contains(m)) {
                    continue;
                }
                reports.push(plain(found.kind, members, found.summary));
            }
        }
        let mut detectors = self
            .detectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if detectors.is_empty() {
            return (reports, None);
        }
        let events: Vec<ChainLink> = self
            .events
            .since(0)
            .iter()
            .map(|event| link(event, &names))
            .collect();
        let observation = Observation {
            snapshot,
            events: &events,
            now_ms,
        };
        let mut error = None;
        for detector in detectors.iter_mut() {
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                detector.inspect(&observation)
            }));
            match found {
                Ok(Ok(findings)) => {
                    for finding in findings {
                        let mut report = plain(
                            DetectionKind::Custom(detector.name().to_owned()),
                            finding.components,
                            finding.decision,
                        );
                        if report.summary.is_empty() {
                            report.summary = finding.trigger;
                        }
                        reports.push(report);
                    }
                }
                Ok(Err(err)) => error = Some(format!("{}: {err}", detector.name())),
                Err(_) => error = Some(format!("{}: panicked", detector.name())),
            }
        }
        (reports, error)
    }

    /// Runs the reflexes over this cycle; the actions they took (also
    /// written into the episodes they are about).
    pub(crate) fn react(&self, snapshot: &Snapshot) -> Vec<Action> {
        let mut reflexes = self.reflexes.lock().unwrap_or_else(PoisonError::into_inner);
        if reflexes.is_empty() {
            return Vec::new();
        }
        let Some(judge) = &self.judge else {
            let controls = self.controls.lock().unwrap_or_else(PoisonError::into_inner);
            let situation = Situation {
                snapshot,
                open: &[],
                closed: &[],
                callers: &Default::default(),
            };
            return reflexes
                .iter_mut()
                .flat_map(|reflex| reflex.react(&situation, &controls))
                .collect();
        };
        let mut judge = judge.lock().unwrap_or_else(PoisonError::into_inner);
        let (open, closed): (Vec<Episode>, Vec<Episode>) = judge
            .episodes
            .iter()
            .filter(|e| e.is_open() || judge.closed.contains(&e.id))
            .cloned()
            .partition(Episode::is_open);
        let actions: Vec<Action> = {
            let controls = self.controls.lock().unwrap_or_else(PoisonError::into_inner);
            let situation = Situation {
                snapshot,
                open: &open,
                closed: &closed,
                callers: &judge.callers,
            };
            reflexes
                .iter_mut()
                .flat_map(|reflex| reflex.react(&situation, &controls))
                .collect()
        };
        for action in &actions {
            if let Some(id) = action.what.why.episode() {
                judge.record(id, action.what.clone());
            }
        }
        actions
    }
}
