//! [`Signal`]s: the structural events layers report, and the [`SignalSink`]
//! that hears them.
//!
//! A layer emits a signal when something worth knowing happens (a request
//! shed, a limit crossed, a breaker tripped). A witness implements
//! [`SignalSink`] and folds what it hears into per-component state off the
//! request path. A layer that was given no sink pays one branch per signal.

mod breaker;
mod recorder;
mod retry;
mod sink;

use std::time::Duration;

pub use breaker::{BreakerState, TransitionReason};
pub use recorder::Recorder;
pub use retry::RetryReason;
pub use sink::{SignalSink, Sink};

/// A structural event reported by a layer.
///
/// Signals are small `Copy` values: emitting one allocates nothing. The
/// component that emitted it travels beside it, see [`SignalSink::emit`].
/// New variants arrive with new layers, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// The shed layer refused a request: `in_flight` requests were running
    /// against a hard limit of `hard_limit`.
    Shed {
        /// Requests in flight when this one was refused.
        in_flight: usize,
        /// The hard limit in force.
        hard_limit: usize,
    },
    /// In-flight requests went above the soft limit. Emitted once per
    /// excursion: not again until [`Signal::SoftLimitRecovered`].
    SoftLimitExceeded {
        /// Requests in flight after the one that crossed.
        in_flight: usize,
        /// The soft limit in force.
        soft_limit: usize,
    },
    /// In-flight requests fell back to the soft limit's low-water mark,
    /// ending the excursion [`Signal::SoftLimitExceeded`] began.
    SoftLimitRecovered {
        /// Requests in flight after the one that ended.
        in_flight: usize,
        /// The soft limit in force.
        soft_limit: usize,
    },
    /// The shed layer's hard limit was changed through its handle.
    HardLimitChanged {
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
    /// A request took its slot (at once, or after waiting in its queue).
    SlotStarted {
        /// `true` when it waited in the slot's queue first.
        waited: bool,
    },
    /// A request joined its slot's queue.
    SlotQueued {
        /// Requests waiting in that slot's queue, this one included.
        depth: usize,
    },
    /// A newer request replaced a running or waiting one, whose caller got
    /// `Rejected { Replaced }`.
    SlotReplaced {
        /// `true` when the replaced request was running (and was
        /// cancelled), `false` when it was waiting.
        was_running: bool,
    },
    /// A request waiting in its slot's queue left it without running: its
    /// caller dropped it (gave up, or a timeout above fired). Every request
    /// that joined a queue ([`Signal::SlotQueued`]) leaves it once: by
    /// [`Signal::SlotStarted`] with `waited`, by [`Signal::SlotReplaced`]
    /// with `was_running: false`, or by this.
    SlotAbandoned,
    /// A request was refused because its slot was busy (`DropIfRunning`).
    SlotBusy,
    /// A request was refused because its slot's queue, or the layer's
    /// bound on all waiting requests, was full.
    SlotQueueFull,
    /// A request joined an identical one in flight and will receive a copy
    /// of its answer instead of calling the inner service.
    Coalesced {
        /// Requests waiting on that call now, this one included.
        waiters: usize,
    },
    /// A request was answered from the dedup layer's cache.
    DedupCacheHit {
        /// `true` when the answer was past its TTL, served while a refresh
        /// of it ran.
        stale: bool,
    },
    /// The retry layer is about to try a request again.
    RetryAttempt {
        /// The attempt about to be made: 2 for the first retry.
        attempt: u32,
        /// How long it waits before that attempt.
        delay: Duration,
        /// What made the previous attempt worth retrying.
        reason: RetryReason,
    },
    /// A retry was wanted but the retry budget had none left: the caller
    /// got the last attempt's result.
    RetryBudgetExhausted {
        /// The attempt that was refused: 2 for the first retry.
        attempt: u32,
    },
    /// One key's breaker of a keyed circuit breaker layer changed state.
    ///
    /// Emitted under the layer's own component: the keys (hosts, tenants)
    /// are request data, so they never become components of their own,
    /// and one key's trip is not the component's breaker tripping.
    KeyedBreakerTransition {
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
        /// Why.
        reason: TransitionReason,
    },
    /// The layer lost its link to the state its fleet of replicas shares
    /// (a Redis backend): it decides from what this replica sees alone
    /// (`up: false`); or the link came back and the layer resynced with the
    /// fleet (`up: true`). Emitted once per change.
    FleetLink {
        /// `true`: shared again; `false`: deciding alone.
        up: bool,
    },
    /// A circuit breaker changed state.
    BreakerTransition {
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
        /// Why.
        reason: TransitionReason,
    },
}
