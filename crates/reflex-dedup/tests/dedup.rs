//! DedupLayer's behaviour: one inner call per key in flight, answers and
//! errors for every waiter, no orphan work, no stuck key, bounds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use reflex_core::signal::Recorder;
use reflex_core::{BoxError, Component, ConfigErrorKind, RejectKind, Rejected, Signal};
use reflex_dedup::{DedupLayer, Share, SharedError, Sharing, WaitTimedOut};
use tokio::sync::watch;
use tokio_test::assert_pending;
use tokio_test::task::spawn;
use tower::{Layer, Service, ServiceExt};

/// What a call does once its gate opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Answer,
    Fail,
    Panic,
}

/// An inner service whose calls wait for a gate, count themselves, and
/// say when their future is dropped unfinished.
#[derive(Clone)]
struct Gated {
    calls: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
    then: Arc<Mutex<Then>>,
}

struct Handle {
    calls: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    open: watch::Sender<bool>,
    then: Arc<Mutex<Then>>,
}

fn gated() -> (Gated, Handle) {
    let (open, gate) = watch::channel(false);
    let calls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let then = Arc::new(Mutex::new(Then::Answer));
    (
        Gated {
            calls: calls.clone(),
            dropped: dropped.clone(),
            gate,
            then: then.clone(),
        },
        Handle {
            calls,
            dropped,
            open,
            then,
        },
    )
}

impl Handle {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    fn then(&self, then: Then) {
        *self.then.lock().unwrap() = then;
    }
}

/// Counts a drop that happens before the future finished.
struct DropFlag {
    dropped: Arc<AtomicUsize>,
    finished: AtomicBool,
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

impl Service<String> for Gated {
    type Response = String;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: String) -> BoxFuture {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.clone();
        let then = *self.then.lock().unwrap();
        let flag = DropFlag {
            dropped: self.dropped.clone(),
            finished: AtomicBool::new(false),
        };
        Box::pin(async move {
            gate.wait_for(|open| *open).await.expect("gate kept");
            flag.finished.store(true, Ordering::SeqCst);
            match then {
                Then::Answer => Ok(format!("{request} #{n}")),
                Then::Fail => Err(std::io::Error::other(format!("{request} failed")).into()),
                Then::Panic => panic!("the inner call panics (on purpose)"),
            }
        })
    }
}

type KeyFn = fn(&String) -> Option<String>;

fn by_request() -> reflex_dedup::DedupBuilder<String, String, KeyFn> {
    DedupLayer::builder().key((|r: &String| Some(r.clone())) as KeyFn)
}

async fn send<S>(svc: &S, request: &str) -> Result<String, BoxError>
where
    S: Service<String, Response = String, Error = BoxError> + Clone,
{
    svc.clone().oneshot(request.to_owned()).await
}

#[tokio::test]
async fn concurrent_identical_requests_share_one_inner_call() {
    let (inner, handle) = gated();
    let layer = by_request().build().unwrap();
    let svc = layer.layer(inner);
    let mut waiters: Vec<_> = (0..16).map(|_| spawn(send(&svc, "a"))).collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }
    assert_eq!(handle.calls(), 1);
    assert_eq!(layer.handle().metrics().in_flight_keys, 1);
    assert_eq!(layer.handle().metrics().coalesced, 15);
    handle.open();
    for w in waiters {
        assert_eq!(w.await.unwrap(), "a #0");
    }
    assert_eq!(handle.calls(), 1);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}

#[tokio::test]
async fn different_keys_do_not_coalesce_and_no_key_passes_through() {
    let (inner, handle) = gated();
    let layer = DedupLayer::builder()
        .key(|r: &String| (r != "raw").then(|| r.clone()))
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "a"));
    let mut b = spawn(send(&svc, "b"));
    let mut raw1 = spawn(send(&svc, "raw"));
    let mut raw2 = spawn(send(&svc, "raw"));
    for w in [&mut a, &mut b, &mut raw1, &mut raw2] {
        assert_pending!(w.poll());
    }
    assert_eq!(handle.calls(), 4);
    assert_eq!(layer.handle().metrics().in_flight_keys, 2, "raw has no key");
    handle.open();
    let mut answers = vec![
        a.await.unwrap(),
        b.await.unwrap(),
        raw1.await.unwrap(),
        raw2.await.unwrap(),
    ];
    answers.sort();
    answers.dedup();
    assert_eq!(answers.len(), 4, "four calls, four answers");
}

#[tokio::test]
async fn the_call_goes_on_for_the_followers_when_the_leader_drops() {
    let (inner, handle) = gated();
    let layer = by_request().build().unwrap();
    let svc = layer.layer(inner);
    let mut leader = spawn(send(&svc, "k"));
    assert_pending!(leader.poll());
    let mut follower = spawn(send(&svc, "k"));
    assert_pending!(follower.poll());
    drop(leader);
    assert_eq!(
        handle.dropped.load(Ordering::SeqCst),
        0,
        "the call lives on"
    );
    handle.open();
    assert!(follower.is_woken());
    assert_eq!(follower.await.unwrap(), "k #0");
    assert_eq!(handle.calls(), 1);
}

#[tokio::test]
async fn when_every_waiter_drops_the_inner_call_is_dropped_and_the_key_freed() {
    let (inner, handle) = gated();
    let layer = by_request().build().unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "k"));
    let mut b = spawn(send(&svc, "k"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    drop(a);
    assert_eq!(handle.dropped.load(Ordering::SeqCst), 0);
    drop(b);
    assert_eq!(handle.dropped.load(Ordering::SeqCst), 1, "no orphan work");
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    // The next request for the key makes a new call.
    handle.open();
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1");
}

#[tokio::test]
async fn an_error_reaches_every_waiter_and_is_not_cached() {
    let (inner, handle) = gated();
    handle.then(Then::Fail);
    let layer = by_request()
        .cache(Duration::from_secs(60), 10)
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "k"));
    let mut b = spawn(send(&svc, "k"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    handle.open();
    for err in [a.await.unwrap_err(), b.await.unwrap_err()] {
        let shared = err.downcast_ref::<SharedError>().expect("a shared error");
        assert!(shared.inner().is::<std::io::Error>());
        assert_eq!(err.to_string(), "k failed");
    }
    assert_eq!(handle.calls(), 1);
    handle.then(Then::Answer);
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1", "not cached");
    assert_eq!(layer.handle().metrics().cache_entries, 1, "the success is");
}

#[tokio::test]
async fn a_rejection_below_is_still_found_through_the_shared_error() {
    let layer = by_request().build().unwrap();
    let svc = layer.layer(tower::service_fn(|_: String| async {
        Err::<String, BoxError>(Rejected::new(RejectKind::Shed, Component::new("db")).into())
    }));
    let err = send(&svc, "k").await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).map(Rejected::kind),
        Some(RejectKind::Shed)
    );
}

#[tokio::test(start_paused = true)]
async fn cached_answers_expire_after_their_ttl() {
    let (inner, handle) = gated();
    handle.open();
    let recorder = Arc::new(Recorder::default());
    let layer = by_request()
        .cache(Duration::from_secs(5), 10)
        .sink(recorder.clone())
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0");
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0", "cached");
    assert_eq!(layer.handle().metrics().cache_hits, 1);
    assert!(
        recorder
            .signals()
            .iter()
            .any(|(_, s)| *s == Signal::DedupCacheHit { stale: false })
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1", "expired");
    assert_eq!(handle.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_cache_keeps_at_most_its_entries_evicting_the_oldest() {
    let (inner, handle) = gated();
    handle.open();
    let layer = by_request()
        .cache(Duration::from_secs(60), 3)
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    for key in ["a", "b", "c", "d"] {
        send(&svc, key).await.unwrap();
    }
    assert_eq!(layer.handle().metrics().cache_entries, 3);
    assert_eq!(send(&svc, "d").await.unwrap(), "d #3", "kept");
    assert_eq!(send(&svc, "a").await.unwrap(), "a #4", "the oldest went");
    // Updating the same keys over and over (each answer expired, so each
    // round stores a new one and leaves a stale line in the eviction
    // order, compacted as it goes) keeps the bound...
    let before = handle.calls();
    for round in 0..1_000 {
        tokio::time::advance(Duration::from_secs(61)).await;
        let key = ["x", "y"][round % 2];
        send(&svc, key).await.unwrap();
        assert!(layer.handle().metrics().cache_entries <= 3);
    }
    assert_eq!(handle.calls() - before, 1_000, "every round stored anew");
    // "a" (expired, never read again), "x" and "y".
    assert_eq!(layer.handle().metrics().cache_entries, 3);
    // ...and the order, once compacted, still evicts the oldest: "a",
    // then "x" (round 998), not "y" (round 999).
    send(&svc, "p").await.unwrap();
    send(&svc, "q").await.unwrap();
    let calls = handle.calls();
    assert!(send(&svc, "y").await.unwrap().starts_with("y #"));
    assert_eq!(handle.calls(), calls, "y kept");
    send(&svc, "x").await.unwrap();
    assert_eq!(handle.calls(), calls + 1, "x, the oldest, went");
}

/// Weighs answers by their length.
#[derive(Clone)]
struct ByLength;

impl Share<String> for ByLength {
    type Shared = String;

    fn share(&self, response: String) -> Result<String, String> {
        Ok(response)
    }

    fn unshare(&self, shared: &String) -> String {
        shared.clone()
    }

    fn mark(&self, response: &mut String, sharing: Sharing) {
        response.push_str(&format!(" ({})", sharing.as_str()));
    }

    fn weight(&self, response: &String) -> usize {
        response.len()
    }
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_bytes_and_skips_what_is_too_heavy() {
    let layer = DedupLayer::builder()
        .key(|r: &String| Some(r.clone()))
        .share(ByLength)
        .cache(Duration::from_secs(60), 100)
        .cache_max_bytes(10)
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|r: String| async move {
        Ok::<_, BoxError>("x".repeat(r.len()))
    }));
    send(&svc, "aaaa").await.unwrap();
    send(&svc, "bbbb").await.unwrap();
    assert_eq!(layer.handle().metrics().cache_bytes, 8);
    send(&svc, "cccc").await.unwrap();
    let m = layer.handle().metrics();
    assert_eq!((m.cache_entries, m.cache_bytes), (2, 8), "the oldest went");
    send(&svc, "dddddddddddd").await.unwrap();
    assert_eq!(
        layer.handle().metrics().cache_entries,
        2,
        "12 bytes > 10: not kept"
    );
}

#[tokio::test]
async fn answers_say_whether_they_were_shared_or_cached() {
    let (inner, handle) = gated();
    let layer = DedupLayer::builder()
        .key(|r: &String| Some(r.clone()))
        .share(ByLength)
        .cache(Duration::from_secs(60), 10)
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "k"));
    let mut b = spawn(send(&svc, "k"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    handle.open();
    assert_eq!(a.await.unwrap(), "k #0 (shared)");
    assert_eq!(b.await.unwrap(), "k #0 (shared)");
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (cached)");
    assert_eq!(send(&svc, "other").await.unwrap(), "other #1 (own)");
}

#[tokio::test]
async fn new_keys_beyond_the_bound_are_refused_but_followers_join() {
    let (inner, handle) = gated();
    let layer = by_request().max_keys(2).build().unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "a"));
    let mut b = spawn(send(&svc, "b"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let err = send(&svc, "c").await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).map(Rejected::kind),
        Some(RejectKind::DedupFull)
    );
    let mut a2 = spawn(send(&svc, "a"));
    assert_pending!(a2.poll());
    assert_eq!(layer.handle().metrics().refused, 1);
    handle.open();
    assert_eq!(a.await.unwrap(), a2.await.unwrap());
    b.await.unwrap();
    assert_eq!(send(&svc, "c").await.unwrap(), "c #2", "room again");
}

#[tokio::test]
async fn many_distinct_keys_leave_nothing_behind() {
    let layer = by_request().max_keys(8).build().unwrap();
    let svc = layer.layer(tower::service_fn(|r: String| async move {
        Ok::<_, BoxError>(r)
    }));
    for i in 0..20_000 {
        send(&svc, &i.to_string()).await.unwrap();
    }
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}

#[tokio::test]
async fn in_progress_mode_refuses_a_duplicate_at_once() {
    let (inner, handle) = gated();
    let layer = by_request().refuse_duplicates().build().unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "k"));
    assert_pending!(a.poll());
    let err = send(&svc, "k").await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).map(Rejected::kind),
        Some(RejectKind::InProgress)
    );
    handle.open();
    assert_eq!(a.await.unwrap(), "k #0");
    assert_eq!(
        send(&svc, "k").await.unwrap(),
        "k #1",
        "not in progress any more"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_the_others_and_the_call_alone() {
    let (inner, handle) = gated();
    let layer = by_request()
        .wait_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let leader = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let follower = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The leader gave up at 1 s; the follower waits until 1.6 s.
    let err = leader.await.unwrap().unwrap_err();
    assert!(err.is::<WaitTimedOut>());
    assert_eq!(
        handle.dropped.load(Ordering::SeqCst),
        0,
        "the call lives on"
    );
    handle.open();
    assert_eq!(follower.await.unwrap().unwrap(), "k #0");
    assert_eq!(handle.calls(), 1);
}

#[tokio::test]
async fn a_panicking_call_aborts_its_waiters_and_frees_the_key() {
    let (inner, handle) = gated();
    handle.then(Then::Panic);
    let layer = by_request().build().unwrap();
    let svc = layer.layer(inner);
    let leader = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    tokio::task::yield_now().await;
    let mut follower = spawn(send(&svc, "k"));
    assert_pending!(follower.poll());
    handle.open();
    assert!(leader.await.unwrap_err().is_panic());
    // The follower, polled next, may drive the poisoned call itself or
    // find it aborted: either way it gets DedupAborted.
    let err = match follower.poll() {
        Poll::Ready(result) => result.unwrap_err(),
        Poll::Pending => panic!("the follower must not wait on a dead call"),
    };
    assert_eq!(
        Rejected::find(&*err).map(Rejected::kind),
        Some(RejectKind::DedupAborted)
    );
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    assert_eq!(layer.handle().metrics().aborted, 1);
    handle.then(Then::Answer);
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1", "the key runs again");
}

#[tokio::test]
async fn a_panic_in_the_inner_call_itself_frees_the_key() {
    #[derive(Clone)]
    struct PanicOnce(Arc<AtomicBool>);
    impl Service<String> for PanicOnce {
        type Response = String;
        type Error = BoxError;
        type Future = std::future::Ready<Result<String, BoxError>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, r: String) -> Self::Future {
            assert!(self.0.swap(true, Ordering::SeqCst), "panics the first time");
            std::future::ready(Ok(r))
        }
    }
    let layer = by_request().build().unwrap();
    let mut svc = layer.layer(PanicOnce(Arc::default()));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call("k".to_owned()));
    }));
    assert!(outcome.is_err());
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    assert_eq!(send(&svc, "k").await.unwrap(), "k");
}

#[tokio::test]
async fn each_follower_is_a_coalesced_signal_with_the_waiters_count() {
    let (inner, handle) = gated();
    let recorder = Arc::new(Recorder::default());
    let layer = by_request().sink(recorder.clone()).build().unwrap();
    let svc = layer.layer(inner);
    let mut waiters: Vec<_> = (0..3).map(|_| spawn(send(&svc, "k"))).collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }
    let counts: Vec<_> = recorder
        .signals()
        .into_iter()
        .filter_map(|(_, s)| match s {
            Signal::Coalesced { waiters } => Some(waiters),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![2, 3]);
    handle.open();
    for w in waiters {
        assert_eq!(w.await.unwrap(), "k #0");
    }
}

#[test]
fn invalid_configurations_are_config_errors() {
    let key = |r: &String| Some(r.clone());
    let cases = [
        (
            DedupLayer::builder()
                .key(key)
                .max_keys(0)
                .build()
                .unwrap_err(),
            "max_keys",
        ),
        (
            DedupLayer::builder()
                .key(key)
                .wait_timeout(Duration::ZERO)
                .build()
                .unwrap_err(),
            "wait_timeout",
        ),
        (
            DedupLayer::builder()
                .key(key)
                .cache(Duration::ZERO, 1)
                .build()
                .unwrap_err(),
            "cache",
        ),
        (
            DedupLayer::builder()
                .key(key)
                .cache(Duration::from_secs(1), 0)
                .build()
                .unwrap_err(),
            "cache",
        ),
        (
            DedupLayer::builder()
                .key(key)
                .cache_max_bytes(10)
                .build()
                .unwrap_err(),
            "cache",
        ),
    ];
    for (err, setting) in cases {
        assert_eq!(
            (err.setting(), err.kind()),
            (setting, ConfigErrorKind::Zero),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_waiters_on_two_threads_get_one_call_per_wave_and_no_stuck_key() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let layer = by_request().build().unwrap();
    let svc = layer.layer(tower::service_fn(move |r: String| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::task::yield_now().await;
            Ok::<_, BoxError>(r)
        }
    }));
    for wave in 0..200 {
        let key = format!("k{}", wave % 7);
        let tasks: Vec<_> = (0..8)
            .map(|_| tokio::spawn(svc.clone().oneshot(key.clone())))
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), key);
        }
    }
    let calls = calls.load(Ordering::SeqCst);
    assert!(calls >= 200, "at least one call per wave: {calls}");
    assert!(calls < 200 * 8, "some waiters coalesced: {calls}");
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}

/// Shares answers of at most 6 bytes ("ab #0", not "long #0"): a stand-in
/// for an http body limit.
#[derive(Clone)]
struct ShortOnly;

impl Share<String> for ShortOnly {
    type Shared = String;

    fn share(&self, response: String) -> Result<String, String> {
        if response.len() <= 6 {
            Ok(response)
        } else {
            Err(response)
        }
    }

    fn unshare(&self, shared: &String) -> String {
        shared.clone()
    }
}

fn short_only() -> reflex_dedup::DedupBuilder<String, String, KeyFn, ShortOnly> {
    by_request().share(ShortOnly)
}

#[tokio::test]
async fn an_answer_that_cannot_be_shared_goes_to_the_leader_and_followers_call_themselves() {
    let (inner, handle) = gated();
    let layer = short_only().build().unwrap();
    let svc = layer.layer(inner);
    let mut leader = spawn(send(&svc, "long"));
    let mut follower = spawn(send(&svc, "long"));
    assert_pending!(leader.poll());
    assert_pending!(follower.poll());
    assert_eq!(handle.calls(), 1);
    handle.open();
    // The follower drives the call to its end, finds "long #0" too long to
    // share, keeps it for the leader and makes its own call.
    let mine = follower.await.unwrap();
    assert_eq!(mine, "long #1");
    assert_eq!(
        leader.await.unwrap(),
        "long #0",
        "nothing lost, nothing cut"
    );
    assert_eq!(handle.calls(), 2);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}

#[tokio::test]
async fn when_the_leader_has_left_an_unshareable_answer_sends_every_follower_to_its_own_call() {
    let (inner, handle) = gated();
    let layer = short_only().build().unwrap();
    let svc = layer.layer(inner);
    let mut leader = spawn(send(&svc, "long"));
    let mut a = spawn(send(&svc, "long"));
    let mut b = spawn(send(&svc, "long"));
    for w in [&mut leader, &mut a, &mut b] {
        assert_pending!(w.poll());
    }
    drop(leader);
    handle.open();
    let mut answers = vec![a.await.unwrap(), b.await.unwrap()];
    answers.sort();
    assert_eq!(answers, vec!["long #1", "long #2"]);
    assert_eq!(handle.calls(), 3);
}

#[tokio::test]
async fn a_shareable_answer_of_the_same_layer_is_still_shared() {
    let (inner, handle) = gated();
    let layer = short_only().build().unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "ab"));
    let mut b = spawn(send(&svc, "ab"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    handle.open();
    assert_eq!(b.await.unwrap(), "ab #0");
    assert_eq!(a.await.unwrap(), "ab #0");
    assert_eq!(handle.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stale_answer_is_served_while_one_request_refreshes_it() {
    let (inner, handle) = gated();
    let recorder = Arc::new(Recorder::default());
    let layer = DedupLayer::builder()
        .key(|r: &String| Some(r.clone()))
        .share(ByLength)
        .cache(Duration::from_secs(5), 10)
        .serve_stale(Duration::from_secs(10))
        .sink(recorder.clone())
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    handle.open();
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (own)");
    handle.open.send_replace(false);
    tokio::time::advance(Duration::from_secs(6)).await;
    // The first to find it stale refreshes it, and waits for the refresh.
    let mut refresher = spawn(send(&svc, "k"));
    assert_pending!(refresher.poll());
    assert_eq!(handle.calls(), 2);
    // Meanwhile, the stale answer, at once, and no second call.
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (stale)");
    assert_eq!(handle.calls(), 2);
    assert!(
        recorder
            .signals()
            .iter()
            .any(|(_, s)| *s == Signal::DedupCacheHit { stale: true })
    );
    handle.open();
    assert_eq!(refresher.await.unwrap(), "k #1 (own)");
    assert_eq!(
        send(&svc, "k").await.unwrap(),
        "k #1 (cached)",
        "fresh again"
    );
    // Past the stale window, nothing is served from the cache.
    tokio::time::advance(Duration::from_secs(16)).await;
    assert_eq!(send(&svc, "k").await.unwrap(), "k #2 (own)");
}

#[test]
fn serving_stale_answers_needs_a_cache() {
    let err = DedupLayer::builder()
        .key(|r: &String| Some(r.clone()))
        .serve_stale(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(
        (err.setting(), err.kind()),
        ("serve_stale", ConfigErrorKind::Missing)
    );
}

#[tokio::test]
async fn a_follower_that_joined_before_the_leaders_call_panicked_is_aborted_not_stuck() {
    type Join = Box<dyn Fn(String) -> BoxFuture + Send>;
    /// Its first `call` makes a follower join through the dedup service,
    /// then panics before the leader could hand its call over.
    #[derive(Clone)]
    struct JoinThenPanic {
        join: Arc<Mutex<Option<Join>>>,
        follower: Arc<Mutex<Option<BoxFuture>>>,
        calls: Arc<AtomicUsize>,
    }
    impl Service<String> for JoinThenPanic {
        type Response = String;
        type Error = BoxError;
        type Future = BoxFuture;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, request: String) -> BoxFuture {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let join = self.join.lock().unwrap();
                let follower = (join.as_ref().unwrap())(request);
                *self.follower.lock().unwrap() = Some(follower);
                panic!("the inner call panics after a follower joined (on purpose)");
            }
            Box::pin(async move { Ok(request) })
        }
    }
    let inner = JoinThenPanic {
        join: Arc::default(),
        follower: Arc::default(),
        calls: Arc::default(),
    };
    let layer = by_request().build().unwrap();
    let mut svc = layer.layer(inner.clone());
    let other = Mutex::new(svc.clone());
    *inner.join.lock().unwrap() = Some(Box::new(move |request| {
        Box::pin(other.lock().unwrap().call(request))
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call("k".to_owned()));
    }));
    assert!(outcome.is_err());
    let follower = inner
        .follower
        .lock()
        .unwrap()
        .take()
        .expect("a follower joined");
    let mut follower = spawn(follower);
    let err = match follower.poll() {
        Poll::Ready(result) => result.unwrap_err(),
        Poll::Pending => panic!("the follower waits on a call nobody will start"),
    };
    assert_eq!(
        Rejected::find(&*err).map(Rejected::kind),
        Some(RejectKind::DedupAborted)
    );
    drop(follower);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    assert_eq!(send(&svc, "k").await.unwrap(), "k", "the key runs again");
}

/// Shares answers of at most 6 bytes, as [`ShortOnly`], and marks them,
/// as [`ByLength`].
#[derive(Clone)]
struct ShortAndMarked;

impl Share<String> for ShortAndMarked {
    type Shared = String;

    fn share(&self, response: String) -> Result<String, String> {
        ShortOnly.share(response)
    }

    fn unshare(&self, shared: &String) -> String {
        shared.clone()
    }

    fn mark(&self, response: &mut String, sharing: Sharing) {
        ByLength.mark(response, sharing);
    }
}

#[tokio::test]
async fn a_follower_that_falls_back_to_its_own_call_is_marked_own() {
    let (inner, handle) = gated();
    let layer = by_request().share(ShortAndMarked).build().unwrap();
    let svc = layer.layer(inner);
    let mut leader = spawn(send(&svc, "long"));
    let mut follower = spawn(send(&svc, "long"));
    assert_pending!(leader.poll());
    assert_pending!(follower.poll());
    handle.open();
    assert_eq!(follower.await.unwrap(), "long #1 (own)", "its own call");
    assert_eq!(
        leader.await.unwrap(),
        "long #0 (own)",
        "handed to nobody else: not shared"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_answer_is_served_when_the_table_is_full() {
    let (inner, handle) = gated();
    let layer = DedupLayer::builder()
        .key(|r: &String| Some(r.clone()))
        .share(ByLength)
        .max_keys(1)
        .cache(Duration::from_secs(5), 10)
        .serve_stale(Duration::from_secs(10))
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    handle.open();
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (own)");
    handle.open.send_replace(false);
    tokio::time::advance(Duration::from_secs(6)).await;
    // Another key takes the only room in the table.
    let mut other = spawn(send(&svc, "other"));
    assert_pending!(other.poll());
    // "k" is stale and cannot refresh: its stale answer, not `DedupFull`.
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (stale)");
    assert_eq!(handle.calls(), 2, "no refresh could start");
    // Without a stale answer, a new key is still refused.
    let err = send(&svc, "new").await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).map(Rejected::kind),
        Some(RejectKind::DedupFull)
    );
    handle.open();
    other.await.unwrap();
}

#[tokio::test]
async fn only_answers_the_classifier_calls_successes_are_cached() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = tower::service_fn(move |r: String| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(format!("{r} #{n}")) }
    });
    let layer = by_request()
        .cache(Duration::from_secs(60), 10)
        .classifier(|result: Result<&String, &BoxError>| match result {
            Ok(answer) if answer.starts_with("bad") => reflex_core::Outcome::Failure,
            Ok(_) => reflex_core::Outcome::Success,
            Err(_) => reflex_core::Outcome::Failure,
        })
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    assert_eq!(send(&svc, "bad").await.unwrap(), "bad #0");
    assert_eq!(send(&svc, "bad").await.unwrap(), "bad #1", "not kept");
    assert_eq!(send(&svc, "good").await.unwrap(), "good #2");
    assert_eq!(send(&svc, "good").await.unwrap(), "good #2", "kept");
    assert_eq!(layer.handle().metrics().cache_entries, 1);
}

#[tokio::test]
async fn a_failing_answer_is_still_shared_with_its_waiters_but_not_cached() {
    let (inner, handle) = gated();
    let layer = by_request()
        .cache(Duration::from_secs(60), 10)
        .classifier(|_: Result<&String, &BoxError>| reflex_core::Outcome::Failure)
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let mut a = spawn(send(&svc, "k"));
    let mut b = spawn(send(&svc, "k"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    handle.open();
    assert_eq!(a.await.unwrap(), "k #0");
    assert_eq!(b.await.unwrap(), "k #0", "shared in flight");
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1", "not cached");
    assert_eq!(layer.handle().metrics().cache_entries, 0);
}

/// Keeps answers no longer than the seconds their text ends with.
#[derive(Clone)]
struct AgedByText;

impl Share<String> for AgedByText {
    type Shared = String;

    fn share(&self, response: String) -> Result<String, String> {
        Ok(response)
    }

    fn unshare(&self, shared: &String) -> String {
        shared.clone()
    }

    fn max_age(&self, shared: &String) -> Option<Duration> {
        let seconds = shared.split(' ').next()?.parse().ok()?;
        Some(Duration::from_secs(seconds))
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_kept_no_longer_than_its_max_age_nor_the_ttl() {
    let (inner, handle) = gated();
    handle.open();
    let layer = by_request()
        .share(AgedByText)
        .cache(Duration::from_secs(10), 10)
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    // "0": not kept at all; "3": 3 s; "18446744073709551615": the TTL.
    assert_eq!(send(&svc, "0").await.unwrap(), "0 #0");
    assert_eq!(send(&svc, "0").await.unwrap(), "0 #1");
    assert_eq!(send(&svc, "3").await.unwrap(), "3 #2");
    let huge = u64::MAX.to_string();
    assert_eq!(send(&svc, &huge).await.unwrap(), format!("{huge} #3"));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(send(&svc, "3").await.unwrap(), "3 #2", "within 3 s");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(send(&svc, "3").await.unwrap(), "3 #4", "past 3 s");
    assert_eq!(send(&svc, &huge).await.unwrap(), format!("{huge} #3"));
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(
        send(&svc, &huge).await.unwrap(),
        format!("{huge} #5"),
        "past the TTL"
    );
}

/// Marks answers (as [`ByLength`]), and refuses to share the answer of the
/// second call ("#1") when `refuse_second` is set.
#[derive(Clone)]
struct SecondNotShared {
    refuse_second: bool,
}

impl Share<String> for SecondNotShared {
    type Shared = String;

    fn share(&self, response: String) -> Result<String, String> {
        if self.refuse_second && response.ends_with("#1") {
            Err(response)
        } else {
            Ok(response)
        }
    }

    fn unshare(&self, shared: &String) -> String {
        shared.clone()
    }

    fn mark(&self, response: &mut String, sharing: Sharing) {
        ByLength.mark(response, sharing);
    }
}

/// After a call for a key ends, the cache holds its answer or nothing: a
/// refresh whose answer may not be kept (a failure, an error, an answer
/// that cannot be shared) takes the stale answer away with it.
#[tokio::test(start_paused = true)]
async fn a_refresh_whose_answer_may_not_be_kept_removes_the_stale_answer() {
    for refresh in ["a failure", "an error", "not shareable"] {
        let (inner, handle) = gated();
        let layer = DedupLayer::builder()
            .key(|r: &String| Some(r.clone()))
            .share(SecondNotShared {
                refuse_second: refresh == "not shareable",
            })
            .cache(Duration::from_secs(5), 10)
            .serve_stale(Duration::from_secs(60))
            .classifier(move |result: Result<&String, &BoxError>| match result {
                Ok(answer) if refresh == "a failure" && answer.ends_with("#1") => {
                    reflex_core::Outcome::Failure
                }
                Ok(_) => reflex_core::Outcome::Success,
                Err(_) => reflex_core::Outcome::Failure,
            })
            .build()
            .unwrap();
        let svc = layer.layer(inner);
        handle.open();
        assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (own)", "{refresh}");
        tokio::time::advance(Duration::from_secs(6)).await;
        if refresh == "an error" {
            handle.then(Then::Fail);
            assert!(send(&svc, "k").await.is_err());
            handle.then(Then::Answer);
        } else {
            assert_eq!(send(&svc, "k").await.unwrap(), "k #1 (own)", "{refresh}");
        }
        // The stale "k #0" is gone: two requests at once share a new call.
        handle.open.send_replace(false);
        let mut a = spawn(send(&svc, "k"));
        let mut b = spawn(send(&svc, "k"));
        assert_pending!(a.poll(), "{refresh}");
        assert_pending!(b.poll(), "{refresh}: not served the stale answer");
        handle.open();
        assert_eq!(a.await.unwrap(), "k #2 (shared)", "{refresh}");
        assert_eq!(b.await.unwrap(), "k #2 (shared)", "{refresh}");
        assert_eq!(layer.handle().metrics().cache_entries, 1, "{refresh}");
    }
}
