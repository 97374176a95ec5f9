//! [`TimedOut`]: an attempt, or the whole request, ran out of time.

use std::error::Error;
use std::fmt;

/// An attempt ran out of its per-attempt time, or the request ran out of
/// its overall deadline.
///
/// A timed-out attempt is a failed attempt like any other: the classifier
/// and the policy see it as an `Err`, and it is retried if they say so. The
/// caller sees `TimedOut` only when it was the last word: the last attempt
/// timed out, or the deadline passed before any attempt ended.
///
/// # Examples
///
/// ```
/// use reflex_retry::TimedOut;
///
/// fn is_deadline(err: &(dyn std::error::Error + 'static)) -> bool {
///     err.downcast_ref::<TimedOut>().is_some_and(TimedOut::is_deadline)
/// }
/// # let _ = is_deadline;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    deadline: bool,
}

// === impl TimedOut ===

impl TimedOut {
    pub(crate) fn attempt() -> Self {
        Self { deadline: false }
    }

    pub(crate) fn deadline() -> Self {
        Self { deadline: true }
    }

    /// `true` when the overall deadline passed, `false` when one attempt
    /// ran out of its own time.
    pub fn is_deadline(&self) -> bool {
        self.deadline
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.deadline {
            "retry deadline exceeded"
        } else {
            "attempt timed out"
        })
    }
}

impl Error for TimedOut {}
