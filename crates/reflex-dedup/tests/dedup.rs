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
use reflex_dedup::{Dedup, DedupBuilder, DedupLayer, Share, SharedError, Sharing, WaitTimedOut};
use tokio::sync::watch;
use tokio_test::assert_pending;
use tokio_test::task::{Spawn, spawn};
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

    /// Shuts the gate again: calls made from now on wait.
    fn shut(&self) {
        self.open.send_replace(false);
    }

    fn then(&self, then: Then) {
        *self.then.lock().unwrap() = then;
    }

    /// Calls whose future was dropped before it finished.
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
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

fn by_request() -> DedupBuilder<String, String, KeyFn> {
    DedupLayer::builder().key((|r: &String| Some(r.clone())) as KeyFn)
}

async fn send<S>(svc: &S, request: &str) -> Result<String, BoxError>
where
    S: Service<String, Response = String, Error = BoxError> + Clone,
{
    svc.clone().oneshot(request.to_owned()).await
}

/// A dedup layer over a [`gated`] inner service: the layer (for its
/// handle), its service, and the gate's handle.
type GatedBehind<KF, H, C> = (
    DedupLayer<String, String, KF, H, C>,
    Dedup<Gated, String, String, KF, H, C>,
    Handle,
);

/// The layer `builder` makes, over a [`gated`] inner service.
fn gated_behind<KF, H, C>(builder: DedupBuilder<String, String, KF, H, C>) -> GatedBehind<KF, H, C>
where
    KF: reflex_dedup::KeyFn<String, String> + Clone,
    H: Share<String> + Clone,
    C: Clone,
{
    let (inner, handle) = gated();
    let layer = builder.build().unwrap();
    let svc = layer.layer(inner);
    (layer, svc, handle)
}

/// A request for each of `keys`, sent in order, each polled once and
/// found waiting.
fn waiting<'a, S, const N: usize>(
    svc: &'a S,
    keys: [&'a str; N],
) -> [Spawn<impl Future<Output = Result<String, BoxError>> + 'a>; N]
where
    S: Service<String, Response = String, Error = BoxError> + Clone,
{
    keys.map(|key| {
        let mut request = spawn(send(svc, key));
        assert_pending!(request.poll());
        request
    })
}

/// The kind of the [`Rejected`] in `err`'s chain, if any.
fn rejected_kind(err: &BoxError) -> Option<RejectKind> {
    Rejected::find(&**err).map(Rejected::kind)
}

#[tokio::test]
async fn concurrent_identical_requests_share_one_inner_call() {
    let (layer, svc, handle) = gated_behind(by_request());
    let waiters = waiting(&svc, ["a"; 16]);
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
    let (layer, svc, handle) =
        gated_behind(DedupLayer::builder().key(|r: &String| (r != "raw").then(|| r.clone())));
    let [a, b, raw1, raw2] = waiting(&svc, ["a", "b", "raw", "raw"]);
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
    let (_, svc, handle) = gated_behind(by_request());
    let [leader, follower] = waiting(&svc, ["k", "k"]);
    drop(leader);
    assert_eq!(handle.dropped(), 0, "the call lives on");
    handle.open();
    assert!(follower.is_woken());
    assert_eq!(follower.await.unwrap(), "k #0");
    assert_eq!(handle.calls(), 1);
}

#[tokio::test]
async fn when_every_waiter_drops_the_inner_call_is_dropped_and_the_key_freed() {
    let (layer, svc, handle) = gated_behind(by_request());
    let [a, b] = waiting(&svc, ["k", "k"]);
    drop(a);
    assert_eq!(handle.dropped(), 0);
    drop(b);
    assert_eq!(handle.dropped(), 1, "no orphan work");
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    // The next request for the key makes a new call.
    handle.open();
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1");
}

#[tokio::test]
async fn an_error_reaches_every_waiter_and_is_not_cached() {
    let (layer, svc, handle) = gated_behind(by_request().cache(Duration::from_secs(60), 10));
    handle.then(Then::Fail);
    let [a, b] = waiting(&svc, ["k", "k"]);
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
    assert_eq!(rejected_kind(&err), Some(RejectKind::Shed));
}

#[tokio::test(start_paused = true)]
async fn cached_answers_expire_after_their_ttl() {
    let recorder = Arc::new(Recorder::default());
    let (layer, svc, handle) = gated_behind(
        by_request()
            .cache(Duration::from_secs(5), 10)
            .sink(recorder.clone()),
    );
    handle.open();
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
    let (layer, svc, handle) = gated_behind(by_request().cache(Duration::from_secs(60), 3));
    handle.open();
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

/// A [`Share`] of `String` answers, as each test needs it. It weighs an
/// answer by its length.
#[derive(Clone, Copy)]
struct Strings {
    /// Which answers may be shared.
    shareable: fn(&str) -> bool,
    /// Appends its [`Sharing`] to each answer: `"k #0 (shared)"`.
    marked: bool,
    /// Keeps an answer no longer than the seconds its text begins with.
    aged: bool,
}

impl Strings {
    /// Shares every answer, unmarked.
    const PLAIN: Self = Self {
        shareable: |_| true,
        marked: false,
        aged: false,
    };
    /// Shares every answer, marked.
    const MARKED: Self = Self {
        marked: true,
        ..Self::PLAIN
    };
    /// Shares answers of at most 6 bytes ("ab #0", not "long #0"): a
    /// stand-in for an http body limit.
    const SHORT_ONLY: Self = Self {
        shareable: |answer| answer.len() <= 6,
        ..Self::PLAIN
    };
    /// Keeps answers no longer than the seconds their text begins with.
    const AGED: Self = Self {
        aged: true,
        ..Self::PLAIN
    };
}

impl Share<String> for Strings {
    type Shared = String;

    fn share(&self, response: String) -> Result<String, String> {
        if (self.shareable)(&response) {
            Ok(response)
        } else {
            Err(response)
        }
    }

    fn unshare(&self, shared: &String) -> String {
        shared.clone()
    }

    fn mark(&self, response: &mut String, sharing: Sharing) {
        if self.marked {
            response.push_str(&format!(" ({})", sharing.as_str()));
        }
    }

    fn weight(&self, response: &String) -> usize {
        response.len()
    }

    fn max_age(&self, shared: &String) -> Option<Duration> {
        if !self.aged {
            return None;
        }
        let seconds = shared.split(' ').next()?.parse().ok()?;
        Some(Duration::from_secs(seconds))
    }
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_bytes_and_skips_what_is_too_heavy() {
    let layer = by_request()
        .share(Strings::MARKED)
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
    let (_, svc, handle) = gated_behind(
        by_request()
            .share(Strings::MARKED)
            .cache(Duration::from_secs(60), 10),
    );
    let [a, b] = waiting(&svc, ["k", "k"]);
    handle.open();
    assert_eq!(a.await.unwrap(), "k #0 (shared)");
    assert_eq!(b.await.unwrap(), "k #0 (shared)");
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (cached)");
    assert_eq!(send(&svc, "other").await.unwrap(), "other #1 (own)");
}

#[tokio::test]
async fn new_keys_beyond_the_bound_are_refused_but_followers_join() {
    let (layer, svc, handle) = gated_behind(by_request().max_keys(2));
    let [a, b] = waiting(&svc, ["a", "b"]);
    let err = send(&svc, "c").await.unwrap_err();
    assert_eq!(rejected_kind(&err), Some(RejectKind::DedupFull));
    let [a2] = waiting(&svc, ["a"]);
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
    let (_, svc, handle) = gated_behind(by_request().refuse_duplicates());
    let [a] = waiting(&svc, ["k"]);
    let err = send(&svc, "k").await.unwrap_err();
    assert_eq!(rejected_kind(&err), Some(RejectKind::InProgress));
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
    let (_, svc, handle) = gated_behind(by_request().wait_timeout(Duration::from_secs(1)));
    let leader = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let follower = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The leader gave up at 1 s; the follower waits until 1.6 s.
    let err = leader.await.unwrap().unwrap_err();
    assert!(err.is::<WaitTimedOut>());
    assert_eq!(handle.dropped(), 0, "the call lives on");
    handle.open();
    assert_eq!(follower.await.unwrap().unwrap(), "k #0");
    assert_eq!(handle.calls(), 1);
}

#[tokio::test]
async fn a_panicking_call_aborts_its_waiters_and_frees_the_key() {
    let (layer, svc, handle) = gated_behind(by_request());
    handle.then(Then::Panic);
    let leader = tokio::spawn(svc.clone().oneshot("k".to_owned()));
    tokio::task::yield_now().await;
    let [mut follower] = waiting(&svc, ["k"]);
    handle.open();
    assert!(leader.await.unwrap_err().is_panic());
    // The follower, polled next, may drive the poisoned call itself or
    // find it aborted: either way it gets DedupAborted.
    let err = match follower.poll() {
        Poll::Ready(result) => result.unwrap_err(),
        Poll::Pending => panic!("the follower must not wait on a dead call"),
    };
    assert_eq!(rejected_kind(&err), Some(RejectKind::DedupAborted));
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    assert_eq!(layer.handle().metrics().aborted, 1);
    handle.then(Then::Answer);
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1", "the key runs again");
}

#[tokio::test]
async fn a_panic_in_the_inner_call_itself_frees_the_key() {
    let called = Arc::new(AtomicBool::new(false));
    let panics_once = tower::service_fn(move |r: String| {
        assert!(called.swap(true, Ordering::SeqCst), "panics the first time");
        std::future::ready(Ok::<_, BoxError>(r))
    });
    let layer = by_request().build().unwrap();
    let mut svc = layer.layer(panics_once);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call("k".to_owned()));
    }));
    assert!(outcome.is_err());
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    assert_eq!(send(&svc, "k").await.unwrap(), "k");
}

#[tokio::test]
async fn each_follower_is_a_coalesced_signal_with_the_waiters_count() {
    let recorder = Arc::new(Recorder::default());
    let (_, svc, handle) = gated_behind(by_request().sink(recorder.clone()));
    let waiters = waiting(&svc, ["k"; 3]);
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
    let cases = [
        (by_request().max_keys(0), "max_keys"),
        (by_request().wait_timeout(Duration::ZERO), "wait_timeout"),
        (by_request().cache(Duration::ZERO, 1), "cache"),
        (by_request().cache(Duration::from_secs(1), 0), "cache"),
        (by_request().cache_max_bytes(10), "cache"),
    ];
    for (builder, setting) in cases {
        let err = builder.build().unwrap_err();
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

#[tokio::test]
async fn an_answer_that_cannot_be_shared_goes_to_the_leader_and_followers_call_themselves() {
    let (layer, svc, handle) = gated_behind(by_request().share(Strings::SHORT_ONLY));
    let [leader, follower] = waiting(&svc, ["long", "long"]);
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
    let (_, svc, handle) = gated_behind(by_request().share(Strings::SHORT_ONLY));
    let [leader, a, b] = waiting(&svc, ["long", "long", "long"]);
    drop(leader);
    handle.open();
    let mut answers = vec![a.await.unwrap(), b.await.unwrap()];
    answers.sort();
    assert_eq!(answers, vec!["long #1", "long #2"]);
    assert_eq!(handle.calls(), 3);
}

#[tokio::test]
async fn a_shareable_answer_of_the_same_layer_is_still_shared() {
    let (_, svc, handle) = gated_behind(by_request().share(Strings::SHORT_ONLY));
    let [a, b] = waiting(&svc, ["ab", "ab"]);
    handle.open();
    assert_eq!(b.await.unwrap(), "ab #0");
    assert_eq!(a.await.unwrap(), "ab #0");
    assert_eq!(handle.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stale_answer_is_served_while_one_request_refreshes_it() {
    let recorder = Arc::new(Recorder::default());
    let (_, svc, handle) = gated_behind(
        by_request()
            .share(Strings::MARKED)
            .cache(Duration::from_secs(5), 10)
            .serve_stale(Duration::from_secs(10))
            .sink(recorder.clone()),
    );
    handle.open();
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (own)");
    handle.shut();
    tokio::time::advance(Duration::from_secs(6)).await;
    // The first to find it stale refreshes it, and waits for the refresh.
    let [refresher] = waiting(&svc, ["k"]);
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
    let err = by_request()
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
    let join: Arc<Mutex<Option<Join>>> = Arc::default();
    let follower: Arc<Mutex<Option<BoxFuture>>> = Arc::default();
    // Its first call makes a follower join through the dedup service, then
    // panics before the leader could hand its call over.
    let join_then_panic = {
        let (join, follower) = (join.clone(), follower.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        tower::service_fn(move |request: String| -> BoxFuture {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let join = join.lock().unwrap();
                *follower.lock().unwrap() = Some((join.as_ref().unwrap())(request));
                panic!("the inner call panics after a follower joined (on purpose)");
            }
            Box::pin(async move { Ok(request) })
        })
    };
    let layer = by_request().build().unwrap();
    let mut svc = layer.layer(join_then_panic);
    let other = Mutex::new(svc.clone());
    *join.lock().unwrap() = Some(Box::new(move |request| {
        Box::pin(other.lock().unwrap().call(request))
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call("k".to_owned()));
    }));
    assert!(outcome.is_err());
    let follower = follower.lock().unwrap().take().expect("a follower joined");
    let mut follower = spawn(follower);
    let err = match follower.poll() {
        Poll::Ready(result) => result.unwrap_err(),
        Poll::Pending => panic!("the follower waits on a call nobody will start"),
    };
    assert_eq!(rejected_kind(&err), Some(RejectKind::DedupAborted));
    drop(follower);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
    assert_eq!(send(&svc, "k").await.unwrap(), "k", "the key runs again");
}

#[tokio::test]
async fn a_follower_that_falls_back_to_its_own_call_is_marked_own() {
    let (_, svc, handle) = gated_behind(by_request().share(Strings {
        marked: true,
        ..Strings::SHORT_ONLY
    }));
    let [leader, follower] = waiting(&svc, ["long", "long"]);
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
    let (_, svc, handle) = gated_behind(
        by_request()
            .share(Strings::MARKED)
            .max_keys(1)
            .cache(Duration::from_secs(5), 10)
            .serve_stale(Duration::from_secs(10)),
    );
    handle.open();
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (own)");
    handle.shut();
    tokio::time::advance(Duration::from_secs(6)).await;
    // Another key takes the only room in the table.
    let [other] = waiting(&svc, ["other"]);
    // "k" is stale and cannot refresh: its stale answer, not `DedupFull`.
    assert_eq!(send(&svc, "k").await.unwrap(), "k #0 (stale)");
    assert_eq!(handle.calls(), 2, "no refresh could start");
    // Without a stale answer, a new key is still refused.
    let err = send(&svc, "new").await.unwrap_err();
    assert_eq!(rejected_kind(&err), Some(RejectKind::DedupFull));
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
    let (layer, svc, handle) = gated_behind(
        by_request()
            .cache(Duration::from_secs(60), 10)
            .classifier(|_: Result<&String, &BoxError>| reflex_core::Outcome::Failure),
    );
    let [a, b] = waiting(&svc, ["k", "k"]);
    handle.open();
    assert_eq!(a.await.unwrap(), "k #0");
    assert_eq!(b.await.unwrap(), "k #0", "shared in flight");
    assert_eq!(send(&svc, "k").await.unwrap(), "k #1", "not cached");
    assert_eq!(layer.handle().metrics().cache_entries, 0);
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_kept_no_longer_than_its_max_age_nor_the_ttl() {
    let (_, svc, handle) = gated_behind(
        by_request()
            .share(Strings::AGED)
            .cache(Duration::from_secs(10), 10),
    );
    handle.open();
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

/// After a call for a key ends, the cache holds its answer or nothing: a
/// refresh whose answer may not be kept (a failure, an error, an answer
/// that cannot be shared) takes the stale answer away with it.
#[tokio::test(start_paused = true)]
async fn a_refresh_whose_answer_may_not_be_kept_removes_the_stale_answer() {
    for refresh in ["a failure", "an error", "not shareable"] {
        let (inner, handle) = gated();
        let layer = by_request()
            .share(Strings {
                // The answer of the second call ("#1") may not be shared.
                shareable: if refresh == "not shareable" {
                    |answer| !answer.ends_with("#1")
                } else {
                    |_| true
                },
                ..Strings::MARKED
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
        handle.shut();
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
