//! The layer contract, run against `RetryLayer`.
//!
//! The subject keeps every part of the retry machinery on (three attempts,
//! a budget, a deadline, the ready service moved into the future) and
//! retries the contract's `Transient` error once, after exactly one second
//! (no jitter), so that every check of release, on drop, panic and timeout,
//! runs while a retry waits or runs. What a retry layer holds is a request
//! in a retry cycle, which the handle reports as `retrying`.

use std::time::Duration;

use reflex_core::{BoxError, ConfigError};
use reflex_retry::{Decision, Jitter, Policy, RetryLayer};
use reflex_tests::contract::{Subject, Transient};

struct Retry;

const DELAY: Duration = Duration::from_secs(1);

/// Copies requests, and retries the contract's `Transient` error only.
#[derive(Debug, Clone, Copy)]
struct RetryTransient;

impl Policy<String, String> for RetryTransient {
    fn clone_request(&self, request: &String) -> Option<String> {
        Some(request.clone())
    }

    fn retry(&self, _request: &String, result: Result<&String, &BoxError>) -> Decision {
        match result {
            Err(err) if err.is::<Transient>() => Decision::Backoff,
            _ => Decision::Stop,
        }
    }
}

impl Subject for Retry {
    type Layer = RetryLayer<RetryTransient>;

    fn layer() -> Self::Layer {
        RetryLayer::builder()
            .policy(RetryTransient)
            .max_attempts(3)
            .backoff(DELAY, 1.0)
            .jitter(Jitter::None)
            .deadline(Duration::from_secs(3600))
            .build()
            .expect("valid config")
    }

    fn held(layer: &Self::Layer) -> usize {
        layer.handle().metrics().retrying
    }

    /// A first attempt holds nothing: only a request in a retry cycle
    /// counts.
    const HOLDS_WHILE_RUNNING: bool = false;

    const RETRY_DELAY: Option<Duration> = Some(DELAY);

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        let builder = || RetryLayer::builder().policy(RetryTransient);
        vec![
            builder().max_attempts(0).build(),
            builder().backoff(Duration::ZERO, 2.0).build(),
            builder()
                .backoff(Duration::from_millis(1), f64::NAN)
                .build(),
            builder().max_delay(Duration::ZERO).build(),
            builder().attempt_timeout(Duration::ZERO).build(),
            builder().deadline(Duration::ZERO).build(),
            builder().budget(2_000.0, 0, Duration::from_secs(1)).build(),
            builder().wait_for_open_breaker(Duration::ZERO).build(),
            builder()
                .wait_for_open_breaker(Duration::from_secs(61))
                .build(),
        ]
    }
}

reflex_tests::layer_contract!(Retry);
