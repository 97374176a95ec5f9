//! The layer's name in errors, and the checks every setting shares: a
//! builder refuses what it cannot honour with a [`ConfigError`], never a
//! panic.

use std::sync::atomic::{AtomicU64, Ordering};

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::counter::MAX_LIMIT;

/// The layer's name in [`ConfigError`]s.
pub(crate) const LAYER: &str = "shed";

pub(crate) fn hard_limit(setting: &'static str, limit: usize) -> Result<(), ConfigError> {
    if limit == 0 {
        return Err(ConfigError::new(
            LAYER,
            setting,
            ConfigErrorKind::Zero,
            "must be at least 1",
        ));
    }
    if limit > MAX_LIMIT {
        return Err(ConfigError::new(
            LAYER,
            setting,
            ConfigErrorKind::OutOfRange,
            format!("must be at most {MAX_LIMIT}"),
        ));
    }
    Ok(())
}

/// A fleet's cap: 0 is allowed (a replica holding none of its fleet's
/// permits refuses every request).
pub(crate) fn fleet_cap(cap: usize) -> Result<(), ConfigError> {
    if cap > MAX_LIMIT {
        return Err(ConfigError::new(
            LAYER,
            "fleet_cap",
            ConfigErrorKind::OutOfRange,
            format!("must be at most {MAX_LIMIT}"),
        ));
    }
    Ok(())
}

/// A fraction in `(0, 1]`, or `[0, 1)` when `zero_ok` (a reserve that may
/// be none but never the whole limit).
pub(crate) fn fraction(
    setting: &'static str,
    value: f64,
    zero_ok: bool,
) -> Result<(), ConfigError> {
    let valid = if zero_ok {
        (0.0..1.0).contains(&value)
    } else {
        value > 0.0 && value <= 1.0
    };
    if valid {
        return Ok(());
    }
    let range = if zero_ok { "in [0, 1)" } else { "in (0, 1]" };
    Err(ConfigError::new(
        LAYER,
        setting,
        ConfigErrorKind::OutOfRange,
        format!("must be a number {range}, got {value}"),
    ))
}

/// A fraction strictly between 0 and 1.
pub(crate) fn open_fraction(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value < 1.0 {
        return Ok(());
    }
    Err(ConfigError::new(
        LAYER,
        setting,
        ConfigErrorKind::OutOfRange,
        format!("must be a number in (0, 1), got {value}"),
    ))
}

pub(crate) fn not_zero<T: Default + PartialEq + Copy>(
    setting: &'static str,
    value: T,
) -> Result<(), ConfigError> {
    if value == T::default() {
        return Err(ConfigError::new(
            LAYER,
            setting,
            ConfigErrorKind::Zero,
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// `low` must not be above `high`.
pub(crate) fn not_above(
    setting: &'static str,
    low: usize,
    other: &'static str,
    high: usize,
) -> Result<(), ConfigError> {
    if low <= high {
        return Ok(());
    }
    Err(ConfigError::new(
        LAYER,
        setting,
        ConfigErrorKind::OutOfRange,
        format!("must not be above {other} ({setting} {low}, {other} {high})"),
    ))
}

pub(crate) fn soft_limit(soft: usize, hard: usize) -> Result<(), ConfigError> {
    if soft == 0 {
        return Err(ConfigError::new(
            LAYER,
            "soft_limit",
            ConfigErrorKind::Zero,
            "must be at least 1 (a soft limit of 0 would warn on every request)",
        ));
    }
    if soft >= hard {
        return Err(ConfigError::new(
            LAYER,
            "soft_limit",
            ConfigErrorKind::NotBelow,
            format!("must be below hard_limit (soft_limit {soft}, hard_limit {hard})"),
        ));
    }
    Ok(())
}

pub(crate) fn shares(shares: &[f64]) -> Result<(), ConfigError> {
    for &share in shares {
        fraction("share", share, false)?;
    }
    let total: f64 = shares.iter().sum();
    if total > 1.0 + 1e-9 {
        return Err(ConfigError::new(
            LAYER,
            "share",
            ConfigErrorKind::OutOfRange,
            format!("shares must add up to 1 at most, got {total}"),
        ));
    }
    Ok(())
}

/// A seed for an adaptive limit's probe jitter: different for every layer
/// of a process, and for every process.
pub(crate) fn seed() -> u64 {
    static LAYERS: AtomicU64 = AtomicU64::new(0);
    let layer = LAYERS.fetch_add(1, Ordering::Relaxed);
    (u64::from(std::process::id()) << 32) ^ layer.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
