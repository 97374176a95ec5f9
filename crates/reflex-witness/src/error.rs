//! [`StartError`]: why a witness's runtime did not start.

use reflex_core::ConfigError;

/// Why [`WitnessBuilder::start`](crate::WitnessBuilder::start) failed.
///
/// # Examples
///
/// ```
/// use reflex_witness::{StartError, Witness};
///
/// // Outside a tokio runtime there is nothing to run the cycles on.
/// let err = Witness::builder().start().unwrap_err();
/// assert!(matches!(err, StartError::NoRuntime));
/// assert_eq!(err.to_string(), "witness: no tokio runtime to start on");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("witness: {0}")]
    Config(#[from] ConfigError),
    /// There is no tokio runtime to run the observation task on.
    #[error("witness: no tokio runtime to start on")]
    NoRuntime,
}
