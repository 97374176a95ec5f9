//! Errors of the dedup layer: [`SharedError`] and [`WaitTimedOut`].

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use reflex_core::BoxError;

/// The error of a shared call, as each of its waiters receives it.
///
/// A failed call that several requests waited on gives every one of them
/// (the one that started it included) a `SharedError` around the one inner
/// error (a call nobody else waited on hands its error over untouched): errors are not `Clone`, so
/// they are shared behind an `Arc`. It displays as the inner error, and its
/// [`source`](Error::source) is the inner error, so
/// [`Rejected::find`](reflex_core::Rejected::find) and downcasts through
/// [`inner`](Self::inner) still work. Failures are never cached.
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
#[derive(Debug, Clone)]
pub struct SharedError(Arc<BoxError>);

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

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self.0, f)
    }
}

impl Error for SharedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&**self.0)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimedOut;

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("gave up waiting on a shared call")
    }
}

impl Error for WaitTimedOut {}
