//! The table's leave paths that only a race reaches from the outside: a
//! waiter whose caller is gone (its grant receiver dropped) while its guard
//! is not dropped yet. Each must leave its queue once, signalled once.

use std::sync::Arc;

use reflex_core::signal::Recorder;
use reflex_core::{Component, Signal, Sink};
use tokio::sync::oneshot;

use crate::policy::Policy;
use crate::table::{Admission, Grant, SlotGuard, Table, WaiterGuard};

fn table(recorder: &Arc<Recorder>) -> Arc<Table<u8>> {
    Arc::new(Table::new(
        4,
        8,
        true,
        Component::new("t"),
        Sink::new(Arc::clone(recorder)),
    ))
}

/// Slot 1's runner: the slot must be idle.
fn start(table: &Arc<Table<u8>>) -> SlotGuard<u8> {
    let Admission::Start(runner, _) = table.admit(1, Policy::Queue) else {
        panic!("an idle slot starts at once");
    };
    runner
}

/// A request queued in slot 1, behind its runner: its grant and its guard.
fn queue(table: &Arc<Table<u8>>) -> (oneshot::Receiver<Grant<u8>>, WaiterGuard<u8>) {
    let Admission::Wait(grant, waiter) = table.admit(1, Policy::Queue) else {
        panic!("a busy slot queues");
    };
    (grant, waiter)
}

fn heard(recorder: &Recorder) -> Vec<Signal> {
    let signals = recorder.signals().into_iter().map(|(_, s)| s).collect();
    recorder.clear();
    signals
}

#[test]
fn a_grant_reaching_a_caller_already_gone_is_signalled_abandoned_once() {
    let recorder = Arc::new(Recorder::default());
    let table = table(&recorder);
    let runner = start(&table);
    let (grant, waiter) = queue(&table);
    heard(&recorder);
    // The caller is gone; its guard is not dropped yet.
    drop(grant);
    drop(runner);
    assert_eq!(heard(&recorder), vec![Signal::SlotAbandoned]);
    assert_eq!((table.waiting(), table.busy_slots()), (0, 0));
    // Its guard finds nothing left to leave.
    drop(waiter);
    assert!(heard(&recorder).is_empty(), "left once");
    assert_eq!(
        table
            .totals
            .abandoned
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_replaced_head_whose_caller_is_gone_is_signalled_abandoned_once() {
    let recorder = Arc::new(Recorder::default());
    let table = table(&recorder);
    let _runner = start(&table);
    let (grant, waiter) = queue(&table);
    heard(&recorder);
    drop(grant);
    let Admission::Wait(_newcomer, _newcomer_guard) = table.admit(1, Policy::Replace) else {
        panic!("a replace newcomer waits for the cancelled runner");
    };
    assert_eq!(
        heard(&recorder),
        vec![
            Signal::SlotReplaced { was_running: true },
            Signal::SlotAbandoned,
            Signal::SlotQueued { depth: 1 },
        ]
    );
    assert_eq!(table.waiting(), 1, "the newcomer took the head's place");
    drop(waiter);
    assert!(heard(&recorder).is_empty(), "left once");
}

#[test]
fn waiters_gone_before_a_release_are_skipped_and_the_next_one_granted() {
    let recorder = Arc::new(Recorder::default());
    let table = table(&recorder);
    let runner = start(&table);
    let mut waiters: Vec<_> = (0..3).map(|_| queue(&table)).collect();
    heard(&recorder);
    let (mut third, _third_guard) = waiters.pop().unwrap();
    // The first two callers are gone, their guards not dropped yet.
    let gone: Vec<_> = waiters
        .into_iter()
        .map(|(grant, guard)| {
            drop(grant);
            guard
        })
        .collect();
    drop(runner);
    assert_eq!(
        heard(&recorder),
        vec![
            Signal::SlotAbandoned,
            Signal::SlotAbandoned,
            Signal::SlotStarted { waited: true },
        ]
    );
    assert!(third.try_recv().is_ok(), "the third is granted");
    drop(gone);
    assert!(heard(&recorder).is_empty(), "each left once");
    assert_eq!(table.waiting(), 0);
}
