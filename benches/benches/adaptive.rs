//! Issue 17's scenarios (an adaptive limit in ConcurrencyShed) on the
//! simulated dependency of `reflex_tests::capacity`, every limiter on the
//! same requests in one run, then the hot path of the fixed limit. Run with
//! `cargo bench -p reflex-benches --bench adaptive`.
//!
//! The scenarios print a table to stderr before the timings: for each
//! scenario and limiter, the time the limit took to settle within 10% of C,
//! and the goodput (as a share of C/L), the p99 latency (in L) and the
//! success rate once it should have settled. They run on tokio's paused
//! clock: simulated minutes take a second or two, and the figures are the
//! same from run to run (one seed; `reflex-tests`' `capacity_sim` checks
//! the harness over several).
//!
//! The limiters:
//! - the fixed limit at the starting C: the reference;
//! - [`reflex_adaptive`]: reflex's adaptive limit (the gradient, with its
//!   defaults), from the scenario's starting limit;
//! - tower-resilience-adaptive's AIMD, Vegas and Gradient2, behind tower's
//!   `LoadShed` so that, like reflex, they refuse over the limit instead of
//!   queueing in `poll_ready`. Its service times calls with the wall clock
//!   (`std::time::Instant`), which stands still on a paused tokio clock: a
//!   `Stopwatch` below it times each call on tokio's clock instead, and
//!   `SimClocked` hands that latency to the algorithm in place of the one
//!   the service measured (the same span: from the inner call to its
//!   answer). Nothing else of the crate is changed.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, bench_single};
use reflex_shed::{Adaptive, ConcurrencyShedLayer};
use reflex_tests::capacity::{Call, Capacity, Dependency, Load, Run, run_paused};
use tokio::time::Instant;
use tower::load_shed::LoadShed;
use tower::{Layer, Service};
use tower_resilience_adaptive::{AdaptiveService, Aimd, ConcurrencyAlgorithm, Gradient2, Vegas};

/// The dependency: C calls at once, L each (lognormal, sigma [`NOISE`]).
const C: usize = 20;
const L: Duration = Duration::from_millis(100);
const NOISE: f64 = 0.1;
/// Every limiter's ceiling, where it has one: above the 10x start.
const CEILING: usize = 20 * C;
/// The hot path's limit: never reached.
const HOT_LIMIT: usize = 1024;

// === reflex's adaptive limit ===

/// reflex's adaptive limit starting at `start`, and a probe reading the
/// limit in force: the gradient limit with its defaults (no knowledge of
/// C or L), a ceiling above the 10x start like the other limiters', and a
/// fixed jitter seed so that every run prints the same table.
fn reflex_adaptive(start: usize) -> (ConcurrencyShedLayer, impl Fn() -> Option<usize>) {
    let shed = ConcurrencyShedLayer::builder()
        .adaptive(
            Adaptive::gradient()
                .initial(start)
                .ceiling(CEILING.max(start))
                .seed(7),
        )
        .build()
        .expect("a valid adaptive limit");
    let handle = shed.handle();
    (shed, move || Some(handle.metrics().hard_limit))
}

// === tower-resilience on tokio's clock ===

/// The latency of the call that completed last below the limiter, in
/// nanoseconds of tokio's clock.
#[derive(Debug, Default)]
struct SimLatency(AtomicU64);

/// Times each call on tokio's clock into a [`SimLatency`], as it answers.
#[derive(Debug, Clone)]
struct Stopwatch<S> {
    inner: S,
    latency: Arc<SimLatency>,
}

impl<S> Service<Call> for Stopwatch<S>
where
    S: Service<Call>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let start = Instant::now();
        let latency = Arc::clone(&self.latency);
        let answer = self.inner.call(call);
        Box::pin(async move {
            let out = answer.await;
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            latency.0.store(nanos, Ordering::Relaxed);
            out
        })
    }
}

/// `A`, fed the latency the [`Stopwatch`] below measured. The service
/// records a completed call in the same poll as the call's answer, on a
/// current-thread runtime: no other call can complete in between.
struct SimClocked<A> {
    algorithm: A,
    latency: Arc<SimLatency>,
}

impl<A> SimClocked<A> {
    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency.0.load(Ordering::Relaxed))
    }
}

impl<A: ConcurrencyAlgorithm> ConcurrencyAlgorithm for SimClocked<A> {
    fn record_success(&self, _wall_clock: Duration) {
        self.algorithm.record_success(self.latency());
    }

    fn record_success_with_load(&self, _wall_clock: Duration, in_flight: usize) {
        self.algorithm
            .record_success_with_load(self.latency(), in_flight);
    }

    fn record_failure(&self) {
        self.algorithm.record_failure();
    }

    fn record_dropped(&self) {
        self.algorithm.record_dropped();
    }

    fn limit(&self) -> usize {
        self.algorithm.limit()
    }

    fn min_limit(&self) -> usize {
        self.algorithm.min_limit()
    }

    fn max_limit(&self) -> usize {
        self.algorithm.max_limit()
    }
}

fn tower_resilience<A>(algorithm: A, scenario: &Scenario) -> Run
where
    A: ConcurrencyAlgorithm + 'static,
{
    let latency = Arc::new(SimLatency::default());
    let algorithm = Arc::new(SimClocked {
        algorithm,
        latency: Arc::clone(&latency),
    });
    let probe = Arc::clone(&algorithm);
    simulate(
        scenario,
        |dependency| {
            LoadShed::new(AdaptiveService::new(
                Stopwatch {
                    inner: dependency,
                    latency,
                },
                algorithm,
            ))
        },
        move || Some(probe.limit()),
    )
}

// === the scenarios ===

struct Scenario {
    name: &'static str,
    /// The limit an adaptive limiter starts from.
    start: usize,
    load: Load,
    /// From when the limit should settle, and on what.
    settle_from: Duration,
    target: usize,
    /// Where goodput, p99 and success are read, and C and L there.
    measure: Range<Duration>,
    capacity: usize,
    latency: Duration,
    /// Where the limit's drift is read.
    drift: Option<Range<Duration>>,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn scenarios() -> Vec<Scenario> {
    let window = Duration::from_millis(100);
    let overload = |duration| Load::new(2.0, duration).with_window(window);
    // A limit that starts far from C, above or below, under a steady 2x.
    let start_off = |name, start| Scenario {
        name,
        start,
        load: overload(secs(60)),
        settle_from: Duration::ZERO,
        target: C,
        measure: secs(30)..secs(60),
        capacity: C,
        latency: L,
        drift: None,
    };
    // C doubles at 20 s under `load`.
    let doubles = |name, load: Load| Scenario {
        name,
        start: C,
        load: load.with_capacity_change(secs(20), 2 * C),
        settle_from: secs(20),
        target: 2 * C,
        measure: secs(30)..secs(40),
        capacity: 2 * C,
        latency: L,
        drift: None,
    };
    vec![
        start_off("start 10x high", 10 * C),
        start_off("start 10x low", C / 10),
        Scenario {
            name: "C halves",
            start: C,
            load: overload(secs(40)).with_capacity_change(secs(20), C / 2),
            settle_from: secs(20),
            target: C / 2,
            measure: secs(25)..secs(40),
            capacity: C / 2,
            latency: L,
            drift: None,
        },
        // 2x the doubled C/L.
        doubles("C doubles", Load::new(4.0, secs(40)).with_window(window)),
        // 2x the first C/L: what the dependency serves once C doubles.
        doubles("C doubles, steady load", overload(secs(40))),
        Scenario {
            // Clients give up after 3 L: from 10x high every call queues
            // past its deadline, and none completes.
            load: overload(secs(60)).with_timeout(3 * L),
            ..start_off("10x high, 300 ms deadline", 10 * C)
        },
        Scenario {
            name: "L doubles",
            start: C,
            // Every call twice as slow from 20 s, whatever the load.
            load: overload(secs(60)).with_latency_change(secs(20), 2 * L),
            settle_from: secs(20),
            target: C,
            measure: secs(40)..secs(60),
            capacity: C,
            latency: 2 * L,
            drift: None,
        },
        Scenario {
            name: "2x for 10 min",
            start: C,
            load: Load::new(2.0, secs(600)),
            settle_from: Duration::ZERO,
            target: C,
            measure: secs(60)..secs(600),
            capacity: C,
            latency: L,
            drift: Some(secs(300)..secs(600)),
        },
    ]
}

fn simulate<S>(
    scenario: &Scenario,
    stack: impl FnOnce(Dependency) -> S,
    probe: impl Fn() -> Option<usize>,
) -> Run
where
    S: Service<Call> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    let dependency = Dependency::new(Capacity::new(C, L)).with_noise(NOISE);
    run_paused(dependency, &scenario.load, stack, probe)
}

fn fixed_limit(limit: usize, scenario: &Scenario) -> Run {
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(limit)
        .build()
        .expect("a valid limit");
    let handle = shed.handle();
    simulate(
        scenario,
        |dependency| shed.layer(dependency),
        || Some(handle.metrics().hard_limit),
    )
}

#[derive(Debug, Clone, Copy)]
enum Limiter {
    FixedAtC,
    Reflex,
    Aimd,
    Vegas,
    Gradient2,
}

impl Limiter {
    const ALL: [Self; 5] = [
        Self::FixedAtC,
        Self::Reflex,
        Self::Aimd,
        Self::Vegas,
        Self::Gradient2,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::FixedAtC => "fixed at C (reference)",
            Self::Reflex => "reflex adaptive (gradient)",
            Self::Aimd => "tower-resilience AIMD",
            Self::Vegas => "tower-resilience Vegas",
            Self::Gradient2 => "tower-resilience Gradient2",
        }
    }

    fn run(self, scenario: &Scenario) -> Run {
        let start = scenario.start;
        match self {
            Self::FixedAtC => fixed_limit(C, scenario),
            Self::Reflex => {
                let (shed, probe) = reflex_adaptive(start);
                simulate(scenario, |dependency| shed.layer(dependency), probe)
            }
            Self::Aimd => tower_resilience(
                Aimd::builder()
                    .initial_limit(start)
                    .max_limit(CEILING)
                    // Latency above the p99 target is congestion.
                    .latency_threshold(2 * L)
                    .build()
                    .expect("a valid AIMD"),
                scenario,
            ),
            Self::Vegas => tower_resilience(
                Vegas::builder()
                    .initial_limit(start)
                    .max_limit(CEILING)
                    .build()
                    .expect("a valid Vegas"),
                scenario,
            ),
            Self::Gradient2 => tower_resilience(
                Gradient2::builder()
                    .initial_limit(start)
                    .max_limit(CEILING)
                    .build()
                    .expect("a valid Gradient2"),
                scenario,
            ),
        }
    }
}

fn print_row(scenario: &Scenario, limiter: &str, run: &Run) {
    let settle_span = scenario.settle_from..scenario.load.duration;
    let settle = run.settle_time(settle_span, scenario.target, 0.1);
    let figures = run.between(scenario.measure.clone());
    let rate = Capacity::new(scenario.capacity, scenario.latency).rate();
    let worst_second = (scenario.measure.start.as_secs()..scenario.measure.end.as_secs())
        .map(|s| run.between(secs(s)..secs(s + 1)).success_rate())
        .fold(f64::INFINITY, f64::min);
    let drift = scenario
        .drift
        .clone()
        .and_then(|span| run.drift_per_minute(span));
    let end_limit = run
        .windows(Duration::ZERO..scenario.load.duration)
        .filter_map(|w| w.probe)
        .next_back();
    eprintln!(
        "{:<15} {:<39} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>6}",
        scenario.name,
        limiter,
        settle.map_or_else(
            || "never".to_owned(),
            |t| format!("{:.1} s", t.as_secs_f64())
        ),
        format!("{:.1}%", 100.0 * figures.goodput() / rate),
        figures.p99().map_or_else(
            || "-".to_owned(),
            |p| format!("{:.2} L", p.as_secs_f64() / scenario.latency.as_secs_f64())
        ),
        format!("{:.1}%", 100.0 * figures.success_rate()),
        format!("{:.1}%", 100.0 * worst_second),
        drift.map_or_else(|| "-".to_owned(), |d| format!("{d:+.2}")),
        end_limit.map_or_else(|| "-".to_owned(), |l| l.to_string()),
    );
}

fn print_scenarios(_: &mut Criterion) {
    eprintln!(
        "issue 17 scenarios: C = {C}, L = {} ms (C/L = {:.0}/s), work lognormal sigma {NOISE}, client timeout 1 s unless named, one seed",
        L.as_millis(),
        Capacity::new(C, L).rate()
    );
    eprintln!(
        "targets: settle within 10% of C in < 30 s from 10x off, < 5 s after C halves, < 10 s after C doubles; goodput >= 95% of C/L; p99 <= 2 L; no upward drift"
    );
    eprintln!(
        "settle: from the start or the change, 100 ms resolution (1 s for 10 min); goodput, p99, success: after settling (start 10x: 30-60 s; halves: 25-40 s; C doubles: 30-40 s; L doubles: 40-60 s, against the new L; 10 min: 1-10 min); success counts refusals as failures; drift: limit units per minute over the last 5 min"
    );
    eprintln!(
        "{:<15} {:<39} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>6}",
        "scenario",
        "limiter",
        "settle",
        "goodput",
        "p99",
        "success",
        "worst 1 s",
        "drift/min",
        "limit"
    );
    for scenario in scenarios() {
        for limiter in Limiter::ALL {
            print_row(&scenario, limiter.name(), &limiter.run(&scenario));
        }
    }
}

// === the hot path ===

fn hot_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("adaptive/hot_path");
    let fixed = ConcurrencyShedLayer::builder()
        .hard_limit(HOT_LIMIT)
        .build()
        .expect("a valid limit");
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(
        &mut group,
        "reflex ConcurrencyShed fixed",
        fixed.layer(Echo),
    );
    let (adaptive, _) = reflex_adaptive(HOT_LIMIT);
    bench_single(
        &mut group,
        "reflex ConcurrencyShed adaptive",
        adaptive.layer(Echo),
    );
    let gradient = Gradient2::builder()
        .initial_limit(HOT_LIMIT)
        .max_limit(HOT_LIMIT)
        .build()
        .expect("a valid Gradient2");
    bench_single(
        &mut group,
        "tower-resilience Gradient2 + LoadShed",
        LoadShed::new(AdaptiveService::new(Echo, Arc::new(gradient))),
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = print_scenarios, hot_path
}
criterion_main!(benches);
