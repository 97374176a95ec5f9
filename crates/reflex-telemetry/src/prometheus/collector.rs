//! [`WitnessCollector`]: the witness's totals as Prometheus metric
//! families, read at each scrape.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use reflex_core::BreakerState;
use reflex_witness::{ComponentTotals, Totals, Witness};

use crate::outcomes::outcomes;

/// The witness's numbers as Prometheus metrics, read from
/// [`Witness::totals`] at each scrape: counters since the witness started,
/// gauges of its last cycle. Register it with a
/// [`Registry`](prometheus_client::registry::Registry) of yours, or let
/// [`MetricsService::new`](super::MetricsService::new) do it.
///
/// A scrape reads the totals (a lock held for an `Arc` clone) and writes
/// text: nothing on the request path. The collector holds a handle of the
/// witness, which lives as long as it does.
///
/// # Examples
///
/// ```
/// use prometheus_client::registry::Registry;
/// use reflex_telemetry::prometheus::WitnessCollector;
/// use reflex_witness::Witness;
///
/// let witness = Witness::builder().build()?;
/// let _db = witness.layer("db").build()?;
/// witness.cycle_now();
///
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(WitnessCollector::new(&witness)));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry)?;
/// assert!(text.contains(r#"reflex_requests_total{component="db",outcome="succeeded"} 0"#));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WitnessCollector {
    witness: Witness,
}

/// A counter of one component.
type Count = fn(&ComponentTotals) -> u64;

/// A gauge of one component, if it has it.
type Level = fn(&ComponentTotals) -> Option<u64>;

// === impl WitnessCollector ===

impl WitnessCollector {
    /// A collector of `witness`'s totals.
    pub fn new(witness: &Witness) -> Self {
        Self {
            witness: witness.clone(),
        }
    }
}

impl fmt::Debug for WitnessCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessCollector")
            .field("witness", &self.witness)
            .finish()
    }
}

impl Collector for WitnessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let totals = self.witness.totals();
        encode_durations(&mut encoder, &totals)?;
        encode_requests(&mut encoder, &totals)?;
        let counters: [(&str, &str, Count); 6] = [
            (
                "reflex_own_failures",
                "Failed requests of the component's own (none of their calls below failed).",
                |c| c.own_failed,
            ),
            ("reflex_sheds", "Requests the shed layer refused.", |c| {
                c.shed
            }),
            ("reflex_retries", "Retries made.", |c| c.retries),
            (
                "reflex_retry_budget_exhausted",
                "Retries the retry budget refused.",
                |c| c.retry_budget_exhausted,
            ),
            (
                "reflex_coalesced",
                "Requests answered by an identical request's call or the dedup cache.",
                |c| c.coalesced,
            ),
            (
                "reflex_fleet_link_downs",
                "Times the link to the fleet's shared state (redis) went down.",
                |c| c.fleet_link_downs,
            ),
        ];
        for (name, help, count) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for c in &totals.components {
                let labels = [("component", c.component.as_str())];
                sample(&mut family, &labels, MetricType::Counter, count(c))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "reflex_rejections",
            "Requests refused by a layer of the stack, by kind.",
            None,
            MetricType::Counter,
        )?;
        for c in &totals.components {
            for kind in &c.rejected {
                let labels = [("component", c.component.as_str()), ("kind", kind.kind)];
                sample(&mut family, &labels, MetricType::Counter, kind.count)?;
            }
        }
        encode_gauges(&mut encoder, &totals)?;
        let mut family = encoder.encode_descriptor(
            "reflex_reports",
            "Witness reports written, by kind (every detector of your own is `custom`).",
            None,
            MetricType::Counter,
        )?;
        for kind in &totals.reports {
            sample(
                &mut family,
                &[("kind", kind.kind)],
                MetricType::Counter,
                kind.count,
            )?;
        }
        Ok(())
    }
}

/// One sample of `family`, a counter or a gauge.
fn sample<S: EncodeLabelSet>(
    family: &mut MetricEncoder<'_>,
    labels: &S,
    kind: MetricType,
    value: u64,
) -> fmt::Result {
    let mut metric = family.encode_family(labels)?;
    if kind == MetricType::Counter {
        metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
    } else {
        metric.encode_gauge(&value)
    }
}

fn encode_durations(encoder: &mut DescriptorEncoder<'_>, totals: &Totals) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "reflex_request_duration",
        "Durations of the requests that succeeded or failed (sum approximate, within 1/32).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for c in &totals.components {
        let durations = &c.duration;
        let buckets: Vec<(f64, u64)> = durations
            .bounds()
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(durations.counts())
            .collect();
        family
            .encode_family(&[("component", c.component.as_str())])?
            .encode_histogram::<NoLabelSet>(durations.sum(), durations.count(), &buckets, None)?;
    }
    Ok(())
}

fn encode_requests(encoder: &mut DescriptorEncoder<'_>, totals: &Totals) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "reflex_requests",
        "Requests that ended, by outcome.",
        None,
        MetricType::Counter,
    )?;
    for c in &totals.components {
        for (outcome, count) in outcomes(c) {
            let labels = [("component", c.component.as_str()), ("outcome", outcome)];
            sample(&mut family, &labels, MetricType::Counter, count)?;
        }
    }
    Ok(())
}

fn encode_gauges(encoder: &mut DescriptorEncoder<'_>, totals: &Totals) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "reflex_breaker_state",
        "The breaker's state at the witness's last cycle: 1 for the current state, 0 for the others.",
        None,
        MetricType::Gauge,
    )?;
    for c in &totals.components {
        let Some(now) = c.breaker else { continue };
        for &state in BreakerState::ALL {
            let labels = [
                ("component", c.component.as_str()),
                ("state", state.as_str()),
            ];
            sample(
                &mut family,
                &labels,
                MetricType::Gauge,
                u64::from(state == now),
            )?;
        }
    }
    let gauges: [(&str, &str, Level); 4] = [
        (
            "reflex_in_flight",
            "Requests in flight at the witness's last cycle.",
            |c| Some(c.in_flight),
        ),
        (
            "reflex_shed_limit",
            "The shed layer's hard limit at the witness's last cycle.",
            |c| c.shed_limit,
        ),
        (
            "reflex_slot_queue_depth",
            "Requests waiting in the component's slot queues at the witness's last cycle.",
            |c| Some(c.slot_queue_depth),
        ),
        (
            "reflex_fleet_link_up",
            "1 while the component shares state with its fleet through redis, 0 while it decides alone.",
            |c| c.fleet_link_up.map(u64::from),
        ),
    ];
    for (name, help, level) in gauges {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for c in &totals.components {
            if let Some(value) = level(c) {
                let labels = [("component", c.component.as_str())];
                sample(&mut family, &labels, MetricType::Gauge, value)?;
            }
        }
    }
    Ok(())
}
