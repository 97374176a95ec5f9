//! The errors of the retry layer: [`TimedOut`], and (feature `http`)
//! `NotReplayable`.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", if self.deadline { "retry deadline exceeded" } else { "attempt timed out" })]
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

/// A copy of a request body was read, but the body cannot be sent again:
/// it was larger than the limit, so what was read of it was not kept, or
/// reading it failed.
///
/// The http retry layer does not retry a request whose body cannot be sent
/// again, nor sends a copy of it (it checks again before each retry), so
/// an inner service sees this error only when the body goes past the
/// limit while it reads a copy: a previous attempt still reading the body
/// after the retry was sent, say.
///
/// # Examples
///
/// ```
/// use reflex_retry::NotReplayable;
///
/// fn body_was_lost(err: &(dyn std::error::Error + 'static)) -> bool {
///     err.is::<NotReplayable>()
/// }
/// # let _ = body_was_lost;
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body cannot be sent again")]
#[non_exhaustive]
pub struct NotReplayable;
