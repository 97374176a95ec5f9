//! The slot queue depth a witness reports, heard from a real
//! `SlotAdmissionLayer`: the requests waiting in every slot of the
//! component, equal at each step to what the slot handle counts, back to
//! zero once the queues drain, whatever the waiters did (ran, were
//! replaced, were dropped).

use std::collections::HashSet;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use reflex_core::BoxError;
use reflex_slot::{Policy, SlotAdmissionLayer, SlotHandle};
use reflex_witness::{Clock, Witness};
use tokio_test::task::Spawn;
use tower::{Layer, ServiceExt, service_fn};

/// `(slot, id, policy)`.
type Req = (u8, u32, Policy);

type Response = Spawn<Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>>;

/// A slot layer reporting to a witness, over an inner service that answers
/// an id once the test marks it done. Calls are polled by hand.
struct Rig {
    witness: Witness,
    slots: SlotHandle<u8>,
    svc: Box<dyn FnMut(Req) -> Response>,
    done: Arc<Mutex<HashSet<u32>>>,
    live: Vec<(u32, Response)>,
    next_id: u32,
}

impl Rig {
    fn new(witness: Witness, queue_limit: usize, global_queue_limit: usize) -> Self {
        let layer = SlotAdmissionLayer::builder(|req: &Req| Some(req.0))
            .policy_by(|req: &Req| Some(req.2))
            .queue_limit(queue_limit)
            .global_queue_limit(global_queue_limit)
            .component("jobs")
            .sink(witness.clone())
            .build()
            .expect("valid");
        let slots = layer.handle();
        let done = Arc::new(Mutex::new(HashSet::new()));
        let answers = Arc::clone(&done);
        let svc = layer.layer(service_fn(move |(_, id, _): Req| {
            let done = Arc::clone(&answers);
            poll_fn(move |_| {
                if done.lock().unwrap().contains(&id) {
                    Poll::Ready(Ok::<_, BoxError>(id))
                } else {
                    Poll::Pending
                }
            })
        }));
        Self {
            witness,
            slots,
            svc: Box::new(move |req| tokio_test::task::spawn(Box::pin(svc.clone().oneshot(req)))),
            done,
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

    /// Polls every live call until none ends (an end may grant another).
    fn settle(&mut self) {
        loop {
            let before = self.live.len();
            self.live
                .retain_mut(|(_, response)| response.poll().is_pending());
            if self.live.len() == before {
                break;
            }
        }
    }

    fn drop_call(&mut self, at: usize) {
        if !self.live.is_empty() {
            let at = at % self.live.len();
            drop(self.live.remove(at));
            self.settle();
        }
    }

    fn drop_id(&mut self, id: u32) {
        let at = self.live.iter().position(|(i, _)| *i == id).expect("live");
        self.drop_call(at);
    }

    fn finish(&mut self, at: usize) {
        if !self.live.is_empty() {
            let id = self.live[at % self.live.len()].0;
            self.done.lock().unwrap().insert(id);
            self.settle();
        }
    }

    fn finish_all(&mut self) {
        self.done
            .lock()
            .unwrap()
            .extend(self.live.iter().map(|(id, _)| *id));
        self.settle();
        assert!(self.live.is_empty(), "every call ended");
    }

    /// The witness's depth for "jobs", read by a cycle now.
    fn depth(&self) -> usize {
        self.witness
            .cycle_now()
            .component("jobs")
            .map_or(0, |state| state.slot_queue_depth)
    }
}

#[tokio::test(start_paused = true)]
async fn the_slot_queue_depth_follows_drops_and_replacements_back_to_zero() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .interval(Duration::from_secs(1))
        .start()
        .unwrap();
    let mut rig = Rig::new(witness.clone(), 16, 1024);
    let step = |rig: &mut Rig, what: &str| {
        assert_eq!(rig.depth(), rig.slots.waiting(), "after {what}");
        rig.slots.waiting()
    };

    // Two slots busy, five waiting among them.
    rig.send(0, Policy::Queue);
    rig.send(1, Policy::Queue);
    let a: Vec<u32> = (0..3).map(|_| rig.send(0, Policy::Queue)).collect();
    let b: Vec<u32> = (0..2).map(|_| rig.send(1, Policy::Queue)).collect();
    assert_eq!(step(&mut rig, "queueing"), 5, "all slots together");

    // Callers that give up leave their queue.
    rig.drop_id(a[1]);
    rig.drop_id(b[0]);
    assert_eq!(step(&mut rig, "drops"), 3);

    // A newcomer replaces slot 0's runner and its head waiter, and takes
    // the slot when the runner is gone.
    rig.send(0, Policy::Replace);
    assert_eq!(step(&mut rig, "a replacement"), 2);
    // Two replacements on slot 1: the first replaces its runner and its
    // head waiter, the second the first once it runs.
    rig.send(1, Policy::Replace);
    rig.send(1, Policy::Replace);
    assert_eq!(step(&mut rig, "two replacements"), 1);

    rig.finish_all();
    assert_eq!(step(&mut rig, "the queues drained"), 0);

    // The runtime's own snapshot says the same.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let latest = witness.latest_snapshot();
    assert!(latest.cycle > 0);
    assert_eq!(latest.component("jobs").unwrap().slot_queue_depth, 0);
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
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_witness_depth_equals_the_slots_waiting_at_every_step(
        queue_limit in 1usize..4,
        global_queue_limit in 1usize..8,
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
        let mut rig = Rig::new(witness, queue_limit, global_queue_limit);
        for op in ops {
            match op.clone() {
                Op::Send { slot, policy } => {
                    rig.send(slot, policy);
                }
                Op::Drop(at) => rig.drop_call(at),
                Op::Finish(at) => rig.finish(at),
            }
            prop_assert_eq!(rig.depth(), rig.slots.waiting(), "after {:?}", op);
        }
        rig.finish_all();
        prop_assert_eq!((rig.depth(), rig.slots.waiting()), (0, 0));
    }
}
