//! [`Wakers`]: the copies of a recorded body waiting for it, and the waker
//! the body is polled with once several copies may wait: it wakes them all,
//! so that no copy depends on another's being polled.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};

/// The copies waiting for the body, by copy id.
#[derive(Default)]
pub(super) struct Wakers {
    waiting: Mutex<Vec<(u64, Waker)>>,
}

/// The copies a waker set woke.
pub(super) type Woken = Vec<(u64, Waker)>;

// === impl Wakers ===

impl Wakers {
    /// Copy `id` waits for the body, in the task of `waker`.
    pub(super) fn register(&self, id: u64, waker: &Waker) {
        let mut waiting = self.lock();
        match waiting.iter_mut().find(|(copy, _)| *copy == id) {
            Some((_, kept)) if kept.will_wake(waker) => {}
            Some((_, kept)) => kept.clone_from(waker),
            None => waiting.push((id, waker.clone())),
        }
    }

    /// Every copy waiting, to be woken (outside every lock), and waiting no
    /// more.
    pub(super) fn take(&self) -> Woken {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, Waker)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The body moved on: every copy waiting reads on.
impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for (_, waker) in self.take() {
            waker.wake();
        }
    }
}
