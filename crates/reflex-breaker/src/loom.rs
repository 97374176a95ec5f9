//! The atomics and lock the breaker's state is built on: loom's under
//! `cfg(loom)`, so the model checker sees every access, std's otherwise.

#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
