//! Building blocks of the retry layer: [`Backoff`] (exponential, capped,
//! with none, full, equal or decorrelated [`Jitter`]), [`RetryBudget`]
//! (retries as an exact fraction of recent requests, plus a floor) and
//! [`parse_retry_after`] (seconds or http-date; malformed values ignored).
//!
//! **Status:** `RetryLayer` itself (classification and idempotency rules,
//! body replay, per-attempt timeout and deadline, the budget wired in) is in
//! progress; these pieces are its tested foundations.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflex_retry::{Backoff, Jitter};
//!
//! let backoff = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_secs(60), Jitter::Equal)?;
//! // The third retry waits between 100 ms and 200 ms.
//! let delay = backoff.delay(3, Duration::ZERO, 0.25);
//! assert_eq!(delay, Duration::from_millis(125));
//! # Ok::<_, reflex_core::ConfigError>(())
//! ```
#![doc(test(attr(deny(warnings))))]

mod backoff;
mod budget;
mod retry_after;

pub use backoff::{Backoff, Jitter};
pub use budget::RetryBudget;
pub use retry_after::parse_retry_after;
