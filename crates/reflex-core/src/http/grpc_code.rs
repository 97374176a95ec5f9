//! [`GrpcCode`]: the status codes of the gRPC spec, typed, and read from a
//! response head (a `grpc-status` header, or the http status a proxy
//! answered with).

use std::fmt;

use http::{HeaderValue, StatusCode};

/// A status code of the gRPC spec: what a call ended with.
///
/// The codes are those of gRPC's `statuscodes.md`, with their numbers
/// (`as i32` of a variant, or [`as_i32`](Self::as_i32)). A number outside
/// the spec is not a code: [`from_i32`](Self::from_i32) reads it as
/// [`Unknown`](Self::Unknown), as gRPC clients do, and `TryFrom<i32>`
/// refuses it with an [`UnknownGrpcCode`] that keeps the number.
///
/// The `Display` text and [`as_str`](Self::as_str) are the spec's names
/// (`UNAVAILABLE`); `Debug` is the variant's name, as `tonic::Code` prints
/// it (`Unavailable`).
///
/// # Examples
///
/// ```
/// use reflex_core::http::GrpcCode;
///
/// assert_eq!(GrpcCode::from_i32(14), GrpcCode::Unavailable);
/// assert_eq!(GrpcCode::Unavailable.as_i32(), 14);
/// assert_eq!(GrpcCode::Unavailable.to_string(), "UNAVAILABLE");
/// assert_eq!(GrpcCode::from_i32(99), GrpcCode::Unknown);
/// assert_eq!(GrpcCode::try_from(99).unwrap_err().code(), 99);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[repr(i32)]
pub enum GrpcCode {
    /// `OK` (0): not an error.
    Ok = 0,
    /// `CANCELLED` (1): the call was cancelled, typically by the caller.
    Cancelled = 1,
    /// `UNKNOWN` (2): an error the server could not say more of, and what a
    /// code outside the spec reads as.
    Unknown = 2,
    /// `INVALID_ARGUMENT` (3): the caller sent an invalid argument.
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4): the deadline passed before the call ended.
    DeadlineExceeded = 4,
    /// `NOT_FOUND` (5): something the call asked for was not found.
    NotFound = 5,
    /// `ALREADY_EXISTS` (6): something the call tried to create exists.
    AlreadyExists = 6,
    /// `PERMISSION_DENIED` (7): the caller may not do this.
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8): a quota or a resource ran out.
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION` (9): the system is not in a state to do this.
    FailedPrecondition = 9,
    /// `ABORTED` (10): the call was aborted, typically by a concurrency
    /// conflict.
    Aborted = 10,
    /// `OUT_OF_RANGE` (11): the call went past a valid range.
    OutOfRange = 11,
    /// `UNIMPLEMENTED` (12): the server does not implement the method.
    Unimplemented = 12,
    /// `INTERNAL` (13): an invariant of the server broke.
    Internal = 13,
    /// `UNAVAILABLE` (14): the service is unavailable for now; clients
    /// retry it with backoff.
    Unavailable = 14,
    /// `DATA_LOSS` (15): data was lost or corrupted, beyond recovery.
    DataLoss = 15,
    /// `UNAUTHENTICATED` (16): the caller gave no valid credentials.
    Unauthenticated = 16,
}

// === impl GrpcCode ===

impl GrpcCode {
    /// Every code of the spec, in the order of their numbers.
    ///
    /// ```
    /// use reflex_core::http::GrpcCode;
    ///
    /// for (number, code) in GrpcCode::ALL.iter().enumerate() {
    ///     assert_eq!(code.as_i32() as usize, number);
    /// }
    /// ```
    pub const ALL: &'static [Self] = &[
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// The code numbered `code`; [`Unknown`](Self::Unknown) for a number
    /// outside the spec, as gRPC clients read it. Use `TryFrom<i32>` to
    /// tell the two apart.
    ///
    /// ```
    /// use reflex_core::http::GrpcCode;
    ///
    /// assert_eq!(GrpcCode::from_i32(4), GrpcCode::DeadlineExceeded);
    /// assert_eq!(GrpcCode::from_i32(-1), GrpcCode::Unknown);
    /// ```
    pub const fn from_i32(code: i32) -> Self {
        match Self::known(code) {
            Some(code) => code,
            None => Self::Unknown,
        }
    }

    /// The code's number.
    ///
    /// ```
    /// assert_eq!(reflex_core::http::GrpcCode::DataLoss.as_i32(), 15);
    /// ```
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// The spec's name of the code, such as `UNAVAILABLE`: stable, fit for
    /// logs and metric labels.
    ///
    /// ```
    /// use reflex_core::http::GrpcCode;
    ///
    /// assert_eq!(GrpcCode::ResourceExhausted.as_str(), "RESOURCE_EXHAUSTED");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Cancelled => "CANCELLED",
            Self::Unknown => "UNKNOWN",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::DataLoss => "DATA_LOSS",
            Self::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code a `grpc-status` value names, read as gRPC clients read it:
    /// one or two ASCII digits, 0 to 16, and nothing else (`"+14"`, `"014"`,
    /// `"-0"` and `" 4"` name no code). `None` for anything else; never
    /// panics.
    ///
    /// ```
    /// use reflex_core::http::GrpcCode;
    ///
    /// assert_eq!(GrpcCode::from_bytes(b"14"), Some(GrpcCode::Unavailable));
    /// assert_eq!(GrpcCode::from_bytes(b"17"), None);
    /// assert_eq!(GrpcCode::from_bytes(b"\xff"), None);
    /// ```
    pub const fn from_bytes(value: &[u8]) -> Option<Self> {
        let number = match *value {
            [digit @ b'0'..=b'9'] => digit - b'0',
            [b'1', digit @ b'0'..=b'6'] => 10 + (digit - b'0'),
            _ => return None,
        };
        // `as` widens a u8 losslessly; `i32::from` is not const.
        Self::known(number as i32)
    }

    /// The code of a `grpc-status` header: as [`from_bytes`](Self::from_bytes),
    /// with a value that names no code read as [`Unknown`](Self::Unknown),
    /// as gRPC clients read it.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use reflex_core::http::GrpcCode;
    ///
    /// assert_eq!(GrpcCode::from_header(&HeaderValue::from_static("5")), GrpcCode::NotFound);
    /// assert_eq!(GrpcCode::from_header(&HeaderValue::from_static("five")), GrpcCode::Unknown);
    /// ```
    pub fn from_header(value: &HeaderValue) -> Self {
        Self::from_bytes(value.as_bytes()).unwrap_or(Self::Unknown)
    }

    /// The code gRPC gives a response that carries no `grpc-status`, by its
    /// http status (a proxy answered instead of the server): 429, 502, 503
    /// and 504 are `UNAVAILABLE`; 400 `INTERNAL`; 401 `UNAUTHENTICATED`;
    /// 403 `PERMISSION_DENIED`; 404 `UNIMPLEMENTED`; any other status,
    /// 200 included, `UNKNOWN`. (A 200 without `grpc-status` in its head
    /// carries its code in its trailers.)
    ///
    /// ```
    /// use http::StatusCode;
    /// use reflex_core::http::GrpcCode;
    ///
    /// assert_eq!(GrpcCode::from_http_status(StatusCode::BAD_GATEWAY), GrpcCode::Unavailable);
    /// assert_eq!(GrpcCode::from_http_status(StatusCode::IM_A_TEAPOT), GrpcCode::Unknown);
    /// ```
    pub fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502 | 503 | 504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }

    /// The code numbered `code`, if the spec has one.
    const fn known(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::Cancelled,
            2 => Self::Unknown,
            3 => Self::InvalidArgument,
            4 => Self::DeadlineExceeded,
            5 => Self::NotFound,
            6 => Self::AlreadyExists,
            7 => Self::PermissionDenied,
            8 => Self::ResourceExhausted,
            9 => Self::FailedPrecondition,
            10 => Self::Aborted,
            11 => Self::OutOfRange,
            12 => Self::Unimplemented,
            13 => Self::Internal,
            14 => Self::Unavailable,
            15 => Self::DataLoss,
            16 => Self::Unauthenticated,
            _ => return None,
        })
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<GrpcCode> for i32 {
    fn from(code: GrpcCode) -> Self {
        code.as_i32()
    }
}

impl TryFrom<i32> for GrpcCode {
    type Error = UnknownGrpcCode;

    /// The code numbered `code`, or an error that keeps the number.
    fn try_from(code: i32) -> Result<Self, UnknownGrpcCode> {
        Self::known(code).ok_or(UnknownGrpcCode { code })
    }
}

/// A number that is no code of the gRPC spec, refused by
/// [`GrpcCode`]'s `TryFrom<i32>`; it keeps the number.
///
/// # Examples
///
/// ```
/// use reflex_core::http::GrpcCode;
///
/// let err = GrpcCode::try_from(17).unwrap_err();
/// assert_eq!(err.code(), 17);
/// assert_eq!(err.to_string(), "17 is not a gRPC status code");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{code} is not a gRPC status code")]
pub struct UnknownGrpcCode {
    code: i32,
}

// === impl UnknownGrpcCode ===

impl UnknownGrpcCode {
    /// The number that was refused.
    pub fn code(&self) -> i32 {
        self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_goes_to_its_number_and_back_and_nothing_else_is_a_code() {
        assert_eq!(GrpcCode::ALL.len(), 17);
        for number in -1_000..=1_000 {
            let known = GrpcCode::ALL.iter().copied().find(|c| c.as_i32() == number);
            assert_eq!(GrpcCode::try_from(number).ok(), known, "{number}");
            assert_eq!(
                GrpcCode::from_i32(number),
                known.unwrap_or(GrpcCode::Unknown),
                "{number}"
            );
        }
        for extreme in [i32::MIN, i32::MAX] {
            assert_eq!(
                GrpcCode::try_from(extreme),
                Err(UnknownGrpcCode { code: extreme })
            );
        }
    }

    #[test]
    fn a_grpc_status_is_read_from_its_digits_only() {
        for code in GrpcCode::ALL {
            let digits = code.as_i32().to_string();
            assert_eq!(GrpcCode::from_bytes(digits.as_bytes()), Some(*code));
            let header = HeaderValue::from_str(&digits).unwrap();
            assert_eq!(GrpcCode::from_header(&header), *code);
        }
        for &garbage in crate::http::NOT_A_GRPC_CODE {
            assert_eq!(GrpcCode::from_bytes(garbage), None, "{garbage:?}");
            if let Ok(header) = HeaderValue::from_bytes(garbage) {
                assert_eq!(GrpcCode::from_header(&header), GrpcCode::Unknown);
            }
        }
    }

    #[test]
    fn names_are_the_specs() {
        let names: Vec<_> = GrpcCode::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "OK",
                "CANCELLED",
                "UNKNOWN",
                "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS",
                "UNAUTHENTICATED",
            ]
        );
    }

    #[test]
    fn a_proxys_http_status_maps_as_grpc_says() {
        for (status, code) in [
            (400, GrpcCode::Internal),
            (401, GrpcCode::Unauthenticated),
            (403, GrpcCode::PermissionDenied),
            (404, GrpcCode::Unimplemented),
            (429, GrpcCode::Unavailable),
            (502, GrpcCode::Unavailable),
            (503, GrpcCode::Unavailable),
            (504, GrpcCode::Unavailable),
            (200, GrpcCode::Unknown),
            (500, GrpcCode::Unknown),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(GrpcCode::from_http_status(status), code, "{status}");
        }
    }
}
