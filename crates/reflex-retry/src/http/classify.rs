//! [`RetryableResponses`]: the classifier that matches [`HttpPolicy`](super::HttpPolicy),
//! and [`OrRetryable`]: a stack's classifier joined to it.

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

/// A stack's classifier `C`, joined to [`RetryableResponses`]: an answer is
/// a failure when either calls it one. It is what the http retry layer
/// classifies with when it takes the stack's classifier
/// ([`Classified`](reflex_core::Classified), as in `reflex::Preset`): the
/// stack's classifier says what is unhealthy (and may add failures of its
/// own), and the http retry keeps what it knows is worth asking again (a
/// 5xx, a 429, an `Err`), whatever the stack's classifier says. Whether a
/// failure is retried is still [`HttpPolicy`](super::HttpPolicy)'s call
/// (502, 503, 504, 429 and errors).
///
/// # Examples
///
/// ```
/// use http::{Response, StatusCode};
/// use reflex_core::{Classify, DefaultClassifier, Outcome};
/// use reflex_retry::http::OrRetryable;
///
/// let classifier = OrRetryable(DefaultClassifier);
/// let busy = Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap();
/// let missing = Response::builder().status(StatusCode::NOT_FOUND).body(()).unwrap();
/// assert_eq!(classifier.classify(Ok::<_, &()>(&busy)), Outcome::Failure);
/// assert_eq!(classifier.classify(Ok::<_, &()>(&missing)), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrRetryable<C>(pub C);

impl<C, R, E> Classify<Response<R>, E> for OrRetryable<C>
where
    C: Classify<Response<R>, E>,
{
    fn classify(&self, result: Result<&Response<R>, &E>) -> Outcome {
        match RetryableResponses.classify(result) {
            Outcome::Failure => Outcome::Failure,
            _ => self.0.classify(result),
        }
    }
}
