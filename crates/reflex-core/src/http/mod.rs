//! `http` glue every layer shares (feature `http`): the
//! [`ServerErrorsAsFailures`] and [`GrpcErrorsAsFailures`] classifiers,
//! gRPC status codes as a [`GrpcCode`], and [`BufferedBody`] with
//! [`buffer`], which read a body into memory up to a limit so that it can
//! be copied (retried requests, shared responses).

mod buffer;
mod classify;
mod grpc_code;

pub use buffer::{Buffer, BufferedBody, buffer};
pub use classify::{GrpcErrorsAsFailures, ServerErrorsAsFailures};
pub use grpc_code::{GrpcCode, UnknownGrpcCode};

/// `grpc-status` values that are no code (out of range, signed, padded,
/// empty, not digits): for the tests of the parser and of the classifier.
#[cfg(test)]
const NOT_A_GRPC_CODE: &[&[u8]] = &[
    b"17",
    b"-1",
    b"",
    b"fourteen",
    b"1 4",
    b" 4",
    b"\xff",
    b"\xff\xff",
    b"99999999999",
    b"+14",
    b"014",
    b"00",
    b"-0",
    b"20",
];
