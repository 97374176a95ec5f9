//! A request's [`Frame`] and the [`Origin`] it names: started below the
//! current frame, made current around an inner call, and ended, telling
//! its caller ([`end_below`], [`Caller`]).

use super::current::{CURRENT, Live, end_parent, next_id};

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
    pub(super) active: u32,
    /// When `active` last went from 0 to 1 (nanoseconds on the caller's
    /// clock).
    pub(super) since_ns: u64,
    /// Time with at least one call below in flight, over the intervals that
    /// ended.
    pub(super) waited_ns: u64,
    /// Calls below that failed, were refused or were dropped.
    pub(super) failed: u32,
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
