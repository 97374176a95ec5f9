//! No configured or received value panics a request: every builder setter
//! fed extreme durations, counts and ratios either refuses at `build()` or
//! gives a layer whose call ends with exactly one outcome, on a paused
//! clock, whatever the inner service answers (a failure then a success, a
//! delay asked for, an open breaker's wait).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use reflex_core::{BoxError, Component, RejectKind, Rejected};
use reflex_retry::{Decision, Jitter, Policy, RetryBuilder, RetryLayer, TimedOut};
use tower::{Layer, ServiceExt, service_fn};

mod common;
use common::jitter;

/// Durations at and around every edge a setter has.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_nanos(10)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(60)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(2), Just(u32::MAX), any::<u32>()]
}

/// Multipliers and ratios: the edges of their ranges, and every f64 oddity.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(2.0),
        Just(1000.0),
        Just(1_000.000_001),
        Just(-1.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::EPSILON),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        any::<f64>(),
    ]
}

/// The budget setting: left alone, `no_budget()`, or `budget(..)`.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Default,
    Off,
    Set(f64, u32, Duration),
}

/// One value (or none: the default) for every setter.
#[derive(Debug, Clone)]
struct Settings {
    max_attempts: Option<u32>,
    backoff: Option<(Duration, f64)>,
    max_delay: Option<Duration>,
    jitter: Option<Jitter>,
    delay_fn: Option<Duration>,
    budget: Budget,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    wait_for_open_breaker: Option<Duration>,
}

prop_compose! {
    fn settings()(
        max_attempts in proptest::option::of(count()),
        backoff in proptest::option::of((duration(), float())),
        max_delay in proptest::option::of(duration()),
        jitter in proptest::option::of(jitter()),
        delay_fn in proptest::option::of(duration()),
        budget in prop_oneof![
            Just(Budget::Default),
            Just(Budget::Off),
            (float(), count(), duration())
                .prop_map(|(ratio, floor, ttl)| Budget::Set(ratio, floor, ttl)),
        ],
        attempt_timeout in proptest::option::of(duration()),
        deadline in proptest::option::of(duration()),
        wait_for_open_breaker in proptest::option::of(duration()),
    ) -> Settings {
        Settings {
            max_attempts,
            backoff,
            max_delay,
            jitter,
            delay_fn,
            budget,
            attempt_timeout,
            deadline,
            wait_for_open_breaker,
        }
    }
}

/// What the inner service does on its first call; every later call
/// succeeds.
#[derive(Debug, Clone, Copy)]
enum First {
    /// Fails.
    Fails,
    /// Fails, and the policy reads in it a delay to wait (as a 503 with a
    /// `Retry-After` of that many seconds would say).
    AsksFor(Duration),
    /// Is refused by an open breaker below that probes after this long.
    CircuitOpen(Duration),
}

fn first() -> impl Strategy<Value = First> {
    prop_oneof![
        Just(First::Fails),
        duration().prop_map(First::AsksFor),
        duration().prop_map(First::CircuitOpen),
    ]
}

/// Retries every failure, after the delay the first call asked for if any.
#[derive(Debug, Clone, Copy)]
struct Asks(Option<Duration>);

impl Policy<u32, u32> for Asks {
    fn clone_request(&self, request: &u32) -> Option<u32> {
        Some(*request)
    }

    fn retry(&self, _request: &u32, _result: Result<&u32, &BoxError>) -> Decision {
        self.0.map_or(Decision::Backoff, Decision::After)
    }
}

fn configured(settings: &Settings, policy: Asks) -> RetryBuilder<Asks> {
    let mut builder = RetryLayer::builder().policy(policy);
    if let Some(n) = settings.max_attempts {
        builder = builder.max_attempts(n);
    }
    if let Some((base, multiplier)) = settings.backoff {
        builder = builder.backoff(base, multiplier);
    }
    if let Some(cap) = settings.max_delay {
        builder = builder.max_delay(cap);
    }
    if let Some(jitter) = settings.jitter {
        builder = builder.jitter(jitter);
    }
    if let Some(delay) = settings.delay_fn {
        builder = builder
            .delay_fn(move |retry, previous| delay.saturating_mul(retry).saturating_add(previous));
    }
    match settings.budget {
        Budget::Default => {}
        Budget::Off => builder = builder.no_budget(),
        Budget::Set(ratio, floor, ttl) => builder = builder.budget(ratio, floor, ttl),
    }
    if let Some(timeout) = settings.attempt_timeout {
        builder = builder.attempt_timeout(timeout);
    }
    if let Some(deadline) = settings.deadline {
        builder = builder.deadline(deadline);
    }
    if let Some(wait) = settings.wait_for_open_breaker {
        builder = builder.wait_for_open_breaker(wait);
    }
    builder
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_setting_is_refused_at_build_or_gives_a_call_with_one_outcome(
        settings in settings(),
        first in first(),
    ) {
        let policy = Asks(match first {
            First::AsksFor(after) => Some(after),
            _ => None,
        });
        let Ok(layer) = configured(&settings, policy).build() else {
            // Refused with a ConfigError (the type says so): no panic.
            return Ok(());
        };
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let svc = layer.layer(service_fn(move |n: u32| {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match (call, first) {
                    (0, First::CircuitOpen(after)) => Err::<u32, BoxError>(
                        Rejected::new(RejectKind::CircuitOpen, Component::new("below"))
                            .with_retry_after(after)
                            .into(),
                    ),
                    (0, _) => Err("flaky".into()),
                    _ => Ok(n + 1),
                }
            }
        }));
        let outcome = reflex_tests::support::block_on_paused(svc.oneshot(1));
        let made = calls.load(Ordering::SeqCst);
        prop_assert!((1..=2).contains(&made), "{made} calls");
        match outcome {
            Ok(answer) => prop_assert_eq!((answer, made), (2, 2)),
            Err(err) if err.to_string() == "flaky" => prop_assert_eq!(made, 1),
            Err(err) if Rejected::find(&*err).is_some() => prop_assert_eq!(made, 1),
            Err(err) => prop_assert!(err.downcast_ref::<TimedOut>().is_some(), "{err}"),
        }
        prop_assert_eq!(layer.handle().metrics().retrying, 0);
    }
}
