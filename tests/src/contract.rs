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
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock::{self, Mock};

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
    /// be in the inner service at once, and so that an inner error or panic
    /// is not retried.
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

    /// Configurations the layer's builder must refuse, each already passed
    /// through `build()`. At least one.
    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>>;
}

/// An inner service that panics in `call`, or in its future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panicky {
    /// `call` panics.
    InCall,
    /// `call` returns a future that panics when polled.
    InFuture,
}

/// The future of [`Panicky::InFuture`].
pub struct PanickingFuture(());

impl fmt::Debug for PanickingFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanickingFuture")
    }
}

impl Future for PanickingFuture {
    type Output = Result<String, BoxError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
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
        match self {
            Self::InCall => panic!("the inner call panics (on purpose)"),
            Self::InFuture => PanickingFuture(()),
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

/// A clone taken from a ready service must earn its own readiness, and the
/// ready original, moved out with `mem::replace`, must still be callable.
pub async fn a_clone_taken_before_ready_earns_its_own_readiness<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError> + Clone,
{
    let layer = T::layer();
    let (mock, mut handle) = mock::pair::<String, String>();
    handle.allow(1);
    let mut svc = tower_test::mock::Spawn::new(layer.layer(mock));
    assert_ready_ok!(svc.poll_ready());

    let clone = svc.get_ref().clone();
    let mut ready = std::mem::replace(svc.get_mut(), clone);
    let response = ready.call(request(0));

    // The clone did not inherit the readiness its original used up.
    assert_pending!(svc.poll_ready());
    let (req, send) = handle.next_request().await.expect("request reached inner");
    assert_eq!(req, request(0));
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

/// Clones of a service, and the layer that made them, see one state.
pub async fn state_is_shared_across_clones<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError> + Clone,
{
    let layer = T::layer();
    let (mock, mut handle) = mock::pair::<String, String>();
    let mut a = layer.layer(mock);
    let mut b = a.clone();

    let first = a.ready().await.expect("ready").call(request(0));
    assert_eq!(T::held(&layer), running::<T>(1));
    let second = b.ready().await.expect("ready").call(request(1));
    assert_eq!(
        T::held(&layer),
        running::<T>(2),
        "both clones count against one state"
    );

    for _ in 0..2 {
        let (req, send) = handle.next_request().await.expect("request reached inner");
        send.send_response(req);
    }
    first.await.expect("first");
    second.await.expect("second");
    assert_eq!(T::held(&layer), 0);
}

/// An inner error reaches the caller as itself: downcastable, not wrapped,
/// not mistaken for a rejection.
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

    let layer = T::layer();
    let (mock, mut handle) = mock::pair::<String, String>();
    let mut svc = layer.layer(mock);
    let response = svc.ready().await.expect("ready").call(request(0));
    let (_, send) = handle.next_request().await.expect("request reached inner");
    send.send_error(Boom);
    let err = response.await.expect_err("the inner error");
    assert!(err.downcast_ref::<Boom>().is_some(), "got {err:?}");
    assert!(Rejected::find(&*err).is_none());
    assert_eq!(T::held(&layer), 0);
}

/// A response future dropped before it completes gives back what it held.
pub async fn a_dropped_response_future_releases_what_it_held<T>()
where
    T: Subject,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
{
    let layer = T::layer();
    let (mock, mut handle) = mock::pair::<String, String>();
    let mut svc = layer.layer(mock);

    let mut response = tokio_test::task::spawn(svc.ready().await.expect("ready").call(request(0)));
    assert_pending!(response.poll());
    let (_, send) = handle.next_request().await.expect("request reached inner");
    assert_eq!(T::held(&layer), running::<T>(1));
    drop(response);
    assert_eq!(T::held(&layer), 0, "dropping the future released it");

    // An answer arriving after the drop changes nothing.
    send.send_response("late".to_owned());
    assert_eq!(T::held(&layer), 0);
}

/// A panic in the inner service's `call` gives back what the request held.
pub async fn a_panic_in_the_inner_call_releases_what_it_held<T>()
where
    T: Subject,
    WrappedPanicky<T>: Service<String, Response = String, Error = BoxError>,
    Wrapped<T>: Service<String, Response = String, Error = BoxError>,
{
    let layer = T::layer();
    let mut svc = tower_test::mock::Spawn::new(layer.layer(Panicky::InCall));
    assert_ready_ok!(svc.poll_ready());
    let outcome = catch_unwind(AssertUnwindSafe(|| drop(svc.call(request(0)))));
    assert!(outcome.is_err(), "the inner call panicked");
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
pub async fn a_panic_in_the_inner_future_releases_what_it_held<T>()
where
    T: Subject,
    WrappedPanicky<T>: Service<String, Response = String, Error = BoxError>,
    <WrappedPanicky<T> as Service<String>>::Future: Send + 'static,
{
    let layer = T::layer();
    let mut svc = layer.layer(Panicky::InFuture);
    let response = svc.ready().await.expect("ready").call(request(0));
    assert_eq!(
        T::held(&layer),
        running::<T>(1),
        "the request holds something while it runs"
    );
    let outcome = tokio::spawn(response).await;
    assert!(
        outcome.expect_err("the inner future panicked").is_panic(),
        "the task ended in the panic"
    );
    assert_eq!(T::held(&layer), 0);
}

/// A timeout around the layer that fires while the inner call runs gives
/// back what the request held (on a paused clock: no real waiting).
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
    let (_, _never_answered) = handle.next_request().await.expect("request reached inner");
    assert_eq!(T::held(&layer), running::<T>(1));
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

/// Runs the whole contract against `$subject`, one test per clause.
#[macro_export]
macro_rules! layer_contract {
    ($subject:ty) => {
        #[::tokio::test]
        async fn contract_a_clone_taken_before_ready_earns_its_own_readiness() {
            $crate::contract::a_clone_taken_before_ready_earns_its_own_readiness::<$subject>()
                .await;
        }

        #[::tokio::test]
        async fn contract_readiness_is_checked_before_each_call() {
            $crate::contract::readiness_is_checked_before_each_call::<$subject>().await;
        }

        #[::tokio::test]
        async fn contract_state_is_shared_across_clones() {
            $crate::contract::state_is_shared_across_clones::<$subject>().await;
        }

        #[::tokio::test]
        async fn contract_inner_errors_pass_through_untouched() {
            $crate::contract::inner_errors_pass_through_untouched::<$subject>().await;
        }

        #[::tokio::test]
        async fn contract_a_dropped_response_future_releases_what_it_held() {
            $crate::contract::a_dropped_response_future_releases_what_it_held::<$subject>().await;
        }

        #[::tokio::test]
        async fn contract_a_panic_in_the_inner_call_releases_what_it_held() {
            $crate::contract::a_panic_in_the_inner_call_releases_what_it_held::<$subject>().await;
        }

        #[::tokio::test]
        async fn contract_a_panic_in_the_inner_future_releases_what_it_held() {
            $crate::contract::a_panic_in_the_inner_future_releases_what_it_held::<$subject>().await;
        }

        #[::tokio::test]
        async fn contract_a_timeout_around_the_layer_releases_what_it_held() {
            $crate::contract::a_timeout_around_the_layer_releases_what_it_held::<$subject>().await;
        }

        #[test]
        fn contract_invalid_config_is_an_error_not_a_panic() {
            $crate::contract::invalid_config_is_an_error_not_a_panic::<$subject>();
        }
    };
}
