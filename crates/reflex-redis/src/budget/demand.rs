//! [`Demand`]: how many permits a replica asks its fleet for, from what
//! its shed layer shows.
//!
//! - **Busy**, when the layer shed a request since the last look, holds
//!   nothing, or has calls in flight within a margin (a quarter block, at
//!   least 1) of the permits it holds: one block more than it holds.
//! - **Not busy**: the most it had in flight since the last renewal,
//!   rounded up to a block, plus one block of headroom, never more than it
//!   holds. An idle replica so comes down to one block, and keeps it: a
//!   replica that held nothing would shed the first request of every
//!   burst.
//!
//! Never above the cap, nor above the layer's own limit (permits it could
//! not use).

/// The demand side of one replica's budget.
#[derive(Debug, Clone)]
pub(super) struct Demand {
    block: usize,
    cap: usize,
    /// The most in flight since the last renewal.
    peak: usize,
}

/// What the shed layer showed at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Look {
    pub(super) in_flight: usize,
    /// Requests shed since the previous look.
    pub(super) shed: u64,
    /// The layer's limit without its fleet cap.
    pub(super) own_limit: usize,
}

impl Demand {
    pub(super) fn new(block: usize, cap: usize) -> Self {
        Self {
            block,
            cap,
            peak: 0,
        }
    }

    /// Permits to ask for, holding `held`, after `look`.
    pub(super) fn want(&mut self, held: usize, look: Look) -> usize {
        self.peak = self.peak.max(look.in_flight);
        let margin = (self.block / 4).max(1);
        let near = look.in_flight > 0 && look.in_flight.saturating_add(margin) >= held;
        let busy = look.shed > 0 || held == 0 || near;
        let want = if busy {
            held.saturating_add(self.block)
        } else {
            self.peak
                .div_ceil(self.block)
                .saturating_mul(self.block)
                .saturating_add(self.block)
                .min(held)
        };
        want.min(self.cap).min(look.own_limit)
    }

    /// Whether the last look showed a replica wanting more than it holds.
    pub(super) fn starved(want: usize, held: usize) -> bool {
        want > held
    }

    /// A renewal went out: the peak starts again.
    pub(super) fn renewed(&mut self) {
        self.peak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(in_flight: usize, shed: u64) -> Look {
        Look {
            in_flight,
            shed,
            own_limit: 50,
        }
    }

    #[test]
    fn a_busy_replica_asks_for_one_block_more() {
        let mut demand = Demand::new(4, 100);
        assert_eq!(demand.want(0, look(0, 0)), 4, "holding none is busy");
        assert_eq!(demand.want(8, look(3, 1)), 12, "it shed");
        assert_eq!(demand.want(8, look(7, 0)), 12, "within the margin");
        assert!(Demand::starved(12, 8));
    }

    #[test]
    fn an_idle_replica_comes_down_to_one_block_and_keeps_it() {
        let mut demand = Demand::new(4, 100);
        assert_eq!(demand.want(20, look(5, 0)), 12, "peak 5 → 8, plus a block");
        demand.renewed();
        assert_eq!(demand.want(12, look(0, 0)), 4);
        demand.renewed();
        assert_eq!(demand.want(4, look(0, 0)), 4, "one block stays");
        assert!(!Demand::starved(4, 4));
    }

    #[test]
    fn an_idle_replica_with_blocks_of_one_keeps_its_one_permit() {
        let mut demand = Demand::new(1, 100);
        assert_eq!(demand.want(1, look(0, 0)), 1, "idle, not busy");
        assert_eq!(demand.want(1, look(1, 0)), 2, "its one permit in use");
    }

    #[test]
    fn the_peak_since_the_last_renewal_counts_not_the_last_look() {
        let mut demand = Demand::new(4, 100);
        assert_eq!(demand.want(20, look(9, 0)), 16);
        assert_eq!(demand.want(20, look(0, 0)), 16, "the peak of 9 holds");
        demand.renewed();
        assert_eq!(demand.want(16, look(0, 0)), 4);
    }

    #[test]
    fn never_above_the_cap_nor_the_layers_own_limit() {
        let mut demand = Demand::new(4, 10);
        assert_eq!(demand.want(10, look(10, 3)), 10);
        let mut demand = Demand::new(4, 100);
        let small = Look {
            in_flight: 6,
            shed: 1,
            own_limit: 6,
        };
        assert_eq!(demand.want(6, small), 6);
        assert_eq!(demand.want(usize::MAX, look(1, 1)), 50, "no overflow");
    }
}
