//! Every request that joins a queue leaves it exactly once, and says so:
//! `SlotStarted { waited: true }`, `SlotReplaced { was_running: false }` or
//! `SlotAbandoned`. A witness counts waiting requests from these signals,
//! so one missed leave is a depth that drifts up for good.
//!
//! The inner service answers a request once the test marks its id done;
//! futures are polled by hand (the layer needs no runtime).

use std::collections::HashSet;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use proptest::prelude::*;
use reflex_core::signal::Recorder;
use reflex_core::{BoxError, Signal};
use reflex_slot::{Policy, SlotAdmissionLayer, SlotHandle};
use tokio_test::task::Spawn;
use tower::{Layer, Service, ServiceExt, service_fn};

/// `(slot, id, policy)`.
type Req = (u8, u32, Policy);

type Response = Spawn<std::pin::Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>>;

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

/// A slot layer keyed by the request's slot, each request with its own
/// policy, over an inner service that answers an id once it is `done`.
struct Rig {
    svc: Box<dyn FnMut(Req) -> Response>,
    slots: SlotHandle<u8>,
    done: Arc<Mutex<HashSet<u32>>>,
    recorder: Arc<Recorder>,
    tally: Tally,
    /// Calls not answered yet, by id.
    live: Vec<(u32, Response)>,
    next_id: u32,
}

impl Rig {
    fn new(queue_limit: usize, global_queue_limit: usize) -> Self {
        let recorder = Arc::new(Recorder::with_capacity(100_000));
        let layer = SlotAdmissionLayer::builder(|req: &Req| Some(req.0))
            .policy_by(|req: &Req| Some(req.2))
            .queue_limit(queue_limit)
            .global_queue_limit(global_queue_limit)
            .component("jobs")
            .sink(recorder.clone())
            .build()
            .expect("valid");
        let slots = layer.handle();
        let done = Arc::new(Mutex::new(HashSet::new()));
        let answers = Arc::clone(&done);
        let inner = service_fn(move |(_, id, _): Req| {
            let done = Arc::clone(&answers);
            poll_fn(move |_| {
                if done.lock().unwrap().contains(&id) {
                    Poll::Ready(Ok::<_, BoxError>(id))
                } else {
                    Poll::Pending
                }
            })
        });
        let svc = layer.layer(inner);
        Self {
            svc: Box::new(move |req| {
                let future = svc.clone().oneshot(req);
                tokio_test::task::spawn(Box::pin(future) as _)
            }),
            slots,
            done,
            recorder,
            tally: Tally::default(),
            live: Vec::new(),
            next_id: 0,
        }
    }

    fn send(&mut self, slot: u8, policy: Policy) -> u32 {
        self.next_id += 1;
        let id = self.next_id;
        let mut response = (self.svc)((slot, id, policy));
        // The first poll calls the layer: admission happens here.
        if response.poll().is_pending() {
            self.live.push((id, response));
        }
        self.settle();
        id
    }

    /// Polls every live call; those that ended are gone.
    fn settle(&mut self) {
        // A call ending may grant the next, which polls on the next pass.
        loop {
            let before = self.live.len();
            self.live
                .retain_mut(|(_, response)| response.poll().is_pending());
            if self.live.len() == before {
                break;
            }
        }
        self.tally.hear(&self.recorder);
    }

    fn drop_call(&mut self, at: usize) {
        if !self.live.is_empty() {
            let at = at % self.live.len();
            drop(self.live.remove(at));
            self.settle();
        }
    }

    /// Every call is answered as soon as it runs: the rest are granted
    /// one after another.
    fn finish_all(&mut self) {
        self.done
            .lock()
            .unwrap()
            .extend(self.live.iter().map(|(id, _)| *id));
        self.settle();
        assert!(self.live.is_empty(), "every call ended");
    }

    fn finish(&mut self, at: usize) {
        if !self.live.is_empty() {
            let id = self.live[at % self.live.len()].0;
            self.done.lock().unwrap().insert(id);
            self.settle();
        }
    }

    /// What the signals say is waiting is what the table holds.
    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert!(self.tally.left() <= self.tally.queued, "{:?}", self.tally);
        prop_assert_eq!(
            self.tally.queued - self.tally.left(),
            self.slots.waiting() as u64,
            "{:?}",
            self.tally
        );
        let totals = self.slots.totals();
        prop_assert_eq!(totals.queued, self.tally.queued);
        prop_assert_eq!(totals.abandoned, self.tally.abandoned);
        Ok(())
    }
}

#[test]
fn queued_requests_dropped_replaced_or_granted_each_leave_their_queue_once() {
    let mut rig = Rig::new(16, 1024);
    let runner = rig.send(0, Policy::Queue);
    let waiters: Vec<u32> = (0..6).map(|_| rig.send(0, Policy::Queue)).collect();
    assert_eq!(rig.tally.queued, 6);
    assert_eq!(rig.slots.waiting(), 6);

    // Two callers give up.
    for id in [waiters[1], waiters[3]] {
        let at = rig.live.iter().position(|(i, _)| *i == id).unwrap();
        rig.drop_call(at);
    }
    assert_eq!(rig.tally.abandoned, 2);
    assert_eq!(rig.slots.waiting(), 4);

    // A replace newcomer cancels the runner and replaces the head.
    let newcomer = rig.send(0, Policy::Replace);
    assert_eq!(rig.tally.replaced_waiting, 1, "{:?}", rig.tally);
    assert!(
        !rig.live.iter().any(|(id, _)| *id == runner),
        "the runner was replaced"
    );
    assert_eq!(rig.slots.waiting(), 3, "the newcomer started; three wait");
    assert!(rig.live.iter().any(|(id, _)| *id == newcomer));

    // The rest are granted one after another.
    rig.finish_all();
    let tally = rig.tally;
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
    assert_eq!((rig.slots.waiting(), rig.slots.busy_slots()), (0, 0));
    assert_eq!(rig.slots.totals().abandoned, 2);
}

#[test]
fn waiters_left_behind_by_a_dropped_layer_and_service_still_leave_once() {
    let recorder = Arc::new(Recorder::default());
    let layer = SlotAdmissionLayer::builder(|n: &u32| Some(*n % 2))
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
    assert_eq!(slots.waiting(), 2, "the table lives on with its requests");

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
    assert_eq!((slots.waiting(), slots.busy_slots()), (0, 0));
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
        (rig.tally.replaced_waiting, rig.tally.abandoned),
        (1, 0),
        "replaced, not also abandoned"
    );
    rig.finish_all();
    assert_eq!(rig.tally.left(), rig.tally.queued);
}

#[derive(Debug, Clone)]
enum Op {
    Send { slot: u8, policy: Policy },
    Drop(usize),
    Finish(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let policy = prop_oneof![
        4 => Just(Policy::Queue),
        2 => Just(Policy::Replace),
        1 => Just(Policy::DropIfRunning),
    ];
    prop_oneof![
        5 => (0u8..3, policy).prop_map(|(slot, policy)| Op::Send { slot, policy }),
        2 => any::<usize>().prop_map(Op::Drop),
        2 => any::<usize>().prop_map(Op::Finish),
    ]
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
            match op {
                Op::Send { slot, policy } => {
                    rig.send(slot, policy);
                }
                Op::Drop(at) => rig.drop_call(at),
                Op::Finish(at) => rig.finish(at),
            }
            rig.check()?;
        }
        // Grant or drop the rest: every queued request has left.
        rig.finish_all();
        rig.check()?;
        prop_assert_eq!(rig.tally.left(), rig.tally.queued);
        prop_assert_eq!((rig.slots.waiting(), rig.slots.busy_slots()), (0, 0));
    }
}
