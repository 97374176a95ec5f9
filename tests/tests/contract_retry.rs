//! The layer contract, run against `RetryLayer`.
//!
//! The subject keeps every part of the retry machinery on (three attempts,
//! a budget, a deadline, the ready service moved into the future) but its
//! policy stops at the first failure, as the contract asks: an inner error
//! or panic is not retried. What a retry layer holds is a request in a
//! retry cycle, which the handle reports as `retrying`.

use std::time::Duration;

use reflex_core::{BoxError, ConfigError};
use reflex_retry::{Decision, Policy, RetryLayer};
use reflex_tests::contract::Subject;

struct Retry;

/// Copies requests, as a retrying policy must, but never retries.
#[derive(Debug, Clone, Copy)]
struct CopyButStop;

impl Policy<String, String> for CopyButStop {
    fn clone_request(&self, request: &String) -> Option<String> {
        Some(request.clone())
    }

    fn retry(&self, _request: &String, _result: Result<&String, &BoxError>) -> Decision {
        Decision::Stop
    }
}

impl Subject for Retry {
    type Layer = RetryLayer<CopyButStop>;

    fn layer() -> Self::Layer {
        RetryLayer::builder()
            .policy(CopyButStop)
            .max_attempts(3)
            .deadline(Duration::from_secs(3600))
            .build()
            .expect("valid config")
    }

    fn held(layer: &Self::Layer) -> usize {
        layer.handle().metrics().retrying
    }

    /// A first attempt holds nothing: only a request in a retry cycle
    /// counts (`crates/reflex-retry/tests/layer.rs` checks its release).
    const HOLDS_WHILE_RUNNING: bool = false;

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        let builder = || RetryLayer::builder().policy(CopyButStop);
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
        ]
    }
}

reflex_tests::layer_contract!(Retry);
