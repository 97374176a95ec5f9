//! Loom models of the slot table: Replace racing with completion. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p reflex-slot --release --lib`.

use std::sync::Arc;

use loom::thread;
use reflex_core::signal::Recorder;
use reflex_core::{Component, Signal, Sink};

use crate::policy::Policy;
use crate::table::{Admission, Grant, Table};

fn table() -> Arc<Table<u8>> {
    Arc::new(Table::new(4, 8, true, Component::new("loom"), Sink::none()))
}

#[test]
fn replace_racing_completion_starts_the_newcomer_exactly_once() {
    loom::model(|| {
        let table = table();
        let Admission::Start(first, first_cancel) = table.admit(1, Policy::Queue) else {
            panic!("an idle slot starts at once");
        };
        let first_cancel = first_cancel.expect("the layer may replace");
        let completes = thread::spawn(move || drop(first));
        let replaces = {
            let table = table.clone();
            thread::spawn(move || match table.admit(1, Policy::Replace) {
                Admission::Start(guard, _) => (Some(guard), None),
                Admission::Wait(grant, waiter) => (None, Some((grant, waiter))),
                Admission::Refused(kind) => panic!("refused: {kind:?}"),
            })
        };
        completes.join().unwrap();
        let (started, waiting) = replaces.join().unwrap();
        let guard = match (started, waiting) {
            // The first had finished: the newcomer found the slot idle.
            (Some(guard), None) => {
                assert!(
                    !first_cancel.is_cancelled(),
                    "nothing was running to cancel"
                );
                guard
            }
            // The first was running: cancelled, and its completion handed
            // the slot to the newcomer.
            (None, Some((mut grant, _waiter))) => {
                assert!(first_cancel.is_cancelled());
                match grant.try_recv() {
                    Ok(Grant::Start(guard, _)) => guard,
                    _ => panic!("the completion must have granted the newcomer"),
                }
            }
            _ => unreachable!(),
        };
        assert_eq!(table.busy_slots(), 1);
        assert_eq!(table.waiting(), 0);
        drop(guard);
        assert_eq!(table.busy_slots(), 0, "the slot is removed when idle");
    });
}

#[test]
fn a_waiter_leaving_while_the_slot_is_handed_on_never_sticks_it() {
    loom::model(|| {
        let recorder = Arc::new(Recorder::default());
        let table = Arc::new(Table::new(
            4,
            8,
            true,
            Component::new("loom"),
            Sink::new(Arc::clone(&recorder)),
        ));
        let Admission::Start(first, _) = table.admit(1, Policy::Queue) else {
            panic!("an idle slot starts at once");
        };
        let Admission::Wait(grant, waiter) = table.admit(1, Policy::Queue) else {
            panic!("a busy slot queues");
        };
        let completes = thread::spawn(move || drop(first));
        // The order a waiting response future drops them in.
        let leaves = thread::spawn(move || {
            drop(grant);
            drop(waiter);
        });
        completes.join().unwrap();
        leaves.join().unwrap();
        // Whether the grant reached the waiter before it left or not, the
        // slot is free again and the table empty.
        assert_eq!(table.busy_slots(), 0);
        assert_eq!(table.waiting(), 0);
        // And it left its queue once: granted (the grant reached it before
        // it left), or abandoned (by the release or by its own guard).
        let leaves = recorder
            .signals()
            .into_iter()
            .filter(|(_, signal)| {
                matches!(
                    signal,
                    Signal::SlotStarted { waited: true } | Signal::SlotAbandoned
                )
            })
            .count();
        assert_eq!(leaves, 1);
        assert!(matches!(
            table.admit(1, Policy::DropIfRunning),
            Admission::Start(..)
        ));
    });
}
