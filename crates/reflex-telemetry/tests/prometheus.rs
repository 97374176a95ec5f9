//! The Prometheus exposition: the text `MetricsService` answers, parsed
//! back, holds every series of the witness's totals with their values.
#![cfg(feature = "prometheus")]

mod traffic;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use reflex_core::BreakerState;
use reflex_telemetry::prometheus::{CONTENT_TYPE, MetricsService};
use reflex_witness::Witness;
use tower::ServiceExt;
use traffic::{Series, series};

/// api calls db; three cycles of every outcome, signals of the other
/// layers, a breaker and a shed limit, a report.
async fn fed_witness() -> Witness {
    let (witness, stack) = traffic::witness(BreakerState::Open);
    for _ in 0..3 {
        traffic::cycle(&witness, &stack).await;
    }
    witness
}

/// The samples of an exposition, by series.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        let value = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().unwrap()
        };
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "{line}"
        );
    }
    samples
}

async fn scrape(service: MetricsService) -> (StatusCode, String, String) {
    let answer = service.oneshot(Request::new(())).await.unwrap();
    let content_type = answer.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let status = answer.status();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_exposition_holds_every_series_of_the_totals_with_its_value() {
    let witness = fed_witness().await;
    let (status, content_type, text) = scrape(MetricsService::new(&witness)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, CONTENT_TYPE);
    assert!(text.ends_with("# EOF\n"));
    let mut samples = parse(&text);
    let totals = witness.totals();
    // Takes each expected series out: whatever is left was not expected.
    let mut expect = |name: &str, labels: &[(&str, &str)], value: f64| {
        let got = samples.remove(&series(name, labels));
        assert_eq!(got, Some(value), "{name} {labels:?}");
    };
    for c in &totals.components {
        let name = c.component.as_str();
        let component = ("component", name);
        for (outcome, n) in traffic::outcomes(c) {
            expect(
                "reflex_requests_total",
                &[component, ("outcome", outcome)],
                n as f64,
            );
        }
        for kind in &c.rejected {
            let labels = [component, ("kind", kind.kind)];
            expect("reflex_rejections_total", &labels, kind.count as f64);
        }
        let counters = [
            ("reflex_own_failures_total", c.own_failed),
            ("reflex_sheds_total", c.shed),
            ("reflex_retries_total", c.retries),
            (
                "reflex_retry_budget_exhausted_total",
                c.retry_budget_exhausted,
            ),
            ("reflex_coalesced_total", c.coalesced),
            ("reflex_fleet_link_downs_total", c.fleet_link_downs),
            ("reflex_in_flight", c.in_flight),
            ("reflex_slot_queue_depth", c.slot_queue_depth),
        ];
        for (metric, n) in counters {
            expect(metric, &[component], n as f64);
        }
        if let Some(limit) = c.shed_limit {
            expect("reflex_shed_limit", &[component], limit as f64);
        }
        if let Some(up) = c.fleet_link_up {
            expect(
                "reflex_fleet_link_up",
                &[component],
                f64::from(u8::from(up)),
            );
        }
        if let Some(now) = c.breaker {
            for state in traffic::BREAKER_STATES {
                let on = f64::from(u8::from(now.as_str() == state));
                expect("reflex_breaker_state", &[component, ("state", state)], on);
            }
        }
        let d = &c.duration;
        let bounds = d
            .bounds()
            .iter()
            .map(|b| format!("{b:?}"))
            .chain(["+Inf".to_owned()]);
        for (le, n) in bounds.zip(d.cumulative()) {
            let labels = [component, ("le", le.as_str())];
            expect("reflex_request_duration_seconds_bucket", &labels, n as f64);
        }
        expect(
            "reflex_request_duration_seconds_count",
            &[component],
            d.count() as f64,
        );
        // The text writes the sum in full: parsed back, it is the same.
        expect("reflex_request_duration_seconds_sum", &[component], d.sum());
    }
    for kind in &totals.reports {
        expect(
            "reflex_reports_total",
            &[("kind", kind.kind)],
            kind.count as f64,
        );
    }
    assert!(samples.is_empty(), "not expected: {samples:?}");

    // And the numbers are the traffic's, not zeros everywhere.
    let db = totals.component("db").unwrap();
    assert_eq!(
        (db.succeeded, db.failed, db.ignored, db.cancelled),
        (12, 3, 3, 3)
    );
    assert_eq!(
        (db.rejected_of("shed"), db.rejected_of("slot_busy")),
        (3, 3)
    );
    assert_eq!(db.duration.cumulative()[14], 15);
    assert_eq!(db.breaker, Some(BreakerState::Open));
    assert_eq!(totals.component("api").unwrap().shed_limit, Some(48));
    assert_eq!(totals.reports_of("custom"), 1);
}

#[derive(Debug)]
struct Broken;

impl Collector for Broken {
    fn encode(&self, _: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        Err(fmt::Error)
    }
}

#[tokio::test]
async fn a_registry_that_cannot_be_encoded_is_a_500() {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Broken));
    let (status, content_type, text) =
        scrape(MetricsService::from_registry(Arc::new(registry))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(content_type.starts_with("text/plain"));
    assert_eq!(text, "the metrics could not be encoded\n");
}
