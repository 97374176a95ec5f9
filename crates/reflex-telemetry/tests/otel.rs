//! The OpenTelemetry instruments, through the SDK's in-memory exporter:
//! every exported value is the witness's totals', the duration histogram
//! included, and nothing is observed once the registration is dropped.
#![cfg(feature = "opentelemetry")]

mod traffic;

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use reflex_core::{BoxError, BreakerState};
use reflex_tests::traffic::Stack;
use reflex_witness::{Clock, Totals, Witness};
use tower::{Layer, ServiceExt, service_fn};
use traffic::{Series, series};

/// api calls db, with a breaker and a shed limit.
struct Traffic {
    witness: Witness,
    stack: Stack,
}

impl Traffic {
    fn new() -> Self {
        let (witness, stack) = traffic::witness(BreakerState::HalfOpen);
        Self { witness, stack }
    }

    /// Every outcome, signals of the other layers, then a cycle.
    async fn cycle(&self) {
        traffic::cycle(&self.witness, &self.stack).await;
    }
}

/// An exported point: a value (counters, gauges), or a histogram.
#[derive(Debug, PartialEq)]
enum Point {
    Value(f64),
    Histogram {
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

fn attributes<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
        .collect()
}

/// The last export's points, by series; the histograms' bounds are
/// checked against the witness's on the way.
fn exported(exporter: &InMemoryMetricExporter) -> BTreeMap<Series, Point> {
    let mut points = BTreeMap::new();
    let exports = exporter.get_finished_metrics().unwrap();
    let last = exports.last().unwrap();
    for metric in last.scope_metrics().flat_map(|s| s.metrics()) {
        let name = metric.name().to_owned();
        let mut add = |attrs, point| {
            assert!(
                points.insert((name.clone(), attrs), point).is_none(),
                "{name}"
            );
        };
        match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                assert!(sum.is_monotonic(), "{name}: a counter");
                for p in sum.data_points() {
                    add(attributes(p.attributes()), Point::Value(p.value() as f64));
                }
            }
            AggregatedMetrics::I64(MetricData::Sum(sum)) => {
                assert!(!sum.is_monotonic(), "{name}: an up-down counter");
                for p in sum.data_points() {
                    add(attributes(p.attributes()), Point::Value(p.value() as f64));
                }
            }
            AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                for p in gauge.data_points() {
                    add(attributes(p.attributes()), Point::Value(p.value() as f64));
                }
            }
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                assert_eq!(metric.unit(), "s");
                for p in histogram.data_points() {
                    let bounds: Vec<f64> = p.bounds().collect();
                    assert_eq!(bounds, reflex_witness::DURATION_BOUNDS);
                    let point = Point::Histogram {
                        counts: p.bucket_counts().collect(),
                        count: p.count(),
                        sum: p.sum(),
                    };
                    add(attributes(p.attributes()), point);
                }
            }
            other => panic!("{name}: not expected: {other:?}"),
        }
    }
    points
}

/// Every point `totals` stands for, by series; the duration histograms
/// from `start` on (the registration's totals: a histogram starts when it
/// is registered), none for a component with no duration since.
fn expected(totals: &Totals, start: &Totals) -> BTreeMap<Series, Point> {
    let mut points = BTreeMap::new();
    let mut put = |name: &str, attrs: &[(&str, &str)], point: Point| {
        points.insert(series(name, attrs), point);
    };
    for c in &totals.components {
        let component = ("reflex.component", c.component.as_str());
        for (outcome, n) in traffic::outcomes(c) {
            put(
                "reflex.requests",
                &[component, ("reflex.outcome", outcome)],
                value(n),
            );
        }
        for kind in &c.rejected {
            let attrs = [component, ("reflex.rejection.kind", kind.kind)];
            put("reflex.rejections", &attrs, value(kind.count));
        }
        let counters = [
            ("reflex.own_failures", c.own_failed),
            ("reflex.sheds", c.shed),
            ("reflex.retries", c.retries),
            ("reflex.retry.budget_exhausted", c.retry_budget_exhausted),
            ("reflex.coalesced", c.coalesced),
            ("reflex.active_requests", c.in_flight),
            ("reflex.slot.pending_requests", c.slot_queue_depth),
        ];
        for (name, n) in counters {
            put(name, &[component], value(n));
        }
        if let Some(limit) = c.shed_limit {
            put("reflex.shed.limit", &[component], value(limit));
        }
        if let Some(now) = c.breaker {
            for state in traffic::BREAKER_STATES {
                let attrs = [component, ("reflex.breaker.state", state)];
                put(
                    "reflex.breaker.state",
                    &attrs,
                    value(u64::from(now.as_str() == state)),
                );
            }
        }
        let d = &c.duration;
        let before = start.component(&c.component).map(|b| &b.duration);
        let counts: Vec<u64> = d
            .counts()
            .iter()
            .enumerate()
            .map(|(i, n)| n - before.map_or(0, |b| b.counts()[i]))
            .collect();
        let count = d.count() - before.map_or(0, |b| b.count());
        if count > 0 {
            let sum = d.sum() - before.map_or(0.0, |b| b.sum());
            let point = Point::Histogram { counts, count, sum };
            put("reflex.request.duration", &[component], point);
        }
    }
    for kind in &totals.reports {
        put(
            "reflex.reports",
            &[("reflex.report.kind", kind.kind)],
            value(kind.count),
        );
    }
    points
}

fn value(n: u64) -> Point {
    Point::Value(n as f64)
}

/// The histograms' sums agree to rounding; everything else exactly.
fn assert_same(exported: &BTreeMap<Series, Point>, expected: &BTreeMap<Series, Point>) {
    assert_eq!(
        exported.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same series"
    );
    for (series, want) in expected {
        match (&exported[series], want) {
            (
                Point::Histogram { counts, count, sum },
                Point::Histogram {
                    counts: c,
                    count: n,
                    sum: s,
                },
            ) => {
                assert_eq!((counts, count), (c, n), "{series:?}");
                assert!((sum - s).abs() <= s * 1e-12, "{series:?}: {sum} vs {s}");
            }
            (got, want) => assert_eq!(got, want, "{series:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_exported_value_is_the_witness_totals_and_none_once_the_registration_ends() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let traffic = Traffic::new();
    // A cycle before the registration: counted by the counters, not in
    // the histogram (it starts at the registration).
    traffic.cycle().await;
    let start = traffic.witness.totals();
    let registration =
        reflex_telemetry::otel::register(&traffic.witness, &provider.meter("reflex"));
    provider.force_flush().unwrap();
    let points = exported(&exporter);
    assert_same(&points, &expected(&start, &start));
    assert!(
        !points
            .keys()
            .any(|(name, _)| name == "reflex.request.duration")
    );
    traffic.cycle().await;
    traffic.cycle().await;
    provider.force_flush().unwrap();

    let totals = traffic.witness.totals();
    assert_eq!(totals.cycles, 3);
    let db = totals.component("db").unwrap();
    assert_eq!((db.succeeded, db.failed, db.cancelled), (12, 3, 3));
    assert_eq!(db.duration.count(), 15);
    assert_eq!(totals.reports_of("custom"), 1);
    let points = exported(&exporter);
    assert_same(&points, &expected(&totals, &start));

    // Ended: the next cycles are neither recorded nor observed.
    drop(registration);
    traffic.cycle().await;
    provider.force_flush().unwrap();
    let after = exported(&exporter);
    let requests = series(
        "reflex.requests",
        &[("reflex.component", "db"), ("reflex.outcome", "succeeded")],
    );
    assert!(
        !matches!(after.get(&requests), Some(Point::Value(n)) if *n > 12.0),
        "{after:?}"
    );
    let durations = series("reflex.request.duration", &[("reflex.component", "db")]);
    assert!(
        matches!(
            after.get(&durations),
            Some(Point::Histogram { count: 10, .. })
        ),
        "{:?}",
        after.get(&durations)
    );
    provider.shutdown().unwrap();
}

/// The histogram's count of `component` in the last export (0 if none).
fn histogram_count(exporter: &InMemoryMetricExporter, component: &str) -> u64 {
    let durations = series(
        "reflex.request.duration",
        &[("reflex.component", component)],
    );
    match exported(exporter).get(&durations) {
        Some(Point::Histogram { count, .. }) => *count,
        _ => 0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_cycle_records_at_most_4096_durations_and_carries_the_rest() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let ok = || service_fn(|()| async { Ok::<_, BoxError>(()) });
    let busy = witness.layer("busy").build().unwrap().layer(ok());
    let calm = witness.layer("calm").build().unwrap().layer(ok());
    // Before the registration: not replayed.
    for _ in 0..100 {
        busy.clone().oneshot(()).await.unwrap();
    }
    witness.cycle_now();
    let registration = reflex_telemetry::otel::register(&witness, &provider.meter("reflex"));
    for _ in 0..10_000 {
        busy.clone().oneshot(()).await.unwrap();
    }
    for _ in 0..10 {
        calm.clone().oneshot(()).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        witness.cycle_now();
        provider.force_flush().unwrap();
        seen.push((
            histogram_count(&exporter, "busy"),
            histogram_count(&exporter, "calm"),
        ));
    }
    assert_eq!(seen[0].0 + seen[0].1, 4_096, "{seen:?}");
    assert_eq!(seen[1].0 + seen[1].1, 8_192, "{seen:?}");
    assert_eq!(seen[2], (10_000, 10), "{seen:?}");
    assert_eq!(seen[3], (10_000, 10), "{seen:?}");
    let start = witness.totals();
    let busy_total = start.component("busy").unwrap().duration.count();
    assert_eq!(busy_total, 10_100);
    drop(registration);
    provider.shutdown().unwrap();
}
