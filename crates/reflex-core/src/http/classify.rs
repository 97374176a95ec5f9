//! Classifiers of `http` responses (feature `http`):
//! [`ServerErrorsAsFailures`] for plain http, [`GrpcErrorsAsFailures`] for
//! gRPC.

use super::GrpcCode;
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

/// Classifies gRPC responses by the status the server put in the response
/// head: the codes that say something about the dependency's health are
/// failures, `CANCELLED` is ignored, every other code is a success, and an
/// `Err` (the response never came) is a failure.
///
/// The failures, by default: `UNKNOWN`, `DEADLINE_EXCEEDED`,
/// `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS`. A code
/// the caller got wrong (`INVALID_ARGUMENT`, `NOT_FOUND`,
/// `PERMISSION_DENIED`, …) is the caller's mistake, not a sign of the
/// dependency's health. [`with_failure`](Self::with_failure) and
/// [`without_failure`](Self::without_failure) change the set, one
/// [`GrpcCode`] at a time. `CANCELLED` made a failure counts as one; `OK`
/// made a failure makes every answer whose code is in its trailers a
/// failure too, since the head says nothing.
///
/// Where the code is read:
///
/// - A `grpc-status` header: a server answering with an error before any
///   message sends it there ("trailers-only"), as tonic does for a handler's
///   `Err(Status)` and for [`Status::into_http`]. A value that is not a code
///   of the gRPC spec counts as `UNKNOWN`, as gRPC clients read it
///   ([`GrpcCode::from_header`]).
/// - No `grpc-status` and an http status other than 200 (a proxy answered):
///   the code gRPC maps that status to ([`GrpcCode::from_http_status`]:
///   429, 502, 503 and 504 are `UNAVAILABLE`; 400 `INTERNAL`; 401
///   `UNAUTHENTICATED`; 403 `PERMISSION_DENIED`; 404 `UNIMPLEMENTED`; any
///   other `UNKNOWN`).
/// - Otherwise the code comes in the trailers, after the messages, which a
///   classifier of the response head cannot see: the call is a success.
///   An error a streaming server sends after its first message is not
///   counted.
///
/// [`Status::into_http`]: https://docs.rs/tonic/latest/tonic/struct.Status.html#method.into_http
///
/// # Examples
///
/// ```
/// use http::Response;
/// use reflex_core::http::GrpcCode;
/// use reflex_core::{Classify, GrpcErrorsAsFailures, Outcome};
///
/// let status = |code: GrpcCode| {
///     let number = code.as_i32().to_string();
///     Response::builder().header("grpc-status", number).body(()).unwrap()
/// };
/// let classify = GrpcErrorsAsFailures::new();
/// assert_eq!(classify.classify(Ok::<_, &()>(&status(GrpcCode::Unavailable))), Outcome::Failure);
/// assert_eq!(classify.classify(Ok::<_, &()>(&status(GrpcCode::NotFound))), Outcome::Success);
/// assert_eq!(classify.classify(Ok::<_, &()>(&status(GrpcCode::Cancelled))), Outcome::Ignored);
///
/// // NOT_FOUND as a failure too:
/// let strict = classify.with_failure(GrpcCode::NotFound);
/// assert_eq!(strict.classify(Ok::<_, &()>(&status(GrpcCode::NotFound))), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcErrorsAsFailures {
    /// Bit `n` set: the code numbered `n` is a failure.
    failures: u32,
}

// === impl GrpcErrorsAsFailures ===

impl GrpcErrorsAsFailures {
    /// The default failures: `UNKNOWN`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`.
    pub const fn new() -> Self {
        Self { failures: 0 }
            .with_failure(GrpcCode::Unknown)
            .with_failure(GrpcCode::DeadlineExceeded)
            .with_failure(GrpcCode::ResourceExhausted)
            .with_failure(GrpcCode::Internal)
            .with_failure(GrpcCode::Unavailable)
            .with_failure(GrpcCode::DataLoss)
    }

    /// Counts `code` as a failure too.
    #[must_use]
    pub const fn with_failure(mut self, code: GrpcCode) -> Self {
        self.failures |= Self::bit(code);
        self
    }

    /// Counts `code` as a success instead of a failure.
    #[must_use]
    pub const fn without_failure(mut self, code: GrpcCode) -> Self {
        self.failures &= !Self::bit(code);
        self
    }

    /// The outcome of a call that ended with gRPC status `code`.
    ///
    /// ```
    /// use reflex_core::http::GrpcCode;
    /// use reflex_core::{GrpcErrorsAsFailures, Outcome};
    ///
    /// let classify = GrpcErrorsAsFailures::new();
    /// assert_eq!(classify.outcome_of(GrpcCode::Ok), Outcome::Success);
    /// assert_eq!(classify.outcome_of(GrpcCode::DeadlineExceeded), Outcome::Failure);
    /// assert_eq!(classify.outcome_of(GrpcCode::from_i32(99)), Outcome::Failure); // UNKNOWN
    /// ```
    pub const fn outcome_of(&self, code: GrpcCode) -> Outcome {
        if self.failures & Self::bit(code) != 0 {
            Outcome::Failure
        } else if matches!(code, GrpcCode::Cancelled) {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }

    /// The bit of `code` in the failure set (codes are 0 to 16).
    const fn bit(code: GrpcCode) -> u32 {
        1 << code.as_i32()
    }
}

impl Default for GrpcErrorsAsFailures {
    fn default() -> Self {
        Self::new()
    }
}

/// The gRPC code in a response head, if it carries one.
fn grpc_code<B>(response: &http::Response<B>) -> Option<GrpcCode> {
    if let Some(value) = response.headers().get("grpc-status") {
        return Some(GrpcCode::from_header(value));
    }
    if response.status() == http::StatusCode::OK {
        // The code is in the trailers.
        return None;
    }
    Some(GrpcCode::from_http_status(response.status()))
}

impl<B, Err> Classify<http::Response<B>, Err> for GrpcErrorsAsFailures {
    fn classify(&self, result: Result<&http::Response<B>, &Err>) -> Outcome {
        match result {
            Ok(response) => self.outcome_of(grpc_code(response).unwrap_or(GrpcCode::Ok)),
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

    fn grpc(status: u16, code: Option<&[u8]>) -> Outcome {
        grpc_with(GrpcErrorsAsFailures::new(), status, code)
    }

    fn grpc_with(classify: GrpcErrorsAsFailures, status: u16, code: Option<&[u8]>) -> Outcome {
        let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
        if let Some(code) = code {
            response = response.header("grpc-status", http::HeaderValue::from_bytes(code).unwrap());
        }
        classify.classify(Ok::<_, &()>(&response.body(()).unwrap()))
    }

    #[test]
    fn grpc_codes_of_the_dependencys_health_are_failures_and_cancelled_is_ignored() {
        let failures = [
            GrpcCode::Unknown,
            GrpcCode::DeadlineExceeded,
            GrpcCode::ResourceExhausted,
            GrpcCode::Internal,
            GrpcCode::Unavailable,
            GrpcCode::DataLoss,
        ];
        for &code in GrpcCode::ALL {
            let expected = if failures.contains(&code) {
                Outcome::Failure
            } else if code == GrpcCode::Cancelled {
                Outcome::Ignored
            } else {
                Outcome::Success
            };
            let header = code.as_i32().to_string();
            assert_eq!(grpc(200, Some(header.as_bytes())), expected, "code {code}");
            assert_eq!(GrpcErrorsAsFailures::new().outcome_of(code), expected);
        }
    }

    #[test]
    fn a_grpc_status_that_is_not_a_code_counts_as_unknown() {
        for &malformed in crate::http::NOT_A_GRPC_CODE {
            assert_eq!(
                grpc(200, Some(malformed)),
                Outcome::Failure,
                "{malformed:?}"
            );
        }
        let unknown_is_fine = GrpcErrorsAsFailures::new().without_failure(GrpcCode::Unknown);
        let response = Response::builder()
            .header("grpc-status", "abc")
            .body(())
            .unwrap();
        assert_eq!(
            unknown_is_fine.classify(Ok::<_, &()>(&response)),
            Outcome::Success
        );
    }

    #[test]
    fn without_grpc_status_the_http_status_maps_as_grpc_says() {
        assert_eq!(
            grpc(200, None),
            Outcome::Success,
            "the code is in the trailers"
        );
        for unavailable in [429, 502, 503, 504] {
            assert_eq!(grpc(unavailable, None), Outcome::Failure, "{unavailable}");
        }
        assert_eq!(grpc(400, None), Outcome::Failure, "INTERNAL");
        assert_eq!(grpc(500, None), Outcome::Failure, "UNKNOWN");
        assert_eq!(grpc(401, None), Outcome::Success, "UNAUTHENTICATED");
        assert_eq!(grpc(403, None), Outcome::Success, "PERMISSION_DENIED");
        assert_eq!(grpc(404, None), Outcome::Success, "UNIMPLEMENTED");
        // A grpc-status wins over the http status.
        assert_eq!(grpc(503, Some(b"0")), Outcome::Success);
    }

    #[test]
    fn the_failure_set_changes_one_code_at_a_time() {
        let classify = GrpcErrorsAsFailures::new()
            .with_failure(GrpcCode::NotFound)
            .without_failure(GrpcCode::ResourceExhausted);
        for &code in GrpcCode::ALL {
            let expected = match code {
                GrpcCode::NotFound => Outcome::Failure,
                GrpcCode::ResourceExhausted => Outcome::Success,
                other => GrpcErrorsAsFailures::new().outcome_of(other),
            };
            assert_eq!(classify.outcome_of(code), expected, "{code}");
        }
        assert_eq!(classify.with_failure(GrpcCode::Unavailable), classify);
        assert_eq!(classify.without_failure(GrpcCode::Ok), classify);
        let err: Result<&Response<()>, &&str> = Err(&"connection refused");
        assert_eq!(classify.classify(err), Outcome::Failure);
    }

    #[test]
    fn cancelled_and_ok_made_failures_count_as_failures() {
        let classify = GrpcErrorsAsFailures::new()
            .with_failure(GrpcCode::Cancelled)
            .with_failure(GrpcCode::Ok);
        assert_eq!(classify.outcome_of(GrpcCode::Cancelled), Outcome::Failure);
        assert_eq!(grpc_with(classify, 200, Some(b"1")), Outcome::Failure);
        assert_eq!(
            grpc_with(classify, 200, None),
            Outcome::Failure,
            "the head says nothing"
        );
    }

    #[test]
    fn a_missing_response_is_a_failure() {
        let err: Result<&Response<()>, &&str> = Err(&"connection refused");
        assert_eq!(ServerErrorsAsFailures.classify(err), Outcome::Failure);
    }
}
