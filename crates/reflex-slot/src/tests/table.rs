//! The table's leave paths that only a race reaches from the outside: a
//! waiter whose caller is gone (its grant receiver dropped) while its guard
//! is not dropped yet. Each must leave its queue once, signalled once.

use std::sync::Arc;

use reflex_core::signal::Recorder;
use reflex_core::{Component, Signal, Sink};

use crate::policy::Policy;
use crate::table::{Admission, Table};

fn table(recorder: &Arc<Recorder>) -> Arc<Table<u8>> {
    Arc::new(Table::new(
        4,
        8,
        true,
        Component::new("t"),
        Sink::new(Arc::clone(recorder)),
    ))
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
    let Admission::Start(runner, _) = table.admit(1, Policy::Queue) else {
        panic!("an idle slot starts at once");
    };
    let Admission::Wait(grant, waiter) = table.admit(1, Policy::Queue) else {
        panic!("a busy slot queues");
    };
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
    let Admission::Start(_runner, _) = table.admit(1, Policy::Queue) else {
        panic!("an idle slot starts at once");
    };
    let Admission::Wait(grant, waiter) = table.admit(1, Policy::Queue) else {
        panic!("a busy slot queues");
    };
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
    let Admission::Start(runner, _) = table.admit(1, Policy::Queue) else {
        panic!("an idle slot starts at once");
    };
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let Admission::Wait(grant, guard) = table.admit(1, Policy::Queue) else {
            panic!("a busy slot queues");
        };
        waiters.push((grant, guard));
    }
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
