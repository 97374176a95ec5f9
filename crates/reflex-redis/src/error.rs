//! [`FleetError`]: what a [`FleetBuilder`](crate::FleetBuilder) refuses.

use std::time::Duration;

/// A [`Fleet`](crate::Fleet) configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The Redis URL does not parse.
    #[error("invalid redis url: {0}")]
    Url(String),
    /// A name is empty, longer than 128 bytes, or holds `{`, `}` or `|`
    /// (they would break a key's hash tag or a message).
    #[error("`{name}` must be 1 to 128 bytes without `{{`, `}}` or `|`, got {value:?}")]
    Name {
        /// The setting.
        name: &'static str,
        /// Its value (the first 64 characters).
        value: String,
    },
    /// A timeout is zero or above an hour.
    #[error("`{name}` must be above zero and at most an hour, got {value:?}")]
    Timeout {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: Duration,
    },
    /// `build` ran outside a tokio runtime: the link's task has nowhere to
    /// run.
    #[error("a fleet is built inside a tokio runtime")]
    NoRuntime,
}
