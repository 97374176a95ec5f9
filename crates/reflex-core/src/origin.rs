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
    static CURRENT: Cell<Option<Frame>> = const { Cell::new(None) };
    /// This thread's next request id, and the end of its block of ids.
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
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
            let mut frame = current.get()?;
            if frame.active == 0 {
                frame.since_ns = now_ns;
            }
            frame.active = frame.active.saturating_add(1);
            current.set(Some(frame));
            Some(frame.origin)
        });
        let origin = match parent {
            Some(parent) => Origin {
                id,
                root: parent.root,
                parent: parent.id,
                depth: parent.depth.saturating_add(1),
                tag,
                parent_tag: parent.tag,
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

    /// Runs `f` (an inner service's synchronous `call`) with this frame
    /// current, and keeps what the calls it starts tell it.
    pub fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let outer = CURRENT.with(|current| current.replace(Some(*self)));
        let restore = Restore { outer, done: false };
        let out = f();
        if let Some(frame) = restore.finish() {
            *self = frame;
        }
        out
    }
}

/// Puts the outer frame back, on the way out or while unwinding.
struct Restore {
    outer: Option<Frame>,
    done: bool,
}

impl Restore {
    /// The frame that was current, put back; the outer one current again.
    fn finish(mut self) -> Option<Frame> {
        self.done = true;
        CURRENT.with(|current| current.replace(self.outer))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.done {
            // Unwinding: the outer frame is current again.
            CURRENT.with(|current| current.set(self.outer));
        }
    }
}

/// The call `call` (started with [`Frame::start`]) ended at `now_ns`,
/// `failed` or not (a refusal and a drop count as failed): the request
/// whose frame is current counts it, if it is the one `call` was started
/// below. Anywhere else (the call ended in another task), nothing happens;
/// its parent counts it in flight until its own end.
pub fn end_below(call: Origin, now_ns: u64, failed: bool) {
    if call.depth == 0 {
        return;
    }
    CURRENT.with(|current| {
        let Some(mut frame) = current.get() else {
            return;
        };
        if frame.origin.id != call.parent || frame.active == 0 {
            return;
        }
        frame.active -= 1;
        if frame.active == 0 {
            frame.waited_ns = frame
                .waited_ns
                .saturating_add(now_ns.saturating_sub(frame.since_ns));
        }
        if failed {
            frame.failed = frame.failed.saturating_add(1);
        }
        current.set(Some(frame));
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
    CURRENT.with(|current| current.get().map_or(0, |frame| frame.failed))
}

/// The current request's origin, if a layer gave it a frame.
pub fn current() -> Option<Origin> {
    CURRENT.with(|current| current.get().map(|frame| frame.origin))
}

/// What a request learnt of the calls below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Below {
    frame: Frame,
}

impl Below {
    /// Time with at least one call below in flight, up to `end_ns` (a call
    /// still in flight at the end counts until then).
    pub fn waited_ns(&self, end_ns: u64) -> u64 {
        let frame = &self.frame;
        if frame.active == 0 {
            frame.waited_ns
        } else {
            frame
                .waited_ns
                .saturating_add(end_ns.saturating_sub(frame.since_ns))
        }
    }

    /// Calls below that failed, were refused or were dropped.
    pub fn failed(&self) -> u32 {
        self.frame.failed
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
        Below { frame: self.frame }
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
        let below = Below { frame: api };
        assert_eq!(below.waited_ns(50), 20 + 5, "10..30 and 40..45");
        assert_eq!(below.failed(), 1);
        assert_eq!(current(), None, "nothing left current");
    }

    #[test]
    fn a_call_that_ends_elsewhere_counts_until_its_parents_end() {
        let mut api = Frame::start(0, 0);
        let db = api.enter(|| Frame::start(1, 10));
        // db ends outside api's frame: api is not told.
        end_below(db.origin(), 20, true);
        let below = Below { frame: api };
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
        assert_eq!(current(), None);
    }
}
