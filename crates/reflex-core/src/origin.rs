//! Which request waits on which: the [`Origin`] of a failure or a delay.
//!
//! A request that a component serves may call other components while it
//! runs (api's handler awaits auth, which awaits db). A layer that follows
//! requests (the witness's) gives each one a [`Frame`] and runs its future
//! inside it with [`Scoped`]; a request started while a frame is current
//! (in the same task, while that request's future is being polled) is a
//! call *below* it. The frame keeps what its request learns about the
//! calls below it, without a lock or an allocation:
//!
//! - how long at least one of them was in flight ([`Below::waited_ns`]): the
//!   request's *self time* is its latency minus that;
//! - how many of them failed, were refused or were dropped
//!   ([`Below::failed`]): a failure of a request whose call below failed is
//!   an *echo* of that failure, not one of its own.
//!
//! Any layer under the frame's request can read [`failed_below`] (the
//! breaker does, to tell its own component's failures from echoes of a
//! dependency's).
//!
//! The frame lives in a thread-local while its request's future is polled
//! and inside that future otherwise, the way tokio's task-locals work: a
//! call is linked to the request whose future polls it. A call handed to
//! another task (`tokio::spawn`) is not linked.
//!
//! # Examples
//!
//! ```
//! use reflex_core::origin::{self, Frame, Scoped};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // api's request, and inside it a call to db that fails after 3 ms of the
//! // request's 10.
//! let api = Frame::start(0, 0);
//! let below = Scoped::new(api, async {
//!     let db = Frame::start(1, 5_000_000);
//!     assert_eq!(db.origin().depth(), 1);
//!     origin::end_below(db.origin(), 8_000_000, true);
//! })
//! .run_to_end()
//! .await;
//! assert_eq!(below.waited_ns(10_000_000), 3_000_000);
//! assert_eq!(below.failed(), 1);
//! # }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

thread_local! {
    static CURRENT: Current = const {
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
struct Current {
    /// 0: no frame.
    id: Cell<u64>,
    root: Cell<u64>,
    depth: Cell<u8>,
    tag: Cell<u32>,
    active: Cell<u32>,
    since_ns: Cell<u64>,
    waited_ns: Cell<u64>,
    failed: Cell<u32>,
}

impl Current {
    /// Makes `live` (or no frame) current; what was current.
    #[inline]
    fn swap(&self, live: Option<&Live>) -> Option<Live> {
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
struct Live {
    id: u64,
    root: u64,
    depth: u8,
    tag: u32,
    active: u32,
    since_ns: u64,
    waited_ns: u64,
    failed: u32,
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
fn next_id() -> u64 {
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

/// Who a request is: its id, the id of the request at the top of its chain,
/// how deep it is, its parent's id, and an opaque tag its layer gives it (the
/// witness's index of its component).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    id: u64,
    root: u64,
    parent: u64,
    depth: u8,
    tag: u32,
    parent_tag: u32,
}

impl Origin {
    /// This request's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id of the request at the top of its chain (its own id at the
    /// top).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// 0 at the top of a chain, 1 for a call below it, … (at most 255).
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The tag its layer gave it.
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// The tag of the request it was called below, if any.
    pub fn parent_tag(&self) -> Option<u32> {
        (self.depth > 0).then_some(self.parent_tag)
    }
}

/// A request's frame: who it is, and what it has learnt of the calls below
/// it so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    origin: Origin,
    /// Calls below in flight now.
    active: u32,
    /// When `active` last went from 0 to 1 (nanoseconds on the caller's
    /// clock).
    since_ns: u64,
    /// Time with at least one call below in flight, over the intervals that
    /// ended.
    waited_ns: u64,
    /// Calls below that failed, were refused or were dropped.
    failed: u32,
}

impl Frame {
    /// The frame of a request starting now (`now_ns` on the caller's clock),
    /// with a new id and the tag `tag`: at the top of a new chain, or below
    /// the request whose frame is current, which then counts it as a call
    /// below in flight.
    pub fn start(tag: u32, now_ns: u64) -> Self {
        let id = next_id();
        let parent = CURRENT.with(|current| {
            let parent = current.id.get();
            if parent == 0 {
                return None;
            }
            let active = current.active.get();
            if active == 0 {
                current.since_ns.set(now_ns);
            }
            current.active.set(active.saturating_add(1));
            Some((
                parent,
                current.root.get(),
                current.depth.get(),
                current.tag.get(),
            ))
        });
        let origin = match parent {
            Some((parent, root, depth, parent_tag)) => Origin {
                id,
                root,
                parent,
                depth: depth.saturating_add(1),
                tag,
                parent_tag,
            },
            None => Origin {
                id,
                root: id,
                parent: 0,
                depth: 0,
                tag,
                parent_tag: 0,
            },
        };
        Self {
            origin,
            active: 0,
            since_ns: 0,
            waited_ns: 0,
            failed: 0,
        }
    }

    /// Who the request is.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// What the request needs at its end to tell its caller.
    #[inline]
    pub fn caller(&self) -> Caller {
        Caller {
            parent: if self.origin.depth > 0 {
                self.origin.parent
            } else {
                0
            },
        }
    }

    /// The tag of the request it was called below, if any.
    #[inline]
    pub fn parent_tag(&self) -> Option<u32> {
        (self.origin.depth > 0).then_some(self.origin.parent_tag)
    }

    /// The id of the request at the top of its chain.
    #[inline]
    pub fn root(&self) -> u64 {
        self.origin.root
    }

    /// 0 at the top of a chain, 1 for a call below it, ….
    #[inline]
    pub fn depth(&self) -> u8 {
        self.origin.depth
    }

    /// Runs `f` (an inner service's synchronous `call`) with this frame
    /// current, and keeps what the calls it starts tell it.
    #[inline]
    pub fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let live = Live {
            id: self.origin.id,
            root: self.origin.root,
            depth: self.origin.depth,
            tag: self.origin.tag,
            active: self.active,
            since_ns: self.since_ns,
            waited_ns: self.waited_ns,
            failed: self.failed,
        };
        let outer = CURRENT.with(|current| current.swap(Some(&live)));
        let restore = Restore { outer, done: false };
        let out = f();
        if let Some(live) = restore.finish() {
            self.active = live.active;
            self.since_ns = live.since_ns;
            self.waited_ns = live.waited_ns;
            self.failed = live.failed;
        }
        out
    }
}

/// Puts the outer frame back, on the way out or while unwinding.
struct Restore {
    outer: Option<Live>,
    done: bool,
}

impl Restore {
    /// The frame that was current, put back; the outer one current again.
    #[inline]
    fn finish(mut self) -> Option<Live> {
        self.done = true;
        CURRENT.with(|current| current.swap(self.outer.as_ref()))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.done {
            // Unwinding: the outer frame is current again.
            CURRENT.with(|current| current.swap(self.outer.as_ref()));
        }
    }
}

/// The call `call` (started with [`Frame::start`]) ended at `now_ns`,
/// `failed` or not (a refusal and a drop count as failed): the request
/// whose frame is current counts it, if it is the one `call` was started
/// below. Anywhere else (the call ended in another task), nothing happens;
/// its parent counts it in flight until its own end.
pub fn end_below(call: Origin, now_ns: u64, failed: bool) {
    if call.depth > 0 {
        end_parent(call.parent, now_ns, failed);
    }
}

#[inline]
fn end_parent(parent: u64, now_ns: u64, failed: bool) {
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
    fn of(frame: &Frame) -> Self {
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

/// What a call below needs at its end to tell its caller: the caller's id.
/// One word, where an [`Origin`] is five.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// 0: none (the top of a chain).
    parent: u64,
}

impl Caller {
    /// The call ended at `now_ns`, `failed` or not: as [`end_below`].
    #[inline]
    pub fn end(self, now_ns: u64, failed: bool) {
        end_parent(self.parent, now_ns, failed);
    }
}

pin_project! {
    /// A future polled with its request's [`Frame`] current.
    pub struct Scoped<F> {
        frame: Frame,
        #[pin]
        future: F,
    }
}

impl<F> Scoped<F> {
    /// `future`, polled with `frame` current.
    pub fn new(frame: Frame, future: F) -> Self {
        Self { frame, future }
    }

    /// What the request has learnt of the calls below it so far.
    pub fn below(&self) -> Below {
        Below::of(&self.frame)
    }

    /// The request's frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

impl<F: Future> Scoped<F> {
    /// Runs the future to its end and says what it learnt below.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the future.
    pub async fn run_to_end(self) -> Below {
        let mut this = std::pin::pin!(self);
        std::future::poll_fn(|cx| this.as_mut().poll(cx)).await;
        this.below()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        this.frame.enter(|| future.poll(cx))
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_outside_any_frame_is_the_top_of_its_chain() {
        let frame = Frame::start(3, 0);
        assert_eq!(frame.origin().root(), frame.origin().id());
        assert_ne!(Frame::start(3, 0).origin().id(), frame.origin().id());
        assert_eq!(frame.origin().depth(), 0);
        assert_eq!(frame.origin().parent_tag(), None);
    }

    #[test]
    fn overlapping_calls_below_count_their_union_once() {
        let mut api = Frame::start(0, 0);
        api.enter(|| {
            let a = Frame::start(1, 10);
            let b = Frame::start(2, 15);
            assert_eq!(a.origin().root(), b.origin().root());
            assert_eq!(b.origin().parent_tag(), Some(0));
            end_below(a.origin(), 20, false);
            end_below(b.origin(), 30, true);
            let c = Frame::start(1, 40);
            end_below(c.origin(), 45, false);
        });
        let below = Below::of(&api);
        assert_eq!(below.waited_ns(50), 20 + 5, "10..30 and 40..45");
        assert_eq!(below.failed(), 1);
        assert_eq!(current_request(), None, "nothing left current");
    }

    #[test]
    fn a_call_that_ends_elsewhere_counts_until_its_parents_end() {
        let mut api = Frame::start(0, 0);
        let db = api.enter(|| Frame::start(1, 10));
        // db ends outside api's frame: api is not told.
        end_below(db.origin(), 20, true);
        let below = Below::of(&api);
        assert_eq!(below.waited_ns(100), 90);
        assert_eq!(below.failed(), 0);
    }

    #[test]
    fn a_frame_is_put_back_when_the_call_inside_it_panics() {
        let mut api = Frame::start(0, 0);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            api.enter(|| panic!("inner call"));
        }));
        assert!(caught.is_err());
        assert_eq!(current_request(), None);
    }
}
