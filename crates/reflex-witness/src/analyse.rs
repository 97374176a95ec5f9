//! The cycle's analysis: own errors and self time against baselines
//! (episodes and their reports), call patterns, detectors of your own, and
//! the reflexes over all of it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::chain::link;
use crate::controls::Controls;
use crate::detector::{Detector, Observation};
use crate::episode::Episode;
use crate::events::{Event, Events, Ring};
use crate::judge::Judge;
use crate::patterns::Learner;
use crate::reflex::{Action, Reflex, Situation};
use crate::report::{ChainLink, DetectionKind, Report, Root};
use crate::snapshot::Snapshot;

/// What a witness runs on each cycle's snapshot, each part behind its own
/// lock (held only by the cycle, and briefly by the handle's readers).
pub(crate) struct Analysis {
    /// The call patterns' learner (off: `None`).
    learner: Option<Mutex<Learner>>,
    /// The judgement of own errors and self time (off: `None`).
    judge: Option<Mutex<Judge>>,
    detectors: Mutex<Vec<Box<dyn Detector>>>,
    reflexes: Mutex<Vec<Box<dyn Reflex>>>,
    /// The most links of a report's causal chain.
    chain_limit: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Analysis ===

impl Analysis {
    pub(crate) fn new(
        learner: Option<Learner>,
        judge: Option<Judge>,
        detectors: Vec<Box<dyn Detector>>,
        reflexes: Vec<Box<dyn Reflex>>,
        chain_limit: usize,
    ) -> Self {
        Self {
            learner: learner.map(Mutex::new),
            judge: judge.map(Mutex::new),
            detectors: Mutex::new(detectors),
            reflexes: Mutex::new(reflexes),
            chain_limit,
        }
    }

    /// `true` when the witness learns call patterns: requests then note
    /// their calls.
    #[inline]
    pub(crate) fn learns_patterns(&self) -> bool {
        self.learner.is_some()
    }

    /// Call patterns seen often enough to be called learned.
    pub(crate) fn patterns_learned(&self) -> usize {
        self.learner.as_ref().map_or(0, |l| lock(l).learned())
    }

    /// Every open episode and the last closed ones, oldest first.
    pub(crate) fn episodes(&self) -> Vec<Episode> {
        self.judge.as_ref().map_or_else(Vec::new, |judge| {
            lock(judge).episodes.iter().cloned().collect()
        })
    }

    /// Judges the cycle's `snapshot` (with each component's first failures
    /// of the cycle, components named by index in `names`), then runs the
    /// call patterns (over the finished `calls`) and the detectors of your
    /// own (over the recent `events`); their reports, and the error of the
    /// last detector that failed.
    pub(crate) fn detect(
        &self,
        snapshot: &Snapshot,
        first_failures: &[Event],
        names: &[&str],
        calls: &Ring,
        events: &Events,
        now_ms: u64,
    ) -> (Vec<Report>, Option<String>) {
        let mut reports = Vec::new();
        // The roots of the episodes open after this cycle's judgement: a
        // chain slow because of one of them is that episode, not news.
        let mut explained: Vec<String> = Vec::new();
        if let Some(judge) = &self.judge {
            let mut judge = lock(judge);
            reports.extend(judge.judge(snapshot, first_failures, names));
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
                .map(|e| link(e, names))
                .collect(),
            summary,
            actions: Vec::new(),
        };
        if let Some(learner) = &self.learner {
            let mut learner = lock(learner);
            let (words, next) = calls.since(learner.cursor);
            learner.cursor = next;
            for found in learner.learn(snapshot.cycle, words, names) {
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
        let mut detectors = lock(&self.detectors);
        if detectors.is_empty() {
            return (reports, None);
        }
        let events: Vec<ChainLink> = events
            .since(0)
            .iter()
            .map(|event| link(event, names))
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

    /// Runs the reflexes over this cycle, with the layers' `controls`; the
    /// actions they took (also written into the episodes they are about).
    pub(crate) fn react(&self, snapshot: &Snapshot, controls: &Controls) -> Vec<Action> {
        let mut reflexes = lock(&self.reflexes);
        if reflexes.is_empty() {
            return Vec::new();
        }
        let Some(judge) = &self.judge else {
            let situation = Situation {
                snapshot,
                open: &[],
                closed: &[],
                callers: &Default::default(),
            };
            return reflexes
                .iter_mut()
                .flat_map(|reflex| reflex.react(&situation, controls))
                .collect();
        };
        let mut judge = lock(judge);
        let (open, closed): (Vec<Episode>, Vec<Episode>) = judge
            .episodes
            .iter()
            .filter(|e| e.is_open() || judge.closed.contains(&e.id))
            .cloned()
            .partition(Episode::is_open);
        let actions: Vec<Action> = {
            let situation = Situation {
                snapshot,
                open: &open,
                closed: &closed,
                callers: &judge.callers,
            };
            reflexes
                .iter_mut()
                .flat_map(|reflex| reflex.react(&situation, controls))
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
