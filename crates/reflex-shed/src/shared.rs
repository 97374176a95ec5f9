//! State shared by a layer, its services, their futures and its handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, RejectKind, Rejected, Signal, Sink};

use crate::counter::{self, Counter, NO_SOFT_LIMIT, Refused};
use crate::logs::Logs;

pub(crate) const LAYER: &str = "shed";

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) counter: Counter,
    shed_total: AtomicU64,
    component: Component,
    sink: Sink,
    retry_after: Duration,
    /// The limits the builder was given: a new hard limit rescales the soft
    /// limit from these, so repeated changes do not drift.
    configured_hard: usize,
    configured_soft: Option<usize>,
    /// Serialises limit changes so hard and soft always change together.
    /// Only handle setters take it; the request path never does.
    set_limits: Mutex<()>,
    logs: Logs,
}

/// What a request holds while it runs in the inner service: one slot of the
/// hard limit, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    shared: Arc<Shared>,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(
        hard: usize,
        soft: Option<usize>,
        retry_after: Duration,
        component: Component,
        sink: Sink,
    ) -> Self {
        Self {
            counter: Counter::new(hard, soft.unwrap_or(NO_SOFT_LIMIT)),
            shed_total: AtomicU64::new(0),
            component,
            sink,
            retry_after,
            configured_hard: hard,
            configured_soft: soft,
            set_limits: Mutex::new(()),
            logs: Logs::new(),
        }
    }

    /// Admits the request or says why not.
    #[inline]
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        match self.counter.try_acquire() {
            Ok(admitted) => {
                if admitted.crossed_soft {
                    self.soft_limit_exceeded(admitted.in_flight);
                }
                Ok(Permit {
                    shared: Arc::clone(self),
                })
            }
            Err(refused) => Err(self.shed(refused)),
        }
    }

    #[cold]
    fn shed(&self, refused: Refused) -> Rejected {
        let Refused {
            in_flight,
            hard_limit,
        } = refused;
        self.shed_total.fetch_add(1, Ordering::Relaxed);
        self.logs
            .shed(&self.component, in_flight, hard_limit, self.retry_after);
        self.sink.emit(
            &self.component,
            Signal::Shed {
                in_flight,
                hard_limit,
            },
        );
        Rejected::new(RejectKind::Shed, self.component.clone()).with_retry_after(self.retry_after)
    }

    #[cold]
    fn soft_limit_exceeded(&self, in_flight: usize) {
        let soft_limit = self.counter.soft_limit();
        self.logs.soft_limit_exceeded(
            &self.component,
            in_flight,
            soft_limit,
            self.counter.hard_limit(),
        );
        self.sink.emit(
            &self.component,
            Signal::SoftLimitExceeded {
                in_flight,
                soft_limit,
            },
        );
    }

    #[cold]
    fn soft_limit_recovered(&self, in_flight: usize, soft_limit: usize) {
        self.logs
            .soft_limit_recovered(&self.component, in_flight, soft_limit);
        self.sink.emit(
            &self.component,
            Signal::SoftLimitRecovered {
                in_flight,
                soft_limit,
            },
        );
    }

    pub(crate) fn shed_total(&self) -> u64 {
        self.shed_total.load(Ordering::Relaxed)
    }

    pub(crate) fn component(&self) -> &Component {
        &self.component
    }

    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The soft limit in force, `None` when none was configured.
    pub(crate) fn soft_limit(&self) -> Option<usize> {
        match self.counter.soft_limit() {
            NO_SOFT_LIMIT => None,
            soft => Some(soft),
        }
    }

    pub(crate) fn set_hard_limit(&self, hard: usize) -> Result<(), ConfigError> {
        validate_hard_limit(hard)?;
        let serialised = self
            .set_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let soft = match self.configured_soft {
            Some(soft) => rescale_soft(soft, self.configured_hard, hard),
            None => NO_SOFT_LIMIT,
        };
        let changed = self.counter.set_limits(hard, soft);
        // Signals are user code: never under the lock (a sink may steer
        // this very layer through its handle).
        drop(serialised);
        if let Some(ended) = changed.ended_excursion {
            self.soft_limit_recovered(ended.in_flight, ended.soft_limit);
        }
        let from = changed.previous_hard;
        if from != hard {
            self.logs.hard_limit_changed(&self.component, from, hard);
            self.sink
                .emit(&self.component, Signal::HardLimitChanged { from, to: hard });
        }
        Ok(())
    }
}

/// The soft limit keeps its proportion of the hard limit: configured 80 of
/// 100, it becomes 40 of 50. It stays below the hard limit, and where that
/// leaves no room (a hard limit of 1) there is no soft limit.
fn rescale_soft(soft: usize, configured_hard: usize, hard: usize) -> usize {
    let scaled = (soft as u128 * hard as u128 / configured_hard as u128) as usize;
    match scaled.min(hard - 1) {
        0 => NO_SOFT_LIMIT,
        soft => soft,
    }
}

pub(crate) fn validate_hard_limit(hard: usize) -> Result<(), ConfigError> {
    if hard == 0 {
        return Err(ConfigError::new(
            LAYER,
            "hard_limit",
            ConfigErrorKind::Zero,
            "must be at least 1",
        ));
    }
    if hard > counter::MAX_LIMIT {
        return Err(ConfigError::new(
            LAYER,
            "hard_limit",
            ConfigErrorKind::OutOfRange,
            format!("must be at most {}", counter::MAX_LIMIT),
        ));
    }
    Ok(())
}

// === impl Permit ===

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(in_flight) = self.shared.counter.release() {
            let soft_limit = self.shared.counter.soft_limit();
            self.shared.soft_limit_recovered(in_flight, soft_limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_keeps_its_proportion_when_the_hard_limit_changes() {
        assert_eq!(rescale_soft(80, 100, 50), 40);
        assert_eq!(rescale_soft(80, 100, 200), 160);
        assert_eq!(rescale_soft(9, 10, 2), 1);
        assert_eq!(rescale_soft(9, 10, 1), NO_SOFT_LIMIT, "no room below 1");
        assert_eq!(rescale_soft(1, 4, 3), NO_SOFT_LIMIT, "rounds down to 0");
        assert_eq!(
            rescale_soft(1, 2, counter::MAX_LIMIT),
            counter::MAX_LIMIT / 2
        );
    }
}
