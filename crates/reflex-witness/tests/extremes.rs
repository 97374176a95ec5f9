//! Extreme settings: every builder setter fed 0, the smallest step, the
//! largest value and anything between; then the witness started on a
//! paused clock, one request made and its runtime run. Either `start()`
//! refuses with a `ConfigError` naming the setting, or the request ends
//! exactly once and nothing panics (the runtime's task included).

use std::time::Duration;

use proptest::prelude::*;
use reflex_core::{BoxError, ConfigError, ConfigErrorKind};
use reflex_witness::{
    Clock, EdgeReflex, Judgement, MAX_COMPONENTS, MAX_HISTORY, StartError, Witness,
};
use tower::{Layer, ServiceExt, service_fn};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::from_nanos(1)),
        1 => Just(Duration::from_nanos(999_999)),
        1 => Just(Duration::from_millis(1)),
        1 => Just(Duration::MAX),
        1 => Just(Duration::new(u64::MAX, 0)),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        6 => (0u64..10_000).prop_map(Duration::from_millis),
    ]
}

fn count() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0),
        1 => Just(1),
        1 => Just(MAX_COMPONENTS),
        1 => Just(MAX_COMPONENTS + 1),
        1 => Just(MAX_HISTORY),
        1 => Just(MAX_HISTORY + 1),
        1 => Just(usize::MAX),
        1 => any::<usize>(),
        12 => 1usize..100,
    ]
}

fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(1.0),
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(f64::MAX),
        1 => any::<f64>(),
        9 => 1.0f64..10.0,
    ]
}

#[derive(Debug, Clone)]
struct Settings {
    interval: Duration,
    history: usize,
    components: usize,
    reports: usize,
    chain: usize,
    /// `(latency_factor, warmup, min_requests)`.
    judgement: Option<(f64, u32, u64)>,
    patterns: Option<(u64, f64)>,
    /// `(throttle_k, blackout_at)`.
    reflex: Option<(f64, f64)>,
    clock: Clock,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        (duration(), count(), count(), count(), count()),
        proptest::option::of((factor(), any::<u32>(), any::<u64>())),
        proptest::option::of((
            prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
            factor(),
        )),
        proptest::option::of((factor(), 0.0f64..1.5)),
        prop_oneof![Just(Clock::Tokio), Just(Clock::Cpu)],
    )
        .prop_map(
            |(
                (interval, history, components, reports, chain),
                judgement,
                patterns,
                reflex,
                clock,
            )| {
                Settings {
                    interval,
                    history,
                    components,
                    reports,
                    chain,
                    judgement,
                    patterns,
                    reflex,
                    clock,
                }
            },
        )
}

/// Whether `err` names a setting these settings got wrong.
fn refused_for_cause(settings: &Settings, err: &ConfigError) -> bool {
    let bad_factor = |f: f64| !(f.is_finite() && f > 1.0);
    match (err.setting(), err.kind()) {
        ("interval", ConfigErrorKind::Zero) => settings.interval.is_zero(),
        ("interval", ConfigErrorKind::OutOfRange) => settings.interval < Duration::from_millis(1),
        ("history_limit", ConfigErrorKind::Zero) => settings.history == 0,
        ("history_limit", ConfigErrorKind::OutOfRange) => settings.history > MAX_HISTORY,
        ("max_components", ConfigErrorKind::Zero) => settings.components == 0,
        ("max_components", ConfigErrorKind::OutOfRange) => settings.components > MAX_COMPONENTS,
        ("report_limit", ConfigErrorKind::Zero) => settings.reports == 0,
        ("chain_limit", ConfigErrorKind::Zero) => settings.chain == 0,
        ("judgement.latency_factor", ConfigErrorKind::OutOfRange) => {
            settings.judgement.is_some_and(|(f, _, _)| bad_factor(f))
        }
        ("judgement.warmup", ConfigErrorKind::Zero) => {
            settings.judgement.is_some_and(|(_, w, _)| w == 0)
        }
        ("judgement.min_requests", ConfigErrorKind::Zero) => {
            settings.judgement.is_some_and(|(_, _, m)| m == 0)
        }
        ("call_patterns", ConfigErrorKind::Zero) => settings.patterns.is_some_and(|(s, _)| s == 0),
        ("call_patterns", ConfigErrorKind::OutOfRange) => {
            settings.patterns.is_some_and(|(_, f)| bad_factor(f))
        }
        _ => false,
    }
}

/// Whether every setting is one `start()` must accept.
fn valid(settings: &Settings) -> bool {
    let good_factor = |f: f64| f.is_finite() && f > 1.0;
    settings.interval >= Duration::from_millis(1)
        && (1..=MAX_HISTORY).contains(&settings.history)
        && (1..=MAX_COMPONENTS).contains(&settings.components)
        && settings.reports > 0
        && settings.chain > 0
        && settings
            .judgement
            .is_none_or(|(f, w, m)| good_factor(f) && w > 0 && m > 0)
        && settings
            .patterns
            .is_none_or(|(s, f)| s > 0 && good_factor(f))
}

fn run(settings: &Settings) -> Result<(), TestCaseError> {
    reflex_tests::support::block_on_paused(async {
        let mut builder = Witness::builder()
            .interval(settings.interval)
            .history_limit(settings.history)
            .max_components(settings.components)
            .report_limit(settings.reports)
            .chain_limit(settings.chain)
            .clock(settings.clock)
            .no_judgement();
        if let Some((factor, warmup, min_requests)) = settings.judgement {
            builder = builder.judgement(
                Judgement::default()
                    .latency_factor(factor)
                    .warmup(warmup)
                    .min_requests(min_requests),
            );
        }
        if let Some((settle_after, factor)) = settings.patterns {
            builder = builder.call_patterns(settle_after, factor);
        }
        if let Some((k, blackout_at)) = settings.reflex {
            // A reflex's own settings are checked by its builder.
            match EdgeReflex::builder()
                .throttle_k(k)
                .blackout_at(blackout_at)
                .build()
            {
                Ok(reflex) => builder = builder.reflex(reflex),
                Err(err) => prop_assert!(
                    !(k.is_finite() && k >= 1.0 && blackout_at > 0.0 && blackout_at <= 1.0),
                    "refused a valid reflex: {err}"
                ),
            }
        }
        let witness = match builder.start() {
            Err(StartError::Config(err)) => {
                prop_assert!(refused_for_cause(settings, &err), "refused wrongly: {err}");
                prop_assert!(!valid(settings), "refused valid settings: {err}");
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
            Ok(witness) => witness,
        };
        prop_assert!(valid(settings), "accepted invalid settings");
        let svc = witness
            .layer("api")
            .build()
            .unwrap()
            .layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
        prop_assert_eq!(svc.oneshot(7).await.unwrap(), 7);
        // Let the runtime cycle (or wait its interval out, capped).
        tokio::time::sleep(Duration::from_secs(3)).await;
        prop_assert!(witness.is_running(), "the runtime's task is alive");
        witness.cycle_now();
        let succeeded: u64 = witness
            .history()
            .iter()
            .filter_map(|snapshot| snapshot.component("api"))
            .map(|state| state.succeeded)
            .sum();
        prop_assert_eq!(succeeded, 1, "the request ended once");
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn extreme_settings_are_refused_or_the_witness_runs_and_counts_a_request_once(
        settings in settings(),
    ) {
        run(&settings)?;
    }
}

#[test]
fn the_generator_reaches_valid_and_invalid_settings_alike() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = settings();
    let valid_ones = (0..1000)
        .filter(|_| valid(&strategy.new_tree(&mut runner).unwrap().current()))
        .count();
    assert!(
        (100..900).contains(&valid_ones),
        "{valid_ones} valid of 1000"
    );
}

#[test]
fn the_longest_interval_keeps_the_runtime_alive_and_never_overflows_the_clock() {
    for interval in [
        Duration::MAX,
        Duration::new(u64::MAX, 0),
        Duration::from_secs(1 << 62),
    ] {
        let settings = Settings {
            interval,
            history: 1,
            components: 1,
            reports: 1,
            chain: 1,
            judgement: None,
            patterns: None,
            reflex: None,
            clock: Clock::Tokio,
        };
        run(&settings).unwrap();
    }
}

#[test]
fn intervals_below_a_millisecond_and_histories_beyond_the_ceiling_are_refused() {
    for (builder, setting) in [
        (
            Witness::builder().interval(Duration::from_nanos(1)),
            "interval",
        ),
        (
            Witness::builder().interval(Duration::from_nanos(999_999)),
            "interval",
        ),
        (
            Witness::builder().history_limit(MAX_HISTORY + 1),
            "history_limit",
        ),
        (
            Witness::builder().history_limit(usize::MAX),
            "history_limit",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(
            (err.setting(), err.kind()),
            (setting, ConfigErrorKind::OutOfRange)
        );
    }
    assert!(
        Witness::builder()
            .interval(Duration::from_millis(1))
            .build()
            .is_ok()
    );
    assert!(
        Witness::builder()
            .history_limit(MAX_HISTORY)
            .build()
            .is_ok()
    );
}
