//! A shared breaker's background task: tells the fleet when the local
//! breaker opens or closes, follows what the other replicas tell, flushes
//! the counts of the fleet rate, takes probe leases, and resyncs when the
//! link comes back. It holds the breaker by a `Weak`: it ends when the
//! breaker is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use reflex_breaker::Backend as _;
use reflex_core::BreakerState;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::state::{ANNOUNCE_CLOSE, ANNOUNCE_OPEN, Inner, KNOWN_CLOSED, KNOWN_OPEN, WANT_LEASE};
use super::stats::Counters;
use super::store::{self, Lease};
use super::wire::Event;
use crate::link::{Health, Message};

/// The least time between two lease requests of one replica: a hammered
/// half-open breaker asks Redis at most this often.
const LEASE_SPACING: Duration = Duration::from_millis(2);

/// Starts the task of `inner` on its fleet's runtime.
pub(crate) fn spawn(inner: &Arc<Inner>) {
    let task = Task {
        weak: Arc::downgrade(inner),
        wake: Arc::clone(&inner.wake),
        messages: inner.fleet.messages(),
        health: inner.fleet.health(),
        ups: 0,
        owed: None,
        lease_wanted: false,
        next_lease: Instant::now(),
        seq: 0,
    };
    let every = inner.settings.flush_every;
    inner.fleet.runtime().spawn(task.run(every));
}

/// Why the task woke.
enum Woke {
    Nudged,
    Tick,
    Health,
    Message(Message),
}

struct Task {
    weak: Weak<Inner>,
    wake: Arc<Notify>,
    messages: broadcast::Receiver<Message>,
    health: watch::Receiver<Health>,
    /// The link's count of comebacks at the last resync.
    ups: u64,
    /// News the fleet did not get (the link was down): told on resync.
    owed: Option<Event>,
    lease_wanted: bool,
    next_lease: Instant,
    /// Names this replica's leases apart.
    seq: u64,
}

impl Task {
    async fn run(mut self, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        // The link may be up already: resync at once.
        let mut woke = Woke::Health;
        loop {
            {
                let Some(inner) = self.weak.upgrade() else {
                    return;
                };
                self.handle(&inner, woke).await;
            }
            let lease_retry = self.lease_wanted.then_some(self.next_lease);
            woke = tokio::select! {
                biased;
                message = self.messages.recv() => match message {
                    Ok(message) => Woke::Message(message),
                    Err(RecvError::Lagged(_)) => Woke::Nudged,
                    Err(RecvError::Closed) => return,
                },
                () = self.wake.notified() => Woke::Nudged,
                changed = self.health.changed() => match changed {
                    Ok(()) => Woke::Health,
                    Err(_) => return,
                },
                () = tokio::time::sleep_until(lease_retry.unwrap_or_else(Instant::now)),
                    if lease_retry.is_some() => Woke::Nudged,
                _ = ticker.tick() => Woke::Tick,
            };
        }
    }

    async fn handle(&mut self, inner: &Inner, woke: Woke) {
        let mut flush = false;
        match woke {
            Woke::Message(message) => self.heard(inner, &message),
            Woke::Tick => flush = true,
            Woke::Health | Woke::Nudged => {}
        }
        let health = *self.health.borrow_and_update();
        if !health.up {
            // Alone: counts are not kept for a fleet that cannot hear them.
            inner.take_counts();
        } else if health.ups != self.ups && self.resync(inner).await {
            self.ups = health.ups;
            flush = true;
        }
        let work = inner.take_pending(0);
        if work & (ANNOUNCE_OPEN | ANNOUNCE_CLOSE) != 0 {
            // Both asked: tell the latest, which is what this replica knows.
            let event = match inner.known() {
                KNOWN_OPEN => Some(Event::Open),
                KNOWN_CLOSED if work & ANNOUNCE_CLOSE != 0 => Some(Event::Close),
                _ => None,
            };
            if let Some(event) = event {
                self.announce(inner, event).await;
            }
        }
        self.lease_wanted |= work & WANT_LEASE != 0;
        if self.lease_wanted && Instant::now() >= self.next_lease {
            self.lease_wanted = false;
            self.next_lease = Instant::now() + LEASE_SPACING;
            self.take_lease(inner).await;
        }
        if flush {
            if health.up && health.ups == self.ups {
                // An announcement that failed with the link up (and
                // resynced): again, at most once a flush interval.
                self.pay(inner).await;
            }
            self.flush(inner).await;
        }
    }

    /// Another replica's news.
    fn heard(&mut self, inner: &Inner, message: &Message) {
        if *message.scope != inner.settings.scope || *message.origin == *inner.fleet.replica_id() {
            return;
        }
        let Some(event) = Event::parse(&message.body) else {
            return;
        };
        // The fleet moved on: whatever this replica owed it is stale.
        self.owed = None;
        let component = inner.local.config().component();
        match event {
            Event::Open => {
                if inner.open_from_fleet() {
                    Counters::bump(&inner.counters.trips_heard);
                    tracing::info!(%component, from = %message.origin, "shared breaker opened: another replica tripped");
                }
            }
            Event::Close => {
                if inner.close_from_fleet() {
                    Counters::bump(&inner.counters.closes_heard);
                    tracing::info!(%component, from = %message.origin, "shared breaker closed: another replica's probes succeeded");
                }
            }
        }
    }

    /// The link came back: the fleet may have opened meanwhile; what this
    /// replica owes it is told. `false` when Redis did not answer (tried
    /// again at the next wake).
    async fn resync(&mut self, inner: &Inner) -> bool {
        let open = match store::fleet_open(inner).await {
            Ok(open) => open,
            Err(error) => {
                tracing::debug!(%error, "shared breaker: resync failed, will retry");
                return false;
            }
        };
        if open {
            self.owed = None;
            if inner.open_from_fleet() {
                Counters::bump(&inner.counters.resync_trips);
                tracing::info!(
                    component = %inner.local.config().component(),
                    "shared breaker opened on resync: the fleet is open"
                );
            }
        } else {
            self.pay(inner).await;
        }
        true
    }

    /// Tells the fleet what it missed, if this replica still thinks so.
    async fn pay(&mut self, inner: &Inner) {
        let Some(event) = self.owed.take() else {
            return;
        };
        let still = match event {
            Event::Open => inner.known() == KNOWN_OPEN,
            Event::Close => inner.known() == KNOWN_CLOSED,
        };
        if still {
            self.announce(inner, event).await;
        }
    }

    async fn announce(&mut self, inner: &Inner, event: Event) {
        if event == Event::Open {
            // Counts of the state that is gone.
            inner.take_counts();
        }
        let component = inner.local.config().component();
        match store::announce(inner, event).await {
            Ok(()) => {
                self.owed = None;
                Counters::bump(&inner.counters.announced);
                tracing::debug!(%component, event = event.as_str(), "shared breaker: told the fleet");
            }
            Err(error) => {
                self.owed = Some(event);
                tracing::warn!(%component, event = event.as_str(), %error, "shared breaker: could not tell the fleet; will when the link is back");
            }
        }
    }

    async fn take_lease(&mut self, inner: &Inner) {
        if inner.local.state() != BreakerState::HalfOpen
            || inner.leases_held() > 0
            || !inner.fleet.is_up()
        {
            return;
        }
        self.seq += 1;
        let member = format!("{}:{}", inner.fleet.replica_id(), self.seq);
        match store::lease(inner, &member).await {
            Ok(Lease::Granted) => {
                inner.add_lease(inner.settings.lease_ttl_ms);
                tracing::debug!(component = %inner.local.config().component(), "shared breaker: probe lease taken");
            }
            Ok(Lease::AllOut | Lease::FleetOpen) => {}
            Err(error) => tracing::debug!(%error, "shared breaker: lease request failed"),
        }
    }

    async fn flush(&mut self, inner: &Inner) {
        let settings = &inner.settings;
        if !settings.count_rate {
            return;
        }
        if !inner.fleet.is_up() || inner.local.state() != BreakerState::Closed {
            inner.take_counts();
            return;
        }
        let counts = inner.take_counts();
        if counts.calls == 0 {
            return;
        }
        let fleet = match store::flush(inner, counts).await {
            Ok(fleet) => fleet,
            Err(error) => {
                // Kept for the next flush; dropped if the link goes down.
                inner.restore(counts);
                tracing::debug!(%error, "shared breaker: flush failed, counts kept for the next");
                return;
            }
        };
        let counters = &inner.counters;
        counters.fleet_calls.store(fleet.calls, Ordering::Relaxed);
        counters
            .fleet_failures
            .store(fleet.failures, Ordering::Relaxed);
        counters.fleet_slow.store(fleet.slow, Ordering::Relaxed);
        Counters::bump(&counters.flushes);
        if settings.rule.trips(fleet) && inner.open_from_fleet() {
            Counters::bump(&counters.fleet_trips);
            tracing::info!(
                component = %inner.local.config().component(),
                calls = fleet.calls,
                failures = fleet.failures,
                slow = fleet.slow,
                "shared breaker opened: the fleet's rate tripped it"
            );
            self.announce(inner, Event::Open).await;
        }
    }
}
