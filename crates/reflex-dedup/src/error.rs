//! Errors of the dedup layer: [`SharedError`] and [`WaitTimedOut`].

use std::error::Error;
use std::sync::Arc;

use reflex_core::BoxError;

/// The error of a shared call, as each of its waiters receives it.
///
/// A failed call that several requests waited on gives every one of them
/// (the one that started it included) a `SharedError` around the one inner
/// error (a call nobody else waited on hands its error over untouched):
/// errors are not `Clone`, so they are shared behind an `Arc`. It displays
/// as the inner error, and its [`source`](Error::source) is the inner
/// error, so [`Rejected::find`](reflex_core::Rejected::find) and downcasts
/// through [`inner`](Self::inner) still work. Failures are never cached.
///
/// # Examples
///
/// ```
/// use reflex_dedup::SharedError;
///
/// fn inner_is_io(err: &(dyn std::error::Error + 'static)) -> bool {
///     err.downcast_ref::<SharedError>()
///         .is_some_and(|shared| shared.inner().is::<std::io::Error>())
/// }
/// # let _ = inner_is_io;
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SharedError(#[source] Arc<BoxError>);

// === impl SharedError ===

impl SharedError {
    pub(crate) fn new(err: Arc<BoxError>) -> Self {
        Self(err)
    }

    /// The inner service's error.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &**self.0
    }
}

/// A waiter gave up on a shared call after its own wait timeout. The call
/// goes on for the others.
///
/// # Examples
///
/// ```
/// assert_eq!(reflex_dedup::WaitTimedOut.to_string(), "gave up waiting on a shared call");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("gave up waiting on a shared call")]
pub struct WaitTimedOut;

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::sync::Arc;

    use super::SharedError;

    #[test]
    fn a_shared_error_displays_as_its_inner_error_which_is_its_source() {
        let shared = SharedError::new(Arc::new(std::io::Error::other("down").into()));
        assert_eq!(shared.to_string(), "down");
        let source = shared.source().expect("the inner error");
        assert!(source.is::<std::io::Error>(), "the inner error itself");
        assert!(shared.inner().is::<std::io::Error>());
    }
}
