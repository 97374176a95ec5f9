//! [`ObserveWitness`]: the service of
//! [`ObserveWitnessLayer`](crate::ObserveWitnessLayer).

use std::fmt;
use std::task::{Context, Poll};

use reflex_core::origin::Scoped;
use reflex_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::record::Recorder;

/// The service of [`ObserveWitnessLayer`](crate::ObserveWitnessLayer):
/// records each request it passes to its inner service.
///
/// # Clone
///
/// Clones record into the same component of the same witness.
///
/// # Examples
///
/// ```
/// use reflex_witness::Witness;
/// use tower::{Layer, service_fn};
///
/// let witness = Witness::builder().build()?;
/// let svc = witness
///     .layer("db")
///     .build()?
///     .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// let _inner = svc.get_ref();
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ObserveWitness<S, C = DefaultClassifier> {
    inner: S,
    recorder: Recorder<C>,
}

// === impl ObserveWitness ===

impl<S, C> ObserveWitness<S, C> {
    pub(crate) fn new(inner: S, recorder: Recorder<C>) -> Self {
        Self { inner, recorder }
    }

    reflex_core::inner_accessors!(inner: S);
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
        let (mut frame, guard) = self.recorder.start();
        let inner = &mut self.inner;
        let future = frame.enter(|| inner.call(request));
        ResponseFuture::new(Scoped::new(frame, future), guard)
    }
}

impl<S: fmt::Debug, C> fmt::Debug for ObserveWitness<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveWitness")
            .field("inner", &self.inner)
            .field("recorder", &self.recorder)
            .finish()
    }
}
