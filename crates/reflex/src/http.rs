//! Errors as `http` responses (feature `http`): what a caller of a reflex
//! stack should answer when the stack refused a request or ran out of
//! time.
//!
//! | error (found anywhere in the `source()` chain) | status | `Retry-After` |
//! |---|---|---|
//! | `Rejected { Shed }`, `Rejected { CircuitOpen }`, `Rejected { Throttled }` | 503 | from the rejection |
//! | `Rejected { SlotQueueFull }`, `DedupAborted`, `DedupFull` | 503 | from the rejection |
//! | `Rejected { SlotBusy }` | 429 | from the rejection |
//! | `Rejected { Replaced }`, `Rejected { InProgress }` | 409 | — |
//! | a timeout: tower's `Elapsed`, the retry layer's `TimedOut`, the dedup layer's `WaitTimedOut` | 504 | — |
//! | anything else | 500 | — |
//!
//! The body is empty (`B::default()`): an inner error's text never leaks.
//! A refusal always tells the client when to come back: `Retry-After` is
//! the rejection's own [`retry_after`](Rejected::retry_after) (the shed
//! layer's, one second unless configured; the time left in the breaker's
//! open state), or [`DEFAULT_RETRY_AFTER`] when the layer that refused did
//! not say, in whole seconds, rounded up, at least 1. A rejection is also
//! put in the response's extensions, for logging layers above.
//!
//! With axum, in a `HandleErrorLayer`:
//!
//! ```
//! use axum::{Router, error_handling::HandleErrorLayer, routing::get};
//! use reflex::core::BoxError;
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), reflex::core::ConfigError> {
//! let shed = reflex::shed::ConcurrencyShedLayer::builder().hard_limit(64).build()?;
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(|err: BoxError| async move {
//!             reflex::http::rejection_response::<axum::body::Body>(&*err)
//!         }))
//!         .layer(shed),
//! );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "tonic")]
pub mod grpc;

use std::error::Error;
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use reflex_core::{RejectKind, Rejected};

/// How long a refused caller is told to wait, when the layer that refused
/// did not say: one second.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long a caller refused by `rejected` should wait before trying again:
/// the rejection's own time, else [`DEFAULT_RETRY_AFTER`]. `None` for the
/// kinds that are not "come back later" (a request replaced by a newer one,
/// or refused because an identical one is running).
pub(crate) fn come_back_after(rejected: &Rejected) -> Option<Duration> {
    match rejected.kind() {
        RejectKind::Replaced | RejectKind::InProgress => rejected.retry_after(),
        _ => Some(rejected.retry_after().unwrap_or(DEFAULT_RETRY_AFTER)),
    }
}

/// The status an error maps to, and how long the caller should wait before
/// trying again (a refusal always says). See the [module docs](self).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use reflex::core::{Component, RejectKind, Rejected};
///
/// let open = Rejected::new(RejectKind::CircuitOpen, Component::new("db"))
///     .with_retry_after(Duration::from_millis(1_500));
/// assert_eq!(
///     reflex::http::status_of(&open),
///     (StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_millis(1_500))),
/// );
/// ```
pub fn status_of(err: &(dyn Error + 'static)) -> (StatusCode, Option<Duration>) {
    if let Some(rejected) = Rejected::find(err) {
        let status = match rejected.kind() {
            RejectKind::SlotBusy => StatusCode::TOO_MANY_REQUESTS,
            RejectKind::Replaced | RejectKind::InProgress => StatusCode::CONFLICT,
            // Shed, CircuitOpen, Throttled, SlotQueueFull,
            // DedupAborted, DedupFull, and kinds yet to come: the service
            // is unavailable for now.
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return (status, come_back_after(rejected));
    }
    if timed_out(err) {
        return (StatusCode::GATEWAY_TIMEOUT, None);
    }
    (StatusCode::INTERNAL_SERVER_ERROR, None)
}

/// `true` when a timeout of the stack is in `err`'s `source()` chain.
pub(crate) fn timed_out(err: &(dyn Error + 'static)) -> bool {
    reflex_core::sources(err).any(|err| {
        #[cfg(feature = "retry")]
        if err.is::<reflex_retry::TimedOut>() {
            return true;
        }
        #[cfg(feature = "dedup")]
        if err.is::<reflex_dedup::WaitTimedOut>() {
            return true;
        }
        err.is::<tower::timeout::error::Elapsed>()
    })
}

/// The response for `err`: its status, `Retry-After` when known, the
/// rejection in the extensions, and an empty body. See the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex::core::{Component, RejectKind, Rejected};
///
/// let shed = Rejected::new(RejectKind::Shed, Component::new("db"))
///     .with_retry_after(Duration::from_millis(200));
/// let response = reflex::http::rejection_response::<String>(&shed);
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "1");
/// assert!(response.extensions().get::<Rejected>().is_some());
/// assert!(response.body().is_empty());
/// ```
pub fn rejection_response<B: Default>(err: &(dyn Error + 'static)) -> Response<B> {
    let (status, retry_after) = status_of(err);
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
    }
    if let Some(rejected) = Rejected::find(err) {
        response.extensions_mut().insert(rejected.clone());
    }
    response
}

/// Whole seconds, rounded up, at least 1 (saturating: `Duration::MAX` is
/// `u64::MAX` seconds, not a panic).
fn retry_after_secs(after: Duration) -> u64 {
    let secs = after
        .as_secs()
        .saturating_add(u64::from(after.subsec_nanos() > 0));
    secs.max(1)
}

/// Makes the response for an error: [`DefaultResponses`] (the table of the
/// [module docs](self)), or your own (every `Fn(&dyn Error) -> Response<B>`
/// is one).
///
/// # Examples
///
/// A JSON body for rejections, the default for the rest:
///
/// ```
/// use http::Response;
/// use reflex::core::Rejected;
/// use reflex::http::{DefaultResponses, RejectionResponse};
///
/// let json = |err: &(dyn std::error::Error + 'static)| -> Response<String> {
///     let mut response = DefaultResponses.response(err);
///     if let Some(rejected) = Rejected::find(err) {
///         *response.body_mut() = format!(r#"{{"refused":"{}"}}"#, rejected.kind().as_str());
///     }
///     response
/// };
/// let shed = Rejected::new(reflex::core::RejectKind::Shed, "db".into());
/// assert_eq!(json.response(&shed).body(), r#"{"refused":"shed"}"#);
/// ```
pub trait RejectionResponse<B> {
    /// The response for `err`.
    fn response(&self, err: &(dyn Error + 'static)) -> Response<B>;
}

impl<F, B> RejectionResponse<B> for F
where
    F: Fn(&(dyn Error + 'static)) -> Response<B>,
{
    fn response(&self, err: &(dyn Error + 'static)) -> Response<B> {
        self(err)
    }
}

/// The responses of the [module docs](self)' table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultResponses;

impl<B: Default> RejectionResponse<B> for DefaultResponses {
    fn response(&self, err: &(dyn Error + 'static)) -> Response<B> {
        rejection_response(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        for (after, secs) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(30), 30),
        ] {
            assert_eq!(retry_after_secs(after), secs, "{after:?}");
        }
    }
}
