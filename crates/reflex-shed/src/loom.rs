//! The atomics the shared state is built on: loom's under `cfg(loom)`, so
//! the model checker sees every access, std's otherwise.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
