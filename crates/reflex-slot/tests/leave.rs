//! Every request that joins a queue leaves it exactly once, and says so:
//! `SlotStarted { waited: true }`, `SlotReplaced { was_running: false }` or
//! `SlotAbandoned`. A witness counts waiting requests from these signals,
//! so one missed leave is a depth that drifts up for good.
//!
//! The inner service answers a request once the test marks its id done;
//! futures are polled by hand (the layer needs no runtime).

use std::sync::Arc;

use proptest::prelude::*;
use reflex_core::signal::Recorder;
use reflex_core::{BoxError, Signal};
use reflex_slot::{Policy, SlotAdmissionLayer};
use reflex_tests::slot_rig::{SlotRig, op};
use tower::{Layer, Service, service_fn};

/// Signals by what they say about queues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    queued: u64,
    started_after_waiting: u64,
    replaced_waiting: u64,
    abandoned: u64,
}

impl Tally {
    fn hear(&mut self, recorder: &Recorder) {
        for (_, signal) in recorder.signals() {
            match signal {
                Signal::SlotQueued { .. } => self.queued += 1,
                Signal::SlotStarted { waited: true } => self.started_after_waiting += 1,
                Signal::SlotReplaced { was_running: false } => self.replaced_waiting += 1,
                Signal::SlotAbandoned => self.abandoned += 1,
                _ => {}
            }
        }
        recorder.clear();
    }

    fn left(&self) -> u64 {
        self.started_after_waiting + self.replaced_waiting + self.abandoned
    }
}

/// The shared slot rig, reporting to a recorder whose signals are tallied.
struct Rig {
    inner: SlotRig,
    recorder: Arc<Recorder>,
    tally: Tally,
}

impl Rig {
    fn new(queue_limit: usize, global_queue_limit: usize) -> Self {
        let recorder = Arc::new(Recorder::with_capacity(100_000));
        Self {
            inner: SlotRig::new(queue_limit, global_queue_limit, recorder.clone()),
            recorder,
            tally: Tally::default(),
        }
    }

    /// The signals heard so far, tallied.
    fn tally(&mut self) -> Tally {
        self.tally.hear(&self.recorder);
        self.tally
    }

    /// What the signals say is waiting is what the table holds.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let tally = self.tally();
        prop_assert!(tally.left() <= tally.queued, "{:?}", tally);
        prop_assert_eq!(
            tally.queued - tally.left(),
            self.slots.metrics().waiting as u64,
            "{:?}",
            tally
        );
        let totals = self.slots.metrics();
        prop_assert_eq!(totals.queued, tally.queued);
        prop_assert_eq!(totals.abandoned, tally.abandoned);
        Ok(())
    }
}

impl std::ops::Deref for Rig {
    type Target = SlotRig;

    fn deref(&self) -> &SlotRig {
        &self.inner
    }
}

impl std::ops::DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut SlotRig {
        &mut self.inner
    }
}

#[test]
fn queued_requests_dropped_replaced_or_granted_each_leave_their_queue_once() {
    let mut rig = Rig::new(16, 1024);
    let runner = rig.send(0, Policy::Queue);
    let waiters: Vec<u32> = (0..6).map(|_| rig.send(0, Policy::Queue)).collect();
    assert_eq!(rig.tally().queued, 6);
    assert_eq!(rig.slots.metrics().waiting, 6);

    // Two callers give up.
    for id in [waiters[1], waiters[3]] {
        let at = rig.live.iter().position(|(i, _)| *i == id).unwrap();
        rig.drop_call(at);
    }
    assert_eq!(rig.tally().abandoned, 2);
    assert_eq!(rig.slots.metrics().waiting, 4);

    // A replace newcomer cancels the runner and replaces the head.
    let newcomer = rig.send(0, Policy::Replace);
    assert_eq!(rig.tally().replaced_waiting, 1, "{:?}", rig.tally());
    assert!(
        !rig.live.iter().any(|(id, _)| *id == runner),
        "the runner was replaced"
    );
    assert_eq!(
        rig.slots.metrics().waiting,
        3,
        "the newcomer started; three wait"
    );
    assert!(rig.live.iter().any(|(id, _)| *id == newcomer));

    // The rest are granted one after another.
    rig.finish_all();
    let tally = rig.tally();
    assert_eq!(
        tally,
        Tally {
            queued: 7,
            started_after_waiting: 4,
            replaced_waiting: 1,
            abandoned: 2,
        }
    );
    assert_eq!(tally.left(), tally.queued);
    assert_eq!(
        (rig.slots.metrics().waiting, rig.slots.metrics().busy_slots),
        (0, 0)
    );
    assert_eq!(rig.slots.metrics().abandoned, 2);
}

#[test]
fn waiters_left_behind_by_a_dropped_layer_and_service_still_leave_once() {
    let recorder = Arc::new(Recorder::default());
    let layer = SlotAdmissionLayer::builder()
        .key(|n: &u32| Some(*n % 2))
        .sink(recorder.clone())
        .build()
        .expect("valid");
    let slots = layer.handle();
    let mut svc = layer.layer(service_fn(|_: u32| {
        std::future::pending::<Result<u32, BoxError>>()
    }));
    let mut runner = tokio_test::task::spawn(svc.call(0));
    let mut first = tokio_test::task::spawn(svc.call(2));
    let mut second = tokio_test::task::spawn(svc.call(4));
    for call in [&mut runner, &mut first, &mut second] {
        assert!(call.poll().is_pending());
    }
    drop((svc, layer));
    assert_eq!(
        slots.metrics().waiting,
        2,
        "the table lives on with its requests"
    );

    drop(first);
    drop(runner);
    assert!(
        second.is_woken(),
        "the runner's slot goes on to the last waiter"
    );
    assert!(second.poll().is_pending(), "and it runs");
    drop(second);
    let mut tally = Tally::default();
    tally.hear(&recorder);
    assert_eq!(
        (tally.queued, tally.abandoned, tally.started_after_waiting),
        (2, 1, 1)
    );
    assert_eq!(
        (slots.metrics().waiting, slots.metrics().busy_slots),
        (0, 0)
    );
}

#[test]
fn a_waiter_replaced_then_dropped_unpolled_leaves_once() {
    let mut rig = Rig::new(16, 1024);
    rig.send(0, Policy::Queue);
    let head = rig.send(0, Policy::Queue);
    // The replacement is sent to the head, which is dropped before it
    // hears it.
    let at = rig.live.iter().position(|(id, _)| *id == head).unwrap();
    let (_, head_call) = rig.live.remove(at);
    rig.send(0, Policy::Replace);
    drop(head_call);
    rig.settle();
    assert_eq!(
        (rig.tally().replaced_waiting, rig.tally().abandoned),
        (1, 0),
        "replaced, not also abandoned"
    );
    rig.finish_all();
    assert_eq!(rig.tally().left(), rig.tally().queued);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn at_every_step_the_queue_signals_add_up_to_the_requests_waiting(
        queue_limit in 1usize..4,
        global_queue_limit in 1usize..8,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut rig = Rig::new(queue_limit, global_queue_limit);
        for op in ops {
            rig.apply(&op);
            rig.check()?;
        }
        // Grant or drop the rest: every queued request has left.
        rig.finish_all();
        rig.check()?;
        prop_assert_eq!(rig.tally().left(), rig.tally().queued);
        prop_assert_eq!((rig.slots.metrics().waiting, rig.slots.metrics().busy_slots), (0, 0));
    }
}
