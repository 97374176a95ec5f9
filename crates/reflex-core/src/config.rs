//! [`ConfigError`]: what a builder says when its configuration is invalid.

use std::borrow::Cow;

/// What is wrong with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A required setting was not given.
    Missing,
    /// The setting must be greater than zero.
    Zero,
    /// The setting must be below another setting.
    NotBelow,
    /// The setting is outside the range it accepts.
    OutOfRange,
}

/// An invalid configuration, refused by a builder's `build()` or by a
/// handle's setter. Builders never panic on user input; they return this.
///
/// # Examples
///
/// ```
/// use reflex_core::{ConfigError, ConfigErrorKind};
///
/// let err = ConfigError::new("shed", "hard_limit", ConfigErrorKind::Zero, "must be at least 1");
/// assert_eq!(err.layer(), "shed");
/// assert_eq!(err.setting(), "hard_limit");
/// assert_eq!(err.kind(), ConfigErrorKind::Zero);
/// assert_eq!(err.to_string(), "invalid shed config: hard_limit must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {layer} config: {setting} {reason}")]
pub struct ConfigError {
    layer: &'static str,
    setting: &'static str,
    kind: ConfigErrorKind,
    reason: Cow<'static, str>,
}

// === impl ConfigError ===

impl ConfigError {
    /// `setting` of `layer` is invalid: `reason` completes the sentence
    /// "invalid {layer} config: {setting} …".
    pub fn new(
        layer: &'static str,
        setting: &'static str,
        kind: ConfigErrorKind,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            layer,
            setting,
            kind,
            reason: reason.into(),
        }
    }

    /// The layer whose configuration was refused (`"shed"`, `"breaker"`, …).
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// The setting that was refused, named as its builder method.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_completes_the_sentence_and_there_is_no_source() {
        let err = ConfigError::new(
            "breaker",
            "failure_rate",
            ConfigErrorKind::OutOfRange,
            String::from("must be between 0 and 1"),
        );
        assert_eq!(
            err.to_string(),
            "invalid breaker config: failure_rate must be between 0 and 1"
        );
        assert!(std::error::Error::source(&err).is_none());
    }
}
