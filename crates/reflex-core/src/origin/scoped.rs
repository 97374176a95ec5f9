//! [`Scoped`]: a future polled with its request's frame current.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::below::Below;
use super::frame::Frame;

pin_project! {
    /// A future polled with its request's [`Frame`] current.
    pub struct Scoped<F> {
        frame: Frame,
        #[pin]
        future: F,
    }
}

impl<F> Scoped<F> {
    /// `future`, polled with `frame` current.
    pub fn new(frame: Frame, future: F) -> Self {
        Self { frame, future }
    }

    /// What the request has learnt of the calls below it so far.
    pub fn below(&self) -> Below {
        Below::of(&self.frame)
    }

    /// The request's frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

impl<F: Future> Scoped<F> {
    /// Runs the future to its end and says what it learnt below.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the future.
    pub async fn run_to_end(self) -> Below {
        let mut this = std::pin::pin!(self);
        std::future::poll_fn(|cx| this.as_mut().poll(cx)).await;
        this.below()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        this.frame.enter(|| future.poll(cx))
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}
