//! The cycle's judgement: the detectors over the cycle's snapshot, and the
//! reflexes over their reports.

use std::sync::PoisonError;

use crate::detect::{ChainLink, Finding, Observation, Report};
use crate::reflex::Action;
use crate::registry::REJECT_KINDS;
use crate::runtime::Inner;
use crate::snapshot::Snapshot;

impl Inner {
    /// Runs the detectors over `snapshot`; their reports, and the error of
    /// the last one that failed.
    pub(crate) fn detect(
        &self,
        snapshot: &Snapshot,
        first_failures: &[crate::events::Event],
        now_ms: u64,
    ) -> (Vec<Report>, Option<String>) {
        // Each component's first failures of the cycle: for the judgement.
        let _ = first_failures;
        let names: Vec<&str> = self
            .registry
            .cells()
            .iter()
            .map(|cell| cell.name.get().map_or("", |c| c.as_str()))
            .collect();
        let events: Vec<ChainLink> = self
            .events
            .since(0)
            .into_iter()
            .map(|event| ChainLink {
                at_ms: event.at_ms,
                component: names.get(event.component).copied().unwrap_or("").to_owned(),
                what: match event.kind {
                    0 => "failed".to_owned(),
                    crate::registry::FAILED_BELOW => "failed below".to_owned(),
                    kind => format!(
                        "rejected: {}",
                        REJECT_KINDS
                            .get(usize::from(kind) - 1)
                            .map_or("other", |k| k.as_str())
                    ),
                },
            })
            .collect();
        let observation = Observation {
            snapshot,
            events: &events,
            now_ms,
        };
        let to_report = |detector: &str, finding: Finding| Report {
            cycle: snapshot.cycle,
            at_ms: now_ms,
            detector: detector.to_owned(),
            trigger: finding.trigger,
            components: snapshot
                .components
                .iter()
                .filter(|c| finding.components.contains(&c.component))
                .cloned()
                .collect(),
            causal_chain: events
                .iter()
                .filter(|link| finding.components.contains(&link.component))
                .take(self.chain_limit)
                .cloned()
                .collect(),
            decision: finding.decision,
            actions: Vec::new(),
        };
        let mut reports = Vec::new();
        let mut error = None;
        if let Some(learner) = &self.learner {
            let mut learner = learner.lock().unwrap_or_else(PoisonError::into_inner);
            let (words, next) = self.calls.since(learner.cursor);
            learner.cursor = next;
            for finding in learner.learn(snapshot.cycle, words, &names) {
                reports.push(to_report("call_patterns", finding));
            }
        }
        let mut detectors = self
            .detectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for detector in detectors.iter_mut() {
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                detector.inspect(&observation)
            }));
            match found {
                Ok(Ok(findings)) => {
                    for finding in findings {
                        reports.push(to_report(detector.name(), finding));
                    }
                }
                Ok(Err(err)) => error = Some(format!("{}: {err}", detector.name())),
                Err(_) => error = Some(format!("{}: panicked", detector.name())),
            }
        }
        (reports, error)
    }

    /// Runs the reflexes over this cycle; the actions they took.
    pub(crate) fn react(&self, snapshot: &Snapshot) -> Vec<Action> {
        let controls = self.controls.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reflexes = self.reflexes.lock().unwrap_or_else(PoisonError::into_inner);
        reflexes
            .iter_mut()
            .flat_map(|reflex| reflex.react(snapshot, &controls))
            .collect()
    }
}
