//! The budget's task: looks at the shed layer, renews the lease, steers
//! the layer's fleet cap in the order that keeps the fleet under its cap.
//!
//! **Growing**, Redis grants first and the local cap rises after.
//! **Shrinking**, the local cap falls first (in force when
//! `set_fleet_cap` returns, even while a reflex's change is being
//! written); then the calls in flight are read, and Redis records this
//! replica as holding the larger of its grant and what it may still have
//! in flight (admitted calls cannot be revoked; they drain). So at every
//! instant a live, renewing replica has at most what Redis records as its
//! own in flight, and Redis never grants beyond the cap what the others do
//! not hold.

use std::sync::Weak;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};

use super::demand::{Demand, Look};
use super::script::{self, Ask};
use super::{BudgetState, Inner};
use crate::fleet::Fleet;

/// The body of the message a starved replica sends: "renew now" (those
/// above their fair share give permits back).
const MORE: &str = "more";
/// The body of the message a replica sends when it gave permits back:
/// "renew now" (the starved take them).
const FREE: &str = "free";

pub(super) async fn run(weak: Weak<Inner>, fleet: Fleet) {
    let Some(inner) = weak.upgrade() else { return };
    let mut local = Local::new(&inner);
    let scope = inner.scope.clone();
    drop(inner);
    let mut health = fleet.health();
    let mut ups = health.borrow_and_update().ups;
    let mut messages = fleet.messages();
    let mut tick = tokio::time::interval(local.every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let nudged = tokio::select! {
            _ = tick.tick() => false,
            changed = health.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = health.borrow_and_update().ups;
                // Back up: renew at once (Redis may have lost every lease).
                std::mem::replace(&mut ups, now) != now
            }
            message = messages.recv() => match message {
                Ok(message) => *message.scope == *scope && *message.origin != *fleet.replica_id(),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
        };
        let Some(inner) = weak.upgrade() else { return };
        local.step(&inner, &fleet, nudged).await;
    }
}

/// What the task knows between looks.
struct Local {
    every: std::time::Duration,
    state: BudgetState,
    /// Permits this replica admits against while starting or leased: the
    /// layer's fleet cap.
    held: usize,
    /// When the last lease Redis granted was sent: it lapses a TTL after
    /// (Redis counts from later, when it ran it).
    lease_sent: Option<Instant>,
    started: Instant,
    last_attempt: Option<Instant>,
    last_want: usize,
    /// Permits Redis recorded as this replica's at its last renewal.
    stored: usize,
    last_more: Option<Instant>,
    shed_seen: u64,
    demand: Demand,
}

impl Local {
    fn new(inner: &Inner) -> Self {
        let config = inner.config;
        Self {
            every: config.sample_every,
            state: BudgetState::Starting,
            held: 0,
            lease_sent: None,
            started: Instant::now(),
            last_attempt: None,
            last_want: 0,
            stored: 0,
            last_more: None,
            shed_seen: inner.shed.metrics().shed_total,
            demand: Demand::new(config.block, config.cap),
        }
    }

    async fn step(&mut self, inner: &Inner, fleet: &Fleet, nudged: bool) {
        let config = inner.config;
        let now = Instant::now();
        let metrics = inner.shed.metrics();
        let shed = metrics.shed_total.saturating_sub(self.shed_seen);
        self.shed_seen = metrics.shed_total;
        let own = metrics.local_limit;

        let since = self.lease_sent.unwrap_or(self.started);
        if self.state != BudgetState::Fallback && now >= since + config.ttl {
            self.fall_back(inner);
        }
        let held = match self.state {
            BudgetState::Fallback => config.fallback.unwrap_or(own).min(own),
            _ => self.held,
        };
        let look = Look {
            in_flight: metrics.in_flight,
            shed,
            own_limit: own,
        };
        let want = self.demand.want(held, look);
        let renewal_due = self
            .last_attempt
            .is_none_or(|at| now >= at + config.ttl / 3);
        // A starved replica also hears when permits free up (pub/sub);
        // it polls as well, more slowly, as a message may be lost.
        let poll_due = self
            .last_attempt
            .is_none_or(|at| now >= at + self.every * 2);
        let due = nudged
            || renewal_due
            || self.state != BudgetState::Leased
            || want != self.last_want
            || (Demand::starved(want, held) && poll_due);
        inner.record(|m| m.wanted = want);
        if due && fleet.is_up() {
            self.renew(inner, fleet, want, held).await;
        }
    }

    async fn renew(&mut self, inner: &Inner, fleet: &Fleet, want: usize, held: usize) {
        let config = inner.config;
        // Never above what Redis granted before it grants more; below it
        // before Redis hears of less.
        let keep = want.min(held);
        let _ = inner.shed.set_fleet_cap(Some(keep));
        let floor = keep.max(inner.shed.metrics().in_flight);
        let sent = Instant::now();
        self.last_attempt = Some(sent);
        self.demand.renewed();
        let ask = Ask {
            want,
            floor,
            ttl_ms: u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX),
            cap: config.cap,
            block: config.block,
        };
        match script::lease(&fleet.link, &inner.keys, fleet.replica_id(), ask).await {
            Ok(lease) => {
                let _ = inner.shed.set_fleet_cap(Some(lease.grant));
                if self.state != BudgetState::Leased {
                    tracing::info!(
                        component = %inner.shed.component(),
                        granted = lease.grant,
                        fleet_total = lease.total,
                        "fleet budget leased: admitting against the fleet's permits"
                    );
                }
                self.state = BudgetState::Leased;
                self.held = lease.grant;
                self.lease_sent = Some(sent);
                self.last_want = want;
                inner.record(|m| {
                    m.state = BudgetState::Leased;
                    m.granted = lease.grant;
                    m.held = lease.stored;
                    m.fleet_total = lease.total;
                    m.replicas = lease.replicas;
                    m.renewals += 1;
                });
                tracing::debug!(component = %inner.shed.component(), want, floor, ?lease, "fleet budget renewed");
                let freed = lease.stored < self.stored;
                self.stored = lease.stored;
                if freed {
                    let _ = fleet.link.publish(&inner.scope, FREE).await;
                }
                if lease.grant < want {
                    self.ask_others(inner, fleet).await;
                }
            }
            Err(error) => {
                tracing::debug!(component = %inner.shed.component(), %error, "fleet budget renewal failed");
                inner.record(|m| m.failures += 1);
                match self.state {
                    // Back to the fallback until a lease succeeds.
                    BudgetState::Fallback => {
                        let _ = inner.shed.set_fleet_cap(config.fallback);
                    }
                    _ => {
                        self.held = keep;
                        inner.record(|m| m.granted = keep);
                    }
                }
            }
        }
    }

    /// Tells the others to renew now: those over their fair share give
    /// permits back at once instead of at their next renewal.
    async fn ask_others(&mut self, inner: &Inner, fleet: &Fleet) {
        let now = Instant::now();
        if self.last_more.is_some_and(|at| now < at + self.every * 4) {
            return;
        }
        self.last_more = Some(now);
        let _ = fleet.link.publish(&inner.scope, MORE).await;
    }

    fn fall_back(&mut self, inner: &Inner) {
        let fallback = inner.config.fallback;
        tracing::warn!(
            component = %inner.shed.component(),
            ttl = ?inner.config.ttl,
            ?fallback,
            "fleet budget lapsed: no lease renewed within its ttl, falling back to {}",
            if fallback.is_some() { "a static share" } else { "the layer's own limit" }
        );
        let _ = inner.shed.set_fleet_cap(fallback);
        self.state = BudgetState::Fallback;
        self.held = 0;
        inner.record(|m| {
            m.state = BudgetState::Fallback;
            m.granted = 0;
            m.fallbacks += 1;
        });
    }
}
