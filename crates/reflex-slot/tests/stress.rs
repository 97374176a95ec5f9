//! Replace racing with completion on real threads: many tasks hammer a few
//! slots with mixed policies while inner calls finish at random points.
//! (Not a model checker: a loom model of the table is still to come.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reflex_core::{BoxError, RejectKind, Rejected};
use reflex_slot::{Policy, SlotAdmissionLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

const SLOTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_racing_completion_never_runs_two_and_never_sticks() {
    let layer = SlotAdmissionLayer::builder()
        .key(|req: &(usize, u32)| Some(req.0))
        .policy_by(|req: &(usize, u32)| {
            Some(match req.1 % 3 {
                0 => Policy::Replace,
                1 => Policy::Queue,
                _ => Policy::DropIfRunning,
            })
        })
        .queue_limit(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let running: Arc<Vec<AtomicUsize>> =
        Arc::new((0..SLOTS).map(|_| AtomicUsize::new(0)).collect());
    let overlaps = Arc::new(AtomicUsize::new(0));
    let inner = {
        let running = running.clone();
        let overlaps = overlaps.clone();
        service_fn(move |(slot, n): (usize, u32)| {
            let running = running.clone();
            let overlaps = overlaps.clone();
            async move {
                // Counted inside the future: a replaced call's future is
                // dropped, so its guard below undoes the count.
                struct Running<'a>(&'a AtomicUsize);
                impl Drop for Running<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                if running[slot].fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let _running = Running(&running[slot]);
                for _ in 0..(n % 5) {
                    tokio::task::yield_now().await;
                }
                Ok::<_, BoxError>(n)
            }
        })
    };
    let svc = layer.layer(inner);

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32u32 {
        let mut svc = svc.clone();
        tasks.spawn(async move {
            let mut outcomes = [0usize; 4];
            for i in 0..300u32 {
                let n = t * 7919 + i;
                let slot = (n as usize) % SLOTS;
                match svc.ready().await.unwrap().call((slot, n)).await {
                    Ok(out) => {
                        assert_eq!(out, n);
                        outcomes[0] += 1;
                    }
                    Err(err) => match Rejected::find(&*err).map(Rejected::kind) {
                        Some(RejectKind::Replaced) => outcomes[1] += 1,
                        Some(RejectKind::SlotBusy) => outcomes[2] += 1,
                        Some(RejectKind::SlotQueueFull) => outcomes[3] += 1,
                        other => panic!("unexpected outcome {other:?}: {err}"),
                    },
                }
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            outcomes
        });
    }
    let mut total = [0usize; 4];
    while let Some(outcomes) = tasks.join_next().await {
        for (sum, n) in total.iter_mut().zip(outcomes.unwrap()) {
            *sum += n;
        }
    }

    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two calls of one slot ran at once"
    );
    assert_eq!(
        total.iter().sum::<usize>(),
        32 * 300,
        "every request had one outcome"
    );
    assert!(
        total[0] > 0 && total[1] > 0,
        "both completions and replacements happened: {total:?}"
    );
    assert_eq!(handle.metrics().busy_slots, 0, "no slot is left busy");
    assert_eq!(handle.metrics().waiting, 0, "no waiter is left");
    for slot in running.iter() {
        assert_eq!(slot.load(Ordering::SeqCst), 0);
    }
}

/// A sink that reads the layer's handle on every signal: user code in a
/// sink must never run under the table's locks.
#[derive(Clone, Default)]
struct ReadsHandle(
    Arc<std::sync::OnceLock<reflex_slot::SlotHandle<&'static str>>>,
    Arc<AtomicUsize>,
);

impl reflex_core::SignalSink for ReadsHandle {
    fn emit(&self, _: &reflex_core::Component, _: reflex_core::Signal) {
        if let Some(handle) = self.0.get() {
            self.1.fetch_add(
                handle.metrics().busy_slots + handle.queue_depth(&"a"),
                Ordering::SeqCst,
            );
        }
    }
}

#[tokio::test]
async fn a_sink_may_read_the_handle_without_deadlocking_the_table() {
    let sink = ReadsHandle::default();
    let layer = SlotAdmissionLayer::builder()
        .key(|req: &(&'static str, u32)| Some(req.0))
        .policy(Policy::Replace)
        .sink(sink.clone())
        .build()
        .unwrap();
    sink.0.set(layer.handle()).ok().unwrap();
    let (mut svc, mut inner) = tower_test::mock::spawn_layer::<(&'static str, u32), u32, _>(layer);
    let mut calls = Vec::new();
    for n in 0..3 {
        tokio_test::assert_ready_ok!(svc.poll_ready());
        let mut call = tokio_test::task::spawn(svc.call(("a", n)));
        let _ = call.poll();
        calls.push(call);
    }
    // Every decision was signalled (and the sink read the handle each time).
    assert!(sink.1.load(Ordering::SeqCst) > 0);
    // The first was replaced by the second, the second (waiting) by the third.
    fn replaced<F: std::future::Future<Output = Result<u32, BoxError>>>(
        call: &mut tokio_test::task::Spawn<F>,
    ) -> Option<RejectKind> {
        match call.poll() {
            std::task::Poll::Ready(Err(err)) => Rejected::find(&*err).map(Rejected::kind),
            _ => None,
        }
    }
    assert_eq!(replaced(&mut calls[0]), Some(RejectKind::Replaced));
    assert_eq!(replaced(&mut calls[1]), Some(RejectKind::Replaced));
    // The first reached the inner service before it was cancelled; the
    // third reaches it once granted and polled.
    assert_eq!(inner.next_request().await.unwrap().0, ("a", 0));
    assert!(calls[2].poll().is_pending());
    let (request, send) = inner.next_request().await.unwrap();
    assert_eq!(request, ("a", 2));
    send.send_response(2);
    assert!(matches!(calls[2].poll(), std::task::Poll::Ready(Ok(2))));
}
