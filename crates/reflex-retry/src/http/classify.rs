//! [`RetryableResponses`]: the classifier that matches [`HttpPolicy`](super::HttpPolicy).

use http::{Response, StatusCode};
use reflex_core::{Classify, Outcome, ServerErrorsAsFailures};

/// Classifies `http` responses for retrying: a 5xx or a 429, and every
/// `Err`, is a failure; anything else a success. That is
/// [`ServerErrorsAsFailures`] with a 429 a failure too (the breaker's
/// classifier counts a 429 as a success: it says nothing of the
/// dependency's health, but it is worth retrying later).
///
/// # Examples
///
/// ```
/// use http::{Response, StatusCode};
/// use reflex_core::{Classify, Outcome};
/// use reflex_retry::http::RetryableResponses;
///
/// let busy = Response::builder().status(StatusCode::TOO_MANY_REQUESTS).body(()).unwrap();
/// assert_eq!(RetryableResponses.classify(Ok::<_, &()>(&busy)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryableResponses;

impl<R, E> Classify<Response<R>, E> for RetryableResponses {
    fn classify(&self, result: Result<&Response<R>, &E>) -> Outcome {
        match result {
            Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::Failure,
            result => ServerErrorsAsFailures.classify(result),
        }
    }
}
