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
