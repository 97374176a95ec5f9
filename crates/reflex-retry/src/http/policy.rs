//! [`HttpPolicy`]: which `http` requests are retried, on which failures,
//! and after how long.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use reflex_core::BoxError;

use super::body::ReplayBody;
use crate::policy::{Decision, Policy};
use crate::retry_after::parse_retry_after;

/// Retries idempotent `http` requests that failed in a way worth retrying.
///
/// - **Which requests:** the idempotent methods of RFC 9110 (GET, HEAD,
///   OPTIONS, PUT, DELETE, TRACE), whose body can be sent again
///   ([`ReplayBody`]: empty, or recorded within its limit). Any other
///   request is sent once: nothing is copied.
/// - **Which failures:** an `Err` from the inner service (a connect error,
///   a reset, a per-attempt timeout: resending an idempotent request is
///   safe whether or not it arrived), and the statuses 502, 503, 504 and
///   429.
/// - **When:** after the backoff, or after what a `Retry-After` header of a
///   429 or 503 says (whole seconds or an http-date), when the layer's cap
///   allows it. A malformed value is ignored.
/// - **Not** when the body turned out, while it was read, to be larger
///   than the limit, or failed: it cannot be sent again. That is checked
///   again before the retry is sent ([`Policy::can_send`]): an attempt
///   that answered before its body was sent may read it past the limit
///   during the backoff; the caller then gets that attempt's result.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Empty;
/// use reflex_retry::http::{HttpPolicy, ReplayBody};
/// use reflex_retry::{Decision, Policy};
///
/// let body = || ReplayBody::new(Empty::<Bytes>::new(), 1024);
/// let get = Request::get("/").body(body()).unwrap();
/// let post = Request::post("/").body(body()).unwrap();
/// let busy = Response::builder()
///     .status(StatusCode::TOO_MANY_REQUESTS)
///     .header("retry-after", "3")
///     .body(())
///     .unwrap();
/// let policy: &dyn Policy<Request<ReplayBody<Empty<Bytes>>>, Response<()>> = &HttpPolicy;
/// assert!(policy.clone_request(&get).is_some());
/// assert!(policy.clone_request(&post).is_none(), "POST is not idempotent");
/// assert_eq!(
///     policy.retry(&get, Ok(&busy)),
///     Decision::After(std::time::Duration::from_secs(3)),
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpPolicy;

/// `true` for the methods RFC 9110 calls idempotent.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// `true` for the statuses [`HttpPolicy`] retries.
fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
    )
}

impl<B, R> Policy<Request<ReplayBody<B>>, Response<R>> for HttpPolicy {
    fn clone_request(&self, request: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        if !is_idempotent(request.method()) {
            return None;
        }
        let body = request.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }

    fn retry(
        &self,
        request: &Request<ReplayBody<B>>,
        result: Result<&Response<R>, &BoxError>,
    ) -> Decision {
        let response = match result {
            Err(_) => None,
            Ok(response) if is_retryable(response.status()) => Some(response),
            Ok(_) => return Decision::Stop,
        };
        if !request.body().is_replayable() {
            // Over the limit, or failed, while the attempt read it.
            return Decision::Stop;
        }
        let Some(response) = response else {
            return Decision::Backoff;
        };
        let asks = matches!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        match asks.then(|| retry_after(response.headers())).flatten() {
            Some(after) => Decision::After(after),
            None => Decision::Backoff,
        }
    }

    /// `false` once the body went past its limit or failed: a copy of it
    /// reads only [`NotReplayable`](crate::NotReplayable).
    fn can_send(&self, request: &Request<ReplayBody<B>>) -> bool {
        request.body().is_replayable()
    }
}

/// The `Retry-After` of `headers`, if there is exactly one and it reads.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}
