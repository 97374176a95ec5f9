//! [`Timer`]: the one timer of a response future, and the [`HORIZON`]
//! beyond which the layer sets no timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// How far ahead the layer sets a timer; further is never: a deadline or
/// an attempt timeout beyond it is none, and a retry that would begin
/// beyond it is not made. A century is beyond any request, and keeps every
/// instant far from where `Instant` arithmetic (ours, or the timer's as it
/// rounds a deadline up) overflows.
pub(crate) const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `delay` after `now`, or `None` when that is beyond the [`HORIZON`].
#[inline]
pub(crate) fn after(now: Instant, delay: Duration) -> Option<Instant> {
    if delay > HORIZON {
        return None;
    }
    now.checked_add(delay)
}

/// One timer for the attempt's time (or the deadline) while an attempt
/// runs, and for the backoff between attempts.
///
/// Its `Sleep` is on the heap, made the first time the timer has to be
/// polled and reset after that: a request with no timer, or one answered
/// at its first poll, allocates nothing, and the response future stays
/// smaller by a tokio `Sleep` (about 150 bytes), which every layer above
/// moves on every call.
pub(crate) struct Timer {
    /// When it fires; `None`: never.
    pub(crate) at: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

// === impl Timer ===

impl Timer {
    /// A timer firing at `at`, if ever.
    pub(crate) fn new(at: Option<Instant>) -> Self {
        Self { at, sleep: None }
    }

    /// The sleep for `at`, made or reset.
    fn armed(&mut self, at: Instant) -> Pin<&mut Sleep> {
        match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
            }
            None => self.sleep = Some(Box::pin(sleep_until(at))),
        }
        let Some(sleep) = self.sleep.as_mut() else {
            unreachable!("armed just above")
        };
        sleep.as_mut()
    }

    /// When the timer fired, if it has.
    pub(crate) fn fired(&mut self, cx: &mut Context<'_>) -> Option<Instant> {
        let at = self.at?;
        self.armed(at).poll(cx).is_ready().then_some(at)
    }

    /// Ready when the timer fired, or at once when it is not set.
    pub(crate) fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.at {
            Some(at) => self.armed(at).poll(cx),
            None => Poll::Ready(()),
        }
    }
}
