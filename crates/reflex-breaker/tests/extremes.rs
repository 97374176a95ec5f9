//! Extreme settings: very long windows and durations, the largest and
//! smallest counts and rates. Each is either refused by `build()` with a
//! `ConfigError`, or works as configured; none panics a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use reflex_breaker::{CircuitBreakBuilder, CircuitBreakLayer, MAX_PROBES, MAX_WINDOW_CALLS};
use reflex_core::{BoxError, BreakerState, RejectKind, Rejected};
use reflex_tests::support::block_on_paused;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

const DAY: Duration = Duration::from_secs(86_400);

/// Far more nanoseconds than a `u64` holds: 2⁵⁵ s is 2⁶⁴ × 5⁹ ns, about a
/// billion years.
const BILLION_YEARS: Duration = Duration::from_secs(1 << 55);

/// A service that fails when asked to, counting the calls that reach it.
fn counted(
    reached: Arc<AtomicUsize>,
) -> impl Service<bool, Response = u32, Error = BoxError> + Clone {
    service_fn(move |fail: bool| {
        reached.fetch_add(1, Ordering::Relaxed);
        async move {
            if fail {
                Err::<u32, BoxError>("down".into())
            } else {
                Ok(7)
            }
        }
    })
}

/// A breaker tripping at a 50% failure rate over a time window of `length`
/// in one bucket, once two calls are in it.
fn one_bucket_window(length: Duration) -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .failure_rate(0.5)
        .time_window(length, 1)
        .minimum_calls(2)
}

// === long windows and durations ===

#[tokio::test(start_paused = true)]
async fn a_time_window_of_a_billion_years_counts_calls_without_panicking() {
    let layer = one_bucket_window(BILLION_YEARS).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(counted(Arc::default()));
    for _ in 0..2 {
        assert!(svc.ready().await.unwrap().call(true).await.is_err());
    }
    assert_eq!(handle.state(), BreakerState::Open, "two failures of two");
}

#[tokio::test(start_paused = true)]
async fn a_time_window_longer_than_a_u64_of_nanoseconds_still_holds_a_call_of_two_days_ago() {
    // A billion years and a day: truncated to 64 bits of nanoseconds, that
    // window would be one day long.
    let layer = one_bucket_window(BILLION_YEARS + DAY).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(counted(Arc::default()));
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    advance(2 * DAY).await;
    assert_eq!(
        handle.metrics().calls,
        1,
        "the failure is still in the window"
    );
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    assert_eq!(handle.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_of_many_days_forgets_a_call_only_once_its_days_are_over() {
    // 30 days in 30 buckets of a day.
    let layer = CircuitBreakLayer::builder()
        .failure_rate(0.5)
        .time_window(30 * DAY, 30)
        .minimum_calls(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(counted(Arc::default()));
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    advance(28 * DAY).await;
    assert_eq!(handle.metrics().calls, 1, "28 days later it still counts");
    advance(3 * DAY).await;
    assert_eq!(handle.metrics().calls, 0, "31 days later it is gone");
}

#[tokio::test(start_paused = true)]
async fn an_open_duration_of_duration_max_refuses_with_a_saturated_retry_after() {
    let layer = CircuitBreakLayer::builder()
        .component("db")
        .consecutive_failures(1)
        .open_duration(Duration::MAX)
        .open_backoff(2.0, Duration::MAX)
        .half_open_max_wait(Duration::MAX)
        .slow_calls(1.0, Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let reached = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(counted(reached.clone()));
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    assert_eq!(handle.state(), BreakerState::Open);
    advance(365 * DAY).await;
    let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
    let rejected = Rejected::find(&*err).expect("still open a year later");
    assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
    let retry_after = rejected.retry_after().expect("open for a known time");
    assert!(
        retry_after > 500 * 365 * DAY,
        "open for centuries more: {retry_after:?}"
    );
    assert_eq!(
        reached.load(Ordering::Relaxed),
        1,
        "only the failure got through"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_duration_of_u64_max_nanoseconds_still_tells_the_caller_when_to_retry() {
    // 2⁶³ s is past u64::MAX ns: the open deadline saturates there, and the
    // time left must not read as "unknown".
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1 << 63))
        .open_backoff(f64::MAX, Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(counted(Arc::default()));
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
    let retry_after = Rejected::find(&*err)
        .unwrap()
        .retry_after()
        .expect("open for a known time");
    assert!(retry_after > 500 * 365 * DAY, "{retry_after:?}");
    assert_eq!(handle.state(), BreakerState::Open);
}

// === every setter, at its extremes ===

/// Counts at and around every edge, the valid ones more often.
fn extreme_count() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0),
        3 => Just(1),
        1 => Just(2),
        1 => Just(MAX_PROBES),
        1 => Just(MAX_PROBES + 1),
        1 => Just(MAX_WINDOW_CALLS + 1),
        1 => Just(u32::MAX),
        3 => 1u32..8,
        1 => any::<u32>(),
    ]
}

/// Durations at and around every edge: zero, a nanosecond, what a `u64` of
/// nanoseconds holds, past it, `Duration::MAX`.
fn extreme_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        2 => Just(Duration::from_nanos(1)),
        1 => Just(Duration::from_millis(1)),
        2 => Just(Duration::from_secs(1)),
        1 => Just(DAY),
        1 => Just(Duration::from_nanos(u64::MAX)),
        1 => Just(Duration::from_secs(u64::MAX)),
        1 => Just(BILLION_YEARS),
        1 => Just(BILLION_YEARS + DAY),
        2 => Just(Duration::MAX),
        1 => (0u64..10_000).prop_map(Duration::from_millis),
        1 => any::<u64>().prop_map(Duration::from_nanos),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Rates in and out of (0, 1], and the numbers that are not.
fn extreme_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(0.0),
        1 => Just(-0.0),
        3 => Just(1.0),
        3 => Just(0.5),
        1 => Just(-1.0),
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(1.0 + f64::EPSILON),
        1 => Just(f64::MAX),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => any::<f64>(),
    ]
}

/// Backoff factors: 1 and above are valid, if finite.
fn extreme_factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => Just(1.0),
        3 => Just(2.0),
        2 => Just(f64::MAX),
        1 => Just(0.5),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => any::<f64>(),
    ]
}

/// Time windows: any length and bucket count, and the lengths whose
/// buckets are a multiple of 2⁶⁴ ns (zero when truncated to 64 bits).
fn extreme_time_window() -> impl Strategy<Value = (Duration, u32)> {
    prop_oneof![
        (extreme_duration(), extreme_count()),
        (1u64..16).prop_map(|k| (Duration::from_secs(k << 55), 1)),
        (0u32..3).prop_map(|b| (Duration::from_secs(1 << 57), 1 << b)),
        (1u32..1001).prop_map(|b| (Duration::MAX, b)),
    ]
}

/// One setter of the builder, called with an extreme value.
#[derive(Debug, Clone, Copy)]
enum Setting {
    ConsecutiveFailures(u32),
    FailureRate(f64),
    SlowCalls(f64, Duration),
    CountWindow(u32),
    TimeWindow(Duration, u32),
    MinimumCalls(u32),
    OpenDuration(Duration),
    OpenBackoff(f64, Duration),
    HalfOpenProbes(u32),
    ProbeSuccesses(u32),
    HalfOpenMaxWait(Duration),
}

impl Setting {
    fn apply(self, b: CircuitBreakBuilder) -> CircuitBreakBuilder {
        match self {
            Self::ConsecutiveFailures(n) => b.consecutive_failures(n),
            Self::FailureRate(rate) => b.failure_rate(rate),
            Self::SlowCalls(rate, duration) => b.slow_calls(rate, duration),
            Self::CountWindow(calls) => b.count_window(calls),
            Self::TimeWindow(length, buckets) => b.time_window(length, buckets),
            Self::MinimumCalls(calls) => b.minimum_calls(calls),
            Self::OpenDuration(duration) => b.open_duration(duration),
            Self::OpenBackoff(factor, cap) => b.open_backoff(factor, cap),
            Self::HalfOpenProbes(probes) => b.half_open_probes(probes),
            Self::ProbeSuccesses(successes) => b.probe_successes(successes),
            Self::HalfOpenMaxWait(wait) => b.half_open_max_wait(wait),
        }
    }
}

/// Each setter called or not, in the builder's order: each one time in
/// three (enough of the settings build for their calls to be tried), a
/// time window one time in two.
fn settings() -> impl Strategy<Value = Vec<Setting>> {
    fn maybe<T: std::fmt::Debug + 'static>(
        value: impl Strategy<Value = T> + 'static,
        setting: fn(T) -> Setting,
    ) -> BoxedStrategy<Option<Setting>> {
        prop::option::weighted(0.35, value.prop_map(setting)).boxed()
    }
    vec![
        maybe(extreme_count(), Setting::ConsecutiveFailures),
        maybe(extreme_rate(), Setting::FailureRate),
        maybe((extreme_rate(), extreme_duration()), |(rate, duration)| {
            Setting::SlowCalls(rate, duration)
        }),
        // Count windows up to the largest allowed are valid and take a
        // byte a call: the large valid ones are left to other tests.
        maybe(
            prop_oneof![
                Just(0),
                Just(MAX_WINDOW_CALLS + 1),
                Just(u32::MAX),
                1u32..64,
            ],
            Setting::CountWindow,
        ),
        prop::option::weighted(
            0.5,
            extreme_time_window()
                .prop_map(|(length, buckets)| Setting::TimeWindow(length, buckets)),
        )
        .boxed(),
        maybe(extreme_count(), Setting::MinimumCalls),
        maybe(extreme_duration(), Setting::OpenDuration),
        maybe((extreme_factor(), extreme_duration()), |(factor, cap)| {
            Setting::OpenBackoff(factor, cap)
        }),
        maybe(extreme_count(), Setting::HalfOpenProbes),
        maybe(extreme_count(), Setting::ProbeSuccesses),
        maybe(extreme_duration(), Setting::HalfOpenMaxWait),
    ]
    .prop_map(|settings| settings.into_iter().flatten().collect())
}

/// A builder guarding "db" with `settings` applied in order.
fn builder(settings: &[Setting]) -> CircuitBreakBuilder {
    settings.iter().fold(
        CircuitBreakLayer::builder().component("db"),
        |b, setting| setting.apply(b),
    )
}

/// One step of a run: a call (failing or not, taking some time), or the
/// clock moving on.
#[derive(Debug, Clone, Copy)]
enum Step {
    Call {
        key: Option<u8>,
        fail: bool,
        latency: Duration,
    },
    Wait(Duration),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let call = (
        prop::option::of(0u8..4),
        prop::bool::weighted(0.7),
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(Duration::from_secs(1)),
        ],
    )
        .prop_map(|(key, fail, latency)| Step::Call { key, fail, latency });
    // The paused clock itself cannot go past what a std `Instant` holds:
    // waits stay within centuries.
    let wait = prop_oneof![
        Just(Duration::from_nanos(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(30)),
        Just(DAY),
        Just(300 * 365 * DAY),
    ]
    .prop_map(Step::Wait);
    prop::collection::vec(prop_oneof![4 => call, 1 => wait], 1..40)
}

type Request = (Option<u8>, bool, Duration);

/// The inner service: answers `fail` after `latency`, counting the calls
/// that reach it.
fn inner(
    reached: Arc<AtomicUsize>,
) -> impl Service<Request, Response = u32, Error = BoxError> + Clone {
    service_fn(move |(_, fail, latency): Request| {
        reached.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(latency).await;
            if fail {
                Err::<u32, BoxError>("down".into())
            } else {
                Ok(7)
            }
        }
    })
}

/// Runs `steps` through `svc` (a breaker around [`inner`]), checking that
/// each call ends in exactly one outcome: the inner service's answer, the
/// call having reached it once, or a `CircuitOpen` refusal naming "db", the
/// call not having reached it. After each call, `probes_out` (the probes in
/// flight) must be back to zero.
async fn run<S>(
    svc: &mut S,
    steps: &[Step],
    reached: &AtomicUsize,
    probes_out: impl Fn() -> u32,
) -> Result<(), TestCaseError>
where
    S: Service<Request, Response = u32, Error = BoxError>,
{
    for &step in steps {
        let (key, fail, latency) = match step {
            Step::Wait(wait) => {
                advance(wait).await;
                continue;
            }
            Step::Call { key, fail, latency } => (key, fail, latency),
        };
        let before = reached.load(Ordering::Relaxed);
        let ready = svc
            .ready()
            .await
            .map_err(|err| TestCaseError::fail(format!("not ready: {err}")))?;
        let result = ready.call((key, fail, latency)).await;
        let after = reached.load(Ordering::Relaxed);
        match result {
            Ok(answer) => {
                prop_assert!(!fail, "a failing call succeeded");
                prop_assert_eq!(answer, 7);
                prop_assert_eq!(after, before + 1);
            }
            Err(err) => match Rejected::find(&*err) {
                Some(rejected) => {
                    prop_assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
                    prop_assert_eq!(rejected.component().as_str(), "db");
                    prop_assert_eq!(after, before, "a refused call reached the service");
                }
                None => {
                    prop_assert!(fail, "an error the service did not give: {}", err);
                    prop_assert_eq!(err.to_string(), "down");
                    prop_assert_eq!(after, before + 1);
                }
            },
        }
        prop_assert_eq!(probes_out(), 0, "a finished call kept its probe slot");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_setting_is_refused_by_build_or_gives_every_call_exactly_one_outcome(
        settings in settings(),
        steps in steps(),
    ) {
        let Ok(layer) = builder(&settings).build() else {
            // Refused with a ConfigError (its fields are checked elsewhere).
            return Ok(());
        };
        block_on_paused(async {
            let handle = layer.handle();
            let reached = Arc::new(AtomicUsize::new(0));
            let mut svc = layer.layer(inner(reached.clone()));
            run(&mut svc, &steps, &reached, || handle.metrics().probes_in_flight).await?;
            let _ = handle.metrics();
            Ok::<_, TestCaseError>(())
        })?;
    }

    #[test]
    fn any_keyed_setting_is_refused_by_build_or_gives_every_call_exactly_one_outcome(
        settings in settings(),
        max_keys in prop_oneof![Just(0usize), Just(1), Just(2), Just(usize::MAX), 0usize..8],
        steps in steps(),
    ) {
        let Ok(layer) = builder(&settings)
            .key(|(key, _, _): &Request| *key).max_keys(max_keys).build()
        else {
            return Ok(());
        };
        block_on_paused(async {
            let handle = layer.handle();
            let reached = Arc::new(AtomicUsize::new(0));
            let mut svc = layer.layer(inner(reached.clone()));
            let probes_out = || {
                handle
                    .keys()
                    .iter()
                    .filter_map(|key| handle.get(key))
                    .chain([handle.default_breaker()])
                    .map(|breaker| breaker.metrics().probes_in_flight)
                    .sum()
            };
            run(&mut svc, &steps, &reached, probes_out).await?;
            prop_assert!(handle.len() <= max_keys);
            Ok::<_, TestCaseError>(())
        })?;
    }
}
