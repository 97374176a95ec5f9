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

/// The clock a witness reads, from the moment it was built: for `Cpu` a
/// calibrated counter read raw, scaled to nanoseconds only for the
/// difference from its start.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Cpu { clock: quanta::Clock, base: u64 },
    Tokio { base: tokio::time::Instant },
}

impl Source {
    pub(crate) fn new(clock: Clock) -> Self {
        match clock {
            Clock::Cpu => {
                let clock = quanta::Clock::new();
                let base = clock.raw();
                Self::Cpu { clock, base }
            }
            Clock::Tokio => Self::Tokio {
                base: tokio::time::Instant::now(),
            },
        }
    }

    /// Nanoseconds since the witness was built (saturating: about 584
    /// years).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        match self {
            Self::Cpu { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
            Self::Tokio { base } => u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }
}
