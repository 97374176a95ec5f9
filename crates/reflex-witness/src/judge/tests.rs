//! The judgement over a simulated api -> auth -> db stack: no false alarm
//! on healthy noise, one report naming the root of a fault, episodes that
//! close.

use super::*;
use crate::events::FAILED_BELOW;
use crate::report::{Evidence, LinkKind};
use crate::state::ComponentState;

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
        requests: n,
        throughput: n as f64,
        succeeded: n - failed,
        failed,
        own_failed: own,
        propagated_failed: propagated,
        error_rate: failed as f64 / n as f64,
        p50_ms: Some(total_p50),
        p90_ms: Some(total_p50 * 1.9),
        p99_ms: Some(total_p50 * 3.2 * p99_noise),
        self_p50_ms: Some(self_p50),
        self_p90_ms: Some(self_p50 * 1.9),
        self_p99_ms: Some(self_p50 * 3.2 * p99_noise),
        ..ComponentState::idle(name)
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

impl Stack {
    /// The next cycle, judged by `judge`: its snapshot and the reports.
    fn judged(&mut self, judge: &mut Judge) -> (Snapshot, Vec<Report>) {
        let (snapshot, events) = self.next();
        let reports = judge.judge(&snapshot, &events, &NAMES);
        (snapshot, reports)
    }

    /// `cycles` cycles judged by `judge`, none of which may report.
    fn quiet(&mut self, judge: &mut Judge, cycles: usize, why: &str) {
        for _ in 0..cycles {
            let (_, reports) = self.judged(judge);
            assert!(reports.is_empty(), "{why}: {reports:?}");
        }
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
            stack.quiet(&mut judge, 600, &format!("{n}/cycle at {noise}"));
            assert!(judge.episodes.is_empty());
        }
    }
}

/// Warms a judge on `stack`, then turns db's own error rate to `rate`:
/// the report of the cycle that opens the episode.
fn db_fails_at(rate: f64, n: u64) -> (Judge, Stack, Report) {
    let mut stack = Stack::new(42, n, 0.01);
    let mut judge = judge();
    stack.quiet(&mut judge, 120, "healthy");
    stack.db_rate = rate;
    let (_, mut reports) = stack.judged(&mut judge);
    assert_eq!(reports.len(), 1, "{reports:?}");
    stack.quiet(&mut judge, 5, "one report per episode");
    (judge, stack, reports.remove(0))
}

#[test]
fn db_failing_a_quarter_or_all_of_its_calls_is_one_report_naming_db_with_auth_and_api_affected() {
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
    stack.judged(&mut judge);
    assert!(
        judge.episodes[0].is_open(),
        "one healthy cycle is not enough"
    );
    let (snapshot, _) = stack.judged(&mut judge);
    assert_eq!(judge.closed, vec![report.episode.unwrap()]);
    assert_eq!(judge.episodes[0].ended_ms, Some(snapshot.observed_at_ms));
    // A new fault later is a new episode with its own report.
    stack.db_rate = 1.0;
    let (_, reports) = stack.judged(&mut judge);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].episode, Some(report.episode.unwrap() + 1));
}

#[test]
fn a_middle_component_five_times_slower_is_the_only_root_and_its_caller_is_affected() {
    for n in [100, 1_000] {
        let mut stack = Stack::new(9, n, 0.01);
        let mut judge = judge();
        stack.quiet(&mut judge, 60, "healthy");
        stack.self_ms[1] = 25.0;
        let (_, reports) = stack.judged(&mut judge);
        assert_eq!(reports.len(), 1, "{reports:?}");
        let report = &reports[0];
        let roots: Vec<&str> = report.roots.iter().map(|r| r.component.as_str()).collect();
        assert_eq!(roots, ["auth"]);
        assert_eq!(report.kind, DetectionKind::OwnLatencyP50);
        let affected: Vec<&[String]> = report.affected.iter().map(|a| a.path.as_slice()).collect();
        assert_eq!(affected, [["api".to_owned(), "auth".to_owned()]]);
    }
}

#[test]
fn the_deepest_component_slower_is_one_report_naming_it() {
    let mut stack = Stack::new(11, 100, 0.01);
    let mut judge = judge();
    stack.quiet(&mut judge, 60, "healthy");
    stack.self_ms[2] = 25.0;
    let mut reports = Vec::new();
    for _ in 0..5 {
        reports.extend(stack.judged(&mut judge).1);
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
        stack.judged(&mut judge);
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
    stack.quiet(&mut judge, 200, "the same episode");
    assert!(judge.episodes[0].is_open());
    assert!(judge.baselines["db"].error_rate().unwrap() < 0.05);
}
