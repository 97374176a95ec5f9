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
    /// adaptive limit: only completed calls are. One dropped after waiting
    /// long is a sign, and only a sign, that calls do not come back.
    pub struct ResponseFuture<F, C = DefaultClassifier> {
        #[pin]
        state: State<F, C>,
    }

    impl<F, C> PinnedDrop for ResponseFuture<F, C> {
        fn drop(this: Pin<&mut Self>) {
            // Still admitted with its sampler: dropped before it completed.
            if let StateProj::Admitted {
                permit: Some(permit),
                sampler: Some(sampler),
                ..
            } = this.project().state.project()
            {
                permit.given_up(sampler.admitted_at);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Admitted {
            #[pin]
            future: F,
            permit: Option<Permit>,
            sampler: Option<Sampler<C>>,
        },
        Shed {
            rejected: Option<Rejected>,
        },
    }
}

/// What an adaptive layer's future carries beside its permit, to sample
/// the call when it completes: the stack's classifier, and when the call
/// was admitted. A fixed layer's futures carry none.
#[derive(Debug)]
pub(crate) struct Sampler<C> {
    classifier: C,
    /// Nanoseconds since the layer was built.
    admitted_at: u64,
}

// === impl ResponseFuture ===

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn admitted(future: F, permit: Permit, sampler: Option<Sampler<C>>) -> Self {
        Self {
            state: State::Admitted {
                future,
                permit: Some(permit),
                sampler,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted {
                future,
                permit,
                sampler,
            } => {
                let output = ready!(future.poll(cx)).map_err(Into::into);
                // The call is over: give the permit back now rather than when
                // the caller gets round to dropping this future (an adaptive
                // limit samples the call first). Only the sampling arm
                // borrows the output: a fixed layer's passes through in
                // registers (borrowed on every path, it went through memory,
                // and a caller that did not inline `poll` stalled reading it
                // back, some 4 ns a call).
                let output = match (sampler.take(), permit.as_ref()) {
                    (Some(sampler), Some(permit)) => {
                        sampler.sample(permit, output.as_ref());
                        output
                    }
                    _ => output,
                };
                // Dropped where it lies: no copy of the permit on the way.
                *permit = None;
                Poll::Ready(output)
            }
            StateProj::Shed { rejected } => Poll::Ready(Err(refusal(rejected))),
        }
    }
}

/// The refusal a shed future resolves to, out of line: the admitted path
/// is the hot one.
#[cold]
#[inline(never)]
fn refusal(rejected: &mut Option<Rejected>) -> BoxError {
    rejected
        .take()
        .expect("ResponseFuture polled after completion")
        .into()
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

// === impl Sampler ===

impl<C> Sampler<C> {
    pub(crate) fn new(classifier: C, admitted_at: u64) -> Self {
        Self {
            classifier,
            admitted_at,
        }
    }

    /// The call ended with `output`: classified, and sampled unless the
    /// outcome is to be ignored. Out of line, so that `poll` stays small
    /// enough to inline where the limit is fixed.
    #[inline(never)]
    fn sample<T>(self, permit: &Permit, output: Result<&T, &BoxError>)
    where
        C: Classify<T, BoxError>,
    {
        permit.sample(self.admitted_at, self.classifier.classify(output));
    }
}
