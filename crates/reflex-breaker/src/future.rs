//! The [`ResponseFuture`] of [`CircuitBreak`](crate::CircuitBreak).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify, Rejected};

use crate::backend::Backend;
use crate::guard::Guard;

pin_project! {
    /// The response future of [`CircuitBreak`](crate::CircuitBreak): the
    /// inner future of an admitted call, or a refusal ready at once. A named
    /// type, not a boxed one: the layer adds no `Send` or `'static` bound of
    /// its own.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes cancels the inner call, which then
    /// counts as neither success nor failure, and gives back the half-open
    /// probe slot it held, if any. The same holds when the inner future
    /// panics and its owner drops this one.
    pub struct ResponseFuture<F, C, B: Backend> {
        #[pin]
        state: State<F, C, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, B: Backend> {
        Admitted {
            #[pin]
            future: F,
            guard: Option<Guard<C, B>>,
        },
        Refused {
            // Boxed when refused (the refusal allocates either way): keeps
            // the future small for the admitted path.
            rejected: Option<BoxError>,
        },
    }
}

// === impl ResponseFuture ===

impl<F, C, B: Backend> ResponseFuture<F, C, B> {
    pub(crate) fn admitted(future: F, guard: Guard<C, B>) -> Self {
        Self {
            state: State::Admitted {
                future,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn refused(rejected: Rejected) -> Self {
        Self {
            state: State::Refused {
                rejected: Some(rejected.into()),
            },
        }
    }
}

impl<F, C, B, T, E> Future for ResponseFuture<F, C, B>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
    B: Backend,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { future, guard } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(mut guard) = guard.take() {
                    guard.report(&result);
                }
                Poll::Ready(result)
            }
            StateProj::Refused { rejected } => Poll::Ready(Err(rejected
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F, C, B: Backend> fmt::Debug for ResponseFuture<F, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitted { guard: Some(_), .. } => "admitted",
            State::Refused { rejected: Some(_) } => "refused",
            _ => "complete",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
