//! The call a keyed `http` request shares: the inner call, then its
//! response body read up to the layer's limit so that it can be copied,
//! boxed for the flight that runs it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::BoxError;
use reflex_core::http::{Buffer, BufferedBody, buffer};

use super::body::CallBody;

/// A shared `http` call, as its flight holds it: of any inner service,
/// for any request body.
pub(crate) type HttpCall =
    Pin<Box<dyn Future<Output = Result<Response<CallBody>, BoxError>> + Send + 'static>>;

/// The shared call of an inner `future`, its response body read up to
/// `limit` bytes.
pub(crate) fn shared_call<F, E, RB>(future: F, limit: usize) -> HttpCall
where
    F: Future<Output = Result<Response<RB>, E>> + Send + 'static,
    E: Into<BoxError>,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    Box::pin(BufferCall {
        state: State::Calling { future, limit },
    })
}

pin_project! {
    struct BufferCall<F, RB> {
        #[pin]
        state: State<F, RB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, RB> {
        Calling {
            #[pin]
            future: F,
            limit: usize,
        },
        Reading {
            parts: Option<http::response::Parts>,
            body: Buffer<RB>,
        },
    }
}

impl<F, E, RB> Future for BufferCall<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<CallBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Calling { future, limit } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let (parts, body) = response.into_parts();
                    State::Reading {
                        parts: Some(parts),
                        body: buffer(body, *limit),
                    }
                }
                StateProj::Reading { parts, body } => {
                    let body = ready!(Pin::new(body).poll(cx))?;
                    let parts = parts.take().expect("a shared call polled after completion");
                    return Poll::Ready(Ok(Response::from_parts(parts, erase(body))));
                }
            };
            this.state.set(next);
        }
    }
}

/// `body` of whatever type, as a shared call holds it: a whole body as it
/// is (its bytes are shared, not copied), the rest of a larger one boxed.
fn erase<RB>(body: BufferedBody<RB>) -> CallBody
where
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    match body.bytes() {
        Some(bytes) => BufferedBody::buffered(bytes.clone(), body.trailers().cloned()),
        None => BufferedBody::streaming(VecDeque::new(), Box::pin(body)),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn a_body_over_the_limit_is_read_no_further_and_kept_whole() {
        let answer = |size: usize| async move {
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(vec![b'x'; size]))))
        };
        let small = shared_call(answer(10), 16).await.unwrap();
        assert_eq!(small.body().bytes().map(Bytes::len), Some(10));
        let large = shared_call(answer(64), 16).await.unwrap();
        assert!(!large.body().is_buffered());
        let body = large.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 64, "nothing lost");
    }
}
