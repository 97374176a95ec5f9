//! The atomics the slot table counts with: loom's under `cfg(loom)`, so the
//! model checker sees every access, std's otherwise. (The table's shard
//! locks are `reflex_core::shard::Shards`, on loom's lock under `cfg(loom)`
//! too.)

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
