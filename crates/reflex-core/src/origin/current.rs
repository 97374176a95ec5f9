//! The frame current on this thread, field by field, and what reads or
//! changes it: request ids, the end of a call below, the counts a layer
//! reads.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    pub(super) static CURRENT: Current = const {
        Current {
            id: Cell::new(0),
            root: Cell::new(0),
            depth: Cell::new(0),
            tag: Cell::new(0),
            active: Cell::new(0),
            since_ns: Cell::new(0),
            waited_ns: Cell::new(0),
            failed: Cell::new(0),
        }
    };
    /// This thread's next request id, and the end of its block of ids.
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The current frame, field by field. A frame moves in and out of it on
/// every poll: scalar moves cost a few cycles, where moving the frame as
/// one value (an `Option<Frame>` in one cell) stalled the processor on its
/// own stores and tripled the witness's cost per request.
pub(super) struct Current {
    /// 0: no frame.
    pub(super) id: Cell<u64>,
    pub(super) root: Cell<u64>,
    pub(super) depth: Cell<u8>,
    pub(super) tag: Cell<u32>,
    pub(super) active: Cell<u32>,
    pub(super) since_ns: Cell<u64>,
    pub(super) waited_ns: Cell<u64>,
    pub(super) failed: Cell<u32>,
}

impl Current {
    /// Makes `live` (or no frame) current; what was current.
    #[inline]
    pub(super) fn swap(&self, live: Option<&Live>) -> Option<Live> {
        let live = live.unwrap_or(&Live::NONE);
        let was = Live {
            id: self.id.replace(live.id),
            root: self.root.replace(live.root),
            depth: self.depth.replace(live.depth),
            tag: self.tag.replace(live.tag),
            active: self.active.replace(live.active),
            since_ns: self.since_ns.replace(live.since_ns),
            waited_ns: self.waited_ns.replace(live.waited_ns),
            failed: self.failed.replace(live.failed),
        };
        (was.id != 0).then_some(was)
    }
}

/// What of a frame is current while its request is polled: who it is, as
/// its calls below need it, and what they told it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Live {
    pub(super) id: u64,
    pub(super) root: u64,
    pub(super) depth: u8,
    pub(super) tag: u32,
    pub(super) active: u32,
    pub(super) since_ns: u64,
    pub(super) waited_ns: u64,
    pub(super) failed: u32,
}

impl Live {
    const NONE: Self = Self {
        id: 0,
        root: 0,
        depth: 0,
        tag: 0,
        active: 0,
        since_ns: 0,
        waited_ns: 0,
        failed: 0,
    };
}

/// Ids are handed to threads in blocks, so that a request takes its id
/// without touching memory another thread writes.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
const BLOCK: u64 = 1 << 20;

/// A new request id: unique in the process, never 0.
pub(super) fn next_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next.saturating_add(BLOCK);
        }
        ids.set((next + 1, end));
        next
    })
}

/// A call below the request `parent` ended at `now_ns`, `failed` or not:
/// the current frame counts it if it is `parent`'s (0: no parent).
#[inline]
pub(super) fn end_parent(parent: u64, now_ns: u64, failed: bool) {
    if parent == 0 {
        return;
    }
    CURRENT.with(|current| {
        let active = current.active.get();
        if current.id.get() != parent || active == 0 {
            return;
        }
        current.active.set(active - 1);
        if active == 1 {
            let waited = now_ns.saturating_sub(current.since_ns.get());
            current
                .waited_ns
                .set(current.waited_ns.get().saturating_add(waited));
        }
        if failed {
            current.failed.set(current.failed.get().saturating_add(1));
        }
    });
}

/// Calls below the current request that failed, were refused or were
/// dropped so far; 0 outside any request's frame. A layer reads it before
/// and after its own call: a failure whose count went up meanwhile is an
/// echo of a failure below.
///
/// ```
/// assert_eq!(reflex_core::origin::failed_below(), 0);
/// ```
pub fn failed_below() -> u32 {
    CURRENT.with(|current| current.failed.get())
}

/// The current request's id and its calls below that failed so far (as
/// [`failed_below`]), in one read; `None` outside any request's frame.
pub fn current_failed_below() -> Option<(u64, u32)> {
    CURRENT.with(|current| {
        let id = current.id.get();
        (id != 0).then(|| (id, current.failed.get()))
    })
}

/// The current request's id, if a layer gave it a frame.
pub fn current_request() -> Option<u64> {
    CURRENT.with(|current| Some(current.id.get()).filter(|id| *id != 0))
}
