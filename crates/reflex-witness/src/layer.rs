//! [`ObserveWitnessLayer`] and its [`ObserveWitness`] service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::origin::{Below, Caller, Frame, Scoped};
use reflex_core::{BoxError, Classify, DefaultClassifier, Outcome, Rejected};
use tower_layer::Layer;
use tower_service::Service;

use crate::Witness;
use crate::registry::{FAILED, FAILED_BELOW};

/// Records each request of a component's stack into a [`Witness`]: start,
/// end, latency, outcome, and rejections by kind. From
/// [`Witness::layer`].
///
/// # Clone
///
/// Clones record into the same component of the same witness.
///
/// # Examples
///
/// ```
/// use reflex_witness::Witness;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let witness = Witness::builder().build()?;
/// let svc = witness.layer("db")?.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// svc.oneshot(7).await?;
/// let snapshot = witness.cycle_now();
/// assert_eq!(snapshot.component("db").map(|c| c.succeeded), Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ObserveWitnessLayer<C = DefaultClassifier> {
    witness: Witness,
    index: usize,
    classifier: C,
}

// === impl ObserveWitnessLayer ===

impl ObserveWitnessLayer {
    pub(crate) fn new(witness: Witness, index: usize) -> Self {
        Self {
            witness,
            index,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> ObserveWitnessLayer<C> {
    /// What counts as a failure: a [`Classify`] over
    /// `Result<&Response, &BoxError>`, or a closure. A
    /// [`Rejected`] error counts as a rejection of its kind, whatever it
    /// says. Defaults to [`DefaultClassifier`].
    pub fn classifier<C2>(self, classifier: C2) -> ObserveWitnessLayer<C2> {
        ObserveWitnessLayer {
            witness: self.witness,
            index: self.index,
            classifier,
        }
    }

    /// The witness it records into.
    pub fn witness(&self) -> &Witness {
        &self.witness
    }
}

impl<S, C: Clone> Layer<S> for ObserveWitnessLayer<C> {
    type Service = ObserveWitness<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveWitness {
            inner,
            layer: self.clone(),
        }
    }
}

impl<C> fmt::Debug for ObserveWitnessLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveWitnessLayer")
            .field("component", &self.witness.cell(self.index).name.get())
            .finish_non_exhaustive()
    }
}

/// The service of [`ObserveWitnessLayer`].
#[derive(Clone)]
pub struct ObserveWitness<S, C = DefaultClassifier> {
    inner: S,
    layer: ObserveWitnessLayer<C>,
}

// === impl ObserveWitness ===

impl<S, C> ObserveWitness<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Request> Service<Request> for ObserveWitness<S, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        let witness = &self.layer.witness;
        let index = self.layer.index;
        let cell = witness.cell(index);
        let started = witness.now_ns();
        // The request's frame: below the request whose frame is current (a
        // caller's, in this task), which counts it as a call below.
        let mut frame = Frame::start(u32::try_from(index).unwrap_or(u32::MAX), started);
        let caller = frame.caller();
        let edge = frame
            .parent_tag()
            .and_then(|caller| witness.edge(caller as usize, index));
        cell.in_flight.fetch_add(1, Ordering::Relaxed);
        // The guard exists before the inner call: a panic in `call` drops
        // it, which ends the request as cancelled.
        let guard = Guard {
            layer: self.layer.clone(),
            started,
            caller,
            edge,
            ended: false,
        };
        let inner = &mut self.inner;
        let future = frame.enter(|| inner.call(request));
        ResponseFuture {
            future: Scoped::new(frame, future),
            guard,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for ObserveWitness<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveWitness")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// A request in flight: ends it in its component's counters, and in its
/// caller's frame.
struct Guard<C> {
    layer: ObserveWitnessLayer<C>,
    /// On the witness's clock.
    started: u64,
    /// Its caller, told at its end.
    caller: Caller,
    /// The edge from its caller's component to its own, if it has a caller.
    edge: Option<u32>,
    ended: bool,
}

impl<C> Guard<C> {
    fn end<T>(&mut self, result: &Result<T, BoxError>, frame: &Frame, below: Below)
    where
        C: Classify<T, BoxError>,
    {
        let witness = &self.layer.witness;
        let index = self.layer.index;
        let cell = witness.cell(index);
        let now = witness.now_ns();
        let elapsed = now.saturating_sub(self.started);
        let own_time = elapsed.saturating_sub(below.waited_ns(now));
        // A refusal by a layer of this component's own stack counts as a
        // refusal. One that another component's stack made below, handed
        // up by a handler, is an error like any other: an echo.
        let refused = result
            .as_ref()
            .err()
            .and_then(|err| Rejected::find(&**err))
            .filter(|rejected| {
                below.failed() == 0 || cell.name.get() == Some(rejected.component())
            });
        let failed = if let Some(rejected) = refused {
            let code = cell.reject(rejected.kind());
            witness.note(index, now, code);
            true
        } else {
            // Successes and failures are counted by their latency
            // histograms: one `fetch_add` for both.
            match self.layer.classifier.classify(result.as_ref()) {
                Outcome::Success => {
                    cell.latency.record(elapsed);
                    if own_time < elapsed {
                        // It waited on calls below: its self time apart,
                        // and its latency again to take out of the
                        // successes' at the cycle. (A success that waited
                        // on nothing has its latency for self time: one
                        // record, no more.)
                        cell.self_time.record(own_time);
                        cell.waited_latency.record(elapsed);
                    }
                    false
                }
                Outcome::Failure => {
                    cell.failed_latency.record(elapsed);
                    if below.failed() > 0 {
                        // An echo of a failure below: not its own.
                        cell.propagated.fetch_add(1, Ordering::Relaxed);
                        witness.note(index, now, FAILED_BELOW);
                    } else {
                        cell.self_time.record(own_time);
                        witness.note(index, now, FAILED);
                    }
                    true
                }
                Outcome::Ignored => {
                    cell.ignored.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        };
        witness.record_call(frame, index, elapsed, failed);
        self.finish(now, failed);
        self.ended = true;
    }

    /// Tells the caller's frame (current when this ends in its task) and
    /// the edge from the caller how the call went.
    fn finish(&self, now: u64, failed: bool) {
        self.caller.end(now, failed);
        if let Some(edge) = self.edge {
            self.layer.witness.count_edge(edge, failed);
        }
    }
}

impl<C> Drop for Guard<C> {
    fn drop(&mut self) {
        let cell = self.layer.witness.cell(self.layer.index);
        if !self.ended {
            cell.cancelled.fetch_add(1, Ordering::Relaxed);
            // A call dropped before its end failed its caller.
            self.finish(self.layer.witness.now_ns(), true);
        }
        cell.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response future of [`ObserveWitness`]: the inner future, polled
    /// in the request's frame, and the request's record, ended when it
    /// completes or is dropped.
    pub struct ResponseFuture<F, C> {
        #[pin]
        future: Scoped<F>,
        guard: Guard<C>,
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = ready!(this.future.as_mut().poll(cx)).map_err(Into::into);
        if !this.guard.ended {
            let scoped = &*this.future;
            this.guard.end(&result, scoped.frame(), scoped.below());
        }
        Poll::Ready(result)
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ended", &self.guard.ended)
            .finish_non_exhaustive()
    }
}
