//! The state word: what admission decides on, in one atomic `u64`.
//!
//! ```text
//!  63          33 32          18 17           3 2    0
//! [  generation  | probe wins   | probes out   | code ]
//! ```
//!
//! The code is the state; probes out and probe wins count a half-open
//! spell's probes; the generation changes with every transition, so an
//! outcome admitted before one is told apart and dropped.

use std::time::Duration;

use reflex_core::BreakerState;

const CODE_BITS: u32 = 3;
const COUNT_BITS: u32 = 15;
const PROBES_SHIFT: u32 = CODE_BITS;
const WINS_SHIFT: u32 = CODE_BITS + COUNT_BITS;
const GEN_SHIFT: u32 = CODE_BITS + 2 * COUNT_BITS;
const CODE_MASK: u64 = (1 << CODE_BITS) - 1;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;
pub(super) const ONE_PROBE: u64 = 1 << PROBES_SHIFT;
pub(super) const ONE_WIN: u64 = 1 << WINS_SHIFT;

pub(super) const CLOSED: u64 = 0;
pub(super) const OPEN: u64 = 1;
pub(super) const HALF_OPEN: u64 = 2;
pub(super) const FORCED_OPEN: u64 = 3;
pub(super) const DISABLED: u64 = 4;
pub(super) const METRICS_ONLY: u64 = 5;

pub(super) fn code(word: u64) -> u64 {
    word & CODE_MASK
}

pub(super) fn probes(word: u64) -> u32 {
    (word >> PROBES_SHIFT & COUNT_MASK) as u32
}

pub(super) fn wins(word: u64) -> u32 {
    (word >> WINS_SHIFT & COUNT_MASK) as u32
}

pub(super) fn generation(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

pub(super) fn pack(code: u64, generation: u32, probes: u32) -> u64 {
    code | u64::from(probes) << PROBES_SHIFT | (u64::from(generation) & GEN_MASK) << GEN_SHIFT
}

pub(super) fn next_generation(word: u64) -> u32 {
    ((u64::from(generation(word)) + 1) & GEN_MASK) as u32
}

pub(super) fn saturate(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) fn state_of(code: u64) -> BreakerState {
    match code {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        FORCED_OPEN => BreakerState::ForcedOpen,
        DISABLED => BreakerState::Disabled,
        _ => BreakerState::MetricsOnly,
    }
}
