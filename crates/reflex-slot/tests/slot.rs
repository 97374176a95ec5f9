//! Public behaviour of `SlotAdmissionLayer`.
//!
//! Most tests drive the layer over a tower-test mock whose calls they answer
//! by hand, so a request stays "running" in the inner service for as long as
//! the test says. The mock is wrapped to watch its response futures, so a
//! test sees the moment the layer drops one (and what the slot's queue held
//! then). Requests are `(slot, id)`; an
//! empty slot name means "no slot" (the request passes through).

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, Component, ConfigError, ConfigErrorKind, RejectKind, Rejected, Signal,
};
use reflex_slot::future::ResponseFuture;
use reflex_slot::{
    Policy, PolicyOf, SlotAdmission, SlotAdmissionBuilder, SlotAdmissionLayer, SlotHandle,
};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

// === helpers ===

type Slot = &'static str;
type Req = (Slot, u32);
type SlotOf = fn(&Req) -> Option<Slot>;

/// The request's slot; the empty name is no slot.
fn slot_of(req: &Req) -> Option<Slot> {
    (!req.0.is_empty()).then_some(req.0)
}

/// Ids from `REPLACE` on carry `Policy::Replace` (with [`mixed`]).
const REPLACE: u32 = 100;
/// Ids from `DROP` on carry `Policy::DropIfRunning` (with [`mixed`]).
const DROP: u32 = 200;

/// Per-request policies by id: below 100 the layer's, then Replace, then
/// DropIfRunning.
fn mixed(req: &Req) -> Option<Policy> {
    match req.1 {
        0..REPLACE => None,
        REPLACE..DROP => Some(Policy::Replace),
        _ => Some(Policy::DropIfRunning),
    }
}

/// A layer guarding "jobs", keyed by [`slot_of`]; otherwise the defaults.
fn builder() -> SlotAdmissionBuilder<Req, Slot, SlotOf> {
    SlotAdmissionLayer::builder()
        .key(slot_of as SlotOf)
        .component("jobs")
}

/// The inner service: a tower-test mock whose response futures are
/// watched while they are alive.
#[derive(Clone)]
struct Tracked {
    mock: mock::Mock<Req, u32>,
    watch: Arc<Watch>,
}

/// What the test sees of the inner response futures.
struct Watch {
    /// Inner response futures alive.
    live: AtomicUsize,
    /// Each request whose inner future was dropped, with the depth of its
    /// slot's queue at that moment.
    dropped: Mutex<Vec<(Req, usize)>>,
    slots: SlotHandle<Slot>,
}

/// One live inner response future.
struct Alive {
    req: Req,
    watch: Arc<Watch>,
}

impl Drop for Alive {
    fn drop(&mut self) {
        let depth = self.watch.slots.queue_depth(&self.req.0);
        self.watch.dropped.lock().unwrap().push((self.req, depth));
        self.watch.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<Req> for Tracked {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.mock.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let answer = self.mock.call(req);
        self.watch.live.fetch_add(1, Ordering::SeqCst);
        let alive = Alive {
            req,
            watch: Arc::clone(&self.watch),
        };
        Box::pin(async move {
            let _alive = alive;
            answer.await
        })
    }
}

type InFlight = tokio_test::task::Spawn<ResponseFuture<Tracked, Req, Slot>>;

/// A slot layer around a [`Tracked`] mock, and the layer's handle.
struct Harness<P> {
    svc: mock::Spawn<SlotAdmission<Tracked, Slot, SlotOf, P>>,
    inner: mock::Handle<Req, u32>,
    slots: SlotHandle<Slot>,
    watch: Arc<Watch>,
}

/// A request running in the inner service, waiting for its answer.
struct Call {
    response: InFlight,
    reply: mock::SendResponse<u32>,
}

impl<P: PolicyOf<Req> + Clone> Harness<P> {
    fn new(layer: Result<SlotAdmissionLayer<Slot, SlotOf, P>, ConfigError>) -> Self {
        let layer = layer.expect("a valid configuration");
        let slots = layer.handle();
        let (mock, inner) = mock::pair();
        let watch = Arc::new(Watch {
            live: AtomicUsize::new(0),
            dropped: Mutex::new(Vec::new()),
            slots: slots.clone(),
        });
        let svc = mock::Spawn::new(layer.layer(Tracked {
            mock,
            watch: Arc::clone(&watch),
        }));
        Self {
            svc,
            inner,
            slots,
            watch,
        }
    }

    /// Calls the layer (which is always ready); the response is not polled.
    fn send(&mut self, slot: Slot, id: u32) -> InFlight {
        assert_ready_ok!(self.svc.poll_ready(), "the layer never waits in poll_ready");
        tokio_test::task::spawn(self.svc.call((slot, id)))
    }

    /// A request that must reach the inner service at once and wait there.
    fn start(&mut self, slot: Slot, id: u32) -> Call {
        let mut response = self.send(slot, id);
        assert_pending!(response.poll(), "{slot}/{id} runs in the inner service");
        let reply = self.reached(slot, id);
        Call { response, reply }
    }

    /// A request that must wait for its slot, outside the inner service.
    fn wait(&mut self, slot: Slot, id: u32) -> InFlight {
        let mut response = self.send(slot, id);
        assert_pending!(response.poll(), "{slot}/{id} waits");
        self.nothing_reached();
        response
    }

    /// A waiter that must have been woken with its slot: polled, it
    /// reaches the inner service and runs there.
    fn resume(&mut self, mut waiter: InFlight, slot: Slot, id: u32) -> Call {
        assert!(waiter.is_woken(), "{slot}/{id} is woken with its slot");
        assert_pending!(waiter.poll(), "{slot}/{id} runs in the inner service");
        let reply = self.reached(slot, id);
        Call {
            response: waiter,
            reply,
        }
    }

    /// A request that must be refused at once, without reaching the inner
    /// service, with a rejection naming "jobs": its kind.
    fn refused(&mut self, slot: Slot, id: u32) -> RejectKind {
        let mut response = self.send(slot, id);
        let kind = rejection(assert_ready!(response.poll(), "a refusal is ready at once"));
        self.nothing_reached();
        kind
    }

    /// The next request the inner service received, which must be
    /// `slot`/`id`: its reply.
    fn reached(&mut self, slot: Slot, id: u32) -> mock::SendResponse<u32> {
        let (req, reply) = assert_ready!(self.inner.poll_request())
            .unwrap_or_else(|| panic!("{slot}/{id} should have reached the inner service"));
        assert_eq!(req, (slot, id), "the inner service got the wrong request");
        reply
    }

    /// Nothing new reached the inner service.
    fn nothing_reached(&mut self) {
        if let Poll::Ready(Some((req, _))) = self.inner.poll_request() {
            panic!("{req:?} reached the inner service");
        }
    }

    /// Inner response futures alive.
    fn live(&self) -> usize {
        self.watch.live.load(Ordering::SeqCst)
    }

    /// The depth of `slot`'s queue when the inner future of `slot`/`id`
    /// was dropped.
    fn depth_when_dropped(&self, slot: Slot, id: u32) -> usize {
        let dropped = self.watch.dropped.lock().unwrap();
        let found = dropped.iter().find(|(req, _)| *req == (slot, id));
        found
            .unwrap_or_else(|| panic!("{slot}/{id}'s inner future is alive"))
            .1
    }

    /// `(started, queued, replaced, busy, queue_full)`.
    fn totals(&self) -> (u64, u64, u64, u64, u64) {
        let t = self.slots.metrics();
        (t.started, t.queued, t.replaced, t.busy, t.queue_full)
    }
}

impl Call {
    /// The inner service answers `answer`: what the caller gets.
    fn finish(mut self, answer: u32) -> u32 {
        self.reply.send_response(answer);
        assert!(self.response.is_woken(), "the answer wakes the caller");
        assert_ready_ok!(self.response.poll())
    }
}

/// The kind of the rejection `result` must be.
fn rejection(result: Result<u32, BoxError>) -> RejectKind {
    let err = result.expect_err("a rejection, not an answer");
    let rejected = Rejected::find(&*err).unwrap_or_else(|| panic!("not a rejection: {err}"));
    assert_eq!(rejected.component().as_str(), "jobs");
    rejected.kind()
}

/// The signals heard since the last call, all of "jobs"; forgets them.
fn heard(recorder: &Recorder) -> Vec<Signal> {
    let signals = recorder
        .signals()
        .into_iter()
        .map(|(component, signal)| {
            assert_eq!(component, Component::new("jobs"));
            signal
        })
        .collect();
    recorder.clear();
    signals
}

// === one at a time ===

#[tokio::test]
async fn a_second_request_of_a_busy_slot_waits_outside_the_inner_service() {
    let mut h = Harness::new(builder().build());
    let first = h.start("a", 1);
    let mut second = h.wait("a", 2);
    for _ in 0..3 {
        assert_pending!(second.poll());
        h.nothing_reached();
    }
    assert!(h.slots.is_busy(&"a"));
    assert_eq!(h.slots.queue_depth(&"a"), 1);
    assert_eq!(h.live(), 1, "one inner future for the slot");

    assert_eq!(first.finish(10), 10);
    let second = h.resume(second, "a", 2);
    assert_eq!(h.live(), 1, "still one inner future for the slot");
    assert_eq!(second.finish(20), 20);
}

#[tokio::test]
async fn requests_of_different_slots_run_side_by_side() {
    let mut h = Harness::new(builder().build());
    let a = h.start("a", 1);
    let b = h.start("b", 1);
    let c = h.start("c", 1);
    assert_eq!(h.live(), 3);
    assert_eq!(h.slots.metrics().busy_slots, 3);
    assert!(["a", "b", "c"].iter().all(|slot| h.slots.is_busy(slot)));
    assert_eq!(h.slots.metrics().waiting, 0);

    assert_eq!(b.finish(2), 2);
    assert!(!h.slots.is_busy(&"b"));
    assert_eq!(h.slots.metrics().busy_slots, 2);
    assert_eq!(a.finish(1), 1);
    assert_eq!(c.finish(3), 3);
    assert_eq!(h.totals(), (3, 0, 0, 0, 0));
}

#[tokio::test]
async fn a_request_without_a_slot_passes_through_while_others_run() {
    let mut h = Harness::new(builder().policy(Policy::DropIfRunning).build());
    let a = h.start("a", 1);
    // Two requests with no slot run side by side with "a" and each other.
    let first = h.start("", 1);
    let mut second = h.start("", 2);
    assert_eq!(h.live(), 3);
    assert_eq!(h.slots.metrics().busy_slots, 1, "no slot is taken for them");
    assert!(!h.slots.is_busy(&""));
    assert_eq!(
        h.totals(),
        (1, 0, 0, 0, 0),
        "no admission decision for them"
    );

    // Their answers and errors pass through untouched.
    assert_eq!(first.finish(7), 7);
    second.reply.send_error("inner failure");
    let err = assert_ready!(second.response.poll()).unwrap_err();
    assert!(Rejected::find(&*err).is_none());
    assert_eq!(err.to_string(), "inner failure");
    assert_eq!(a.finish(1), 1);
}

// === queue ===

#[tokio::test]
async fn waiters_start_in_fifo_order_as_each_runner_finishes() {
    let mut h = Harness::new(builder().build());
    let mut running = h.start("a", 1);
    let mut waiters: Vec<(u32, InFlight)> = (2..=5).map(|id| (id, h.wait("a", id))).collect();
    assert_eq!(h.slots.queue_depth(&"a"), 4);
    assert_eq!(h.slots.metrics().waiting, 4);

    while !waiters.is_empty() {
        running.finish(0);
        let (id, next) = waiters.remove(0);
        for (other, rest) in &waiters {
            assert!(!rest.is_woken(), "waiter {other} is not woken before {id}");
        }
        running = h.resume(next, "a", id);
        h.nothing_reached();
        assert_eq!(h.slots.queue_depth(&"a"), waiters.len());
    }
    running.finish(0);
    assert_eq!(h.slots.metrics().busy_slots, 0);
    assert_eq!(h.totals(), (5, 4, 0, 0, 0));
}

#[tokio::test]
async fn a_full_slot_queue_refuses_at_once_with_slot_queue_full() {
    let mut h = Harness::new(builder().queue_limit(2).build());
    let _a1 = h.start("a", 1);
    let _a2 = h.wait("a", 2);
    let _a3 = h.wait("a", 3);
    assert_eq!(h.refused("a", 4), RejectKind::SlotQueueFull);
    assert_eq!(h.slots.queue_depth(&"a"), 2);

    // Another slot has a queue of its own.
    let _b1 = h.start("b", 1);
    let _b2 = h.wait("b", 2);
    assert_eq!(h.slots.metrics().waiting, 3);
    assert_eq!(h.totals().4, 1);
}

#[tokio::test]
async fn a_full_global_queue_refuses_at_once_with_slot_queue_full() {
    let mut h = Harness::new(builder().global_queue_limit(2).build());
    let _a1 = h.start("a", 1);
    let _b1 = h.start("b", 1);
    let _a2 = h.wait("a", 2);
    let _b2 = h.wait("b", 2);
    // An idle slot still starts: the bound is on waiting requests only.
    let _c1 = h.start("c", 1);
    assert_eq!(h.refused("c", 2), RejectKind::SlotQueueFull);
    assert_eq!(h.refused("a", 3), RejectKind::SlotQueueFull);
    assert_eq!(h.slots.metrics().waiting, 2);
    assert_eq!(h.slots.queue_depth(&"c"), 0);
    assert_eq!(h.totals(), (3, 2, 0, 0, 2));
}

#[tokio::test]
async fn refusals_take_no_place_and_places_come_back_as_queues_drain() {
    let mut h = Harness::new(builder().queue_limit(1).global_queue_limit(2).build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    assert_eq!(h.refused("a", 3), RejectKind::SlotQueueFull, "slot full");
    // The refusal for a full slot took no global place: "b" can still queue.
    let _b1 = h.start("b", 1);
    let _b2 = h.wait("b", 2);
    let _c1 = h.start("c", 1);
    assert_eq!(h.refused("c", 2), RejectKind::SlotQueueFull, "global full");
    assert_eq!(h.refused("c", 3), RejectKind::SlotQueueFull, "global full");
    assert_eq!(h.slots.metrics().waiting, 2);

    // A waiter that leaves gives its place back, to any slot.
    drop(a2);
    assert_eq!(h.slots.metrics().waiting, 1);
    let c4 = h.wait("c", 4);
    assert_eq!(h.slots.metrics().waiting, 2);
    drop(c4);

    // A waiter that starts gives its place back too.
    let a5 = h.wait("a", 5);
    assert_eq!(h.refused("c", 6), RejectKind::SlotQueueFull);
    a1.finish(1);
    assert_eq!(
        h.slots.metrics().waiting,
        1,
        "a5 left the queue for the slot"
    );
    let _c7 = h.wait("c", 7);
    assert_eq!(h.slots.metrics().waiting, 2);
    drop(a5);
    assert!(!h.slots.is_busy(&"a"), "a5 was the last of slot a");
    assert_eq!(h.totals().4, 4);
}

// === replace ===

#[tokio::test]
async fn replace_cancels_the_runner_and_starts_once_its_inner_future_is_gone() {
    let mut h = Harness::new(builder().policy(Policy::Replace).build());
    let mut first = h.start("a", 1);
    let mut second = h.wait("a", 2);
    assert!(
        first.response.is_woken(),
        "the runner hears it was replaced"
    );
    assert_eq!(h.live(), 1, "its inner future lives until its caller polls");
    assert_pending!(second.poll());
    h.nothing_reached();

    // No answer was sent: the caller gets Replaced, not the inner outcome.
    let replaced = assert_ready!(first.response.poll());
    assert_eq!(rejection(replaced), RejectKind::Replaced);
    assert_eq!(h.live(), 0, "the replaced inner future is dropped");
    let second = h.resume(second, "a", 2);
    assert_eq!(h.live(), 1);

    // The old answer goes nowhere; the newcomer's reaches its caller.
    first.reply.send_response(10);
    assert_eq!(second.finish(20), 20);
    assert_eq!(h.totals(), (2, 1, 1, 0, 0));
}

#[tokio::test]
async fn a_replaced_runner_whose_caller_drops_it_lets_the_newcomer_start() {
    let mut h = Harness::new(builder().policy(Policy::Replace).build());
    let first = h.start("a", 1);
    let second = h.wait("a", 2);
    drop(first);
    assert_eq!(h.live(), 0);
    assert_eq!(h.resume(second, "a", 2).finish(2), 2);
    assert_eq!(h.slots.metrics().busy_slots, 0);
}

#[tokio::test]
async fn a_cancelled_inner_future_is_gone_before_the_next_request_is_granted() {
    let mut h = Harness::new(builder().policy_by(mixed).build());
    // Replaced: the newcomer was still queued when a1's inner future died.
    let mut a1 = h.start("a", 1);
    let a2 = h.wait("a", REPLACE + 2);
    assert_eq!(
        rejection(assert_ready!(a1.response.poll())),
        RejectKind::Replaced
    );
    assert_eq!(h.depth_when_dropped("a", 1), 1);
    assert_eq!(h.slots.queue_depth(&"a"), 0, "and then it was granted");
    h.resume(a2, "a", REPLACE + 2).finish(2);

    // Dropped by its caller: the same order.
    let b1 = h.start("b", 1);
    let b2 = h.wait("b", 2);
    drop(b1);
    assert_eq!(h.depth_when_dropped("b", 1), 1);
    assert_eq!(h.slots.queue_depth(&"b"), 0, "and then it was granted");
    h.resume(b2, "b", 2).finish(2);
}

#[tokio::test]
async fn replace_also_replaces_the_head_waiter_and_the_rest_keep_their_place() {
    let mut h = Harness::new(builder().policy_by(mixed).build());
    let mut a1 = h.start("a", 1);
    let mut a2 = h.wait("a", 2);
    let mut a3 = h.wait("a", 3);
    let newcomer = h.wait("a", REPLACE + 1);
    assert_eq!(h.slots.queue_depth(&"a"), 2, "the newcomer took a2's place");

    assert!(a2.is_woken());
    assert_eq!(rejection(assert_ready!(a2.poll())), RejectKind::Replaced);
    assert!(!a3.is_woken(), "a3 keeps its place");
    assert_pending!(a3.poll());
    assert_eq!(
        rejection(assert_ready!(a1.response.poll())),
        RejectKind::Replaced
    );

    // The newcomer runs first, then a3.
    assert!(!a3.is_woken());
    let newcomer = h.resume(newcomer, "a", REPLACE + 1);
    h.nothing_reached();
    newcomer.finish(0);
    h.resume(a3, "a", 3).finish(0);
    assert_eq!(h.totals(), (3, 3, 2, 0, 0));
}

#[tokio::test]
async fn a_second_replace_replaces_only_the_waiting_newcomer() {
    let recorder = Arc::new(Recorder::default());
    let mut h = Harness::new(
        builder()
            .policy(Policy::Replace)
            .sink(recorder.clone())
            .build(),
    );
    let mut first = h.start("a", 1);
    let mut second = h.wait("a", 2);
    recorder.clear();

    let mut third = h.wait("a", 3);
    assert_eq!(
        heard(&recorder),
        vec![
            Signal::SlotReplaced { was_running: false },
            Signal::SlotQueued { depth: 1 },
        ],
        "the runner, already cancelled, is not replaced twice"
    );
    assert_eq!(
        rejection(assert_ready!(second.poll())),
        RejectKind::Replaced
    );
    assert_eq!(h.slots.queue_depth(&"a"), 1);
    assert_pending!(third.poll());
    h.nothing_reached();

    assert_eq!(
        rejection(assert_ready!(first.response.poll())),
        RejectKind::Replaced
    );
    assert_eq!(h.resume(third, "a", 3).finish(3), 3);
    assert_eq!(h.totals(), (2, 2, 2, 0, 0));
}

#[tokio::test]
async fn a_replace_refused_by_the_global_queue_bound_leaves_the_runner_alone() {
    let mut h = Harness::new(builder().global_queue_limit(1).policy_by(mixed).build());
    let _a1 = h.start("a", 1);
    let _a2 = h.wait("a", 2);
    let mut b1 = h.start("b", 1);
    assert_eq!(h.refused("b", REPLACE + 1), RejectKind::SlotQueueFull);
    assert!(!b1.response.is_woken(), "the runner was not cancelled");
    assert_pending!(b1.response.poll());
    assert_eq!(h.totals().2, 0, "nobody was replaced");
    assert_eq!(b1.finish(7), 7);
}

#[tokio::test]
async fn a_granted_waiter_replaced_before_it_ran_never_reaches_the_inner_service() {
    let mut h = Harness::new(builder().policy_by(mixed).build());
    let a1 = h.start("a", 1);
    let mut a2 = h.wait("a", 2);
    a1.finish(1);
    assert!(a2.is_woken(), "a2 was granted the slot");
    let mut newcomer = h.wait("a", REPLACE + 1);

    assert_eq!(rejection(assert_ready!(a2.poll())), RejectKind::Replaced);
    assert_eq!(h.live(), 0);
    h.nothing_reached();
    assert_pending!(newcomer.poll());
    h.reached("a", REPLACE + 1);
}

// === drop if running ===

#[tokio::test]
async fn drop_if_running_refuses_with_slot_busy_while_the_slot_runs() {
    let mut h = Harness::new(builder().policy(Policy::DropIfRunning).build());
    let a1 = h.start("a", 1);
    assert_eq!(h.refused("a", 2), RejectKind::SlotBusy);
    assert_eq!(h.refused("a", 3), RejectKind::SlotBusy);
    let b1 = h.start("b", 1);
    assert_eq!(h.slots.metrics().waiting, 0);
    a1.finish(1);
    b1.finish(1);
    assert_eq!(h.totals(), (2, 0, 0, 2, 0));
}

#[tokio::test]
async fn drop_if_running_refuses_while_waiters_queue_and_is_admitted_when_idle() {
    let mut h = Harness::new(builder().policy_by(mixed).build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    assert_eq!(h.refused("a", DROP + 1), RejectKind::SlotBusy);
    a1.finish(1);
    let a2 = h.resume(a2, "a", 2);
    assert_eq!(h.refused("a", DROP + 2), RejectKind::SlotBusy);
    a2.finish(2);

    assert!(!h.slots.is_busy(&"a"));
    let idle = h.start("a", DROP + 3);
    assert_eq!(idle.finish(3), 3);
    assert_eq!(h.totals(), (3, 1, 0, 2, 0));
}

// === per-request policy ===

#[tokio::test]
async fn a_per_request_policy_overrides_the_layers() {
    let mut h = Harness::new(
        builder()
            .policy(Policy::DropIfRunning)
            .policy_by(|r: &(&'static str, u32)| match r.1 {
                2 => Some(Policy::Queue),
                4 => Some(Policy::Replace),
                _ => None,
            })
            .build(),
    );
    let mut a1 = h.start("a", 1);
    let mut a2 = h.wait("a", 2);
    assert_eq!(
        h.refused("a", 3),
        RejectKind::SlotBusy,
        "the layer's policy"
    );
    let mut a4 = h.wait("a", 4);
    assert_eq!(
        rejection(assert_ready!(a1.response.poll())),
        RejectKind::Replaced
    );
    assert_eq!(rejection(assert_ready!(a2.poll())), RejectKind::Replaced);
    assert_pending!(a4.poll());
    h.reached("a", 4);
    assert_eq!(h.totals(), (2, 2, 2, 1, 0));
}

// === waiter cancellation ===

#[tokio::test]
async fn a_dropped_waiter_leaves_the_queue_and_the_rest_keep_their_order() {
    let mut h = Harness::new(builder().build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    let a3 = h.wait("a", 3);
    let a4 = h.wait("a", 4);
    let a5 = h.wait("a", 5);
    drop(a3);
    assert_eq!(
        (h.slots.queue_depth(&"a"), h.slots.metrics().waiting),
        (3, 3)
    );
    drop(a2);
    assert_eq!(
        (h.slots.queue_depth(&"a"), h.slots.metrics().waiting),
        (2, 2)
    );

    a1.finish(1);
    assert!(!a5.is_woken());
    let a4 = h.resume(a4, "a", 4);
    h.nothing_reached();
    a4.finish(4);
    h.resume(a5, "a", 5).finish(5);
    assert_eq!(h.slots.metrics().busy_slots, 0);
    assert_eq!(h.slots.metrics().waiting, 0);
}

#[tokio::test]
async fn a_waiter_dropped_right_after_its_grant_hands_the_slot_on() {
    let mut h = Harness::new(builder().build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    let a3 = h.wait("a", 3);
    a1.finish(1);
    assert!(a2.is_woken(), "a2 was granted the slot");
    assert!(!a3.is_woken());
    assert!(h.slots.is_busy(&"a"), "a2 holds the slot");

    // a2's caller gives up without polling it again: the slot goes on.
    drop(a2);
    h.resume(a3, "a", 3).finish(3);
    assert_eq!(h.slots.metrics().busy_slots, 0);
    assert_eq!(h.slots.metrics().waiting, 0);
}

#[tokio::test]
async fn a_slot_whose_granted_last_waiter_is_dropped_is_removed() {
    let mut h = Harness::new(builder().build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    a1.finish(1);
    assert!(h.slots.is_busy(&"a"), "a2 holds the slot");
    drop(a2);
    assert_eq!(h.slots.metrics().busy_slots, 0);
    let _again = h.start("a", 3);
}

// === running request dropped or panicking ===

#[tokio::test]
async fn a_dropped_runner_frees_the_slot_for_the_next_waiter() {
    let mut h = Harness::new(builder().build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    drop(a1);
    assert_eq!(h.live(), 0, "its inner future is dropped");
    let a2 = h.resume(a2, "a", 2);
    drop(a2);
    assert_eq!(h.live(), 0);
    assert_eq!(h.slots.metrics().busy_slots, 0);
}

#[tokio::test]
async fn a_panic_in_the_inner_future_frees_the_slot() {
    let layer = builder().build().unwrap();
    let slots = layer.handle();
    let mut svc = layer.layer(service_fn(|(_, id): Req| async move {
        assert_ne!(id, 1, "the inner future of request 1 panics");
        Ok::<u32, BoxError>(id)
    }));
    // Both are admitted in `call`: the first takes the slot, the second
    // waits for it.
    let first = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(("a", 1));
    let second = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(("a", 2));
    assert_eq!(slots.queue_depth(&"a"), 1);

    let panicked = tokio::spawn(first).await.unwrap_err();
    assert!(panicked.is_panic());
    assert_eq!(slots.queue_depth(&"a"), 0, "the slot went on to the second");
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(slots.metrics().busy_slots, 0);
}

#[tokio::test]
async fn a_panic_in_the_inner_call_frees_the_slot() {
    let layer = builder().build().unwrap();
    let slots = layer.handle();
    let mut svc = mock::Spawn::new(layer.layer(service_fn(|(_, id): Req| {
        assert_ne!(id, 1, "the inner call of request 1 panics");
        async move {
            if id == 0 {
                std::future::pending::<()>().await;
            }
            Ok::<u32, BoxError>(id)
        }
    })));

    // Admitted at once: the panic unwinds out of the layer's `call`.
    assert_ready_ok!(svc.poll_ready());
    assert!(catch_unwind(AssertUnwindSafe(|| svc.call(("a", 1)))).is_err());
    assert_eq!(slots.metrics().busy_slots, 0);

    // Admitted from the queue: it unwinds out of the waiter's poll.
    assert_ready_ok!(svc.poll_ready());
    let runner = tokio_test::task::spawn(svc.call(("a", 0)));
    assert_ready_ok!(svc.poll_ready());
    let mut waiter = tokio_test::task::spawn(svc.call(("a", 1)));
    assert_pending!(waiter.poll());
    drop(runner);
    assert!(waiter.is_woken());
    assert!(catch_unwind(AssertUnwindSafe(|| waiter.poll())).is_err());
    assert_eq!(slots.metrics().busy_slots, 0, "freed by the unwinding");
    drop(waiter);

    assert_ready_ok!(svc.poll_ready());
    let mut next = tokio_test::task::spawn(svc.call(("a", 2)));
    assert_eq!(assert_ready_ok!(next.poll()), 2, "admitted at once");
}

// === idle removal ===

#[tokio::test]
async fn a_million_distinct_slots_run_one_after_another_leave_the_table_empty() {
    let layer = SlotAdmissionLayer::builder()
        .key(|n: &u32| Some(*n))
        .build()
        .unwrap();
    let slots = layer.handle();
    let mut svc = layer.layer(service_fn(|n: u32| {
        std::future::ready(Ok::<u32, Infallible>(n))
    }));
    for n in 0..1_000_000 {
        let answer = svc.ready().await.unwrap().call(n).await.unwrap();
        assert_eq!(answer, n);
    }
    assert_eq!(slots.metrics().busy_slots, 0);
    assert_eq!(slots.metrics().started, 1_000_000);
}

#[tokio::test]
async fn a_slot_is_removed_once_its_queue_drains() {
    let mut h = Harness::new(builder().build());
    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    let a3 = h.wait("a", 3);
    drop(a3);
    a1.finish(1);
    assert_eq!(h.slots.metrics().busy_slots, 1, "a2 runs");
    h.resume(a2, "a", 2).finish(2);
    assert_eq!(h.slots.metrics().busy_slots, 0);
    assert!(!h.slots.is_busy(&"a"));
    assert_eq!(h.slots.queue_depth(&"a"), 0);
    assert_eq!(h.slots.metrics().waiting, 0);
}

// === signals and totals ===

#[tokio::test]
async fn each_decision_is_signalled_as_it_happens_and_counted() {
    let recorder = Arc::new(Recorder::default());
    let mut h = Harness::new(
        builder()
            .queue_limit(2)
            .policy_by(mixed)
            .sink(recorder.clone())
            .build(),
    );
    let mut a1 = h.start("a", 1);
    assert_eq!(
        heard(&recorder),
        vec![Signal::SlotStarted { waited: false }]
    );
    let mut a2 = h.wait("a", 2);
    assert_eq!(heard(&recorder), vec![Signal::SlotQueued { depth: 1 }]);
    let a3 = h.wait("a", 3);
    assert_eq!(heard(&recorder), vec![Signal::SlotQueued { depth: 2 }]);
    assert_eq!(h.refused("a", 4), RejectKind::SlotQueueFull);
    assert_eq!(heard(&recorder), vec![Signal::SlotQueueFull]);
    assert_eq!(h.refused("a", DROP + 1), RejectKind::SlotBusy);
    assert_eq!(heard(&recorder), vec![Signal::SlotBusy]);
    assert_eq!(h.totals(), (1, 2, 0, 1, 1));

    let newcomer = h.wait("a", REPLACE + 1);
    assert_eq!(
        heard(&recorder),
        vec![
            Signal::SlotReplaced { was_running: true },
            Signal::SlotReplaced { was_running: false },
            Signal::SlotQueued { depth: 2 },
        ]
    );
    assert_eq!(rejection(assert_ready!(a2.poll())), RejectKind::Replaced);
    assert!(heard(&recorder).is_empty(), "no new decision");
    assert_eq!(
        rejection(assert_ready!(a1.response.poll())),
        RejectKind::Replaced
    );
    assert_eq!(heard(&recorder), vec![Signal::SlotStarted { waited: true }]);

    h.resume(newcomer, "a", REPLACE + 1).finish(0);
    assert_eq!(heard(&recorder), vec![Signal::SlotStarted { waited: true }]);
    h.resume(a3, "a", 3).finish(0);
    assert!(heard(&recorder).is_empty(), "an idle slot is no decision");
    assert_eq!(h.totals(), (3, 3, 2, 1, 1));
}

// === config ===

#[test]
fn a_zero_queue_limit_is_a_config_error_naming_it() {
    for (result, setting) in [
        (builder().queue_limit(0).build(), "queue_limit"),
        (
            builder().global_queue_limit(0).build(),
            "global_queue_limit",
        ),
    ] {
        let err = result.expect_err(setting);
        assert_eq!(err.layer(), "slot");
        assert_eq!(err.setting(), setting);
        assert_eq!(err.kind(), ConfigErrorKind::Zero);
    }
}

#[tokio::test]
async fn queue_limits_of_one_are_valid_and_hold_one_waiter() {
    let mut h = Harness::new(builder().queue_limit(1).global_queue_limit(1).build());
    let _a1 = h.start("a", 1);
    let _a2 = h.wait("a", 2);
    assert_eq!(h.refused("a", 3), RejectKind::SlotQueueFull);
}

// === the contract every layer follows ===

#[tokio::test]
async fn a_stack_builds_the_slot_layer_as_any_layer_and_reads_its_metrics() {
    use reflex_core::{Classified, DefaultClassifier, Handled, LayerBuilder, LayerHandle, Sink};

    let recorder = Arc::new(Recorder::default());
    let part = SlotAdmissionLayer::builder()
        .key(slot_of as SlotOf)
        .classified_by(DefaultClassifier);
    let part = LayerBuilder::component(part, Component::new("jobs"));
    let part = LayerBuilder::sink(part, Sink::new(recorder.clone()));
    let layer = LayerBuilder::build(part).unwrap();
    assert!(layer.control().is_none(), "nothing for a reflex to steer");
    let handle = Handled::handle(&layer);
    let mut h = Harness::new(Ok(layer));

    let a1 = h.start("a", 1);
    let a2 = h.wait("a", 2);
    assert_eq!(LayerHandle::component(&handle).as_str(), "jobs");
    let metrics = LayerHandle::metrics(&handle);
    assert_eq!((metrics.busy_slots, metrics.waiting), (1, 1));
    assert_eq!((metrics.started, metrics.queued), (1, 1));
    assert_eq!(heard(&recorder).len(), 2, "the decisions went to the sink");

    a1.finish(1);
    h.resume(a2, "a", 2).finish(2);
    let metrics = handle.metrics();
    assert_eq!((metrics.busy_slots, metrics.waiting), (0, 0));
    assert_eq!((metrics.started, metrics.queued), (2, 1));
}

#[tokio::test]
async fn a_key_function_of_its_own_type_keys_the_slots() {
    /// Odd and even requests have a slot each; request 0 has none.
    #[derive(Clone)]
    struct Parity;

    impl reflex_core::KeyFn<u32, bool> for Parity {
        fn key(&self, n: &u32) -> Option<bool> {
            (*n != 0).then_some(n % 2 == 0)
        }
    }

    let layer = SlotAdmissionLayer::builder()
        .key_with(Parity)
        .policy(Policy::DropIfRunning)
        .component("jobs")
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<u32, u32, _>(layer);
    let mut call = |n: u32| {
        assert_ready_ok!(svc.poll_ready());
        tokio_test::task::spawn(svc.call(n))
    };
    let mut two = call(2);
    assert_pending!(two.poll());
    let mut four = call(4);
    assert_eq!(rejection(assert_ready!(four.poll())), RejectKind::SlotBusy);
    let mut three = call(3);
    assert_pending!(three.poll(), "another slot");
    let mut zero = call(0);
    assert_pending!(zero.poll(), "no slot: passes through");
    assert!(handle.is_busy(&true) && handle.is_busy(&false));
    assert_eq!(handle.metrics().busy_slots, 2);

    for _ in 0..3 {
        let (n, reply) = inner.next_request().await.unwrap();
        reply.send_response(n);
    }
    assert_eq!(assert_ready_ok!(two.poll()), 2);
    assert_eq!(assert_ready_ok!(three.poll()), 3);
    assert_eq!(assert_ready_ok!(zero.poll()), 0);
    assert_eq!(handle.metrics().busy_slots, 0);
}
