//! [`Clock`]: what the witness measures latencies with.

/// What the witness measures request latencies with.
///
/// A request reads the clock twice. `Cpu` reads the processor's time-stamp
/// counter (through `quanta`: about 18 ns a read on the reference machine,
/// against about 30 for the system clock); `Tokio` reads
/// `tokio::time::Instant`, which follows tokio's paused clock: use it in
/// tests that pause time and expect the latencies they staged.
///
/// # Examples
///
/// ```
/// use reflex_witness::{Clock, Witness};
///
/// // In a test with `#[tokio::test(start_paused = true)]`:
/// let witness = Witness::builder().clock(Clock::Tokio).build()?;
/// # let _ = witness;
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Clock {
    /// The time-stamp counter: the cheapest to read.
    #[default]
    Cpu,
    /// `tokio::time::Instant`: follows tokio's paused clock.
    Tokio,
}

/// The clock a witness reads: the kind, and for `Cpu` a calibrated
/// counter (read raw, scaled to nanoseconds only for the difference).
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Cpu(quanta::Clock),
    Tokio,
}

impl Source {
    pub(crate) fn new(clock: Clock) -> Self {
        match clock {
            Clock::Cpu => Self::Cpu(quanta::Clock::new()),
            Clock::Tokio => Self::Tokio,
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Stamp {
        match self {
            Self::Cpu(clock) => Stamp::Cpu(clock.raw()),
            Self::Tokio => Stamp::Tokio(tokio::time::Instant::now()),
        }
    }

    /// Nanoseconds since `start`.
    #[inline]
    pub(crate) fn elapsed_nanos(&self, start: Stamp) -> u64 {
        match (self, start) {
            (Self::Cpu(clock), Stamp::Cpu(start)) => clock.delta_as_nanos(start, clock.raw()),
            (_, Stamp::Tokio(start)) => {
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
            (Self::Tokio, Stamp::Cpu(_)) => 0,
        }
    }
}

/// When a request started, by its witness's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stamp {
    Cpu(u64),
    Tokio(tokio::time::Instant),
}
