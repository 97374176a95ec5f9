//! A slot admission layer driven by hand, for the tests that follow its
//! queues step by step (the slot crate's signals, the witness's depth): a
//! layer keyed by the request's slot, each request with its own policy,
//! over an inner service that answers an id once the test marks it done.
//! Futures are polled by hand: the layer needs no runtime.

use std::collections::HashSet;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use proptest::prelude::*;
use reflex::slot::{Policy, SlotAdmissionLayer, SlotHandle};
use reflex_core::{BoxError, SignalSink};
use tokio_test::task::Spawn;
use tower::{Layer, ServiceExt, service_fn};

/// `(slot, id, policy)`.
pub type Req = (u8, u32, Policy);

/// A call in flight, polled by hand.
pub type Response = Spawn<Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>>;

/// The layer (component `"jobs"`), its handle, and the calls not answered
/// yet.
pub struct SlotRig {
    /// The layer's handle.
    pub slots: SlotHandle<u8>,
    /// Calls not answered yet, by id.
    pub live: Vec<(u32, Response)>,
    svc: Box<dyn FnMut(Req) -> Response>,
    done: Arc<Mutex<HashSet<u32>>>,
    next_id: u32,
}

impl std::fmt::Debug for SlotRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotRig")
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl SlotRig {
    /// A layer with these queue bounds, reporting to `sink`.
    pub fn new(queue_limit: usize, global_queue_limit: usize, sink: impl SignalSink) -> Self {
        let layer = SlotAdmissionLayer::builder()
            .key(|req: &Req| Some(req.0))
            .policy_by(|req: &Req| Some(req.2))
            .queue_limit(queue_limit)
            .global_queue_limit(global_queue_limit)
            .component("jobs")
            .sink(sink)
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
            slots,
            live: Vec::new(),
            svc: Box::new(move |req| {
                let future = svc.clone().oneshot(req);
                tokio_test::task::spawn(Box::pin(future) as _)
            }),
            done,
            next_id: 0,
        }
    }

    /// Sends a request for `slot` with `policy`; its id.
    pub fn send(&mut self, slot: u8, policy: Policy) -> u32 {
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

    /// Polls every live call until none ends (an end may grant another);
    /// those that ended are gone.
    pub fn settle(&mut self) {
        loop {
            let before = self.live.len();
            self.live
                .retain_mut(|(_, response)| response.poll().is_pending());
            if self.live.len() == before {
                break;
            }
        }
    }

    /// Drops the live call at `at` (modulo), as a caller that gives up.
    pub fn drop_call(&mut self, at: usize) {
        if !self.live.is_empty() {
            let at = at % self.live.len();
            drop(self.live.remove(at));
            self.settle();
        }
    }

    /// Drops the live call `id`.
    pub fn drop_id(&mut self, id: u32) {
        let at = self.live.iter().position(|(i, _)| *i == id).expect("live");
        self.drop_call(at);
    }

    /// Answers the live call at `at` (modulo) as soon as it runs.
    pub fn finish(&mut self, at: usize) {
        if !self.live.is_empty() {
            let id = self.live[at % self.live.len()].0;
            self.done.lock().unwrap().insert(id);
            self.settle();
        }
    }

    /// Answers every call as soon as it runs: the rest are granted one
    /// after another.
    pub fn finish_all(&mut self) {
        self.done
            .lock()
            .unwrap()
            .extend(self.live.iter().map(|(id, _)| *id));
        self.settle();
        assert!(self.live.is_empty(), "every call ended");
    }

    /// Applies `op`.
    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Send { slot, policy } => {
                self.send(slot, policy);
            }
            Op::Drop(at) => self.drop_call(at),
            Op::Finish(at) => self.finish(at),
        }
    }
}

/// A step of a random run.
#[derive(Debug, Clone)]
pub enum Op {
    /// A request for `slot` with `policy`.
    Send {
        /// Its slot.
        slot: u8,
        /// Its policy.
        policy: Policy,
    },
    /// The live call at this index (modulo) is dropped.
    Drop(usize),
    /// The live call at this index (modulo) is answered.
    Finish(usize),
}

/// Steps of random runs over three slots, queueing most often.
pub fn op() -> impl Strategy<Value = Op> {
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
