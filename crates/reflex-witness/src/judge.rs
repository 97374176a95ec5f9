//! The judgement's state machine: baselines, the call graph learned from
//! the traffic, and the episodes it opens and closes, one report each.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::baseline::{Baseline, Verdict, same_dimension};
use crate::chain::{link, name_of};
use crate::episode::Episode;
use crate::events::{Event, FAILED};
use crate::judgement::Judgement;
use crate::measure::Measure;
use crate::report::{Affected, ChainLink, DetectionKind, Report, Root, summary};
use crate::snapshot::{CallEdge, Snapshot};

/// The most callers learned per component, and components with callers:
/// the learned graph stays bounded whatever the calls.
const MAX_CALLERS: usize = 64;
const MAX_CALLEES: usize = 4096;

/// The judgement's state: baselines, the learned call graph, episodes.
pub(crate) struct Judge {
    pub(crate) settings: Judgement,
    chain_limit: usize,
    /// Closed episodes kept (open ones are always kept).
    keep: usize,
    baselines: HashMap<String, Baseline>,
    /// Callee -> its callers, as calls were seen.
    pub(crate) callers: HashMap<String, Vec<String>>,
    /// Open episodes' roots' consecutive cycles back within baseline.
    streaks: HashMap<(u64, String), u32>,
    pub(crate) episodes: VecDeque<Episode>,
    /// Episodes closed by the last cycle.
    pub(crate) closed: Vec<u64>,
    next_id: u64,
    last_cycle_ms: u64,
}

// === impl Judge ===

impl Judge {
    pub(crate) fn new(settings: Judgement, chain_limit: usize, keep: usize) -> Self {
        Self {
            settings,
            chain_limit,
            keep,
            baselines: HashMap::new(),
            callers: HashMap::new(),
            streaks: HashMap::new(),
            episodes: VecDeque::new(),
            closed: Vec::new(),
            next_id: 1,
            last_cycle_ms: 0,
        }
    }

    fn learn_calls(&mut self, calls: &[CallEdge]) {
        for edge in calls.iter().filter(|e| e.calls > 0 && e.caller != e.callee) {
            if !self.callers.contains_key(&edge.callee) && self.callers.len() >= MAX_CALLEES {
                continue;
            }
            let callers = self.callers.entry(edge.callee.clone()).or_default();
            if !callers.contains(&edge.caller) && callers.len() < MAX_CALLERS {
                callers.push(edge.caller.clone());
            }
        }
    }

    /// The components that depend on `root`, each with its path (itself
    /// first, `root` last), nearest first.
    fn dependents(&self, root: &str) -> Vec<Vec<String>> {
        let mut found = Vec::new();
        let mut seen: HashSet<&str> = HashSet::from([root]);
        let mut queue: VecDeque<Vec<String>> = VecDeque::from([vec![root.to_owned()]]);
        while let Some(path) = queue.pop_front() {
            let Some(callers) = self.callers.get(&path[0]) else {
                continue;
            };
            for caller in callers {
                if seen.insert(caller.as_str()) {
                    let mut longer = Vec::with_capacity(path.len() + 1);
                    longer.push(caller.clone());
                    longer.extend(path.iter().cloned());
                    found.push(longer.clone());
                    queue.push_back(longer);
                }
            }
        }
        found
    }

    /// Judges a cycle: the reports of the episodes it opens. Episodes it
    /// closes are in `closed`.
    pub(crate) fn judge(
        &mut self,
        snapshot: &Snapshot,
        first_failures: &[Event],
        names: &[&str],
    ) -> Vec<Report> {
        let settings = self.settings.clone();
        let cycle_start_ms = self.last_cycle_ms;
        self.last_cycle_ms = snapshot.observed_at_ms;
        self.closed.clear();
        self.learn_calls(&snapshot.calls);
        let was_open = self.episodes.iter().any(Episode::is_open);
        let verdicts: Vec<Verdict> = snapshot
            .components
            .iter()
            .map(|state| {
                self.baselines
                    .get(&state.component)
                    .map(|b| b.judge(state, &settings))
                    .unwrap_or_default()
            })
            .collect();
        let verdict_of = |name: &str| {
            snapshot
                .components
                .iter()
                .position(|c| c.component == name)
                .map(|i| &verdicts[i])
        };

        // Open episodes: closed once every root is back within its
        // baseline, with volume, for `close_after` cycles in a row.
        // Each open episode's roots, with the kind it is about.
        let mut open_roots: Vec<(String, DetectionKind)> = Vec::new();
        for index in 0..self.episodes.len() {
            if !self.episodes[index].is_open() {
                continue;
            }
            let id = self.episodes[index].id;
            let kind = self.episodes[index].kind.clone();
            let mut all_back = true;
            let roots: Vec<String> = self.episodes[index]
                .roots
                .iter()
                .map(|r| r.component.clone())
                .collect();
            for root in &roots {
                let streak = self.streaks.entry((id, root.clone())).or_insert(0);
                match verdict_of(root) {
                    Some(v) if v.is_anomalous_like(&kind) => *streak = 0,
                    Some(v) if v.requests >= settings.min_requests => *streak += 1,
                    _ => {}
                }
                all_back &= *streak >= settings.close_after;
            }
            let affected = self.showing(snapshot, &roots, &settings);
            let episode = &mut self.episodes[index];
            for component in affected.into_iter().map(|a| a.component) {
                if !episode.affected.contains(&component) {
                    episode.affected.push(component);
                }
            }
            if all_back {
                episode.ended_ms = Some(snapshot.observed_at_ms);
                self.closed.push(id);
                self.streaks.retain(|(episode, _), _| *episode != id);
            } else {
                open_roots.extend(roots.into_iter().map(|root| (root, kind.clone())));
            }
        }

        // New roots: own anomalies of components not already a root of an
        // open episode of the same dimension (errors, or latency).
        let roots: Vec<Root> = snapshot
            .components
            .iter()
            .zip(&verdicts)
            .filter_map(|(state, v)| {
                let (kind, evidence) = v
                    .anomalies
                    .iter()
                    .find(|(kind, _)| {
                        !open_roots.iter().any(|(root, open)| {
                            *root == state.component && same_dimension(kind, open)
                        })
                    })?
                    .clone();
                Some(Root {
                    component: state.component.clone(),
                    kind,
                    evidence: Some(evidence),
                })
            })
            .collect();
        let mut reports = Vec::new();
        if !roots.is_empty() {
            reports.push(self.open(snapshot, roots, first_failures, names, cycle_start_ms));
        }

        // Baselines learn on healthy cycles only: none in an episode.
        if !was_open && reports.is_empty() {
            for state in &snapshot.components {
                self.baselines
                    .entry(state.component.clone())
                    .or_default()
                    .learn(state, &settings);
            }
        }
        self.forget();
        reports
    }

    /// The components depending on `roots` that show it in `snapshot`.
    fn showing(
        &self,
        snapshot: &Snapshot,
        roots: &[String],
        settings: &Judgement,
    ) -> Vec<Affected> {
        let mut affected: Vec<Affected> = Vec::new();
        for root in roots {
            for path in self.dependents(root) {
                let name = &path[0];
                if roots.contains(name) || affected.iter().any(|a| &a.component == name) {
                    continue;
                }
                let Some(state) = snapshot.component(name) else {
                    continue;
                };
                let baseline = self.baselines.get(name);
                let shows = baseline.map_or(state.propagated_failed > 0, |b| {
                    b.propagation_up(state, settings) || b.total_latency_up(state, settings)
                });
                if shows {
                    affected.push(Affected {
                        component: name.clone(),
                        path,
                        propagated_failed: state.propagated_failed,
                        requests: state.succeeded.saturating_add(state.failed),
                        p50_ms: state.p50_ms,
                        baseline_p50_ms: baseline.and_then(|b| b.total_p50.get()),
                    });
                }
            }
        }
        affected
    }

    fn open(
        &mut self,
        snapshot: &Snapshot,
        roots: Vec<Root>,
        first_failures: &[Event],
        names: &[&str],
        cycle_start_ms: u64,
    ) -> Report {
        let settings = self.settings.clone();
        let id = self.next_id;
        self.next_id += 1;
        let root_names: Vec<String> = roots.iter().map(|r| r.component.clone()).collect();
        let affected = self.showing(snapshot, &root_names, &settings);
        let is_root = |event: &Event| root_names.iter().any(|r| r == name_of(event, names));
        let since_ms = first_failures
            .iter()
            .filter(|e| e.kind == FAILED && is_root(e))
            .map(|e| e.at_ms)
            .min()
            .unwrap_or(cycle_start_ms);
        let mut from_roots: Vec<&Event> = first_failures
            .iter()
            .filter(|e| is_root(e) && e.at_ms >= since_ms)
            .collect();
        from_roots.sort_by_key(|e| e.at_ms);
        let mut others: Vec<&Event> = first_failures
            .iter()
            .filter(|e| {
                e.at_ms >= since_ms && affected.iter().any(|a| a.component == name_of(e, names))
            })
            .collect();
        others.sort_by_key(|e| e.at_ms);
        let causal_chain: Vec<ChainLink> = from_roots
            .into_iter()
            .chain(others)
            .take(self.chain_limit)
            .map(|event| link(event, names))
            .collect();
        let components = snapshot
            .components
            .iter()
            .filter(|c| {
                root_names.contains(&c.component)
                    || affected.iter().any(|a| a.component == c.component)
            })
            .cloned()
            .collect();
        let summary = summary(&roots, &affected);
        let kind = roots[0].kind.clone();
        self.episodes.push_back(Episode {
            id,
            kind: kind.clone(),
            roots: roots.clone(),
            since_ms,
            opened_cycle: snapshot.cycle,
            affected: affected.iter().map(|a| a.component.clone()).collect(),
            actions: Vec::new(),
            ended_ms: None,
        });
        Report {
            episode: Some(id),
            cycle: snapshot.cycle,
            at_ms: snapshot.observed_at_ms,
            kind,
            roots,
            since_ms,
            affected,
            components,
            causal_chain,
            summary,
            actions: Vec::new(),
        }
    }

    /// Keeps every open episode and the last `keep` closed ones.
    fn forget(&mut self) {
        let mut closed = self.episodes.iter().filter(|e| !e.is_open()).count();
        self.episodes.retain(|e| {
            if e.is_open() || closed <= self.keep {
                return true;
            }
            closed -= 1;
            false
        });
    }

    /// Notes what a reflex did about episode `id`.
    pub(crate) fn record(&mut self, id: u64, measure: Measure) {
        if let Some(episode) = self.episodes.iter_mut().find(|e| e.id == id) {
            episode.actions.push(measure);
        }
    }
}

#[cfg(test)]
mod tests;
