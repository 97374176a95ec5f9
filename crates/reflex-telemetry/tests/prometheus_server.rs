//! A real Prometheus server scrapes `MetricsService`: a witness fed
//! traffic through a reflex preset (witness, shed, breaker) is served by
//! axum on loopback, Prometheus scrapes it every second, and a query
//! through its HTTP API returns the series with the right labels and
//! values.
//!
//! Needs the `prometheus` binary (Debian's `prometheus`; `PROMETHEUS_BIN`
//! says where it is when not `prometheus` on the path). Run with
//! `cargo test -p reflex-telemetry --features prometheus --test
//! prometheus_server -- --ignored`.
#![cfg(feature = "prometheus")]

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reflex::Preset;
use reflex::core::BoxError;
use reflex::witness::Witness;
use reflex_telemetry::prometheus::MetricsService;
use serde_json::Value;

use common::{dying_with_us, free_port};
use tower::{ServiceExt, service_fn};

/// A Prometheus server, killed (and its directory removed) when dropped,
/// whatever the test did.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `target` every
    /// second, its configuration and storage in a directory of its own.
    fn start(target: SocketAddr) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("reflex-prometheus-{}-{nanos}", std::process::id()));
        fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: reflex\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = free_port();
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_owned());
        let log = File::create(dir.join("prometheus.log")).unwrap();
        let child = dying_with_us(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin} ({e}): install Debian's prometheus or set PROMETHEUS_BIN"
                )
            });
        Self { child, dir, addr }
    }

    /// The end of its log, for a failure's message.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// How long one HTTP call to Prometheus may take.
const CALL: Duration = Duration::from_secs(10);

/// The result of an instant query, as `(labels, value)`; `None` while
/// Prometheus does not answer yet.
async fn query(
    client: &Client<HttpConnector, Empty<Bytes>>,
    prometheus: SocketAddr,
    expr: &str,
) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
    let uri = format!("http://{prometheus}/api/v1/query?query={expr}");
    let answer = tokio::time::timeout(CALL, client.get(uri.parse().unwrap()))
        .await
        .ok()?
        .ok()?;
    let body = tokio::time::timeout(CALL, answer.into_body().collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    let json: Value = serde_json::from_slice(&body).ok()?;
    let result = json["data"]["result"].as_array()?;
    result
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()?
                .iter()
                .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect::<Option<_>>()?;
            let value = series["value"][1].as_str()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

/// Asks `expr` until its series, keyed by `label`, are `expected` (at most
/// 30 s); what they were last, else.
async fn wait_for(
    client: &Client<HttpConnector, Empty<Bytes>>,
    prometheus: &Prometheus,
    expr: &str,
    label: &str,
    expected: &BTreeMap<String, f64>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(result) = query(client, prometheus.addr, expr).await {
            let found: BTreeMap<String, f64> = result
                .iter()
                .filter(|(labels, _)| {
                    labels.get("component").map(String::as_str) == Some("db")
                        && labels.get("job").map(String::as_str) == Some("reflex")
                })
                .filter_map(|(labels, value)| Some((labels.get(label)?.clone(), *value)))
                .collect();
            if &found == expected {
                return Ok(());
            }
            last = Some(result);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "{expr} not {expected:?} within 30 s; last: {last:?}\nprometheus log:\n{}",
        prometheus.log_tail()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the prometheus binary: run by .ci/run"]
async fn prometheus_scrapes_the_series_with_their_labels_and_values() {
    // db behind a preset (witness, shed, breaker): 12 successes, 3
    // failures (below the breaker's threshold), then one cycle, so the
    // totals hold still while Prometheus scrapes.
    let witness = Witness::builder().build().unwrap();
    let db = Preset::new("db")
        .witness(&witness)
        .build()
        .unwrap()
        .service(service_fn(|fail: bool| async move {
            if fail {
                Err::<(), BoxError>("db: down".into())
            } else {
                Ok(())
            }
        }));
    for fail in [[false; 12].as_slice(), &[true; 3]].concat() {
        let _ = db.clone().oneshot(fail).await;
    }
    witness.cycle_now();
    let totals = witness.totals();
    let totals_db = totals.component("db").unwrap();
    assert_eq!((totals_db.succeeded, totals_db.failed), (12, 3));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let app = axum::Router::new().route_service("/metrics", MetricsService::new(&witness));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let prometheus = Prometheus::start(target);
    let client = Client::builder(TokioExecutor::new()).build_http();

    let outcomes: BTreeMap<String, f64> = [
        ("succeeded", 12.0),
        ("failed", 3.0),
        ("ignored", 0.0),
        ("cancelled", 0.0),
        ("rejected", 0.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let checks = [
        ("reflex_requests_total", "outcome", outcomes),
        (
            "reflex_shed_limit",
            "component",
            [("db".to_owned(), totals_db.shed_limit.unwrap() as f64)].into(),
        ),
        (
            "reflex_breaker_state{state=\"closed\"}",
            "state",
            [("closed".to_owned(), 1.0)].into(),
        ),
        (
            "reflex_request_duration_seconds_count",
            "component",
            [("db".to_owned(), 15.0)].into(),
        ),
    ];
    for (expr, label, expected) in &checks {
        let expr = expr
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22");
        if let Err(failure) = wait_for(&client, &prometheus, &expr, label, expected).await {
            panic!("{failure}");
        }
    }
    // The guard kills it and removes its directory.
    let (pid, dir) = (prometheus.child.id(), prometheus.dir.clone());
    drop(prometheus);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "prometheus still runs"
    );
    assert!(!dir.exists());
    server.abort();
}
