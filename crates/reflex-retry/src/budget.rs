//! [`RetryBudget`]: retries as a fraction of recent requests, plus a floor.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::LAYER;

/// Credits are fixed-point: a retry costs `SCALE`, a request earns
/// `floor(ratio × SCALE)`. Rounding down means a ratio can only ever
/// under-allocate, never over-allocate: `n` requests fund at most
/// `ratio × n` retries, and at least that minus one (a ratio not exact in
/// millionths, like 1/3, loses its last fraction of a retry).
const SCALE: i64 = 1_000_000;
const BUCKETS: u64 = 10;
/// A deposit reads the clock about once in this many (between half of it
/// and all of it).
const DEPOSITS_PER_TICK: i64 = 64;

/// Limits retries to a fraction of the requests of the last `ttl`, plus a
/// floor of retries per second, as Finagle's budget does. Shared by every
/// clone of a retry layer.
///
/// Every request deposits `ratio` of a retry; a retry withdraws one whole
/// retry if the budget holds one. Deposits and withdrawals sit in ten
/// buckets, each a tenth of `ttl`, and expire with their bucket.
///
/// # Cost
///
/// A deposit is one atomic load and one `fetch_add`, and reads the clock
/// once in 32 to 64 deposits: requests are the hot path, retries are not. A
/// withdrawal reads the clock and sums the ten buckets.
///
/// # Precision
///
/// - **Never over-allocates.** Racing withdrawals each take their retry
///   and then check that the balance did not go below zero, giving it back
///   if it did: two retries never share one credit.
/// - **May under-allocate, boundedly.** Deposits land in the bucket of the
///   last clock reading, which is at most 64 deposits old, so at low traffic
///   the credits of up to 64 requests may expire a little early; retries
///   spent from one bucket's deposits stay charged to the bucket of their
///   own time. Both err towards fewer retries.
/// - Credits expire within one bucket (a tenth of `ttl`) of their time.
///
/// Time is passed in (`now`: time since any fixed origin), so the budget
/// is a pure structure the layer drives with its clock and tests drive with
/// theirs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_retry::RetryBudget;
///
/// // Retries up to 20% of requests, no floor.
/// let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10))?;
/// let now = Duration::from_secs(1);
/// for _ in 0..10 {
///     budget.deposit(|| now);
/// }
/// assert!(budget.withdraw(now));
/// assert!(budget.withdraw(now));
/// assert!(!budget.withdraw(now), "10 requests fund exactly 2 retries");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    /// A deposit that takes a bucket's net across a multiple of
    /// `2^tick_shift` reads the clock: `2^tick_shift` is between 32 and 64
    /// deposits, so this costs two shifts, not a division.
    tick_shift: u32,
    /// The floor: credits no deposit made and no expiry takes.
    reserve: i64,
    bucket_nanos: u64,
    /// The epoch (+ 1; 0 before any clock reading) of the newest clock
    /// reading: deposits go to its bucket.
    current: AtomicU64,
    buckets: Box<[Bucket]>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// The epoch (+ 1) whose deposits and withdrawals `net` holds.
    epoch: AtomicU64,
    /// Deposits minus withdrawals of that epoch.
    net: AtomicI64,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget of `ratio` retries per request (0 to 1000) over the last
    /// `ttl` (at least ten nanoseconds), plus `min_per_sec` retries a second
    /// whatever the traffic. The arguments come in the order of
    /// [`RetryBuilder::budget`](crate::RetryBuilder::budget)'s.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `ttl` is too short, `ratio` is negative, above
    /// 1000 or not finite, or the floor overflows.
    pub fn new(ratio: f64, min_per_sec: u32, ttl: Duration) -> Result<Self, ConfigError> {
        let err = |kind, reason: String| ConfigError::new(LAYER, "budget", kind, reason);
        let bucket_nanos = u64::try_from(ttl.as_nanos() / u128::from(BUCKETS)).unwrap_or(u64::MAX);
        if bucket_nanos == 0 {
            return Err(err(
                ConfigErrorKind::Zero,
                "ttl must be at least 10 ns".into(),
            ));
        }
        if !(ratio.is_finite() && (0.0..=1000.0).contains(&ratio)) {
            return Err(err(
                ConfigErrorKind::OutOfRange,
                format!("ratio must be in [0, 1000], got {ratio}"),
            ));
        }
        let reserve = (f64::from(min_per_sec) * ttl.as_secs_f64() * SCALE as f64).floor();
        if reserve >= i64::MAX as f64 / 4.0 {
            return Err(err(
                ConfigErrorKind::OutOfRange,
                "min_per_sec × ttl is too large".into(),
            ));
        }
        let deposit = (ratio * SCALE as f64).floor() as i64;
        Ok(Self {
            deposit,
            tick_shift: (deposit.max(1) * DEPOSITS_PER_TICK).ilog2(),
            reserve: reserve as i64,
            bucket_nanos,
            current: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
        })
    }

    /// A request was made: deposit its share of a retry. `now` is called
    /// once in 32 to 64 deposits, to move deposits on to the bucket of the
    /// time.
    #[inline]
    pub fn deposit(&self, now: impl FnOnce() -> Duration) {
        if self.deposit == 0 {
            return;
        }
        let current = self.current.load(Ordering::Acquire);
        let before = self
            .bucket_of(current)
            .net
            .fetch_add(self.deposit, Ordering::AcqRel);
        if before >> self.tick_shift != before.wrapping_add(self.deposit) >> self.tick_shift {
            let (now, wiped) = self.advance(now(), current);
            if wiped {
                // This deposit's bucket was stale and this call emptied it:
                // the deposit belongs to now.
                self.bucket_of(now)
                    .net
                    .fetch_add(self.deposit, Ordering::AcqRel);
            }
        }
    }

    /// A retry is wanted at `now`: `true` (and the retry is paid for) if
    /// the budget holds one.
    pub fn withdraw(&self, now: Duration) -> bool {
        let (current, _) = self.advance(now, u64::MAX);
        if self.balance(current) < SCALE {
            return false;
        }
        let bucket = self.bucket_of(current);
        bucket.net.fetch_sub(SCALE, Ordering::AcqRel);
        // Racing withdrawals may all have seen the last credit: each checks
        // after taking it, and gives it back if the balance went below zero.
        if self.balance(current) < 0 {
            bucket.net.fetch_add(SCALE, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Whole retries the budget holds at `now` (after expiring what is old).
    pub fn remaining(&self, now: Duration) -> u64 {
        let (current, _) = self.advance(now, u64::MAX);
        (self.balance(current) / SCALE).max(0).unsigned_abs()
    }

    fn epoch(&self, now: Duration) -> u64 {
        (u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) / self.bucket_nanos).saturating_add(1)
    }

    fn bucket_of(&self, epoch: u64) -> &Bucket {
        &self.buckets[(epoch % BUCKETS) as usize]
    }

    /// The reserve plus the net of every bucket of the window ending at
    /// epoch `current`.
    fn balance(&self, current: u64) -> i64 {
        let oldest_live = current.saturating_sub(BUCKETS - 1);
        self.buckets
            .iter()
            .filter(|bucket| bucket.epoch.load(Ordering::Acquire) >= oldest_live)
            .fold(self.reserve, |sum, bucket| {
                sum.saturating_add(bucket.net.load(Ordering::Acquire))
            })
    }

    /// Moves the current epoch on to `now`'s; whoever moves it takes over
    /// every bucket whose epoch left the window, emptying it. Returns the
    /// current epoch (`now`'s, or a newer one another thread set), and
    /// whether this call emptied the bucket of epoch `watched`.
    fn advance(&self, now: Duration, watched: u64) -> (u64, bool) {
        let epoch = self.epoch(now);
        let mut seen = self.current.load(Ordering::Acquire);
        while seen < epoch {
            match self.current.compare_exchange_weak(
                seen,
                epoch,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (epoch, self.expire(epoch, watched)),
                Err(actual) => seen = actual,
            }
        }
        (seen, false)
    }

    /// Gives each bucket the epoch it holds in the window ending at
    /// `current`, emptying those that held an older one; `true` if one it
    /// emptied held epoch `watched`. Bucket epochs only move forwards, so a
    /// slower thread expiring for an older epoch never empties a newer
    /// bucket.
    fn expire(&self, current: u64, watched: u64) -> bool {
        let mut wiped = false;
        for (index, bucket) in (0..BUCKETS).zip(self.buckets.iter()) {
            // The newest epoch <= current that maps to this bucket, if any.
            let Some(target) = current.checked_sub((current % BUCKETS + BUCKETS - index) % BUCKETS)
            else {
                continue;
            };
            let seen = bucket.epoch.load(Ordering::Acquire);
            if seen < target
                && bucket
                    .epoch
                    .compare_exchange(seen, target, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                bucket.net.swap(0, Ordering::AcqRel);
                wiped |= seen == watched && index == watched % BUCKETS;
            }
        }
        wiped
    }
}
