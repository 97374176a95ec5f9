//! The witness's numbers as OpenTelemetry instruments, on the
//! `opentelemetry` API: bring the SDK and the exporter, and
//! [`register`] the witness with a [`Meter`] of yours.
//!
//! Counters and gauges are observable instruments: their callbacks read
//! the witness's [`Totals`](reflex_witness::Totals) (handed over by each cycle) when the SDK
//! collects. The duration histogram cannot be: the API has no observable
//! histogram. A cycle hook ([`Witness::on_cycle`]) records, at the end of
//! each cycle, what the cycle added to each bucket of the witness's
//! fixed-bucket durations into a synchronous [`Histogram`](opentelemetry::metrics::Histogram),
//! as many measurements as the bucket gained, each at the mean of what it
//! gained. With the advised bounds (the witness's own, set on the
//! instrument), the exported count, bucket counts and sum are the
//! witness's; with bounds of your own (a view), each measurement is
//! within its witness bucket.
//!
//! The histogram starts at the registration, as any synchronous
//! instrument starts when it is made: the durations the witness held then
//! are not recorded (the counters, observed, are since the witness
//! started). Recording costs one `record` per request that ended, off the
//! request path, on the witness's cycle, and at most
//! 4 096 `record` calls a cycle, all components together: a cycle that
//! ended more requests leaves the rest to the next cycles (quiet ones
//! included), so that the histogram lags behind the witness while
//! traffic stays above about 4 096 requests a cycle, and catches up once
//! it drops. The bound is on the cycle's cost: 4 096 times what one
//! `record` costs your SDK.
//!
//! # The instruments
//!
//! After the semantic conventions where one exists
//! (`http.server.request.duration`, `http.server.active_requests`,
//! `db.client.connection.pending_requests`), `reflex.*` where none does.
//! Every one carries `reflex.component` (but `reflex.reports`).
//!
//! | name | instrument | unit | attributes | what |
//! |---|---|---|---|---|
//! | `reflex.request.duration` | histogram (f64) | `s` | | durations of the requests that succeeded or failed, bounds [`DURATION_BOUNDS`](reflex_witness::DURATION_BOUNDS) |
//! | `reflex.requests` | observable counter | `{request}` | `reflex.outcome` | requests that ended: `succeeded`, `failed`, `ignored`, `cancelled`, `rejected` |
//! | `reflex.own_failures` | observable counter | `{request}` | | failures of the component's own |
//! | `reflex.rejections` | observable counter | `{request}` | `reflex.rejection.kind` | refusals by kind |
//! | `reflex.sheds` | observable counter | `{request}` | | requests the shed layer refused |
//! | `reflex.retries` | observable counter | `{retry}` | | retries made |
//! | `reflex.retry.budget_exhausted` | observable counter | `{retry}` | | retries the retry budget refused |
//! | `reflex.coalesced` | observable counter | `{request}` | | requests answered by an identical request's call or the dedup cache |
//! | `reflex.active_requests` | observable up-down counter | `{request}` | | requests in flight |
//! | `reflex.breaker.state` | observable gauge | `1` | `reflex.breaker.state` | 1 for the breaker's state, 0 for the others |
//! | `reflex.shed.limit` | observable gauge | `{request}` | | the shed layer's hard limit |
//! | `reflex.slot.pending_requests` | observable up-down counter | `{request}` | | requests waiting in the slot queues |
//! | `reflex.reports` | observable counter | `{report}` | `reflex.report.kind` | witness reports by kind |
//!
//! Counters are since the witness started; gauges as of its last cycle.
//!
//! # Examples
//!
//! ```
//! use opentelemetry::metrics::MeterProvider;
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//! use reflex_witness::Witness;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Your SDK's provider, with your exporter's reader.
//! let provider = SdkMeterProvider::builder().build();
//! let witness = Witness::builder().build()?;
//! let registration = reflex_telemetry::otel::register(&witness, &provider.meter("reflex"));
//! // ... serve; the instruments report until `registration` is dropped.
//! drop(registration);
//! # Ok(())
//! # }
//! ```

mod durations;
mod observe;

use std::fmt;
use std::sync::Arc;

use opentelemetry::metrics::Meter;
use reflex_witness::{CycleHook, Witness};

use durations::DurationRecorder;
use observe::Latest;

/// The attribute naming the component.
const COMPONENT: &str = "reflex.component";

/// Registers `witness`'s instruments with `meter` (see the
/// [module docs](self) for the list): they report until the returned
/// [`Registration`] is dropped. The duration histogram starts now: the
/// durations the witness holds already are not recorded.
///
/// Registering one witness twice with one meter reports its counters
/// twice: register it once.
pub fn register(witness: &Witness, meter: &Meter) -> Registration {
    let latest = Arc::new(Latest::default());
    let start = witness.totals();
    latest.start(Arc::clone(&start));
    observe::instruments(meter, &latest);
    let recorder = Arc::new(DurationRecorder::new(meter, &start));
    let hook = witness.on_cycle({
        let latest = Arc::clone(&latest);
        let recorder = Arc::clone(&recorder);
        move |cycle| {
            latest.offer(cycle.totals);
            // Once the registration ended, records nothing, even in a
            // call picked up before.
            recorder.record(cycle.totals);
        }
    });
    Registration {
        latest,
        recorder,
        _hook: hook,
    }
}

/// A witness's instruments, registered with a meter by [`register`]:
/// while it lives, each cycle records its durations and the callbacks
/// observe the totals. Dropped, the durations stop and the callbacks
/// observe nothing (the API cannot take callbacks back from a meter).
///
/// It does not keep the witness alive.
#[must_use = "the instruments report nothing once the registration is dropped"]
pub struct Registration {
    latest: Arc<Latest>,
    recorder: Arc<DurationRecorder>,
    _hook: CycleHook,
}

// === impl Registration ===

impl Drop for Registration {
    fn drop(&mut self) {
        self.latest.end();
        self.recorder.end();
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("cycles", &self.latest.get().map(|t| t.cycles))
            .finish_non_exhaustive()
    }
}
