//! The outcomes every export counts requests by, with one name each.

use reflex_witness::ComponentTotals;

/// `c`'s requests that ended, by outcome: each outcome's name (the
/// `outcome` label or attribute) and its count.
pub(crate) fn outcomes(c: &ComponentTotals) -> [(&'static str, u64); 5] {
    [
        ("succeeded", c.succeeded),
        ("failed", c.failed),
        ("ignored", c.ignored),
        ("cancelled", c.cancelled),
        ("rejected", c.rejected_total()),
    ]
}
