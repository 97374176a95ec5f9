//! The layer contract: what every reflex layer guarantees, checked against a
//! [`Subject`].
//!
//! A layer's test file implements [`Subject`] for a marker type and invokes
//! [`layer_contract!`](crate::layer_contract) with it; see
//! `tests/contract_shed.rs`. The test file needs `tokio` (features `macros`
//! and `rt`) among its dev-dependencies.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use reflex_core::{BoxError, ConfigError, Rejected};
use tokio_test::task::Spawn;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock::{self, Handle, Mock, SendResponse};

/// The inner service most contract checks wrap: a tower-test mock.
pub type MockService = Mock<String, String>;

/// The service a subject's layer makes of a [`MockService`].
pub type Wrapped<T> = <<T as Subject>::Layer as Layer<MockService>>::Service;

/// The service a subject's layer makes of a [`Panicky`] one.
pub type WrappedPanicky<T> = <<T as Subject>::Layer as Layer<Panicky>>::Service;

/// A layer under contract.
pub trait Subject {
    /// The layer.
    type Layer: Layer<MockService> + Layer<Panicky> + Clone;

    /// A freshly built layer, configured so that at least two requests may
    /// be in the inner service at once, and so that a panic is not retried,
    /// nor an inner error, but for a layer that retries (see
    /// [`RETRY_DELAY`](Self::RETRY_DELAY)).
    fn layer() -> Self::Layer;

    /// What the layer holds on behalf of requests right now: permits, slots,
    /// in-flight entries, as its handle reports them. Zero when idle.
    fn held(layer: &Self::Layer) -> usize;

    /// Whether a request holds something (`held` counts 1 for it) while
    /// its first attempt runs in the inner service. A layer that holds
    /// nothing until a later stage (the retry layer: only a request in a
    /// retry cycle counts) says `false`; the contract then checks that
    /// `held` stays at zero on those paths, and the layer's own tests check
    /// the release of what it holds later.
    const HOLDS_WHILE_RUNNING: bool = true;

    /// For a layer that retries (the retry layer): the delay before its
    /// retry. Its [`layer`](Self::layer) is then configured to retry an
    /// attempt that failed with a [`Transient`] error, after exactly this
    /// delay (no jitter, a budget that allows it), and no other error.
    ///
    /// The contract then fails the first attempt of the requests whose
    /// release it checks, so that each check runs while a retry waits or
    /// runs (on a paused clock), and counts a request in its retry cycle
    /// as holding 1. `None`, the default: the layer does not retry, and an
    /// inner error is final.
    const RETRY_DELAY: Option<Duration> = None;

    /// Configurations the layer's builder must refuse, each already passed
    /// through `build()`. At least one.
    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>>;
}

/// The error an inner service fails with when the contract wants an
/// attempt retried: a subject that retries (see [`Subject::RETRY_DELAY`])
/// retries it; no other error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transient;

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a transient failure (on purpose)")
    }
}

impl std::error::Error for Transient {}

/// Where a [`Panicky`] service panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicAt {
    /// In `call`.
    Call,
    /// In the future `call` returns, when it is polled.
    Future,
}

/// An inner service that panics in `call`, or in its future; after
/// failing its first calls with [`Transient`] when asked to (for a subject
/// that retries: the panic then hits its retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicky {
    /// Where it panics.
    pub at: PanicAt,
    /// Calls of this service (a clone keeps the count it was cloned with)
    /// whose future fails with [`Transient`] before it panics.
    pub errors_first: u32,
}

impl Panicky {
    /// Panics at `at`, after a failed first call for a subject that
    /// retries.
    pub fn for_subject<T: Subject>(at: PanicAt) -> Self {
        Self {
            at,
            errors_first: u32::from(T::RETRY_DELAY.is_some()),
        }
    }
}

/// The future of a [`Panicky`] service: fails with [`Transient`], or panics
/// when polled.
pub struct PanickingFuture {
    fails: bool,
}

impl fmt::Debug for PanickingFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanickingFuture")
            .field("fails", &self.fails)
            .finish()
    }
}

impl Future for PanickingFuture {
    type Output = Result<String, BoxError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.fails {
            return Poll::Ready(Err(Transient.into()));
        }
        panic!("the inner future panics (on purpose)")
    }
}

impl Service<String> for Panicky {
    type Response = String;
    type Error = BoxError;
    type Future = PanickingFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: String) -> Self::Future {
        if self.errors_first > 0 {
            self.errors_first -= 1;
            return PanickingFuture { fails: true };
        }
        match self.at {
            PanicAt::Call => panic!("the inner call panics (on purpose)"),
            PanicAt::Future => PanickingFuture { fails: false },
        }
    }
}

/// What `n` running requests hold, by the subject's account.
fn running<T: Subject>(n: usize) -> usize {
    if T::HOLDS_WHILE_RUNNING { n } else { 0 }
}

fn request(i: usize) -> String {
    format!("request-{i}")
}

/// The subject's layer; then, for a subject that retries, whose checks
/// wait out its retry's delay, the clock paused (after
/// [`Subject::layer`], which may need time to pass).
fn layer_for_checks<T: Subject>() -> T::Layer {
    let layer = T::layer();
    if T::RETRY_DELAY.is_some() {
        tokio::time::pause();
    }
    layer
}

/// [`layer_for_checks`], and a mock inner service with its handle.
fn layer_and_mock<T: Subject>() -> (T::Layer, MockService, Handle<String, String>) {
    let layer = layer_for_checks::<T>();
    let (mock, handle) = mock::pair::<String, String>();
    (layer, mock, handle)
}

/// Fails the attempt `send` answers with [`Transient`], and checks that
/// `response` then waits out the retry's delay, holding its retry cycle,
/// alone among `waiting` requests in theirs (a subject that retries only).
fn fail_the_attempt<T: Subject, F: Future<Output: fmt::Debug>>(
    layer: &T::Layer,
    response: &mut Spawn<F>,
    send: SendResponse<String>,
    waiting: usize,
) {
    send.send_error(Transient);
    assert_pending!(response.poll(), "the failed attempt is retried later");
    assert_eq!(
        T::held(layer),
        waiting,
        "a request waiting for its retry holds its retry cycle"
    );
}

/// The timer's granularity: a sleep ends on the first millisecond tick at
/// or after its deadline, and a clock paused mid-test is not on a tick.
const TICK: Duration = Duration::from_millis(1);

/// The request that reached the inner service, already there: a retry
/// that does not arrive fails the check instead of hanging it.
fn arrived(handle: &mut Handle<String, String>) -> (String, SendResponse<String>) {
    match handle.poll_request() {
        Poll::Ready(Some(request)) => request,
        _ => panic!("the retry did not reach the inner service"),
    }
}

/// Waits out the retry's delay of `responses` (failed with
/// [`fail_the_attempt`]) and returns their retries once they reached the
/// inner service, in order.
async fn the_retries_arrive<T: Subject, F: Future<Output: fmt::Debug>>(
    responses: &mut [&mut Spawn<F>],
    handle: &mut Handle<String, String>,
) -> Vec<(String, SendResponse<String>)> {
    let delay = T::RETRY_DELAY.expect("a subject that retries");
    tokio::time::advance(delay - TICK).await;
    for response in responses.iter_mut() {
        assert_pending!(response.poll());
    }
    assert!(
        handle.poll_request().is_pending(),
        "no retry before its delay"
    );
    tokio::time::advance(2 * TICK).await;
    let mut retries = Vec::with_capacity(responses.len());
    for response in responses.iter_mut() {
        assert_pending!(response.poll(), "the retry is in the inner service");
        retries.push(arrived(handle));
    }
    retries
}

/// A clone taken from a ready service must earn its own readiness, and the
/// ready original, moved out with `mem::replace`, must still be callable. A
/// retry of the original earns its readiness again: it never calls the
/// inner service cold, and the capacity it waits for is not the clone's.
pub async fn a_clone_taken_before_ready_earns_its_own_readiness<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError> + Clone,
{
    let (layer, mock, mut handle) = layer_and_mock::<T>();
    handle.allow(1);
    let mut svc = tower_test::mock::Spawn::new(layer.layer(mock));
    assert_ready_ok!(svc.poll_ready());

    let clone = svc.get_ref().clone();
    let mut ready = std::mem::replace(svc.get_mut(), clone);
    let mut response = tokio_test::task::spawn(ready.call(request(0)));

    // The clone did not inherit the readiness its original used up.
    assert_pending!(svc.poll_ready());
    assert_pending!(response.poll());
    let (req, mut send) = handle.next_request().await.expect("request reached inner");
    assert_eq!(req, request(0));
    if let Some(delay) = T::RETRY_DELAY {
        fail_the_attempt::<T, _>(&layer, &mut response, send, 1);
        tokio::time::advance(delay + TICK).await;
        // The delay is over, and the inner service has no capacity: the
        // retry waits for it.
        assert_pending!(response.poll());
        assert!(
            handle.poll_request().is_pending(),
            "a retry never calls the inner service before it is ready"
        );
        handle.allow(1);
        assert!(response.is_woken(), "capacity wakes the waiting retry");
        assert_pending!(response.poll());
        let (req, retry) = arrived(&mut handle);
        assert_eq!(req, request(0));
        send = retry;
        assert_pending!(
            svc.poll_ready(),
            "the retry used the capacity, the clone did not get it"
        );
    }
    send.send_response("ok".to_owned());
    assert_eq!(response.await.expect("response"), "ok");

    handle.allow(1);
    assert!(svc.is_woken(), "more inner capacity wakes the clone");
    assert_ready_ok!(svc.poll_ready());
}

/// The layer is ready only when the inner service is, before every call: it
/// neither reports readiness it does not have nor sheds a request because
/// the inner service is busy.
pub async fn readiness_is_checked_before_each_call<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
{
    let layer = T::layer();
    let (mock, mut handle) = mock::pair::<String, String>();
    handle.allow(0);
    let mut svc = tower_test::mock::Spawn::new(layer.layer(mock));

    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    let first = svc.call(request(0));

    // The inner service has no capacity left: the layer must wait for it.
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    let second = svc.call(request(1));

    for expected in [request(0), request(1)] {
        let (req, send) = handle.next_request().await.expect("request reached inner");
        assert_eq!(req, expected);
        send.send_response(format!("answer to {req}"));
    }
    assert_eq!(
        first.await.expect("first"),
        format!("answer to {}", request(0))
    );
    assert_eq!(
        second.await.expect("second"),
        format!("answer to {}", request(1))
    );
}

/// Clones of a service, and the layer that made them, see one state: in
/// the first attempts of their requests, and in their retry cycles.
pub async fn state_is_shared_across_clones<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError> + Clone,
{
    let (layer, mock, mut handle) = layer_and_mock::<T>();
    let mut a = layer.layer(mock);
    let mut b = a.clone();

    let mut first = tokio_test::task::spawn(a.ready().await.expect("ready").call(request(0)));
    assert_eq!(T::held(&layer), running::<T>(1));
    let mut second = tokio_test::task::spawn(b.ready().await.expect("ready").call(request(1)));
    assert_eq!(
        T::held(&layer),
        running::<T>(2),
        "both clones count against one state"
    );
    assert_pending!(first.poll());
    assert_pending!(second.poll());

    let mut sends = Vec::new();
    for _ in 0..2 {
        let (req, send) = handle.next_request().await.expect("request reached inner");
        sends.push((req, send));
    }
    if T::RETRY_DELAY.is_some() {
        let (_, send) = sends.remove(0);
        fail_the_attempt::<T, _>(&layer, &mut first, send, 1);
        let (_, send) = sends.remove(0);
        fail_the_attempt::<T, _>(&layer, &mut second, send, 2);
        assert_eq!(
            T::held(&layer),
            2,
            "both clones' retry cycles count against one state"
        );
        sends = the_retries_arrive::<T, _>(&mut [&mut first, &mut second], &mut handle).await;
    }
    for (req, send) in sends {
        send.send_response(req);
    }
    assert_eq!(first.await.expect("first"), request(0));
    assert_eq!(second.await.expect("second"), request(1));
    assert_eq!(T::held(&layer), 0);
}

/// An inner error reaches the caller as itself: downcastable, not wrapped,
/// not mistaken for a rejection. For a subject that retries, that is the
/// error of the last attempt, after a retry.
pub async fn inner_errors_pass_through_untouched<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
{
    #[derive(Debug)]
    struct Boom;
    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("boom")
        }
    }
    impl std::error::Error for Boom {}

    let (layer, mock, mut handle) = layer_and_mock::<T>();
    let mut svc = layer.layer(mock);
    let mut response = tokio_test::task::spawn(svc.ready().await.expect("ready").call(request(0)));
    assert_pending!(response.poll());
    let (_, mut send) = handle.next_request().await.expect("request reached inner");
    if T::RETRY_DELAY.is_some() {
        fail_the_attempt::<T, _>(&layer, &mut response, send, 1);
        let mut retries = the_retries_arrive::<T, _>(&mut [&mut response], &mut handle).await;
        send = retries.remove(0).1;
    }
    send.send_error(Boom);
    let err = response.await.expect_err("the inner error");
    assert!(err.downcast_ref::<Boom>().is_some(), "got {err:?}");
    assert!(Rejected::find(&*err).is_none());
    assert_eq!(T::held(&layer), 0);
}

/// A response future dropped before it completes gives back what it held:
/// while its request runs in the inner service, and, for a subject that
/// retries, while it waits for its retry (which is then never made).
pub async fn a_dropped_response_future_releases_what_it_held<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
{
    let (layer, mock, mut handle) = layer_and_mock::<T>();
    let mut svc = layer.layer(mock);

    let mut response = tokio_test::task::spawn(svc.ready().await.expect("ready").call(request(0)));
    assert_pending!(response.poll());
    let (_, send) = handle.next_request().await.expect("request reached inner");
    assert_eq!(T::held(&layer), running::<T>(1));
    if let Some(delay) = T::RETRY_DELAY {
        fail_the_attempt::<T, _>(&layer, &mut response, send, 1);
        drop(response);
        assert_eq!(
            T::held(&layer),
            0,
            "dropping the waiting future released it"
        );
        tokio::time::advance(delay * 2).await;
        assert!(
            handle.poll_request().is_pending(),
            "no retry after the drop"
        );
        assert_eq!(T::held(&layer), 0);
        return;
    }
    drop(response);
    assert_eq!(T::held(&layer), 0, "dropping the future released it");

    // An answer arriving after the drop changes nothing.
    send.send_response("late".to_owned());
    assert_eq!(T::held(&layer), 0);
}

/// A panic in the inner service's `call` gives back what the request held;
/// for a subject that retries, the panic is in its retry's call, made from
/// the response future.
pub async fn a_panic_in_the_inner_call_releases_what_it_held<T>()
where
    T: Subject,
    WrappedPanicky<T>: Service<String, Response = String, Error = BoxError>,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
{
    let layer = layer_for_checks::<T>();
    let mut svc =
        tower_test::mock::Spawn::new(layer.layer(Panicky::for_subject::<T>(PanicAt::Call)));
    assert_ready_ok!(svc.poll_ready());
    match T::RETRY_DELAY {
        None => {
            let outcome = catch_unwind(AssertUnwindSafe(|| drop(svc.call(request(0)))));
            assert!(outcome.is_err(), "the inner call panicked");
        }
        Some(delay) => {
            let mut response = tokio_test::task::spawn(svc.call(request(0)));
            assert_pending!(response.poll(), "the first attempt failed: a retry waits");
            assert_eq!(T::held(&layer), 1, "in its retry cycle");
            tokio::time::advance(delay + TICK).await;
            let outcome = catch_unwind(AssertUnwindSafe(move || {
                let mut response = response;
                let _ = response.poll();
            }));
            assert!(outcome.is_err(), "the retry's inner call panicked");
        }
    }
    assert_eq!(T::held(&layer), 0);
    // And the layer is whole after it: a request still goes through.
    let (mock, mut handle) = mock::pair::<String, String>();
    let mut next = layer.layer(mock);
    let response = next.ready().await.expect("ready").call(request(1));
    let (_, send) = handle.next_request().await.expect("request reached inner");
    send.send_response("ok".to_owned());
    assert_eq!(response.await.expect("response"), "ok");
}

/// A panic in the inner service's future, in a task, gives back what the
/// request held: the task drops the future as the panic unwinds out of it.
/// For a subject that retries, the panic is in its retry's future.
pub async fn a_panic_in_the_inner_future_releases_what_it_held<T>()
where
    T: Subject,
    WrappedPanicky<T>: Service<String, Response = String, Error = BoxError>,
    <WrappedPanicky<T> as Service<String>>::Future: Send + 'static,
{
    let layer = layer_for_checks::<T>();
    let mut svc = layer.layer(Panicky::for_subject::<T>(PanicAt::Future));
    let response = svc.ready().await.expect("ready").call(request(0));
    assert_eq!(
        T::held(&layer),
        running::<T>(1),
        "the request holds something while it runs"
    );
    // With the clock paused, the task waits out a retry's delay at once.
    let outcome = tokio::spawn(response).await;
    assert!(
        outcome.expect_err("the inner future panicked").is_panic(),
        "the task ended in the panic"
    );
    assert_eq!(T::held(&layer), 0);
}

/// A timeout around the layer that fires while the inner call runs gives
/// back what the request held (on a paused clock: no real waiting); for a
/// subject that retries, while its retry runs.
pub async fn a_timeout_around_the_layer_releases_what_it_held<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
    <Wrapped<T> as Service<String>>::Future: Send + 'static,
{
    let layer = T::layer();
    tokio::time::pause();
    let (mock, mut handle) = mock::pair::<String, String>();
    let mut svc = layer.layer(mock);
    let response = svc.ready().await.expect("ready").call(request(0));
    let timed = tokio::spawn(tokio::time::timeout(Duration::from_secs(30), response));
    let (_, send) = handle.next_request().await.expect("request reached inner");
    assert_eq!(T::held(&layer), running::<T>(1));
    let _never_answered = match T::RETRY_DELAY {
        None => send,
        Some(delay) => {
            send.send_error(Transient);
            // The task waits out the delay (the paused clock jumps to it)
            // and sends the retry.
            let (_, retry) = tokio::time::timeout(delay + TICK, handle.next_request())
                .await
                .expect("the retry came after its delay")
                .expect("the retry reached inner");
            assert_eq!(T::held(&layer), 1, "in its retry");
            retry
        }
    };
    let outcome = timed.await.expect("no panic");
    assert!(outcome.is_err(), "the timeout fired");
    assert_eq!(T::held(&layer), 0);
}

/// Every invalid configuration is a typed error, never a panic.
pub fn invalid_config_is_an_error_not_a_panic<T: Subject>() {
    let configs = catch_unwind(T::invalid_configs).expect("building invalid configs panicked");
    assert!(!configs.is_empty(), "the subject names no invalid config");
    for (i, config) in configs.into_iter().enumerate() {
        assert!(config.is_err(), "invalid config #{i} was accepted");
    }
}

/// Runs the whole contract against `$subject`: a module `contract` of
/// tests, one per clause, each named after the clause it runs.
#[macro_export]
macro_rules! layer_contract {
    ($subject:ty) => {
        /// The layer contract, one test per clause.
        mod contract {
            use super::*;

            $crate::layer_contract!(@async $subject:
                a_clone_taken_before_ready_earns_its_own_readiness,
                readiness_is_checked_before_each_call,
                state_is_shared_across_clones,
                inner_errors_pass_through_untouched,
                a_dropped_response_future_releases_what_it_held,
                a_panic_in_the_inner_call_releases_what_it_held,
                a_panic_in_the_inner_future_releases_what_it_held,
                a_timeout_around_the_layer_releases_what_it_held,
            );

            #[test]
            fn invalid_config_is_an_error_not_a_panic() {
                $crate::contract::invalid_config_is_an_error_not_a_panic::<$subject>();
            }
        }
    };
    (@async $subject:ty: $($clause:ident,)+) => {
        $(
            #[::tokio::test]
            async fn $clause() {
                $crate::contract::$clause::<$subject>().await;
            }
        )+
    };
}
