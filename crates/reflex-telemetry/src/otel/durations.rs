//! The duration histogram: each cycle's new durations recorded into a
//! synchronous OpenTelemetry histogram (the API has no observable one).

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use reflex_witness::{DURATION_BOUNDS, Totals};

use super::COMPONENT;

/// Records into `reflex.request.duration` what each cycle added to the
/// witness's fixed-bucket durations.
pub(super) struct DurationRecorder {
    histogram: Histogram<f64>,
    /// The totals recorded so far.
    recorded: Mutex<Arc<Totals>>,
}

impl DurationRecorder {
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            histogram: meter
                .f64_histogram("reflex.request.duration")
                .with_unit("s")
                .with_description("Durations of the requests that succeeded or failed.")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            recorded: Mutex::new(Arc::new(Totals::default())),
        }
    }

    /// Records the durations `totals` holds beyond those recorded so far:
    /// per bucket, as many measurements as it gained, each at the mean of
    /// its gain (so the histogram's count, bucket counts and sum are the
    /// witness's). Totals older than the ones recorded (two cycles run at
    /// once) are skipped.
    pub(super) fn record(&self, totals: &Arc<Totals>) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if totals.cycles <= recorded.cycles {
            return;
        }
        for component in &totals.components {
            let before = recorded
                .component(&component.component)
                .map(|c| (c.duration.counts(), c.duration.sums()));
            let (counts, sums) = (component.duration.counts(), component.duration.sums());
            let attributes = [KeyValue::new(COMPONENT, component.component.clone())];
            for bucket in 0..counts.len() {
                let (count_before, sum_before) =
                    before.map_or((0, 0.0), |(c, s)| (c[bucket], s[bucket]));
                let gained = counts[bucket].saturating_sub(count_before);
                if gained == 0 {
                    continue;
                }
                let mean = in_bucket(bucket, (sums[bucket] - sum_before) / gained as f64);
                for _ in 0..gained {
                    self.histogram.record(mean, &attributes);
                }
            }
        }
        *recorded = Arc::clone(totals);
    }
}

/// `value` kept within bucket `bucket` (above the bound before it, at most
/// its own): a mean of values in a bucket is in it, but for rounding.
fn in_bucket(bucket: usize, value: f64) -> f64 {
    let upper = DURATION_BOUNDS
        .get(bucket)
        .copied()
        .unwrap_or(f64::INFINITY);
    let value = value.min(upper);
    match bucket.checked_sub(1).map(|below| DURATION_BOUNDS[below]) {
        // The next number above `lower` (bounds are positive).
        Some(lower) if value <= lower => f64::from_bits(lower.to_bits() + 1),
        _ => value.max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mean_is_kept_in_its_bucket() {
        assert_eq!(in_bucket(0, 0.003), 0.003);
        assert_eq!(in_bucket(0, 0.005_000_1), 0.005);
        assert!(in_bucket(1, 0.005) > 0.005);
        assert!(in_bucket(1, 0.005) < 0.005_000_1);
        assert_eq!(in_bucket(14, 20.0), 20.0);
        assert!(in_bucket(14, 10.0) > 10.0);
        assert_eq!(in_bucket(0, -1.0), 0.0);
    }
}
