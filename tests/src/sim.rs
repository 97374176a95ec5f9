//! A deterministic simulation of a small system under load, to measure how
//! the witness judges it (issue 14): what it reports, when, naming whom,
//! and what its reflexes do to the traffic.
//!
//! # The system
//!
//! Four components, each behind its own [`reflex::Preset`] (default shed
//! layer and breaker) reporting to one [`Witness`] (default settings, 1 s
//! cycle, [`Clock::Tokio`]):
//!
//! ```text
//! entry ─▶ api ─┬─ main route ───▶ auth ─▶ db
//!               └─ static route ─▶ static
//! ```
//!
//! Each component's handler does its own work first (a sleep drawn from a
//! lognormal around [`Scenario::median`], spread [`Scenario::sigma`]), fails
//! it with probability [`Scenario::error_rate`], then awaits its downstream
//! stack in the same task (so the witness's task-local links the chain), and
//! turns a downstream error into its own [`SimError`], as an http hop would.
//!
//! # The load
//!
//! Open loop: Poisson arrivals at [`Scenario::rate`] requests/s for
//! [`Scenario::duration`], one task per request, spawned at its arrival
//! time whatever happens to the earlier ones; a share
//! ([`Scenario::static_share`]) takes the static route. The run then waits
//! for the requests still in flight (bounded) and a few witness cycles, and
//! ends by itself.
//!
//! # Determinism
//!
//! Everything random about a request (route, each component's latency,
//! each component's error, the brownout's draw) comes from a PRNG seeded
//! with the scenario's seed and the request's number, drawn in a fixed
//! order whatever the scenario: the same seed gives the same arrivals and
//! the same draws with reflexes on or off, with or without a fault, so two
//! runs can be compared request for request. Run it on a current-thread
//! runtime with tokio's clock paused ([`run_paused`], or
//! `#[tokio::test(start_paused = true)]` and [`run`]): the run is then
//! reproducible and takes no wall time beyond the computation, save for
//! one thing: a breaker's throttle (a reflex the witness may set) draws
//! its refusals from a per-thread generator the simulation does not seed,
//! so a run in which reflexes throttle varies by a few calls.
//!
//! # What it measures
//!
//! Its own counters, per component and per simulated second (calls reaching
//! its work, its own injected failures, its stack's outcomes as its caller
//! saw them), and per route at the entry; and every report and action the
//! witness published. [`Outcome`] holds them and checks the targets of
//! issue 14 ([`Outcome::quiet`], [`Outcome::names_root`],
//! [`Outcome::blackout_contained`], [`Outcome::brownout_no_worse_than`]).
//!
//! # The parts that follow the witness's API
//!
//! Only [`reflex_choice`], [`witness_builder`], and the report readers
//! ([`report_kind`], [`report_at_ms`], [`roots`], [`affected`],
//! [`report_actions`], [`report_summary`], [`snapshot_actions`]) touch the
//! witness's reflex and report types: when those change, change these and
//! nothing else. (Before issue 14's judgement, `roots` read every component
//! of a report and `affected` nothing.)

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex::Preset;
use reflex::witness::{Clock, EdgeReflex, Report, Snapshot, Witness, WitnessBuilder};
use reflex_core::BoxError;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

// === the parts that follow the witness's API ===

/// The reflex the simulation turns on when [`Scenario::reflex`] is set:
/// [`EdgeReflex`] with its defaults (before issue 14, `CascadeReflex` with
/// a 10 s hold and a shed factor of 0.5). Change this one line to measure
/// another.
pub fn reflex_choice(builder: WitnessBuilder) -> WitnessBuilder {
    builder.reflex(EdgeReflex::default())
}

/// The witness every scenario reports to: the defaults a new user gets,
/// on tokio's clock, with [`reflex_choice`] when `reflex` is set.
pub fn witness_builder(reflex: bool) -> WitnessBuilder {
    let builder = Witness::builder().clock(Clock::Tokio);
    if reflex {
        reflex_choice(builder)
    } else {
        builder
    }
}

/// The kind of a report (its `Debug` form).
pub fn report_kind(report: &Report) -> String {
    format!("{:?}", report.kind)
}

/// When a report was written, in milliseconds since its witness was built.
pub fn report_at_ms(report: &Report) -> u64 {
    report.at_ms
}

/// The components a report names as the root of what it found.
pub fn roots(report: &Report) -> Vec<String> {
    report.roots.iter().map(|r| r.component.clone()).collect()
}

/// The components a report lists as affected by its root.
pub fn affected(report: &Report) -> Vec<String> {
    report
        .affected
        .iter()
        .map(|a| a.component.clone())
        .collect()
}

/// What the reflexes did about a report, in words.
pub fn report_actions(report: &Report) -> Vec<String> {
    report.actions.iter().map(|m| format!("{m:?}")).collect()
}

/// A report in one line, for the bench's table and failure messages.
pub fn report_summary(report: &Report) -> String {
    report.summary.clone()
}

/// The actions the reflexes took in a cycle, in words.
pub fn snapshot_actions(snapshot: &Snapshot) -> Vec<String> {
    snapshot.actions.iter().map(|m| format!("{m:?}")).collect()
}

// === the system ===

/// A component of the simulated system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The entry point: routes to `auth` (main) or `static`.
    Api,
    /// The middle of the main route: calls `db`.
    Auth,
    /// The deepest dependency of the main route.
    Db,
    /// The static route's only dependency: does not depend on `db`.
    Static,
}

impl Node {
    /// Every component, in the order of [`Second::nodes`].
    pub const ALL: [Self; 4] = [Self::Api, Self::Auth, Self::Db, Self::Static];

    /// Its component name, as the witness knows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Auth => "auth",
            Self::Db => "db",
            Self::Static => "static",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a request goes from `api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// api → auth → db.
    Main,
    /// api → static.
    Static,
}

impl Route {
    /// Both routes, in the order of [`Second::routes`].
    pub const ALL: [Self; 2] = [Self::Main, Self::Static];

    fn index(self) -> usize {
        self as usize
    }
}

/// The error a component's handler returns: its own work failed, or a
/// call it made did. Like an http hop's error status, it is the hop's own,
/// never the downstream error passed through; `origin` only serves the
/// simulation's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimError {
    /// The component whose handler returned it.
    pub at: Node,
    /// The component whose own work failed (injected by the simulation), if
    /// one did; `None` when the failure started as a layer's refusal (an
    /// open breaker, the shed layer) below.
    pub origin: Option<Node>,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Some(origin) if origin == self.at => write!(f, "{}: own work failed", self.at),
            Some(origin) => write!(f, "{}: {origin} failed below", self.at),
            None => write!(f, "{}: a call below was refused", self.at),
        }
    }
}

impl std::error::Error for SimError {}

/// What goes wrong, from when to when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// From when, since the start of the run.
    pub at: Duration,
    /// Until when (the recovery); `None`: until the end.
    pub until: Option<Duration>,
}

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// `node` fails this fraction of its calls (1.0: a blackout), at once,
    /// without doing its work (a refused connection).
    Fail {
        /// The failing component.
        node: Node,
        /// The share of its calls that fail, in [0, 1].
        fraction: f64,
    },
    /// `node`'s own work takes `factor` times longer.
    Slow {
        /// The slow component.
        node: Node,
        /// How much longer its own work takes.
        factor: f64,
    },
}

impl Fault {
    /// The component at fault.
    pub fn node(&self) -> Node {
        match self.kind {
            FaultKind::Fail { node, .. } | FaultKind::Slow { node, .. } => node,
        }
    }

    fn active(&self, elapsed: Duration) -> bool {
        elapsed >= self.at && self.until.is_none_or(|until| elapsed < until)
    }
}

/// A scenario: the load, the noise, the fault, the reflexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// A short name, for tables and messages.
    pub name: String,
    /// Arrivals per second (Poisson).
    pub rate: f64,
    /// How long arrivals go on.
    pub duration: Duration,
    /// Every component's probability of failing its own work.
    pub error_rate: f64,
    /// The median of a component's own work.
    pub median: Duration,
    /// The spread of a component's own work (the lognormal's sigma).
    pub sigma: f64,
    /// The share of requests taking the static route.
    pub static_share: f64,
    /// What goes wrong, if anything.
    pub fault: Option<Fault>,
    /// Whether the witness runs its reflex ([`reflex_choice`]).
    pub reflex: bool,
    /// The seed of every random draw.
    pub seed: u64,
}

impl Scenario {
    /// Healthy load: `rate` requests/s for `duration`, each component
    /// failing `error_rate` of its own work, 5 ms ± lognormal(0.4) of work
    /// each, 10% of requests on the static route, no fault, no reflex.
    pub fn healthy(rate: f64, error_rate: f64, duration: Duration) -> Self {
        Self {
            name: format!("healthy {rate}/s {}% err", error_rate * 100.0),
            rate,
            duration,
            error_rate,
            median: Duration::from_millis(5),
            sigma: 0.4,
            static_share: 0.1,
            fault: None,
            reflex: false,
            seed: 14,
        }
    }

    /// This scenario with `fault` from `at` until `until` (`None`: the end).
    pub fn with_fault(mut self, kind: FaultKind, at: Duration, until: Option<Duration>) -> Self {
        self.fault = Some(Fault { kind, at, until });
        self
    }

    /// This scenario with the reflex on or off.
    pub fn with_reflex(mut self, reflex: bool) -> Self {
        self.reflex = reflex;
        self
    }

    /// This scenario under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// This scenario with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

// === randomness ===

/// splitmix64: small, fast, and good enough for a simulation's draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for stream `stream` of `seed` (a request, a component).
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut mix = Self(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        Self(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Exponential with `rate` events per unit.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }
}

// === counters ===

/// One component over one simulated second, from the simulation's own
/// counters (not the witness's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSecond {
    /// Calls that reached its own work (past every layer of its stack).
    pub reached: u64,
    /// Calls whose own work failed (injected: noise or fault).
    pub own_failed: u64,
    /// Calls to its stack that succeeded, as its caller saw them.
    pub succeeded: u64,
    /// Calls to its stack that failed with its handler's error.
    pub failed: u64,
    /// Calls to its stack refused by a layer of it (breaker, shed).
    pub refused: u64,
}

/// One route at the entry over one simulated second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteSecond {
    /// Requests that succeeded.
    pub succeeded: u64,
    /// Requests that failed or were refused.
    pub failed: u64,
    /// Failed requests on whose path no component's own work failed: the
    /// failure is the layers' doing (an open breaker, a shed).
    pub collateral: u64,
}

/// Every counter over one simulated second (calls counted when they end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// By component, in [`Node::ALL`] order.
    pub nodes: [NodeSecond; 4],
    /// By route, in [`Route::ALL`] order.
    pub routes: [RouteSecond; 2],
}

impl Second {
    /// The counters of `node`.
    pub fn node(&self, node: Node) -> &NodeSecond {
        &self.nodes[node.index()]
    }

    /// The counters of `route`.
    pub fn route(&self, route: Route) -> &RouteSecond {
        &self.routes[route.index()]
    }
}

const NODE_METRICS: usize = 5;
const ROUTE_METRICS: usize = 3;
const PER_SECOND: usize = NODE_METRICS * 4 + ROUTE_METRICS * 2;

#[derive(Debug, Clone, Copy)]
enum NodeMetric {
    Reached,
    OwnFailed,
    Succeeded,
    Failed,
    Refused,
}

#[derive(Debug, Clone, Copy)]
enum RouteMetric {
    Succeeded,
    Failed,
    Collateral,
}

/// The simulation's counters: one atomic per (second, metric).
#[derive(Debug)]
struct Counters {
    start: Instant,
    cells: Vec<AtomicU64>,
    seconds: usize,
}

impl Counters {
    fn new(start: Instant, seconds: usize) -> Self {
        Self {
            start,
            cells: (0..seconds * PER_SECOND)
                .map(|_| AtomicU64::new(0))
                .collect(),
            seconds,
        }
    }

    fn second(&self) -> usize {
        (self.start.elapsed().as_secs() as usize).min(self.seconds - 1)
    }

    fn add(&self, offset: usize) {
        self.cells[self.second() * PER_SECOND + offset].fetch_add(1, Ordering::Relaxed);
    }

    fn node(&self, node: Node, metric: NodeMetric) {
        self.add(node.index() * NODE_METRICS + metric as usize);
    }

    fn route(&self, route: Route, metric: RouteMetric) {
        self.add(NODE_METRICS * 4 + route.index() * ROUTE_METRICS + metric as usize);
    }

    fn seconds(&self) -> Vec<Second> {
        let read =
            |s: usize, offset: usize| self.cells[s * PER_SECOND + offset].load(Ordering::Relaxed);
        (0..self.seconds)
            .map(|s| {
                let mut second = Second::default();
                for (n, node) in second.nodes.iter_mut().enumerate() {
                    let at = |m: NodeMetric| read(s, n * NODE_METRICS + m as usize);
                    *node = NodeSecond {
                        reached: at(NodeMetric::Reached),
                        own_failed: at(NodeMetric::OwnFailed),
                        succeeded: at(NodeMetric::Succeeded),
                        failed: at(NodeMetric::Failed),
                        refused: at(NodeMetric::Refused),
                    };
                }
                for (r, route) in second.routes.iter_mut().enumerate() {
                    let at =
                        |m: RouteMetric| read(s, NODE_METRICS * 4 + r * ROUTE_METRICS + m as usize);
                    *route = RouteSecond {
                        succeeded: at(RouteMetric::Succeeded),
                        failed: at(RouteMetric::Failed),
                        collateral: at(RouteMetric::Collateral),
                    };
                }
                second
            })
            .collect()
    }
}

// === the run ===

/// A request: its number (which seeds its draws) and its route.
#[derive(Debug, Clone, Copy)]
struct Req {
    id: u64,
    route: Route,
}

type Stack = BoxCloneSyncService<Req, (), BoxError>;

/// What every handler shares: the scenario, the clock's origin, the
/// counters.
#[derive(Debug)]
struct World {
    scenario: Scenario,
    start: Instant,
    counters: Counters,
    /// Milliseconds since the start of db's first successful work at or
    /// after the fault's end (`u64::MAX`: none yet).
    first_recovered_ms: AtomicU64,
}

impl World {
    /// `node`'s own work for `req`: the draws, the sleep, the outcome.
    async fn work(&self, node: Node, req: Req) -> Result<(), SimError> {
        self.counters.node(node, NodeMetric::Reached);
        let scenario = &self.scenario;
        // Always the same three draws in the same order: runs with and
        // without a fault see the same noise.
        let mut rng = Rng::stream(scenario.seed, req.id.wrapping_mul(8) + node as u64 + 1);
        let fault_draw = rng.unit();
        let latency_draw = rng.normal();
        let error_draw = rng.unit();
        let elapsed = self.start.elapsed();
        let mut factor = 1.0;
        if let Some(fault) = scenario.fault.filter(|f| f.active(elapsed)) {
            match fault.kind {
                FaultKind::Fail { node: at, fraction } if at == node && fault_draw < fraction => {
                    self.counters.node(node, NodeMetric::OwnFailed);
                    return Err(SimError {
                        at: node,
                        origin: Some(node),
                    });
                }
                FaultKind::Slow {
                    node: at,
                    factor: f,
                } if at == node => factor = f,
                _ => {}
            }
        }
        let own = scenario.median.as_secs_f64() * (scenario.sigma * latency_draw).exp() * factor;
        tokio::time::sleep(Duration::from_secs_f64(own)).await;
        if error_draw < scenario.error_rate {
            self.counters.node(node, NodeMetric::OwnFailed);
            return Err(SimError {
                at: node,
                origin: Some(node),
            });
        }
        if node == Node::Db {
            if let Some(until) = scenario.fault.and_then(|f| f.until) {
                if elapsed >= until {
                    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                    self.first_recovered_ms.fetch_min(ms, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Counts a call to `node`'s stack as its caller saw it, and turns its
    /// error into the caller's (`at`).
    fn hop(&self, at: Node, node: Node, result: Result<(), BoxError>) -> Result<(), SimError> {
        match result {
            Ok(()) => {
                self.counters.node(node, NodeMetric::Succeeded);
                Ok(())
            }
            Err(err) => {
                let origin = match err.downcast_ref::<SimError>() {
                    Some(below) => {
                        self.counters.node(node, NodeMetric::Failed);
                        below.origin
                    }
                    None => {
                        self.counters.node(node, NodeMetric::Refused);
                        None
                    }
                };
                Err(SimError { at, origin })
            }
        }
    }

    /// Counts a request's end at the entry.
    fn entry(&self, route: Route, result: Result<(), SimError>) {
        match result {
            Ok(()) => self.counters.route(route, RouteMetric::Succeeded),
            Err(err) => {
                self.counters.route(route, RouteMetric::Failed);
                if err.origin.is_none() {
                    self.counters.route(route, RouteMetric::Collateral);
                }
            }
        }
    }
}

/// `node`'s stack: its preset around its handler (own work, then the
/// component and stack `routes` gives for the request's route, if any).
fn stack(
    witness: &Witness,
    world: &Arc<World>,
    node: Node,
    routes: [Option<(Node, Stack)>; 2],
) -> Stack {
    let preset = Preset::new(node.name())
        .witness(witness)
        .build()
        .expect("the default preset builds");
    let world = Arc::clone(world);
    BoxCloneSyncService::new(preset.service(service_fn(move |req: Req| {
        let world = Arc::clone(&world);
        let next = routes[req.route.index()].clone();
        async move {
            world.work(node, req).await?;
            if let Some((below, svc)) = next {
                let result = svc.oneshot(req).await;
                world.hop(node, below, result)?;
            }
            Ok::<(), SimError>(())
        }
    })))
}

/// A report as the simulation keeps it: read through the report readers
/// ([`roots`], [`affected`], …), so that nothing else follows the report
/// type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenReport {
    /// When, in milliseconds since the start of the run.
    pub at_ms: u64,
    /// Its detector or kind.
    pub kind: String,
    /// The components it names as root.
    pub roots: Vec<String>,
    /// The components it lists as affected.
    pub affected: Vec<String>,
    /// What the reflexes did about it.
    pub actions: Vec<String>,
    /// The report in one line.
    pub summary: String,
}

impl SeenReport {
    fn of(report: &Report) -> Self {
        Self {
            at_ms: report_at_ms(report),
            kind: report_kind(report),
            roots: roots(report),
            affected: affected(report),
            actions: report_actions(report),
            summary: report_summary(report),
        }
    }
}

/// An action the reflexes took, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenAction {
    /// When, in milliseconds since the start of the run.
    pub at_ms: u64,
    /// What was done.
    pub what: String,
}

/// What a run of a scenario gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario run.
    pub scenario: Scenario,
    /// Requests sent.
    pub requests: u64,
    /// Requests still in flight when the run stopped waiting for them.
    pub unfinished: u64,
    /// The counters, second by second from the start.
    pub seconds: Vec<Second>,
    /// Every report the witness published, in order.
    pub reports: Vec<SeenReport>,
    /// Every action its reflexes took, in order.
    pub actions: Vec<SeenAction>,
    /// Snapshots the run's subscriber missed (it fell behind): 0 unless
    /// something is wrong with the run.
    pub lost_snapshots: u64,
    /// db's first successful work after the fault ended, in milliseconds
    /// since the start; `None` if it ended without one or never ended.
    pub first_recovered_ms: Option<u64>,
}

/// Runs `scenario` on a new current-thread runtime with tokio's clock
/// paused, for a bench or a `main`.
pub fn run_paused(scenario: &Scenario) -> Outcome {
    crate::support::block_on_paused(run(scenario))
}

/// How long after the last arrival the run waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// Witness cycles the run leaves after the drain.
const TAIL_CYCLES: u64 = 2;

/// Runs `scenario` on the current runtime, whose clock must be paused
/// (`#[tokio::test(start_paused = true)]`): the load, then the drain, then
/// a couple of cycles, and what was seen.
///
/// # Panics
///
/// When the witness cannot start (no tokio runtime). A clock that is not
/// paused does not panic: it only makes the run take the scenario's time.
pub async fn run(scenario: &Scenario) -> Outcome {
    let witness = witness_builder(scenario.reflex)
        .start()
        .expect("the witness starts");
    let start = Instant::now();
    let mut snapshots = witness.subscribe();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let mut reports = Vec::new();
        let mut actions = Vec::new();
        let mut lost = 0;
        loop {
            // Every snapshot already sent before the stop.
            let snapshot = tokio::select! {
                biased;
                received = snapshots.recv() => received,
                _ = &mut stopped => return (reports, actions, lost),
            };
            match snapshot {
                Ok(snapshot) => {
                    reports.extend(snapshot.reports.iter().map(SeenReport::of));
                    actions.extend(snapshot_actions(&snapshot).into_iter().map(|what| {
                        SeenAction {
                            at_ms: snapshot.observed_at_ms,
                            what,
                        }
                    }));
                }
                Err(RecvError::Lagged(n)) => lost += n,
                Err(RecvError::Closed) => return (reports, actions, lost),
            }
        }
    });

    let seconds = (scenario.duration + DRAIN).as_secs() as usize + TAIL_CYCLES as usize + 2;
    let world = Arc::new(World {
        scenario: scenario.clone(),
        start,
        counters: Counters::new(start, seconds),
        first_recovered_ms: AtomicU64::new(u64::MAX),
    });
    let db = stack(&witness, &world, Node::Db, [None, None]);
    let auth = stack(&witness, &world, Node::Auth, [Some((Node::Db, db)), None]);
    let side = stack(&witness, &world, Node::Static, [None, None]);
    let api = stack(
        &witness,
        &world,
        Node::Api,
        [Some((Node::Auth, auth)), Some((Node::Static, side))],
    );

    let in_flight = Arc::new(AtomicU64::new(0));
    let mut arrivals = Rng::stream(scenario.seed, 0);
    // Arrival times in whole nanoseconds since the start: no float drift
    // between the arrivals and the clock.
    let gap = |rng: &mut Rng| Duration::from_secs_f64(rng.exponential(scenario.rate));
    let mut next = gap(&mut arrivals);
    let mut requests = 0u64;
    while next < scenario.duration {
        let due = start + next;
        tokio::time::sleep_until(due).await;
        // Every arrival due by now (the timer counts milliseconds), and at
        // least the one slept for, whatever the clock's rounding.
        let now = Instant::now().max(due);
        while start + next <= now && next < scenario.duration {
            requests += 1;
            let id = requests;
            let route =
                if Rng::stream(scenario.seed, id.wrapping_mul(8)).unit() < scenario.static_share {
                    Route::Static
                } else {
                    Route::Main
                };
            let api = api.clone();
            let world = Arc::clone(&world);
            let in_flight = Arc::clone(&in_flight);
            in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let result = api.oneshot(Req { id, route }).await;
                world.entry(route, world.hop(Node::Api, Node::Api, result));
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            next += gap(&mut arrivals);
        }
    }
    let drained = start + scenario.duration + DRAIN;
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(TAIL_CYCLES)).await;
    let unfinished = in_flight.load(Ordering::Relaxed);
    // Not by dropping the witness: the preset's breaker handles, which the
    // witness keeps for its reflexes, hold the witness (their sink).
    let _ = stop.send(());
    let (reports, actions, lost_snapshots) = collector.await.expect("the collector ends");
    drop((api, witness));
    let first = world.first_recovered_ms.load(Ordering::Relaxed);
    Outcome {
        scenario: scenario.clone(),
        requests,
        unfinished,
        seconds: world.counters.seconds(),
        reports,
        actions,
        lost_snapshots,
        first_recovered_ms: (first != u64::MAX).then_some(first),
    }
}

// === the targets ===

/// The witness's cycle in every scenario (its default interval).
pub const CYCLE: Duration = Duration::from_secs(1);

/// A part of a run: before the fault, during it, after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// `"healthy"`, `"fault"` or `"recovered"`.
    pub name: &'static str,
    /// From, since the start.
    pub from: Duration,
    /// Until, since the start.
    pub to: Duration,
}

/// The figures of one phase of a run, from the simulation's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseFigures {
    /// The phase.
    pub phase: Phase,
    /// Requests that succeeded at the entry, both routes, over those that
    /// ended (`NaN` when none did).
    pub entry_success: f64,
    /// The same, on the main route.
    pub main_success: f64,
    /// Static-route requests that did not fail by a layer's doing (see
    /// [`RouteSecond::collateral`]), over those that ended.
    pub static_unharmed: f64,
    /// Calls reaching db's work, per second.
    pub db_reached_per_s: f64,
    /// Calls refused by a layer, per second, by component.
    pub refused_per_s: [f64; 4],
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        part as f64 / whole as f64
    }
}

fn names(nodes: &[Node]) -> Vec<String> {
    let mut names: Vec<String> = nodes.iter().map(|n| n.name().to_owned()).collect();
    names.sort();
    names
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

// === impl Outcome ===

impl Outcome {
    /// The counters of the whole seconds from `from` (rounded up) to `to`
    /// (rounded down).
    pub fn window(&self, from: Duration, to: Duration) -> &[Second] {
        let from = (from.as_millis().div_ceil(1000) as usize).min(self.seconds.len());
        let to = (to.as_secs() as usize).clamp(from, self.seconds.len());
        &self.seconds[from..to]
    }

    /// Calls reaching `node`'s work per second, on average from `from` to
    /// `to`.
    pub fn reached_per_s(&self, node: Node, from: Duration, to: Duration) -> f64 {
        let window = self.window(from, to);
        let sum: u64 = window.iter().map(|s| s.node(node).reached).sum();
        sum as f64 / window.len().max(1) as f64
    }

    /// Requests on `routes` that succeeded at the entry from `from` to `to`,
    /// over those that ended.
    pub fn success(&self, routes: &[Route], from: Duration, to: Duration) -> f64 {
        let (mut ok, mut all) = (0, 0);
        for second in self.window(from, to) {
            for route in routes {
                let r = second.route(*route);
                ok += r.succeeded;
                all += r.succeeded + r.failed;
            }
        }
        ratio(ok, all)
    }

    /// The run's phases: healthy, and with a fault, the fault and what
    /// follows its end.
    pub fn phases(&self) -> Vec<Phase> {
        let end = self.scenario.duration;
        let Some(fault) = self.scenario.fault else {
            return vec![Phase {
                name: "healthy",
                from: Duration::ZERO,
                to: end,
            }];
        };
        let until = fault.until.unwrap_or(end).min(end);
        let mut phases = vec![
            Phase {
                name: "healthy",
                from: Duration::ZERO,
                to: fault.at,
            },
            Phase {
                name: "fault",
                from: fault.at,
                to: until,
            },
        ];
        if until < end {
            phases.push(Phase {
                name: "recovered",
                from: until,
                to: end,
            });
        }
        phases
    }

    /// The figures of `phase`.
    pub fn figures(&self, phase: Phase) -> PhaseFigures {
        let window = self.window(phase.from, phase.to);
        let (mut harmed, mut statics) = (0, 0);
        for second in window {
            let r = second.route(Route::Static);
            harmed += r.collateral;
            statics += r.succeeded + r.failed;
        }
        let mut refused_per_s = [0.0; 4];
        for node in Node::ALL {
            let sum: u64 = window.iter().map(|s| s.node(node).refused).sum();
            refused_per_s[node.index()] = sum as f64 / window.len().max(1) as f64;
        }
        PhaseFigures {
            phase,
            entry_success: self.success(&Route::ALL, phase.from, phase.to),
            main_success: self.success(&[Route::Main], phase.from, phase.to),
            static_unharmed: 1.0 - ratio(harmed, statics),
            db_reached_per_s: self.reached_per_s(Node::Db, phase.from, phase.to),
            refused_per_s,
        }
    }

    fn fault(&self) -> Result<Fault, String> {
        self.scenario
            .fault
            .ok_or_else(|| format!("{}: the scenario has no fault", self.scenario.name))
    }

    fn ms(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    }

    fn harness_ok(&self) -> Result<(), String> {
        if self.unfinished > 0 || self.lost_snapshots > 0 {
            return Err(format!(
                "{}: the run is incomplete: {} requests unfinished, {} snapshots lost",
                self.scenario.name, self.unfinished, self.lost_snapshots
            ));
        }
        Ok(())
    }

    /// Target 1 (healthy load): no report, no action.
    ///
    /// # Errors
    ///
    /// What the witness wrote or did, when it did anything.
    pub fn quiet(&self) -> Result<(), String> {
        self.harness_ok()?;
        if self.reports.is_empty() && self.actions.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: {} report(s) and {} action(s) on healthy load; first report at {} ms: {:?}; first action: {:?}",
            self.scenario.name,
            self.reports.len(),
            self.actions.len(),
            self.reports.first().map_or(0, |r| r.at_ms),
            self.reports
                .first()
                .map(|r| (&r.kind, &r.roots, &r.summary)),
            self.actions.first().map(|a| &a.what),
        ))
    }

    /// Targets 2 and 3 (a fault at `root`): no report before the fault,
    /// then exactly one, within `cycles` cycles of the fault, naming `root`
    /// alone as root and exactly `affected` as affected.
    ///
    /// # Errors
    ///
    /// What the witness reported instead.
    pub fn names_root(&self, root: Node, affected: &[Node], cycles: u32) -> Result<(), String> {
        self.harness_ok()?;
        let fault = self.fault()?;
        let name = &self.scenario.name;
        let at = Self::ms(fault.at);
        let before: Vec<&SeenReport> = self.reports.iter().filter(|r| r.at_ms < at).collect();
        if let Some(first) = before.first() {
            return Err(format!(
                "{name}: {} report(s) before the fault, the first at {} ms: {} {:?}",
                before.len(),
                first.at_ms,
                first.kind,
                first.roots
            ));
        }
        let [report] = self.reports.as_slice() else {
            return Err(format!(
                "{name}: {} reports after the fault, not one: {:?}",
                self.reports.len(),
                self.reports
                    .iter()
                    .map(|r| (r.at_ms - at, &r.kind, &r.roots, &r.affected))
                    .collect::<Vec<_>>()
            ));
        };
        let late = report.at_ms - at;
        if late > Self::ms(CYCLE * cycles) {
            return Err(format!(
                "{name}: the report came {late} ms after the fault, more than {cycles} cycles"
            ));
        }
        if sorted(&report.roots) != names(&[root]) || sorted(&report.affected) != names(affected) {
            return Err(format!(
                "{name}: the report names roots {:?} and affected {:?}, not [{root}] and {:?} ({}: {})",
                report.roots,
                report.affected,
                names(affected),
                report.kind,
                report.summary
            ));
        }
        Ok(())
    }

    /// Target 4 (reflexes on, a blackout of db ending before the run does):
    /// calls reaching db fall by 90% or more within 2 cycles, for as long as
    /// the fault lasts; requests of the static route, which does not depend
    /// on db, fail by a layer's doing at most 0.1% of the time from the
    /// fault on; and within 2 cycles of db's first successful call after
    /// the fault, db gets at least 90% of its healthy traffic again (over
    /// 5 s).
    ///
    /// # Errors
    ///
    /// The first part of the target missed, with the figures.
    pub fn blackout_contained(&self) -> Result<(), String> {
        self.harness_ok()?;
        let fault = self.fault()?;
        let name = &self.scenario.name;
        let end = self.scenario.duration;
        let until = fault.until.unwrap_or(end);
        let healthy = self.reached_per_s(
            Node::Db,
            fault.at.saturating_sub(Duration::from_secs(30)),
            fault.at,
        );
        let held = self.window(fault.at + CYCLE * 2, until);
        if let Some((i, worst)) = held
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.node(Node::Db).reached)
        {
            let reached = worst.node(Node::Db).reached as f64;
            if reached > 0.1 * healthy {
                return Err(format!(
                    "{name}: {reached} calls reached the dead db in second {} of the fault (+2 cycles on), more than 10% of its healthy {healthy:.0}/s",
                    i + 2
                ));
            }
        }
        let (mut harmed, mut statics) = (0, 0);
        for second in self.window(fault.at, end) {
            let r = second.route(Route::Static);
            harmed += r.collateral;
            statics += r.succeeded + r.failed;
        }
        if ratio(harmed, statics) > 0.001 {
            return Err(format!(
                "{name}: {harmed} of {statics} static-route requests ({:.2}%) failed by a layer's doing from the fault on, more than 0.1%",
                100.0 * ratio(harmed, statics)
            ));
        }
        let Some(first) = self.first_recovered_ms else {
            return Err(format!("{name}: db never succeeded again after the fault"));
        };
        let from = Duration::from_millis(first) + CYCLE * 2;
        let to = from + Duration::from_secs(5);
        if to > end {
            return Err(format!(
                "{name}: db's first success after the fault came at {first} ms, too late to see its traffic back before the end"
            ));
        }
        let back = self.reached_per_s(Node::Db, from, to);
        if back < 0.9 * healthy {
            return Err(format!(
                "{name}: 2 cycles after db's first success at {first} ms, {back:.0} calls/s reach it, below 90% of its healthy {healthy:.0}/s"
            ));
        }
        Ok(())
    }

    /// Target 5 (reflexes on, a brownout of db; `without` the same scenario
    /// with reflexes off): requests at the entry (both routes) succeed
    /// during the fault at least as often as without reflexes, less 2
    /// points, and fewer calls reach db from 2 cycles after the fault than
    /// without reflexes.
    ///
    /// # Errors
    ///
    /// The part of the target missed, with the figures.
    pub fn brownout_no_worse_than(&self, without: &Self) -> Result<(), String> {
        self.harness_ok()?;
        without.harness_ok()?;
        let fault = self.fault()?;
        let name = &self.scenario.name;
        let until = fault.until.unwrap_or(self.scenario.duration);
        let with_ok = self.success(&Route::ALL, fault.at, until);
        let without_ok = without.success(&Route::ALL, fault.at, until);
        if with_ok.is_nan() || without_ok.is_nan() || with_ok < without_ok - 0.02 {
            return Err(format!(
                "{name}: {:.1}% of requests succeeded at the entry during the brownout with reflexes, against {:.1}% without: more than 2 points worse",
                100.0 * with_ok,
                100.0 * without_ok
            ));
        }
        let with_db = self.reached_per_s(Node::Db, fault.at + CYCLE * 2, until);
        let without_db = without.reached_per_s(Node::Db, fault.at + CYCLE * 2, until);
        if with_db >= without_db {
            return Err(format!(
                "{name}: {with_db:.0} calls/s reached the failing db with reflexes, not fewer than {without_db:.0}/s without"
            ));
        }
        Ok(())
    }
}
