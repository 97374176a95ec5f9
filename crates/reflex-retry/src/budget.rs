//! [`RetryBudget`]: retries as a fraction of recent requests, plus a floor.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::{ConfigError, ConfigErrorKind};

/// Credits are fixed-point: a retry costs `SCALE`, a request earns
/// `floor(ratio × SCALE)`. Rounding down means a ratio can only ever
/// under-allocate, never over-allocate: `n` requests fund at most
/// `ratio × n` retries, and at least that minus one (a ratio not exact in
/// millionths, like 1/3, loses its last fraction of a retry).
const SCALE: i64 = 1_000_000;
const BUCKETS: u64 = 10;

/// Limits retries to a fraction of the requests of the last `ttl`, plus a
/// floor of retries per second, as Finagle's budget does. Shared by every
/// clone of a retry layer.
///
/// Credits expire within one bucket (a tenth of `ttl`) of their time: a
/// retry racing the sweep at a bucket boundary may still spend credits a
/// bucket past their `ttl`, never more than the balance holds.
///
/// Every request deposits `ratio` of a retry; a retry withdraws one whole
/// retry if the balance holds it. Deposits and withdrawals expire after
/// `ttl` (in ten buckets). Withdrawal is a compare-and-swap on one balance,
/// so racing retries never overdraw it.
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
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2)?;
/// let now = Duration::from_secs(1);
/// for _ in 0..10 {
///     budget.deposit(now);
/// }
/// assert!(budget.withdraw(now));
/// assert!(budget.withdraw(now));
/// assert!(!budget.withdraw(now), "10 requests fund exactly 2 retries");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    bucket_nanos: u64,
    /// The reserve plus every live bucket's net.
    balance: AtomicI64,
    buckets: Box<[Bucket]>,
    /// The newest epoch swept for expired buckets.
    swept: AtomicU64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Epoch + 1; 0 is "unused".
    epoch: AtomicU64,
    /// Deposits minus withdrawals of that epoch.
    net: AtomicI64,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget of `ratio` retries per request (0 to 1000) over the last
    /// `ttl` (at least ten nanoseconds), plus `min_per_sec` retries a second
    /// whatever the traffic.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `ttl` is too short, `ratio` is negative, above
    /// 1000 or not finite, or the floor overflows.
    pub fn new(ttl: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, ConfigError> {
        let err = |kind, reason: String| ConfigError::new("retry", "budget", kind, reason);
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
        Ok(Self {
            deposit: (ratio * SCALE as f64).floor() as i64,
            bucket_nanos,
            // The floor: credits no deposit made and no expiry takes.
            balance: AtomicI64::new(reserve as i64),
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
            swept: AtomicU64::new(0),
        })
    }

    /// A request was made at `now`: deposit its share of a retry.
    pub fn deposit(&self, now: Duration) {
        if self.deposit > 0 {
            self.add(now, self.deposit);
        }
    }

    /// A retry is wanted at `now`: `true` (and the retry is paid for) if
    /// the budget holds one.
    pub fn withdraw(&self, now: Duration) -> bool {
        self.sweep(self.epoch(now));
        let mut balance = self.balance.load(Ordering::Acquire);
        loop {
            if balance < SCALE {
                return false;
            }
            match self.balance.compare_exchange_weak(
                balance,
                balance - SCALE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => balance = actual,
            }
        }
        // Paid from the balance; the bucket records it so it expires with
        // the deposits of its time.
        self.bucket(now).net.fetch_sub(SCALE, Ordering::AcqRel);
        true
    }

    /// Whole retries the budget holds now (after expiring what is old).
    pub fn remaining(&self, now: Duration) -> u64 {
        self.sweep(self.epoch(now));
        (self.balance.load(Ordering::Acquire) / SCALE)
            .max(0)
            .unsigned_abs()
    }

    fn epoch(&self, now: Duration) -> u64 {
        u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) / self.bucket_nanos + 1
    }

    fn add(&self, now: Duration, amount: i64) {
        let bucket = self.bucket(now);
        bucket.net.fetch_add(amount, Ordering::AcqRel);
        self.balance.fetch_add(amount, Ordering::AcqRel);
    }

    /// The bucket of `now`'s epoch, taken over from an older epoch if need
    /// be (its net leaves the balance).
    fn bucket(&self, now: Duration) -> &Bucket {
        let epoch = self.epoch(now);
        self.sweep(epoch);
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        self.take_over(bucket, epoch);
        bucket
    }

    fn take_over(&self, bucket: &Bucket, epoch: u64) {
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen < epoch {
            let stale = bucket.net.load(Ordering::Acquire);
            if bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                bucket.net.fetch_sub(stale, Ordering::AcqRel);
                self.balance.fetch_sub(stale, Ordering::AcqRel);
            }
        }
    }

    /// Once per epoch, expires every bucket older than the window, so
    /// credits of a quiet past do not linger until their bucket is reused.
    fn sweep(&self, epoch: u64) {
        let swept = self.swept.load(Ordering::Acquire);
        if swept >= epoch
            || self
                .swept
                .compare_exchange(swept, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let oldest_live = epoch.saturating_sub(BUCKETS - 1);
        for bucket in self.buckets.iter() {
            let seen = bucket.epoch.load(Ordering::Acquire);
            if seen != 0 && seen < oldest_live {
                // Taking it over for "unused" (0 < any live epoch) would be
                // a move backwards; take it over for its successor instead.
                self.take_over(bucket, seen + BUCKETS);
            }
        }
    }
}
