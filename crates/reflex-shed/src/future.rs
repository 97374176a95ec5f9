//! The [`ResponseFuture`] of [`ConcurrencyShed`](crate::ConcurrencyShed).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Rejected};

use crate::shared::Permit;

pin_project! {
    /// The response future of [`ConcurrencyShed`](crate::ConcurrencyShed).
    ///
    /// Either the inner service's future, holding the request's permit, or a
    /// refusal that is ready at once.
    ///
    /// # Cancel safety
    ///
    /// The permit is given back when the inner future completes, or when this
    /// future is dropped before that: dropping it cancels the inner call and
    /// releases the permit. A panic in the inner future unwinds out of
    /// `poll`; whoever owns this future then drops it (a tokio task does),
    /// which releases the permit.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Admitted {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        Shed {
            rejected: Option<Rejected>,
        },
    }
}

// === impl ResponseFuture ===

impl<F> ResponseFuture<F> {
    pub(crate) fn admitted(future: F, permit: Permit) -> Self {
        Self {
            state: State::Admitted {
                future,
                permit: Some(permit),
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

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { future, permit } => {
                let output = ready!(future.poll(cx));
                // The call is over: give the permit back now rather than when
                // the caller gets round to dropping this future.
                drop(permit.take());
                Poll::Ready(output.map_err(Into::into))
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

impl<F> fmt::Debug for ResponseFuture<F> {
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
