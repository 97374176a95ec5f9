//! How the witness judges a simulated system (issue 14): the full scenario
//! matrix of `reflex_tests::sim`, on tokio's paused clock, and a table of
//! what the witness reported and did and what happened to the traffic.
//! Run with `cargo bench -p reflex-benches --bench judgement`; add words
//! after `--` to run only the scenarios whose name holds one of them
//! (`-- healthy`, `-- brownout`).
//!
//! The system: api → auth → db (main route, 90% of requests) and api →
//! static (static route, 10%), each behind its own default preset, one
//! witness with its defaults (1 s cycle). Each component works 5 ms
//! (lognormal, sigma 0.4) and fails its own work with the scenario's error
//! rate. Poisson arrivals, the same seed everywhere: a scenario with and
//! without reflexes sees the same requests and the same draws.
//!
//! The matrix:
//! - **healthy**: 100, 1 000 and 10 000 requests/s, 0.1% and 1% errors,
//!   10 simulated minutes, reflexes off and on. Target: no report, no
//!   action.
//! - **db down / db 25%**: db fails every call, or a quarter of them, from
//!   minute 3 to minute 4, at each rate, 0.1% errors, reflexes off. Target:
//!   one report within 2 cycles naming db as root, auth and api affected.
//! - **auth 5x / db 5x**: auth's (or db's) own work 5 times slower from
//!   minute 3 to minute 4, reflexes off. Target: one report within 3 cycles
//!   naming it alone as root, its callers affected.
//! - **blackout**: db down from minute 3 to 3:30, reflexes on (and off, for
//!   comparison), run to minute 5. Target: calls reaching db fall by 90%
//!   within 2 cycles, the static route keeps 99.9%, db's traffic is back
//!   within 2 cycles of its first success.
//! - **brownout**: db fails a quarter of its calls from minute 3 to minute
//!   4, reflexes on and off. Target: with reflexes, entry success at least
//!   that without, less 2 points, and fewer calls reach db.
//!
//! Columns: requests sent; reports (first report's delay after the fault,
//! its kind, roots, affected); actions; entry success (both routes) before,
//! during and after the fault; the static route unharmed by layers during
//! the fault; calls reaching db per second before, during, after; the
//! target's verdict; wall time of the run.

#![allow(missing_docs)] // a bench binary: nothing public

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reflex_tests::sim::{FaultKind, Node, Outcome, Scenario, run_paused};
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);

/// What a scenario is checked against.
#[derive(Debug, Clone, Copy)]
enum Target {
    Quiet,
    Root {
        root: Node,
        affected: &'static [Node],
        cycles: u32,
    },
    Blackout,
    /// Against the scenario of the same name with reflexes off.
    Brownout,
    /// A comparison run: no target of its own.
    None,
}

struct Case {
    scenario: Scenario,
    target: Target,
}

fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    let rates = [100.0, 1_000.0, 10_000.0];
    for rate in rates {
        for errors in [0.001, 0.01] {
            for reflex in [false, true] {
                cases.push(Case {
                    scenario: Scenario::healthy(rate, errors, 10 * MINUTE)
                        .named(format!("healthy {rate}/s {}%", errors * 100.0))
                        .with_reflex(reflex),
                    target: Target::Quiet,
                });
            }
        }
    }
    let db_callers: &'static [Node] = &[Node::Auth, Node::Api];
    let auth_callers: &'static [Node] = &[Node::Api];
    for rate in rates {
        let base = Scenario::healthy(rate, 0.001, 5 * MINUTE);
        let fault = |kind, name: &str| {
            base.clone().named(format!("{name} {rate}/s")).with_fault(
                kind,
                3 * MINUTE,
                Some(4 * MINUTE),
            )
        };
        let down = FaultKind::Fail {
            node: Node::Db,
            fraction: 1.0,
        };
        let quarter = FaultKind::Fail {
            node: Node::Db,
            fraction: 0.25,
        };
        for (kind, name) in [(down, "db down"), (quarter, "db 25%")] {
            cases.push(Case {
                scenario: fault(kind, name),
                target: Target::Root {
                    root: Node::Db,
                    affected: db_callers,
                    cycles: 2,
                },
            });
        }
        for (node, affected, name) in [
            (Node::Auth, auth_callers, "auth 5x"),
            (Node::Db, db_callers, "db 5x"),
        ] {
            cases.push(Case {
                scenario: fault(FaultKind::Slow { node, factor: 5.0 }, name),
                target: Target::Root {
                    root: node,
                    affected,
                    cycles: 3,
                },
            });
        }
        for reflex in [false, true] {
            cases.push(Case {
                scenario: base
                    .clone()
                    .named(format!("blackout {rate}/s"))
                    .with_fault(down, 3 * MINUTE, Some(3 * MINUTE + MINUTE / 2))
                    .with_reflex(reflex),
                target: if reflex {
                    Target::Blackout
                } else {
                    Target::None
                },
            });
        }
        for reflex in [false, true] {
            cases.push(Case {
                scenario: fault(quarter, "brownout").with_reflex(reflex),
                target: if reflex {
                    Target::Brownout
                } else {
                    Target::None
                },
            });
        }
    }
    cases
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else {
        format!("{:.1}", 100.0 * x)
    }
}

fn verdict(
    case: &Case,
    out: &Outcome,
    all: &[(usize, Outcome, Duration)],
    cases: &[Case],
) -> String {
    let checked = match case.target {
        Target::Quiet => out.quiet(),
        Target::Root {
            root,
            affected,
            cycles,
        } => out.names_root(root, affected, cycles),
        Target::Blackout => out.blackout_contained(),
        Target::Brownout => {
            let without = all.iter().find(|(i, _, _)| {
                let other = &cases[*i].scenario;
                other.name == case.scenario.name && !other.reflex
            });
            match without {
                Some((_, without, _)) => out.brownout_no_worse_than(without),
                None => Err("the run without reflexes was filtered out".to_owned()),
            }
        }
        Target::None => return "(comparison)".to_owned(),
    };
    match checked {
        Ok(()) => "PASS".to_owned(),
        Err(why) => {
            // The scenario's name opens every message: drop it.
            let why = why
                .strip_prefix(&format!("{}: ", case.scenario.name))
                .unwrap_or(&why)
                .to_owned();
            format!("FAIL {why}")
        }
    }
}

fn row(case: &Case, out: &Outcome, wall: Duration, verdict: &str) -> String {
    let fault_ms = case
        .scenario
        .fault
        .map_or(0, |f| u64::try_from(f.at.as_millis()).unwrap_or(u64::MAX));
    let first = out.reports.iter().find(|r| r.at_ms >= fault_ms);
    let before = out.reports.iter().filter(|r| r.at_ms < fault_ms).count();
    let reports = match (case.scenario.fault, first) {
        (None, _) => format!("{}", out.reports.len()),
        (Some(_), None) => format!("{before} before, none after"),
        (Some(_), Some(first)) => format!(
            "{before} before, {} after; first +{} ms {} roots {:?} affected {:?}",
            out.reports.len() - before,
            first.at_ms - fault_ms,
            first.kind,
            first.roots,
            first.affected
        ),
    };
    let mut entry = Vec::new();
    let mut db = Vec::new();
    let mut statics = "-".to_owned();
    for phase in out.phases() {
        let figures = out.figures(phase);
        entry.push(pct(figures.entry_success));
        db.push(format!("{:.0}", figures.db_reached_per_s));
        if phase.name == "fault" {
            statics = pct(figures.static_unharmed);
        }
    }
    format!(
        "{:<22} {:<6} {:>8} | reports {} | actions {} | entry ok % {} | static unharmed % {} | db calls/s {} | {} | {:.1} s",
        case.scenario.name,
        if case.scenario.reflex {
            "reflex"
        } else {
            "off"
        },
        out.requests,
        reports,
        out.actions.len(),
        entry.join(" / "),
        statics,
        db.join(" / "),
        verdict,
        wall.as_secs_f64(),
    )
}

fn main() {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let cases: Vec<Case> = matrix()
        .into_iter()
        .filter(|c| words.is_empty() || words.iter().any(|w| c.scenario.name.contains(w.as_str())))
        .collect();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    // One scenario per core at a time, each on its own paused runtime.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { return };
                    let wall = Instant::now();
                    let out = run_paused(&case.scenario);
                    let wall = wall.elapsed();
                    eprintln!(
                        "ran {} ({}) in {:.1} s",
                        case.scenario.name,
                        case.scenario.reflex,
                        wall.as_secs_f64()
                    );
                    done.lock().expect("no panic").push((i, out, wall));
                }
            });
        }
    });
    let mut done = done.into_inner().expect("no panic");
    done.sort_by_key(|(i, _, _)| *i);
    println!(
        "\nscenario               reflex requests | reports | actions | entry ok % healthy / fault / recovered | static unharmed % in fault | db calls/s healthy / fault / recovered | target | wall"
    );
    let mut passed = 0;
    let mut targets = 0;
    for (i, out, wall) in &done {
        let case = &cases[*i];
        let verdict = verdict(case, out, &done, &cases);
        if !matches!(case.target, Target::None) {
            targets += 1;
            passed += usize::from(verdict == "PASS");
        }
        println!("{}", row(case, out, *wall, &verdict));
    }
    println!(
        "\n{passed} of {targets} targets met; {} scenarios in {:.0} s",
        done.len(),
        started.elapsed().as_secs_f64()
    );
}
