//! The duration histogram: each cycle's new durations recorded into a
//! synchronous OpenTelemetry histogram (the API has no observable one),
//! from the registration on, at most [`MAX_RECORDS_PER_CYCLE`] `record`
//! calls a cycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use reflex_witness::{ComponentTotals, DURATION_BOUNDS, Totals};

use super::COMPONENT;

/// The witness's buckets: one per bound, and one above the last.
const BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// The most `record` calls one cycle makes, all components together; what
/// a cycle gained beyond it is recorded by the next cycles.
pub(crate) const MAX_RECORDS_PER_CYCLE: u64 = 4_096;

/// Records into `reflex.request.duration` what each cycle added to the
/// witness's fixed-bucket durations since the registration.
pub(super) struct DurationRecorder {
    histogram: Histogram<f64>,
    state: Mutex<State>,
}

/// What was recorded so far.
struct State {
    /// The newest cycle handed over.
    cycles: u64,
    /// Per component: the count and sum of each bucket recorded so far
    /// (the registration's totals to begin with: they are not recorded).
    done: HashMap<String, ([u64; BUCKETS], [f64; BUCKETS])>,
    /// Where the next cycle starts among the components, so that one
    /// busy component does not keep the others' carry waiting for ever.
    cursor: usize,
    /// The registration ended: nothing more is recorded.
    ended: bool,
}

type Done = ([u64; BUCKETS], [f64; BUCKETS]);

impl DurationRecorder {
    /// A recorder starting from `start`: the durations it holds are not
    /// recorded (a synchronous histogram starts when it is made).
    pub(super) fn new(meter: &Meter, start: &Totals) -> Self {
        let done = start
            .components
            .iter()
            .map(|c| {
                (
                    c.component.clone(),
                    (c.duration.counts(), c.duration.sums()),
                )
            })
            .collect();
        Self {
            histogram: meter
                .f64_histogram("reflex.request.duration")
                .with_unit("s")
                .with_description("Durations of the requests that succeeded or failed.")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            state: Mutex::new(State {
                cycles: start.cycles,
                done,
                cursor: 0,
                ended: false,
            }),
        }
    }

    /// Records nothing from now on, not even in a cycle that already
    /// began (it waits for one that is recording).
    pub(super) fn end(&self) {
        self.lock().ended = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the durations `totals` holds beyond those recorded so far:
    /// per bucket, as many measurements as it gained, each at the mean of
    /// its gain (so the histogram's count, bucket counts and sum are the
    /// witness's gain since the registration), at most
    /// [`MAX_RECORDS_PER_CYCLE`] in all; the rest waits for the next
    /// cycles. Totals older than the ones handed over (two cycles run at
    /// once) are skipped.
    pub(super) fn record(&self, totals: &Arc<Totals>) {
        let mut state = self.lock();
        if state.ended || totals.cycles <= state.cycles {
            return;
        }
        state.cycles = totals.cycles;
        let n = totals.components.len();
        let start = state.cursor % n.max(1);
        let mut budget = MAX_RECORDS_PER_CYCLE;
        for i in 0..n {
            let component = &totals.components[(start + i) % n];
            let done = state
                .done
                .entry(component.component.clone())
                .or_insert(([0; BUCKETS], [0.0; BUCKETS]));
            let attributes = [KeyValue::new(COMPONENT, component.component.clone())];
            budget = self.record_component(done, component, &attributes, budget);
            if budget == 0 {
                // The next cycle starts with the one left short.
                state.cursor = (start + i) % n;
                return;
            }
        }
    }

    /// Records what `component` gained beyond `done`, at most `budget`
    /// measurements; returns the budget left.
    fn record_component(
        &self,
        done: &mut Done,
        component: &ComponentTotals,
        attributes: &[KeyValue],
        mut budget: u64,
    ) -> u64 {
        let (counts, sums) = (component.duration.counts(), component.duration.sums());
        for bucket in 0..BUCKETS {
            let gained = counts[bucket].saturating_sub(done.0[bucket]);
            if gained == 0 || budget == 0 {
                continue;
            }
            let mean = in_bucket(bucket, (sums[bucket] - done.1[bucket]) / gained as f64);
            let now = gained.min(budget);
            for _ in 0..now {
                self.histogram.record(mean, attributes);
            }
            budget -= now;
            done.0[bucket] += now;
            // All of it recorded: the witness's sum exactly, no rounding
            // carried on.
            done.1[bucket] = if now == gained {
                sums[bucket]
            } else {
                mean.mul_add(now as f64, done.1[bucket])
            };
        }
        budget
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

    #[tokio::test]
    async fn an_ended_recorder_records_nothing() {
        use opentelemetry::metrics::MeterProvider;
        use opentelemetry_sdk::metrics::{
            InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        };
        use tower::{Layer, ServiceExt, service_fn};
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let witness = reflex_witness::Witness::builder().build().unwrap();
        let recorder = DurationRecorder::new(&provider.meter("test"), &witness.totals());
        let ok = service_fn(|()| async { Ok::<_, reflex_core::BoxError>(()) });
        let db = witness.layer("db").build().unwrap().layer(ok);
        db.oneshot(()).await.unwrap();
        witness.cycle_now();
        // Ended while a cycle's call was on its way: it records nothing.
        recorder.end();
        recorder.record(&witness.totals());
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let metrics = exported.iter().flat_map(|m| m.scope_metrics());
        assert_eq!(metrics.flat_map(|s| s.metrics()).count(), 0);
        // Not ended, the same totals are recorded.
        let recorder = DurationRecorder::new(&provider.meter("test"), &Totals::default());
        recorder.record(&witness.totals());
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let metrics = exported.iter().flat_map(|m| m.scope_metrics());
        assert_eq!(metrics.flat_map(|s| s.metrics()).count(), 1);
    }
}
