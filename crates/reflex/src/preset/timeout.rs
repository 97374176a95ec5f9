//! [`Timeout`]: tower's timeout around the inner service, as a part of a
//! preset: a builder and a layer at once.

use std::time::Duration;

use reflex_core::{ConfigError, ConfigErrorKind, Handled, LayerBuilder};
use tower::Layer;

/// A timeout on every call to the inner service: tower's
/// [`Timeout`](tower::timeout::Timeout) service, as a preset part. Zero is
/// refused when it is built.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex::preset::Timeout;
/// use reflex::core::LayerBuilder;
///
/// assert!(LayerBuilder::build(Timeout::new(Duration::from_secs(2))).is_ok());
/// assert!(LayerBuilder::build(Timeout::new(Duration::ZERO)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(Duration);

impl Timeout {
    /// A timeout of `duration` on every call.
    pub fn new(duration: Duration) -> Self {
        Self(duration)
    }

    /// The timeout.
    pub fn duration(&self) -> Duration {
        self.0
    }
}

impl<S> Layer<S> for Timeout {
    type Service = tower::timeout::Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        tower::timeout::Timeout::new(inner, self.0)
    }
}

impl LayerBuilder for Timeout {
    type Layer = Self;

    reflex_core::ignores_component_and_sink!();

    fn build(self) -> Result<Self, ConfigError> {
        if self.0.is_zero() {
            return Err(ConfigError::new(
                "preset",
                "timeout",
                ConfigErrorKind::Zero,
                "must be above zero",
            ));
        }
        Ok(self)
    }
}

// A timeout does not judge outcomes: the stack's classifier leaves it as
// it is.
reflex_core::unclassified!(Timeout);

/// A timeout has no state to read.
impl Handled for Timeout {
    type Handle = ();

    fn handle(&self) {}
}
