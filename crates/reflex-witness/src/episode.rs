//! Episodes: from the cycle a component's own errors or own work turn
//! anomalous to the cycle it is back within its baseline. One report when
//! an episode opens; its end, and what the reflexes did, in
//! [`Witness::episodes`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::PoisonError;

use serde::Serialize;

use crate::detect::{Affected, ChainLink, DetectionKind, Evidence, Report, Root};
use crate::events::Event;
use crate::judgement::{Baseline, Judgement, Verdict, same_dimension};
use crate::reflex::Measure;
use crate::registry::FAILED;
use crate::snapshot::{CallEdge, Snapshot};
use crate::witness::Witness;

/// One incident, from its report to its end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Episode {
    /// Its id, as in its [`Report::episode`].
    pub id: u64,
    /// What opened it (its first root's kind).
    pub kind: DetectionKind,
    /// Where it starts, with the evidence of the cycle that opened it.
    pub roots: Vec<Root>,
    /// Since when, in milliseconds since the witness was built.
    pub since_ms: u64,
    /// The cycle that opened it (and wrote its report).
    pub opened_cycle: u64,
    /// Every component it affected over its course.
    pub affected: Vec<String>,
    /// What the reflexes did about it, and their undoing, in order.
    pub actions: Vec<Measure>,
    /// When it closed (its roots back within their baselines), in
    /// milliseconds since the witness was built; `None` while open.
    pub ended_ms: Option<u64>,
}

impl Episode {
    /// `true` until its roots are back within their baselines.
    pub fn is_open(&self) -> bool {
        self.ended_ms.is_none()
    }
}

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
        let name_of = |event: &Event| names.get(event.component).copied().unwrap_or("");
        let is_root = |event: &Event| root_names.iter().any(|r| r == name_of(event));
        let since_ms = first_failures
            .iter()
            .filter(|e| e.kind == FAILED && is_root(e))
            .map(|e| e.at_ms)
            .min()
            .unwrap_or(cycle_start_ms);
        let link = |event: &Event| crate::analyse::link(event, names);
        let mut from_roots: Vec<&Event> = first_failures
            .iter()
            .filter(|e| is_root(e) && e.at_ms >= since_ms)
            .collect();
        from_roots.sort_by_key(|e| e.at_ms);
        let mut others: Vec<&Event> = first_failures
            .iter()
            .filter(|e| e.at_ms >= since_ms && affected.iter().any(|a| a.component == name_of(e)))
            .collect();
        others.sort_by_key(|e| e.at_ms);
        let causal_chain: Vec<ChainLink> = from_roots
            .into_iter()
            .chain(others)
            .take(self.chain_limit)
            .map(link)
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

fn summary(roots: &[Root], affected: &[Affected]) -> String {
    let roots: Vec<String> = roots
        .iter()
        .map(|root| match &root.evidence {
            Some(Evidence::ErrorRate {
                failed,
                requests,
                observed,
                baseline,
            }) => format!(
                "{}: own error rate {:.1}% ({failed} of {requests} requests), baseline {:.2}%",
                root.component,
                observed * 100.0,
                baseline * 100.0
            ),
            Some(Evidence::Latency {
                percentile,
                observed_ms,
                baseline_ms,
                requests,
            }) => format!(
                "{}: own work p{percentile} {observed_ms:.1} ms ({requests} requests), baseline {baseline_ms:.1} ms",
                root.component
            ),
            None => root.component.clone(),
        })
        .collect();
    let mut line = roots.join("; ");
    if !affected.is_empty() {
        let paths: Vec<String> = affected.iter().map(|a| a.path.join(" -> ")).collect();
        line.push_str("; affected: ");
        line.push_str(&paths.join(", "));
    }
    line
}

impl Witness {
    /// The episodes of the judgement, oldest first: every open one, and the
    /// last closed ones (as many as the report limit). An episode opens
    /// with its report and ends when its roots are back within their
    /// baselines; its `actions` keep what the reflexes did and undid.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// witness.cycle_now();
    /// assert!(witness.episodes().iter().all(|e| !e.is_open()));
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn episodes(&self) -> Vec<Episode> {
        self.inner.judge.as_ref().map_or_else(Vec::new, |judge| {
            let judge = judge.lock().unwrap_or_else(PoisonError::into_inner);
            judge.episodes.iter().cloned().collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::LinkKind;
    use crate::registry::FAILED_BELOW;
    use crate::snapshot::ComponentState;

    /// A seeded generator (xorshift) with the draws the tests need.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Failures among `n` requests failing at `p` each.
        fn binomial(&mut self, n: u64, p: f64) -> u64 {
            (0..n).filter(|_| self.next() < p).count() as u64
        }

        fn normal(&mut self) -> f64 {
            let (u, v) = (self.next().max(1e-300), self.next());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// One component's cycle: `n` requests, `own` own and `propagated`
    /// echoed failures, self time around `self_ms` and total around
    /// `total_ms` (lognormal, σ 0.5: the p50 of `n` samples wanders by
    /// about 0.63/√n, the p99 sits 3.2× up), read within 1/16.
    fn state(
        rng: &mut Rng,
        name: &str,
        n: u64,
        own: u64,
        propagated: u64,
        self_ms: f64,
        total_ms: f64,
    ) -> ComponentState {
        let p50 = |ms: f64, rng: &mut Rng| {
            ms * (0.63 / (n as f64).sqrt() * rng.normal()).exp()
                * 0.06f64.mul_add(rng.next() - 0.5, 1.0)
        };
        let self_p50 = p50(self_ms, rng);
        let total_p50 = p50(total_ms, rng);
        let p99_noise = (0.12 * (1000.0 / n as f64).sqrt() * rng.normal()).exp();
        let failed = own + propagated;
        ComponentState {
            component: name.to_owned(),
            in_flight: 0,
            requests: n,
            throughput: n as f64,
            succeeded: n - failed,
            failed,
            own_failed: own,
            propagated_failed: propagated,
            ignored: 0,
            cancelled: 0,
            error_rate: failed as f64 / n as f64,
            p50_ms: Some(total_p50),
            p90_ms: Some(total_p50 * 1.9),
            p99_ms: Some(total_p50 * 3.2 * p99_noise),
            self_p50_ms: Some(self_p50),
            self_p90_ms: Some(self_p50 * 1.9),
            self_p99_ms: Some(self_p50 * 3.2 * p99_noise),
            rejected: Vec::new(),
            shed: 0,
            retries: 0,
            coalesced: 0,
            breaker: None,
            breaker_keys_opened: 0,
            slot_queue_depth: 0,
        }
    }

    const NAMES: [&str; 3] = ["api", "auth", "db"];

    /// api -> auth -> db, `n` requests a cycle each, each failing on its
    /// own at `noise`, each hop turning a failure below into its own.
    struct Stack {
        rng: Rng,
        n: u64,
        noise: f64,
        /// Own error rate of db (fault), self time of each (5 ms usual).
        db_rate: f64,
        self_ms: [f64; 3],
        cycle: u64,
    }

    impl Stack {
        fn new(seed: u64, n: u64, noise: f64) -> Self {
            Self {
                rng: Rng(seed),
                n,
                noise,
                db_rate: noise,
                self_ms: [5.0; 3],
                cycle: 0,
            }
        }

        /// The next cycle's snapshot and first failures (db's first,
        /// then auth's echoes, then api's, 1 ms apart).
        fn next(&mut self) -> (Snapshot, Vec<Event>) {
            self.cycle += 1;
            let at = self.cycle * 1000;
            let n = self.n;
            let db_own = self.rng.binomial(n, self.db_rate);
            let auth_own = self.rng.binomial(n - db_own, self.noise);
            let api_own = self.rng.binomial(n - db_own - auth_own, self.noise);
            let totals = [
                self.self_ms.iter().sum::<f64>(),
                self.self_ms[1] + self.self_ms[2],
                self.self_ms[2],
            ];
            let components = vec![
                state(
                    &mut self.rng,
                    "api",
                    n,
                    api_own,
                    db_own + auth_own,
                    self.self_ms[0],
                    totals[0],
                ),
                state(
                    &mut self.rng,
                    "auth",
                    n,
                    auth_own,
                    db_own,
                    self.self_ms[1],
                    totals[1],
                ),
                state(
                    &mut self.rng,
                    "db",
                    n,
                    db_own,
                    0,
                    self.self_ms[2],
                    totals[2],
                ),
            ];
            let edge = |caller: &str, callee: &str, failed| CallEdge {
                caller: caller.to_owned(),
                callee: callee.to_owned(),
                calls: n,
                failed,
            };
            let mut events = Vec::new();
            for (component, own, below) in [
                (2, db_own, 0),
                (1, auth_own, db_own),
                (0, api_own, db_own + auth_own),
            ] {
                let kinds = (0..own.min(8))
                    .map(|_| FAILED)
                    .chain((0..below).map(|_| FAILED_BELOW));
                for (i, kind) in kinds.take(8).enumerate() {
                    events.push(Event {
                        at_ms: at - 900 + 10 * i as u64 + component as u64,
                        component,
                        kind,
                    });
                }
            }
            let snapshot = Snapshot {
                cycle: self.cycle,
                observed_at_ms: at,
                components,
                reports: Vec::new(),
                actions: Vec::new(),
                calls: vec![
                    edge("api", "auth", db_own + auth_own),
                    edge("auth", "db", db_own),
                ],
            };
            (snapshot, events)
        }
    }

    fn judge() -> Judge {
        Judge::new(Judgement::default(), 32, 64)
    }

    #[test]
    fn healthy_noise_at_100_1000_and_10000_requests_a_cycle_opens_no_episode_in_600_cycles() {
        for (seed, n) in [(1, 100), (2, 1_000), (3, 10_000)] {
            for noise in [0.001, 0.01] {
                let mut stack = Stack::new(seed * 7919 + (noise * 1e4) as u64, n, noise);
                let mut judge = judge();
                for _ in 0..600 {
                    let (snapshot, events) = stack.next();
                    let reports = judge.judge(&snapshot, &events, &NAMES);
                    assert!(reports.is_empty(), "{n}/cycle at {noise}: {reports:?}");
                }
                assert!(judge.episodes.is_empty());
            }
        }
    }

    /// Warms a judge on `stack`, then turns db's own error rate to `rate`:
    /// the report of the cycle that opens the episode.
    fn db_fails_at(rate: f64, n: u64) -> (Judge, Stack, Report) {
        let mut stack = Stack::new(42, n, 0.01);
        let mut judge = judge();
        for _ in 0..120 {
            let (snapshot, events) = stack.next();
            assert!(judge.judge(&snapshot, &events, &NAMES).is_empty());
        }
        stack.db_rate = rate;
        let (snapshot, events) = stack.next();
        let mut reports = judge.judge(&snapshot, &events, &NAMES);
        assert_eq!(reports.len(), 1, "{reports:?}");
        for _ in 0..5 {
            let (snapshot, events) = stack.next();
            assert!(
                judge.judge(&snapshot, &events, &NAMES).is_empty(),
                "one report per episode"
            );
        }
        (judge, stack, reports.remove(0))
    }

    #[test]
    fn db_failing_a_quarter_or_all_of_its_calls_is_one_report_naming_db_with_auth_and_api_affected()
    {
        for (rate, n) in [(0.25, 100), (1.0, 100), (0.25, 10_000), (1.0, 1_000)] {
            let (judge, _, report) = db_fails_at(rate, n);
            let roots: Vec<&str> = report.roots.iter().map(|r| r.component.as_str()).collect();
            assert_eq!(roots, ["db"], "{rate} at {n}");
            assert_eq!(report.kind, DetectionKind::OwnErrorRate);
            let Some(Evidence::ErrorRate {
                observed,
                baseline,
                requests,
                ..
            }) = report.roots[0].evidence
            else {
                panic!("{report:?}");
            };
            assert!(
                (observed - rate).abs() < 0.15 && baseline < 0.03 && requests > 0,
                "{report:?}"
            );
            let paths: Vec<Vec<&str>> = report
                .affected
                .iter()
                .map(|a| a.path.iter().map(String::as_str).collect())
                .collect();
            assert_eq!(paths, [vec!["auth", "db"], vec!["api", "auth", "db"]]);
            // The chain: db's first failures first, from this cycle only.
            assert_eq!(report.causal_chain[0].component, "db");
            assert_eq!(report.causal_chain[0].what, LinkKind::Failed);
            assert!(
                report
                    .causal_chain
                    .iter()
                    .all(|l| l.at_ms >= report.since_ms)
            );
            assert!(report.since_ms > 120_000, "not from before the episode");
            assert_eq!(judge.episodes.len(), 1);
            assert!(judge.episodes[0].is_open());
        }
    }

    #[test]
    fn the_episode_closes_once_db_is_back_within_its_baseline_for_two_cycles() {
        let (mut judge, mut stack, report) = db_fails_at(0.25, 100);
        stack.db_rate = 0.01;
        let (snapshot, events) = stack.next();
        judge.judge(&snapshot, &events, &NAMES);
        assert!(
            judge.episodes[0].is_open(),
            "one healthy cycle is not enough"
        );
        let (snapshot, events) = stack.next();
        judge.judge(&snapshot, &events, &NAMES);
        assert_eq!(judge.closed, vec![report.episode.unwrap()]);
        assert_eq!(judge.episodes[0].ended_ms, Some(snapshot.observed_at_ms));
        // A new fault later is a new episode with its own report.
        stack.db_rate = 1.0;
        let (snapshot, events) = stack.next();
        let reports = judge.judge(&snapshot, &events, &NAMES);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].episode, Some(report.episode.unwrap() + 1));
    }

    #[test]
    fn a_middle_component_five_times_slower_is_the_only_root_and_its_caller_is_affected() {
        for n in [100, 1_000] {
            let mut stack = Stack::new(9, n, 0.01);
            let mut judge = judge();
            for _ in 0..60 {
                let (snapshot, events) = stack.next();
                assert!(judge.judge(&snapshot, &events, &NAMES).is_empty());
            }
            stack.self_ms[1] = 25.0;
            let (snapshot, events) = stack.next();
            let reports = judge.judge(&snapshot, &events, &NAMES);
            assert_eq!(reports.len(), 1, "{reports:?}");
            let report = &reports[0];
            let roots: Vec<&str> = report.roots.iter().map(|r| r.component.as_str()).collect();
            assert_eq!(roots, ["auth"]);
            assert_eq!(report.kind, DetectionKind::OwnLatencyP50);
            let affected: Vec<&[String]> =
                report.affected.iter().map(|a| a.path.as_slice()).collect();
            assert_eq!(affected, [["api".to_owned(), "auth".to_owned()]]);
        }
    }

    #[test]
    fn the_deepest_component_slower_is_one_report_naming_it() {
        let mut stack = Stack::new(11, 100, 0.01);
        let mut judge = judge();
        for _ in 0..60 {
            let (snapshot, events) = stack.next();
            assert!(judge.judge(&snapshot, &events, &NAMES).is_empty());
        }
        stack.self_ms[2] = 25.0;
        let mut reports = Vec::new();
        for _ in 0..5 {
            let (snapshot, events) = stack.next();
            reports.extend(judge.judge(&snapshot, &events, &NAMES));
        }
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].roots[0].component, "db");
        assert_eq!(reports[0].affected.len(), 2);
    }

    #[test]
    fn only_echoed_failures_or_only_a_longer_total_latency_never_make_a_root() {
        let mut stack = Stack::new(5, 1_000, 0.01);
        let mut judge = judge();
        for _ in 0..60 {
            let (snapshot, events) = stack.next();
            judge.judge(&snapshot, &events, &NAMES);
        }
        let (mut snapshot, events) = stack.next();
        // auth: half its requests fail, all of them echoes; api twice as
        // slow in total, its own work unchanged.
        let auth = &mut snapshot.components[1];
        auth.propagated_failed = 500;
        auth.failed = auth.own_failed + 500;
        auth.succeeded = 1_000 - auth.failed;
        let api = &mut snapshot.components[0];
        api.p50_ms = api.p50_ms.map(|ms| ms * 4.0);
        assert!(judge.judge(&snapshot, &events, &NAMES).is_empty());
    }

    #[test]
    fn baselines_do_not_learn_during_an_episode() {
        let (mut judge, mut stack, _) = db_fails_at(1.0, 100);
        // A long blackout: db stays the root, never learned as normal.
        for _ in 0..200 {
            let (snapshot, events) = stack.next();
            assert!(judge.judge(&snapshot, &events, &NAMES).is_empty());
        }
        assert!(judge.episodes[0].is_open());
        assert!(judge.baselines["db"].error_rate().unwrap() < 0.05);
    }
}
