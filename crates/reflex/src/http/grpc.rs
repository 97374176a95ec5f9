//! Errors as gRPC statuses (feature `tonic`): what a tonic server behind a
//! reflex stack should answer when the stack refused a request or ran out
//! of time. The same table as the [http mapping](super), in gRPC's codes.
//!
//! | error (found anywhere in the `source()` chain) | code | `grpc-retry-pushback-ms` |
//! |---|---|---|
//! | `Rejected { Shed }`, `Rejected { CircuitOpen }`, `Rejected { Throttled }` | `UNAVAILABLE` | from the rejection |
//! | `Rejected { SlotQueueFull }`, `DedupAborted`, `DedupFull` | `UNAVAILABLE` | from the rejection |
//! | `Rejected { SlotBusy }` | `RESOURCE_EXHAUSTED` | from the rejection |
//! | `Rejected { Replaced }`, `Rejected { InProgress }` | `ABORTED` | if it says |
//! | a `tonic::Status` | itself | its own |
//! | a timeout: tower's `Elapsed`, the retry layer's `TimedOut`, the dedup layer's `WaitTimedOut` | `DEADLINE_EXCEEDED` | — |
//! | anything else | `UNKNOWN` | — |
//!
//! `UNAVAILABLE` is the code gRPC clients retry with backoff;
//! `grpc-retry-pushback-ms` is the server pushback of gRPC's retry design
//! (gRFC A6): how many milliseconds the client should wait before its next
//! attempt. As with http, a refusal always says: the rejection's own time,
//! or [`DEFAULT_RETRY_AFTER`](super::DEFAULT_RETRY_AFTER) when the layer
//! that refused did not say; rounded up and at least 1 (a `0` would tell the client to try
//! again at once), at most `i32::MAX` (what every gRPC client can read). The message of a rejection is the rejection's own text
//! (component and kind); of a timeout, a fixed text; of anything else, empty:
//! an inner error's text never leaks. A `Status` the inner service returned
//! as its error was meant for the caller and goes out as it is.
//!
//! tonic's server turns an error it does not know into a reset stream, so map
//! the stack's errors above it, with `map_result`:
//!
//! ```
//! use reflex::core::{BoxError, GrpcErrorsAsFailures};
//! use reflex::Preset;
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), reflex::core::ConfigError> {
//! let layers = ServiceBuilder::new()
//!     .map_result(|result: Result<http::Response<tonic::body::Body>, BoxError>| {
//!         Ok::<_, BoxError>(result.unwrap_or_else(|err| reflex::http::grpc::rejection_response(&*err)))
//!     })
//!     .layer(Preset::new("greeter").classifier(GrpcErrorsAsFailures::new()).build()?);
//! // tonic::transport::Server::builder().layer(layers).add_service(...)
//! # let _ = layers;
//! # Ok(())
//! # }
//! ```

use std::error::Error;
use std::time::Duration;

use http::Response;
use reflex_core::http::GrpcCode;
use reflex_core::{RejectKind, Rejected};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The metadata key of gRPC's server pushback (gRFC A6), in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The status for `err`. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex::core::{Component, RejectKind, Rejected};
/// use tonic::Code;
///
/// let shed = Rejected::new(RejectKind::Shed, Component::new("db"))
///     .with_retry_after(Duration::from_millis(250));
/// let status = reflex::http::grpc::status_of(&shed);
/// assert_eq!(status.code(), Code::Unavailable);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
///
/// let busy = Rejected::new(RejectKind::SlotBusy, Component::new("db"));
/// assert_eq!(reflex::http::grpc::status_of(&busy).code(), Code::ResourceExhausted);
/// ```
pub fn status_of(err: &(dyn Error + 'static)) -> Status {
    if let Some(rejected) = Rejected::find(err) {
        let code = tonic_code(rejection_code(rejected.kind()));
        let mut status = Status::new(code, rejected.to_string());
        if let Some(after) = super::come_back_after(rejected) {
            status
                .metadata_mut()
                .insert(RETRY_PUSHBACK, MetadataValue::from(pushback_millis(after)));
        }
        return status;
    }
    if let Some(status) = reflex_core::find_source::<Status>(err) {
        return status.clone();
    }
    if super::timed_out(err) {
        return Status::deadline_exceeded("the request ran out of time");
    }
    Status::unknown("")
}

/// The code a refusal of `kind` answers with.
fn rejection_code(kind: RejectKind) -> GrpcCode {
    match kind {
        RejectKind::SlotBusy => GrpcCode::ResourceExhausted,
        RejectKind::Replaced | RejectKind::InProgress => GrpcCode::Aborted,
        // Shed, CircuitOpen, Throttled, SlotQueueFull, DedupAborted,
        // DedupFull, and kinds yet to come: unavailable for now, which
        // clients retry with backoff.
        _ => GrpcCode::Unavailable,
    }
}

/// tonic's name for `code`: the code with the same number.
fn tonic_code(code: GrpcCode) -> Code {
    Code::from_i32(code.as_i32())
}

/// Milliseconds, rounded up, at least 1, at most `i32::MAX`.
fn pushback_millis(after: Duration) -> i32 {
    let millis = after.as_nanos().div_ceil(1_000_000).max(1);
    i32::try_from(millis).unwrap_or(i32::MAX)
}

/// The gRPC response for `err`: [`status_of`] as a trailers-only response
/// (http 200, the code and message in the head), with the rejection in the
/// extensions for logging layers above.
///
/// # Examples
///
/// ```
/// use reflex::core::http::GrpcCode;
/// use reflex::core::{Component, RejectKind, Rejected};
///
/// let open = Rejected::new(RejectKind::CircuitOpen, Component::new("db"));
/// let response = reflex::http::grpc::rejection_response::<tonic::body::Body>(&open);
/// assert_eq!(response.status(), 200);
/// let code = &response.headers()["grpc-status"];
/// assert_eq!(GrpcCode::from_header(code), GrpcCode::Unavailable);
/// assert!(response.extensions().get::<Rejected>().is_some());
/// ```
pub fn rejection_response<B: Default>(err: &(dyn Error + 'static)) -> Response<B> {
    let mut response = status_of(err).into_http();
    if let Some(rejected) = Rejected::find(err) {
        response.extensions_mut().insert(rejected.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use reflex_core::Component;

    use super::*;

    #[derive(Debug)]
    struct Inner(&'static str);

    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Inner {}

    fn rejected(kind: RejectKind) -> Rejected {
        Rejected::new(kind, Component::new("db"))
    }

    #[test]
    fn every_rejection_maps_to_its_code_with_its_own_text_and_a_pushback() {
        // None of these rejections says how long to wait: a refusal still
        // tells the client, with the default; an ABORTED is not "come back
        // later".
        const WAITED: Option<&str> = Some("1000");
        for (kind, code, pushback) in [
            (RejectKind::Shed, GrpcCode::Unavailable, WAITED),
            (RejectKind::CircuitOpen, GrpcCode::Unavailable, WAITED),
            (RejectKind::Throttled, GrpcCode::Unavailable, WAITED),
            (RejectKind::SlotQueueFull, GrpcCode::Unavailable, WAITED),
            (RejectKind::DedupAborted, GrpcCode::Unavailable, WAITED),
            (RejectKind::DedupFull, GrpcCode::Unavailable, WAITED),
            (RejectKind::SlotBusy, GrpcCode::ResourceExhausted, WAITED),
            (RejectKind::Replaced, GrpcCode::Aborted, None),
            (RejectKind::InProgress, GrpcCode::Aborted, None),
        ] {
            let status = status_of(&rejected(kind));
            assert_eq!(status.code(), tonic_code(code), "{kind:?}");
            assert_eq!(status.message(), rejected(kind).to_string());
            assert_eq!(
                status
                    .metadata()
                    .get(RETRY_PUSHBACK)
                    .map(|v| v.to_str().unwrap()),
                pushback,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn every_grpc_code_is_tonics_code_of_the_same_number_and_name() {
        for &code in GrpcCode::ALL {
            let tonic = tonic_code(code);
            assert_eq!(tonic as i32, code.as_i32(), "{code}");
            assert_eq!(format!("{tonic:?}"), format!("{code:?}"));
        }
    }

    #[test]
    fn a_known_wait_becomes_the_retry_pushback_in_whole_milliseconds_rounded_up() {
        for (after, millis) in [
            (Duration::from_millis(1_500), "1500"),
            (Duration::ZERO, "1"),
            (Duration::from_nanos(1), "1"),
            (Duration::from_micros(2_001), "3"),
            (Duration::from_millis(3), "3"),
            (Duration::from_secs(30 * 24 * 3_600), "2147483647"),
            (Duration::MAX, "2147483647"),
        ] {
            let status = status_of(&rejected(RejectKind::CircuitOpen).with_retry_after(after));
            assert_eq!(status.metadata().get(RETRY_PUSHBACK).unwrap(), millis);
        }
    }

    #[test]
    fn timeouts_are_deadline_exceeded_and_other_errors_unknown_without_their_text() {
        let elapsed = tower::timeout::error::Elapsed::new();
        assert_eq!(status_of(&elapsed).code(), Code::DeadlineExceeded);

        let status = status_of(&Inner("password=hunter2"));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(status.message(), "");
    }

    #[test]
    fn a_status_the_service_returned_goes_out_as_it_is() {
        let mut own = Status::not_found("no such greeting");
        own.metadata_mut()
            .insert("x-hint", MetadataValue::from_static("later"));
        let status = status_of(&own);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such greeting");
        assert_eq!(status.metadata().get("x-hint").unwrap(), "later");
    }

    #[test]
    fn the_response_is_trailers_only_and_carries_the_rejection() {
        let shed = rejected(RejectKind::Shed).with_retry_after(Duration::from_millis(40));
        let response = rejection_response::<String>(&shed);
        assert_eq!(response.status(), 200);
        let code = |response: &Response<String>| {
            GrpcCode::from_bytes(response.headers()["grpc-status"].as_bytes())
        };
        assert_eq!(code(&response), Some(GrpcCode::Unavailable));
        assert_eq!(response.headers()[RETRY_PUSHBACK], "40");
        assert_eq!(response.extensions().get::<Rejected>(), Some(&shed));
        assert!(response.body().is_empty());

        let other = rejection_response::<String>(&Inner("boom"));
        assert_eq!(code(&other), Some(GrpcCode::Unknown));
        assert!(other.extensions().get::<Rejected>().is_none());
    }
}
