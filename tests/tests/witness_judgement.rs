//! The witness's judgement against issue 14's targets, measured on the
//! simulated system of `reflex_tests::sim` (api → auth → db and api →
//! static, each behind its own default preset, one witness with its
//! defaults, Poisson load, lognormal 5 ms of work per component), on
//! tokio's paused clock.
//!
//! A reduced matrix, for a debug build: every target at 100 and 1 000
//! requests/s over 1.5 to 3 simulated minutes, and at 10 000/s over about
//! 15 s. The full matrix (10 simulated minutes at each rate) is the bench
//! `cargo bench -p reflex-benches --bench judgement`.

use std::time::Duration;

use reflex_tests::sim::{FaultKind, Node, Outcome, Rng, Route, Scenario, run};

const S: Duration = Duration::from_secs(1);

async fn quiet(rate: f64, errors: f64, seconds: u64) {
    let scenario = Scenario::healthy(rate, errors, S * seconds as u32).with_reflex(true);
    run(&scenario).await.quiet().unwrap();
}

fn db_fails(fraction: f64) -> FaultKind {
    FaultKind::Fail {
        node: Node::Db,
        fraction,
    }
}

fn slow(node: Node) -> FaultKind {
    FaultKind::Slow { node, factor: 5.0 }
}

/// `kind` from `at` to the end of a run of `seconds`, reflexes off.
async fn fault(rate: f64, kind: FaultKind, at: u64, seconds: u64) -> Outcome {
    let scenario =
        Scenario::healthy(rate, 0.001, S * seconds as u32).with_fault(kind, S * at as u32, None);
    run(&scenario).await
}

/// One test on tokio's paused clock per row, `name: what it runs;`: the
/// matrices of targets 1 to 3, a row each, so that each run has its name.
macro_rules! paused_tests {
    ($($test:ident: $run:expr;)+) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $test() {
                $run;
            }
        )+
    };
}

// === the harness itself ===

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_run_request_for_request() {
    let scenario = Scenario::healthy(100.0, 0.01, S * 20).with_fault(db_fails(0.25), S * 10, None);
    let (a, b) = (run(&scenario).await, run(&scenario).await);
    assert_eq!(a.seconds, b.seconds);
    assert_eq!(a.reports, b.reports);
    let other = run(&scenario.clone().with_seed(15)).await;
    assert_ne!(a.seconds, other.seconds, "another seed draws otherwise");
}

#[tokio::test(start_paused = true)]
async fn a_blackout_fails_every_call_reaching_db_and_no_other_component_s_work() {
    // Long enough for db's breaker (open 30 s by default) to probe again
    // after the fault.
    let scenario =
        Scenario::healthy(200.0, 0.0, S * 50).with_fault(db_fails(1.0), S * 10, Some(S * 20));
    let out = run(&scenario).await;
    assert_eq!(out.unfinished, 0);
    for (second, counts) in out.seconds.iter().enumerate() {
        let db = counts.node(Node::Db);
        if (10..20).contains(&second) {
            assert_eq!(db.own_failed, db.reached, "second {second}");
        } else {
            assert_eq!(db.own_failed, 0, "second {second}");
        }
        for node in [Node::Api, Node::Auth, Node::Static] {
            assert_eq!(counts.node(node).own_failed, 0, "{node} in second {second}");
        }
    }
    let before = out.window(S, S * 10);
    assert!(before.iter().all(|s| s.route(Route::Main).failed == 0));
    assert!(before.iter().all(|s| s.node(Node::Db).reached > 100));
    assert!(out.first_recovered_ms.is_some_and(|ms| ms >= 20_000));
}

#[tokio::test(start_paused = true)]
async fn the_load_arrives_at_its_rate_and_a_brownout_fails_a_quarter_of_db_s_calls() {
    let scenario = Scenario::healthy(1000.0, 0.0, S * 20).with_fault(db_fails(0.25), S * 10, None);
    let out = run(&scenario).await;
    let expected = 20_000.0;
    assert!(
        (out.requests as f64 - expected).abs() < 4.0 * expected.sqrt(),
        "{} requests",
        out.requests
    );
    let fault = out.window(S * 10, S * 20);
    let reached: u64 = fault.iter().map(|s| s.node(Node::Db).reached).sum();
    let failed: u64 = fault.iter().map(|s| s.node(Node::Db).own_failed).sum();
    let share = failed as f64 / reached as f64;
    assert!((share - 0.25).abs() < 0.02, "{share}");
}

#[test]
fn own_work_is_lognormal_around_its_median() {
    let mut rng = Rng::new(1);
    let mut draws: Vec<f64> = (0..20_001).map(|_| (0.4 * rng.normal()).exp()).collect();
    draws.sort_by(f64::total_cmp);
    let median = draws[10_000];
    assert!((median - 1.0).abs() < 0.02, "median {median}");
    // exp(0.4 · 1.645): the 95th percentile of the lognormal.
    let p95 = draws[19_000];
    assert!((p95 - 1.930).abs() < 0.06, "p95 {p95}");
}

// === target 1: healthy load raises nothing ===

paused_tests! {
    healthy_load_at_100_per_s_with_0_1_percent_errors_gets_no_report_and_no_action:
        quiet(100.0, 0.001, 180).await;
    healthy_load_at_100_per_s_with_1_percent_errors_gets_no_report_and_no_action:
        quiet(100.0, 0.01, 180).await;
    healthy_load_at_1000_per_s_with_0_1_percent_errors_gets_no_report_and_no_action:
        quiet(1000.0, 0.001, 90).await;
    healthy_load_at_1000_per_s_with_1_percent_errors_gets_no_report_and_no_action:
        quiet(1000.0, 0.01, 90).await;
    healthy_load_at_10000_per_s_with_0_1_percent_errors_gets_no_report_and_no_action:
        quiet(10_000.0, 0.001, 15).await;
    healthy_load_at_10000_per_s_with_1_percent_errors_gets_no_report_and_no_action:
        quiet(10_000.0, 0.01, 15).await;
}

// === target 2: the deepest dependency fails ===

const DB_CALLERS: &[Node] = &[Node::Auth, Node::Api];

paused_tests! {
    db_failing_every_call_at_100_per_s_is_one_report_within_2_cycles_naming_db_root_and_its_callers_affected:
        fault(100.0, db_fails(1.0), 120, 130).await.names_root(Node::Db, DB_CALLERS, 2).unwrap();
    db_failing_a_quarter_of_calls_at_100_per_s_is_one_report_within_2_cycles_naming_db_root_and_its_callers_affected:
        fault(100.0, db_fails(0.25), 120, 130).await.names_root(Node::Db, DB_CALLERS, 2).unwrap();
    db_failing_every_call_at_1000_per_s_is_one_report_within_2_cycles_naming_db_root_and_its_callers_affected:
        fault(1000.0, db_fails(1.0), 60, 65).await.names_root(Node::Db, DB_CALLERS, 2).unwrap();
    db_failing_a_quarter_of_calls_at_1000_per_s_is_one_report_within_2_cycles_naming_db_root_and_its_callers_affected:
        fault(1000.0, db_fails(0.25), 60, 65).await.names_root(Node::Db, DB_CALLERS, 2).unwrap();
    db_failing_every_call_at_10000_per_s_is_one_report_within_2_cycles_naming_db_root_and_its_callers_affected:
        fault(10_000.0, db_fails(1.0), 12, 15).await.names_root(Node::Db, DB_CALLERS, 2).unwrap();
    db_failing_a_quarter_of_calls_at_10000_per_s_is_one_report_within_2_cycles_naming_db_root_and_its_callers_affected:
        fault(10_000.0, db_fails(0.25), 12, 15).await.names_root(Node::Db, DB_CALLERS, 2).unwrap();
}

// === target 3: a component's own work slows ===

paused_tests! {
    auth_working_5x_slower_at_100_per_s_is_one_report_naming_auth_alone_with_api_affected:
        fault(100.0, slow(Node::Auth), 120, 130).await.names_root(Node::Auth, &[Node::Api], 3).unwrap();
    auth_working_5x_slower_at_1000_per_s_is_one_report_naming_auth_alone_with_api_affected:
        fault(1000.0, slow(Node::Auth), 60, 70).await.names_root(Node::Auth, &[Node::Api], 3).unwrap();
    db_working_5x_slower_at_100_per_s_is_one_report_naming_db_with_its_callers_affected:
        fault(100.0, slow(Node::Db), 120, 130).await.names_root(Node::Db, DB_CALLERS, 3).unwrap();
    db_working_5x_slower_at_1000_per_s_is_one_report_naming_db_with_its_callers_affected:
        fault(1000.0, slow(Node::Db), 60, 70).await.names_root(Node::Db, DB_CALLERS, 3).unwrap();
}

// === target 4: reflexes on, a blackout ===

#[tokio::test(start_paused = true)]
async fn with_reflexes_a_db_blackout_is_cut_off_within_2_cycles_spares_the_static_route_and_recovers_within_2_cycles_of_a_probe()
 {
    let scenario = Scenario::healthy(100.0, 0.001, S * 180)
        .with_fault(db_fails(1.0), S * 60, Some(S * 90))
        .with_reflex(true);
    run(&scenario).await.blackout_contained().unwrap();
}

// === target 5: reflexes on, a brownout ===

#[tokio::test(start_paused = true)]
async fn with_reflexes_a_25_percent_db_brownout_costs_the_entry_at_most_2_points_and_sends_db_fewer_calls()
 {
    let scenario =
        Scenario::healthy(1000.0, 0.001, S * 80).with_fault(db_fails(0.25), S * 60, None);
    let without = run(&scenario).await;
    let with = run(&scenario.with_reflex(true)).await;
    with.brownout_no_worse_than(&without).unwrap();
}
