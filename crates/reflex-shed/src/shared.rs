//! State shared by a layer, its services, their futures and its handle,
//! and the [`Permit`] an admitted request holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::{Component, ConfigError, RejectKind, Rejected, Signal, Sink};
use tokio::time::Instant;

use crate::config::{AdaptiveConfig, nanos};
use crate::counter::{Counter, NO_SOFT_LIMIT, Refused, rescale_soft};
use crate::estimator::{Estimator, View};
use crate::logs::Logs;
use crate::partition::{Class, ClassTable, PartitionView};
use crate::steer::{Inputs, Published, Steering};
use crate::validate;

mod sampling;

/// How the partitions of a layer with a fixed limit tell an idle one: no
/// arrival for this long (an adaptive layer uses its window).
const FIXED_IDLE: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) counter: Counter,
    steering: Steering,
    estimator: Option<Estimator>,
    classes: ClassTable,
    shed_total: AtomicU64,
    component: Component,
    sink: Sink,
    retry_after: Duration,
    /// The limit the builder was given (an adaptive limit's initial one)
    /// and its soft limit: a new limit rescales the soft one from these,
    /// so repeated changes do not drift.
    configured_hard: usize,
    configured_soft: Option<usize>,
    logs: Logs,
    origin: Instant,
}

/// What the builder hands over.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) limit: LimitSetting,
    pub(crate) soft: Option<usize>,
    pub(crate) retry_after: Duration,
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    /// The listed partitions' shares; empty: unpartitioned.
    pub(crate) shares: Vec<f64>,
    pub(crate) critical_reserve: f64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum LimitSetting {
    Fixed(usize),
    Adaptive(AdaptiveConfig),
}

/// What a request holds while it runs in the inner service: one slot of
/// the limit (and of its class), given back when dropped. Sixteen bytes:
/// it rides in every response future.
#[derive(Debug)]
pub(crate) struct Permit {
    shared: Arc<Shared>,
    class: Class,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(settings: Settings, seed: u64) -> Self {
        let (hard, estimator) = match settings.limit {
            LimitSetting::Fixed(hard) => (hard, None),
            LimitSetting::Adaptive(config) => (config.initial, Some(Estimator::new(config, seed))),
        };
        let idle_ns = estimator
            .as_ref()
            .map_or(nanos(FIXED_IDLE), |e| e.config().window_ns);
        Self {
            counter: Counter::new(hard, settings.soft.unwrap_or(NO_SOFT_LIMIT)),
            steering: Steering::new(hard),
            estimator,
            classes: ClassTable::new(&settings.shares, settings.critical_reserve, idle_ns),
            shed_total: AtomicU64::new(0),
            component: settings.component,
            sink: settings.sink,
            retry_after: settings.retry_after,
            configured_hard: hard,
            configured_soft: settings.soft,
            logs: Logs::new(),
            origin: Instant::now(),
        }
    }

    /// Admits a request of a layer without classes, or says why not: one
    /// compare-and-swap. The caller then takes its [`Permit`].
    #[inline]
    pub(crate) fn acquire(&self) -> Result<(), Rejected> {
        match self.counter.try_acquire() {
            Ok(admitted) => {
                if admitted.crossed_soft {
                    self.soft_limit_exceeded(admitted.in_flight);
                }
                Ok(())
            }
            Err(refused) => Err(self.shed(refused, Class::PLAIN)),
        }
    }

    /// Admits a request of `class`, or says why not.
    pub(crate) fn acquire_classed(&self, class: Class) -> Result<(), Rejected> {
        if !class.critical() {
            let (in_flight, hard_limit) = (self.counter.in_flight(), self.counter.hard_limit());
            let now = if class.partition().is_some() {
                self.now()
            } else {
                0
            };
            if !self.classes.room(class, hard_limit, in_flight, now) {
                let refused = Refused {
                    in_flight,
                    hard_limit,
                };
                return Err(self.shed(refused, class));
            }
        }
        match self.counter.try_acquire() {
            Ok(admitted) => {
                self.classes.admitted(class);
                if admitted.crossed_soft {
                    self.soft_limit_exceeded(admitted.in_flight);
                }
                Ok(())
            }
            Err(refused) => Err(self.shed(refused, class)),
        }
    }

    /// The permit of a request just admitted (by `acquire` or
    /// `acquire_classed`), which gives its slot back when dropped. Made
    /// apart from the admission, in the response future's own slot: a
    /// permit moved out of a `Result` is copied wider than it was written.
    #[inline]
    pub(crate) fn permit(self: &Arc<Self>, class: Class) -> Permit {
        Permit {
            shared: Arc::clone(self),
            class,
        }
    }

    /// When a request admitted now was admitted, for an adaptive layer to
    /// time it; `None` for a fixed limit, which times nothing.
    #[inline]
    pub(crate) fn admitted_at(&self) -> Option<u64> {
        self.estimator.as_ref().map(|_| self.now())
    }

    /// Nanoseconds since the layer was built, on tokio's clock.
    fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    #[cold]
    fn shed(&self, refused: Refused, class: Class) -> Rejected {
        let Refused {
            in_flight,
            hard_limit,
        } = refused;
        self.shed_total.fetch_add(1, Ordering::Relaxed);
        // One clock read, where something needs the time.
        let now = if self.estimator.is_some() || class.partition().is_some() {
            self.now()
        } else {
            0
        };
        let recomputed = self
            .estimator
            .as_ref()
            .and_then(|estimator| estimator.refused(hard_limit, in_flight, now));
        if let Some(recomputed) = recomputed {
            self.recomputed(&recomputed);
        }
        self.classes.shed(class, now);
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
    fn excursion_ended(&self, in_flight: usize) {
        let soft_limit = self.counter.soft_limit();
        self.soft_limit_recovered(in_flight, soft_limit);
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

    pub(crate) fn inputs(&self) -> Inputs {
        self.steering.inputs()
    }

    pub(crate) fn estimator_view(&self) -> Option<View> {
        self.estimator.as_ref().map(Estimator::view)
    }

    pub(crate) fn critical_in_flight(&self) -> usize {
        self.classes.critical_in_flight()
    }

    pub(crate) fn partitions(&self) -> impl Iterator<Item = PartitionView> + '_ {
        self.classes.partitions()
    }

    /// A fixed layer's new hard limit; an adaptive layer's cap: below the
    /// limit it would have, the limit is `hard` until a call at or above
    /// that lifts it.
    pub(crate) fn set_hard_limit(&self, hard: usize) -> Result<(), ConfigError> {
        validate::hard_limit("hard_limit", hard)?;
        if self.estimator.is_some() {
            let inputs = self.steering.inputs();
            let uncapped = inputs.pin.unwrap_or(inputs.base);
            self.steering.set_cap((hard < uncapped).then_some(hard));
        } else {
            self.steering.set_base(hard);
        }
        self.steer();
        Ok(())
    }

    /// Holds the limit at `pin` whatever the estimator says (a fixed
    /// layer's hard limit too), or lets it go with `None`.
    pub(crate) fn pin_limit(&self, pin: Option<usize>) -> Result<(), ConfigError> {
        if let Some(pin) = pin {
            validate::hard_limit("pin_limit", pin)?;
        }
        self.steering.set_pin(pin);
        self.steer();
        Ok(())
    }

    /// Bounds the limit by a fleet's cap (0 refuses all; `None` lifts it),
    /// in force on return. Automatic as the estimator is: DEBUG log, no signal.
    pub(crate) fn set_fleet_cap(&self, cap: Option<usize>) -> Result<(), ConfigError> {
        cap.map(validate::fleet_cap).transpose()?;
        self.steering.set_fleet(cap);
        if let Some((from, to)) = self.publish(true).changed {
            tracing::debug!(component = %self.component, from, to, "fleet cap moved the limit");
        }
        Ok(())
    }

    /// Publishes a change of the handle's, and says so.
    fn steer(&self) {
        let before = self.counter.hard_limit();
        self.publish(false);
        let after = self.steering.inputs().limit();
        if before != after {
            self.logs.hard_limit_changed(&self.component, before, after);
            self.sink.emit(
                &self.component,
                Signal::HardLimitChanged {
                    from: before,
                    to: after,
                },
            );
        }
    }

    /// Publishes the limit; when `own`, as its writer (in force on return).
    fn publish(&self, own: bool) -> Published {
        let soft = |hard| self.soft_for(hard);
        let published = match own {
            true => self.steering.publish_own(&self.counter, soft),
            false => self.steering.publish(&self.counter, soft),
        };
        // Signals are user code: only once the limits are written (a sink
        // may steer this very layer through its handle).
        if let Some(ended) = published.ended_excursion {
            self.soft_limit_recovered(ended.in_flight, ended.soft_limit);
        }
        published
    }

    fn soft_for(&self, hard: usize) -> usize {
        match self.configured_soft {
            Some(soft) => rescale_soft(soft, self.configured_hard, hard),
            None => NO_SOFT_LIMIT,
        }
    }
}

// === impl Permit ===

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some(in_flight) = self.shared.counter.release() {
            self.shared.excursion_ended(in_flight);
        }
        if self.class != Class::PLAIN {
            self.shared.classes.released(self.class);
        }
    }
}
