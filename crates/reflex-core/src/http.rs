//! Classifiers for `http` responses (feature `http`).

use crate::{Classify, Outcome};

/// Classifies `http::Response`s: a 5xx status is a failure, every other
/// status a success, and an `Err` (the response never came) a failure.
///
/// A 4xx is the caller's mistake, not a sign of the dependency's health, so
/// it counts as a success; wrap this classifier in a closure to say otherwise
/// (for example to count 429 as a failure).
///
/// # Examples
///
/// ```
/// use http::{Response, StatusCode};
/// use reflex_core::{Classify, Outcome, ServerErrorsAsFailures};
///
/// let bad_gateway = Response::builder().status(StatusCode::BAD_GATEWAY).body(()).unwrap();
/// let not_found = Response::builder().status(StatusCode::NOT_FOUND).body(()).unwrap();
/// let classify = ServerErrorsAsFailures;
/// assert_eq!(classify.classify(Ok::<_, &()>(&bad_gateway)), Outcome::Failure);
/// assert_eq!(classify.classify(Ok::<_, &()>(&not_found)), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerErrorsAsFailures;

impl<B, Err> Classify<http::Response<B>, Err> for ServerErrorsAsFailures {
    fn classify(&self, result: Result<&http::Response<B>, &Err>) -> Outcome {
        match result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Response, StatusCode};

    fn classify(status: u16) -> Outcome {
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(())
            .unwrap();
        ServerErrorsAsFailures.classify(Ok::<_, &()>(&response))
    }

    #[test]
    fn every_5xx_is_a_failure_and_nothing_else_is() {
        for status in 100..=999u16 {
            let expected = if (500..600).contains(&status) {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_eq!(classify(status), expected, "status {status}");
        }
    }

    #[test]
    fn a_missing_response_is_a_failure() {
        let err: Result<&Response<()>, &&str> = Err(&"connection refused");
        assert_eq!(ServerErrorsAsFailures.classify(err), Outcome::Failure);
    }
}
