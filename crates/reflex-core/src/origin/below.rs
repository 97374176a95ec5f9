//! [`Below`]: what a request learnt of the calls below it.

use super::frame::Frame;

/// What a request learnt of the calls below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Below {
    active: u32,
    since_ns: u64,
    waited_ns: u64,
    failed: u32,
}

impl Below {
    /// What `frame` learnt, read field by field (a frame just written is
    /// not copied whole: that stalls on its own stores).
    #[inline]
    pub(super) fn of(frame: &Frame) -> Self {
        Self {
            active: frame.active,
            since_ns: frame.since_ns,
            waited_ns: frame.waited_ns,
            failed: frame.failed,
        }
    }

    /// Time with at least one call below in flight, up to `end_ns` (a call
    /// still in flight at the end counts until then).
    pub fn waited_ns(&self, end_ns: u64) -> u64 {
        if self.active == 0 {
            self.waited_ns
        } else {
            self.waited_ns
                .saturating_add(end_ns.saturating_sub(self.since_ns))
        }
    }

    /// Calls below that failed, were refused or were dropped.
    pub fn failed(&self) -> u32 {
        self.failed
    }
}
