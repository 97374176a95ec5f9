//! What the retry crate's property tests share.

use proptest::prelude::*;
use reflex_retry::Jitter;

/// Every jitter mode.
pub(crate) const JITTERS: [Jitter; 4] = [
    Jitter::None,
    Jitter::Full,
    Jitter::Equal,
    Jitter::Decorrelated,
];

/// Any jitter mode.
pub(crate) fn jitter() -> impl Strategy<Value = Jitter> {
    proptest::sample::select(&JITTERS[..])
}
