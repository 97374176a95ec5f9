//! `SlotAdmissionLayer`: at most one running request per named slot, with
//! Queue, Replace or DropIfRunning admission.
//!
//! A key function maps a request to its slot (a document id, a user, a job
//! name), or to `None` to pass it through: the builder's
//! [`key`](SlotAdmissionBuilder::key) takes a closure `Fn(&Request) ->
//! Option<K>`, [`key_with`](SlotAdmissionBuilder::key_with) any
//! [`KeyFn`](reflex_core::KeyFn), as every keyed reflex layer does. While a
//! request of a slot runs in the inner service, another request of that
//! slot, by its [`Policy`]:
//!
//! - **Queue**s in FIFO order behind the running one, bounded per slot and
//!   across the layer (over either bound: `Rejected { SlotQueueFull }` at
//!   once); a Replace newcomer still goes to the head;
//! - **Replace**s the running one: its inner future is dropped and its
//!   caller gets `Rejected { Replaced }`; a request waiting at the head of
//!   the queue is replaced too; the newcomer starts once the cancelled one
//!   is gone;
//! - or is refused at once (**DropIfRunning**: `Rejected { SlotBusy }`).
//!
//! The policy is the layer's, or the request's own
//! ([`SlotAdmissionBuilder::policy_by`]).
//!
//! # Guarantees
//!
//! - **One at a time.** At most one request per slot is in the inner
//!   service; a replaced one is out before its successor starts.
//! - **No stuck slot.** Every state change is tied to a guard, not to a
//!   message: a running request's guard hands the slot on when its
//!   response future completes (not when a streamed response body ends),
//!   is dropped, or unwinds from a panic; a waiting request's guard takes
//!   it out of the queue when dropped; a grant that reaches a waiter
//!   already gone is passed on at once.
//! - **Memory follows busy slots.** A slot is kept only while a request
//!   runs in it; idle slots are removed, whatever the number of keys seen
//!   (the maps keep their peak capacity).
//! - **Never waits in `poll_ready`.** A request waits in its response
//!   future; `poll_ready` is the inner service's readiness.
//! - **Observable.** Each decision is a [`Signal`](reflex_core::Signal)
//!   (`SlotStarted`, `SlotQueued`, `SlotReplaced`, `SlotAbandoned`,
//!   `SlotBusy`, `SlotQueueFull`) and, but for an idle slot's start, a
//!   `DEBUG` event (never with the key); refusals are summed up at
//!   `INFO`/`WARN` once per interval at most (`docs/slot.md`, "Logs");
//!   [`SlotHandle`] reads the live numbers
//!   ([`SlotMetrics`]: busy slots, requests waiting, the count of each
//!   decision) and a slot's state and queue depth.
//! - **Every queued request leaves its queue once, and says so**: granted
//!   (`SlotStarted { waited: true }`), replaced while waiting
//!   (`SlotReplaced { was_running: false }`), or dropped by its caller
//!   (`SlotAbandoned`, also when its grant was on its way or a replacement
//!   reached it too late). So a sink that adds the joins and subtracts the
//!   leaves holds [`SlotMetrics::waiting`], without drift. The layer can be
//!   dropped while requests wait: they hold the table, and still leave.
//!
//! # What it does not do
//!
//! - It does not bound the number of distinct running slots: put a
//!   `ConcurrencyShedLayer` above it for that.
//! - A waiting request holds the inner service's readiness (it took the
//!   ready service with it) until it runs or leaves.
//! - Admission takes its slot's shard lock (16
//!   [`Shards`](reflex_core::shard::Shards)) and clones the key
//!   (keys that allocate to clone, like `String`, allocate per request;
//!   integers and `Arc<str>` do not); it is not a lock-free path.
//! - A replaced request is cancelled when its response future is next
//!   polled: a caller that holds the future without polling it holds the
//!   slot too.
//!
//! # Examples
//!
//! ```
//! use reflex_slot::{Policy, SlotAdmissionLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let slots = SlotAdmissionLayer::builder()
//!     .key(|job: &&'static str| Some(*job))
//!     .policy(Policy::DropIfRunning)
//!     .component("jobs")
//!     .build()?;
//! let handle = slots.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(slots)
//!     .service_fn(|job: &'static str| async move { Ok::<_, std::io::Error>(job.len()) });
//!
//! assert_eq!(svc.ready().await?.call("reindex").await?, 7);
//! assert_eq!(handle.metrics().busy_slots, 0, "idle slots are not kept");
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod future;
mod handle;
mod layer;
mod logs;
mod loom;
mod metrics;
mod policy;
mod service;
mod table;

#[cfg(test)]
mod tests;

pub use handle::SlotHandle;
pub use layer::{SlotAdmissionBuilder, SlotAdmissionLayer};
pub use metrics::SlotMetrics;
pub use policy::{LayerPolicy, Policy, PolicyOf};
pub use service::SlotAdmission;
