//! [`ResponseFuture`]: the response future of
//! [`ObserveWitness`](crate::ObserveWitness).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::origin::Scoped;
use reflex_core::{BoxError, Classify};

use crate::record::Guard;

pin_project! {
    /// The response future of [`ObserveWitness`](crate::ObserveWitness):
    /// the inner future, polled in the request's frame, and the request's
    /// record, ended when it completes or is dropped.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes ends the request as cancelled (and
    /// as a failed call for its caller), once.
    pub struct ResponseFuture<F, C> {
        #[pin]
        future: Scoped<F>,
        guard: Guard<C>,
    }
}

// === impl ResponseFuture ===

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(future: Scoped<F>, guard: Guard<C>) -> Self {
        Self { future, guard }
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
        if !this.guard.is_ended() {
            let scoped = &*this.future;
            this.guard.end(&result, scoped.frame(), scoped.below());
        }
        Poll::Ready(result)
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ended", &self.guard.is_ended())
            .finish_non_exhaustive()
    }
}
