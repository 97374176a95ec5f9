//! [`RetryableResponses`]: the classifier that matches [`HttpPolicy`](super::HttpPolicy),
//! and [`WithTooManyRequests`]: a stack's classifier with a 429 retried.

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

/// A stack's classifier `C`, with a 429 a failure too: what the http retry
/// layer classifies with when it takes the stack's classifier
/// ([`Classified`](reflex_core::Classified), as in `reflex::Preset`), so
/// that a 429 is still retried after its `Retry-After` though the stack
/// (the breaker, the witness) does not count it against the dependency.
///
/// # Examples
///
/// ```
/// use http::{Response, StatusCode};
/// use reflex_core::{Classify, Outcome, ServerErrorsAsFailures};
/// use reflex_retry::http::WithTooManyRequests;
///
/// let classifier = WithTooManyRequests(ServerErrorsAsFailures);
/// let busy = Response::builder().status(StatusCode::TOO_MANY_REQUESTS).body(()).unwrap();
/// let missing = Response::builder().status(StatusCode::NOT_FOUND).body(()).unwrap();
/// assert_eq!(classifier.classify(Ok::<_, &()>(&busy)), Outcome::Failure);
/// assert_eq!(classifier.classify(Ok::<_, &()>(&missing)), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WithTooManyRequests<C>(pub C);

impl<C, R, E> Classify<Response<R>, E> for WithTooManyRequests<C>
where
    C: Classify<Response<R>, E>,
{
    fn classify(&self, result: Result<&Response<R>, &E>) -> Outcome {
        match result {
            Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::Failure,
            result => self.0.classify(result),
        }
    }
}
