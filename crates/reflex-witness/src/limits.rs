//! The witness's name in its configuration errors, and its fixed bounds.

use std::time::Duration;

/// The layer named in the witness's [`ConfigError`](reflex_core::ConfigError)s.
pub(crate) const LAYER: &str = "witness";

/// The most components a witness follows: a call chain's word packs the
/// component's index in 12 bits.
pub const MAX_COMPONENTS: usize = (1 << 12) - 1;

/// The most snapshots a witness keeps in its history: subscribers' channel
/// is sized to the history limit when the witness is built.
pub const MAX_HISTORY: usize = 1 << 16;

/// The shortest interval: tokio's timer counts milliseconds.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Failed and refused calls kept for causal chains.
pub(crate) const EVENTS: usize = 1024;

/// Finished calls kept between two cycles for the pattern learner.
pub(crate) const CALLS: usize = 1 << 16;
