//! Cycle hooks: code of yours run at the end of every cycle, with its
//! snapshot and the totals ([`Witness::on_cycle`](crate::Witness::on_cycle)).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::snapshot::Snapshot;
use crate::totals::Totals;

/// What a cycle hook is given: the cycle's snapshot and the totals with
/// that cycle added.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Cycle<'a> {
    /// The cycle's snapshot (quiet ones included).
    pub snapshot: &'a Arc<Snapshot>,
    /// The totals, this cycle added.
    pub totals: &'a Arc<Totals>,
}

type Hook = Arc<dyn Fn(&Cycle<'_>) + Send + Sync>;

struct Entry {
    id: u64,
    hook: Hook,
}

#[derive(Default)]
struct List {
    next: u64,
    entries: Vec<Entry>,
}

fn lock(list: &Mutex<List>) -> MutexGuard<'_, List> {
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hooks a witness runs after each cycle. Clones share them.
#[derive(Clone)]
pub(crate) struct Hooks(Arc<Mutex<List>>);

// === impl Hooks ===

impl Hooks {
    pub(crate) fn new() -> Self {
        Self(Arc::default())
    }

    /// Runs `hook` after every cycle until the returned guard is dropped.
    pub(crate) fn add(&self, hook: Hook) -> CycleHook {
        let mut list = lock(&self.0);
        let id = list.next;
        list.next += 1;
        list.entries.push(Entry { id, hook });
        CycleHook {
            list: Arc::downgrade(&self.0),
            id,
        }
    }

    /// Runs every hook, with no lock held (a hook may read the witness, or
    /// drop its own guard); a panic of one is caught, and the others run.
    /// The error of the last one that panicked.
    pub(crate) fn run(&self, cycle: &Cycle<'_>) -> Option<String> {
        let hooks: Vec<Hook> = {
            let list = lock(&self.0);
            if list.entries.is_empty() {
                return None;
            }
            list.entries.iter().map(|e| Arc::clone(&e.hook)).collect()
        };
        let mut error = None;
        for hook in hooks {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(cycle)));
            if ran.is_err() {
                error = Some("a cycle hook panicked".to_owned());
            }
        }
        error
    }
}

/// A hook given to [`Witness::on_cycle`](crate::Witness::on_cycle): it
/// runs after every cycle until this guard is dropped.
#[must_use = "the hook is removed when this guard is dropped"]
pub struct CycleHook {
    list: Weak<Mutex<List>>,
    id: u64,
}

impl Drop for CycleHook {
    fn drop(&mut self) {
        if let Some(list) = self.list.upgrade() {
            // The hook itself is dropped after the lock is released: it
            // may hold what takes locks of its own.
            let removed = {
                let mut list = lock(&list);
                list.entries
                    .iter()
                    .position(|e| e.id == self.id)
                    .map(|at| list.entries.remove(at))
            };
            drop(removed);
        }
    }
}

impl fmt::Debug for CycleHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CycleHook")
            .field("id", &self.id)
            .field("witness_alive", &(self.list.strong_count() > 0))
            .finish()
    }
}
