//! The harness of the tests that drive a breaker through a tower-test mock
//! whose calls they answer by hand, so which calls succeed, fail or hang,
//! and how long they take, is the test's to say.

use std::sync::Arc;
use std::time::Duration;

use reflex_breaker::future::ResponseFuture;
use reflex_breaker::{
    BreakerHandle, BreakerMetrics, CircuitBreak, CircuitBreakBuilder, CircuitBreakLayer,
    MemoryBackend,
};
use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, BreakerState, Classify, Component, RejectKind, Rejected, Signal, TransitionReason,
};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower_test::mock;

/// How long the breakers of these tests stay open (before any backoff).
pub(crate) const OPEN_FOR: Duration = Duration::from_secs(10);

/// A breaker guarding "db" that stays open [`OPEN_FOR`]; otherwise the
/// defaults.
pub(crate) fn builder() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .component("db")
        .open_duration(OPEN_FOR)
}

/// Trips on `n` failures in a row, and on nothing else.
pub(crate) fn consecutive(n: u32) -> CircuitBreakBuilder {
    builder().consecutive_failures(n)
}

/// What the inner service answers for a success.
pub(crate) fn ok() -> Result<u32, BoxError> {
    Ok(7)
}

/// What the inner service answers for a failure.
pub(crate) fn down() -> Result<u32, BoxError> {
    Err("dependency down".into())
}

/// The transitions `recorder` heard, in order, checking each is the "db"
/// breaker's.
pub(crate) fn transitions(
    recorder: &Recorder,
) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
    recorder
        .signals()
        .into_iter()
        .map(|(component, signal)| {
            assert_eq!(component, Component::new("db"));
            match signal {
                Signal::BreakerTransition { from, to, reason } => (from, to, reason),
                other => panic!("not a breaker transition: {other:?}"),
            }
        })
        .collect()
}

type InFlight<C> =
    tokio_test::task::Spawn<ResponseFuture<mock::future::ResponseFuture<u32>, C, MemoryBackend>>;

/// A breaker around a tower-test mock, its handle, and a recorder of its
/// signals.
pub(crate) struct Harness<C> {
    svc: mock::Spawn<CircuitBreak<mock::Mock<u32, u32>, C>>,
    inner: mock::Handle<u32, u32>,
    pub(crate) breaker: BreakerHandle,
    pub(crate) recorder: Arc<Recorder>,
}

/// A call the breaker admitted, waiting in the inner service for an answer.
pub(crate) struct Call<C> {
    response: InFlight<C>,
    reply: mock::SendResponse<u32>,
}

impl<C: Classify<u32, BoxError>> Harness<C> {
    /// The breaker `builder` makes, reporting to the harness's recorder.
    pub(crate) fn new(builder: CircuitBreakBuilder<C>) -> Self {
        let recorder = Arc::new(Recorder::default());
        let layer = builder
            .sink(Arc::clone(&recorder))
            .build()
            .expect("a valid configuration");
        let breaker = layer.handle();
        let (svc, inner) = mock::spawn_layer(layer);
        Self {
            svc,
            inner,
            breaker,
            recorder,
        }
    }

    /// Calls the breaker (which is always ready); the response is not
    /// polled yet.
    fn send(&mut self) -> InFlight<C> {
        assert_ready_ok!(self.svc.poll_ready(), "a breaker never waits in poll_ready");
        tokio_test::task::spawn(self.svc.call(0))
    }

    /// A call the breaker must admit: it reaches the inner service and
    /// waits there.
    pub(crate) fn start(&mut self) -> Call<C> {
        let mut response = self.send();
        assert_pending!(
            response.poll(),
            "an admitted call waits on the inner service"
        );
        let (_, reply) = assert_ready!(self.inner.poll_request())
            .expect("the admitted call reached the inner service");
        Call { response, reply }
    }

    /// A call the inner service, if it is reached, answers at once with
    /// `answer`: what the caller gets.
    pub(crate) fn call(&mut self, answer: Result<u32, BoxError>) -> Result<u32, BoxError> {
        let mut response = self.send();
        if let std::task::Poll::Ready(refused) = response.poll() {
            assert_pending!(
                self.inner.poll_request(),
                "a refused call never reaches the inner service"
            );
            return refused;
        }
        let (_, reply) =
            assert_ready!(self.inner.poll_request()).expect("reached the inner service");
        Call { response, reply }.finish(answer)
    }

    /// A call that must be admitted and succeed.
    pub(crate) fn succeed(&mut self) {
        assert_eq!(self.call(ok()).expect("admitted and answered"), 7);
    }

    /// A call that must be admitted and fail with the inner error, unwrapped.
    pub(crate) fn fail(&mut self) {
        let err = self.call(down()).unwrap_err();
        assert!(
            Rejected::find(&*err).is_none(),
            "refused, not admitted: {err}"
        );
        assert_eq!(err.to_string(), "dependency down");
    }

    /// A call the breaker must refuse: at once, without reaching the inner
    /// service, with a `CircuitOpen` rejection naming "db".
    pub(crate) fn refused(&mut self) -> Rejected {
        let mut response = self.send();
        let err = assert_ready!(response.poll(), "a refusal is ready at once").unwrap_err();
        assert_pending!(
            self.inner.poll_request(),
            "a refused call never reaches the inner service"
        );
        let rejected = Rejected::find(&*err)
            .unwrap_or_else(|| panic!("not a rejection: {err}"))
            .clone();
        assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
        assert_eq!(rejected.component().as_str(), "db");
        rejected
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.breaker.state()
    }

    pub(crate) fn metrics(&self) -> BreakerMetrics {
        self.breaker.metrics()
    }

    /// The transitions the breaker reported, in order.
    pub(crate) fn transitions(&self) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
        transitions(&self.recorder)
    }
}

impl<C: Classify<u32, BoxError>> Call<C> {
    /// The inner service answers with `answer`: what the caller gets.
    pub(crate) fn finish(self, answer: Result<u32, BoxError>) -> Result<u32, BoxError> {
        let Self {
            mut response,
            reply,
        } = self;
        match answer {
            Ok(response) => reply.send_response(response),
            Err(err) => reply.send_error(err),
        }
        assert!(response.is_woken(), "the answer wakes the caller");
        assert_ready!(response.poll())
    }
}
