//! The [`ResponseFuture`] of [`ConcurrencyShed`](crate::ConcurrencyShed).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify, DefaultClassifier, Rejected};

use crate::shared::Permit;

pin_project! {
    /// The response future of [`ConcurrencyShed`](crate::ConcurrencyShed).
    ///
    /// Either the inner service's future, holding the request's permit, or a
    /// refusal that is ready at once. An adaptive layer's future holds the
    /// stack's classifier `C` too, to tell the limit how the call ended.
    ///
    /// # Cancel safety
    ///
    /// The permit is given back when the inner future completes, or when this
    /// future is dropped before that: dropping it cancels the inner call and
    /// releases the permit. A panic in the inner future unwinds out of
    /// `poll`; whoever owns this future then drops it (a tokio task does),
    /// which releases the permit. A dropped call is no sample for an
    /// adaptive limit: only completed calls are.
    pub struct ResponseFuture<F, C = DefaultClassifier> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Admitted {
            #[pin]
            future: F,
            permit: Option<Permit>,
            classifier: Option<C>,
        },
        Shed {
            rejected: Option<Rejected>,
        },
    }
}

// === impl ResponseFuture ===

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn admitted(future: F, permit: Permit, classifier: Option<C>) -> Self {
        Self {
            state: State::Admitted {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn shed(rejected: Rejected) -> Self {
        Self {
            state: State::Shed {
                rejected: Some(rejected),
            },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted {
                future,
                permit,
                classifier,
            } => {
                let output = ready!(future.poll(cx)).map_err(Into::into);
                // The call is over: give the permit back now rather than when
                // the caller gets round to dropping this future (an adaptive
                // limit samples the call first).
                if let (Some(classifier), Some(permit)) = (classifier.take(), permit.as_ref()) {
                    permit.sample(|| classifier.classify(output.as_ref()));
                }
                // Dropped where it lies: no copy of the permit on the way.
                *permit = None;
                Poll::Ready(output)
            }
            StateProj::Shed { rejected } => {
                let rejected = rejected
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(rejected.into()))
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitted {
                permit: Some(_), ..
            } => "admitted",
            State::Admitted { permit: None, .. } => "complete",
            State::Shed { rejected: Some(_) } => "shed",
            State::Shed { rejected: None } => "complete",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
