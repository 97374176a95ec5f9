//! A dependency of known capacity, an open-loop load against any tower
//! stack in front of it, and the figures the targets of issue 17 (adaptive
//! concurrency in `ConcurrencyShed`) are checked with.
//!
//! # The dependency
//!
//! [`Dependency`] stands for a remote server: it works on at most
//! [`Capacity::concurrency`] calls at once (C), each for a time drawn from a
//! lognormal around [`Capacity::latency`] (L, the median; spread
//! [`Dependency::with_noise`]), and queues the others first in, first out,
//! so its latency grows with its queue. Or, with [`Contention::Slowdown`],
//! it works on every call at once, each taking its work times n/C when it
//! arrives to n calls in flight beyond C (the simpler model many
//! simulations write: no queue, every call slower). It fails a share of the calls it
//! works on ([`Dependency::with_failure_rate`]), after doing the work. A
//! caller that stops waiting (a client timeout, a dropped future) does not
//! take its call back: the server never hears of it and works on it all the
//! same, as a real one would. C and L change at run time through a
//! [`DependencyHandle`] (or [`Load::with_capacity_change`] and
//! [`Load::with_latency_change`]), and the handle tells what the dependency
//! saw ([`DependencyMetrics`]).
//!
//! # The load
//!
//! [`Load`]: Poisson arrivals at [`Load::multiple`] times C/L (C and L at
//! the start) for [`Load::duration`], open loop: each request is its own
//! task, sent at its arrival time whatever became of the earlier ones, and
//! given up after [`Load::timeout`]. Each [`Call`] carries a partition, drawn
//! with the shares of [`Load::partitions`], and a critical flag, set with
//! probability [`Load::critical_share`]: what a key function of the layer
//! under test reads. A partition can be idle for a while ([`Load::with_idle`]).
//!
//! [`run`] builds the stack under test from the dependency with a closure,
//! so any tower `Service<Call>` fits, and reads a probe (the limit in force,
//! from the layer's handle) at the end of each window.
//!
//! # What it measures
//!
//! A [`Run`]: per window ([`Load::window`]), the [`Figures`] of the
//! requests (successes within the timeout, their latency from arrival to
//! answer, failures, refusals, timeouts, by partition and for critical
//! requests), the most calls the dependency held at once, its capacity, and
//! the probe. A request counts as offered in the window it arrived in and
//! in every other figure in the window it ended in. A request is admitted
//! when its call reached the dependency, and refused when it ended in an
//! error without reaching it: no error type is inspected, so any layer's
//! refusal counts. [`Run::between`] and [`Run::overall`] add windows up;
//! [`settle_time`] and [`drift_per_minute`] read the probe's trace; and
//! [`erlang_b`] gives the known answer for a fixed limit at C: the
//! dependency behind it is then an Erlang loss system.
//!
//! # Determinism
//!
//! Arrivals come from the load's seed, a request's labels from the load's
//! seed and its number, and its call's work and failure from the
//! dependency's seed and the same number, each drawn in a fixed order: the
//! same seeds give the same requests and the same work whatever the stack,
//! so two stacks can be compared request for request. Run it on a
//! current-thread runtime with tokio's clock paused ([`run_paused`], or
//! `#[tokio::test(start_paused = true)]` and [`run`]); tokio's timers count
//! whole milliseconds, so arrivals and completions land on milliseconds.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflex::shed::ConcurrencyShedLayer;
//! use reflex_tests::capacity::{Capacity, Dependency, Load, run_paused};
//! use tower::Layer;
//!
//! let capacity = Capacity::new(20, Duration::from_millis(100));
//! let shed = ConcurrencyShedLayer::builder().hard_limit(20).build().unwrap();
//! let handle = shed.handle();
//! let run = run_paused(
//!     Dependency::new(capacity),
//!     &Load::new(2.0, Duration::from_secs(5)),
//!     |dependency| shed.layer(dependency),
//!     || Some(handle.metrics().hard_limit),
//! );
//! let figures = run.overall();
//! assert!(figures.p99().unwrap() <= Duration::from_millis(101));
//! assert!(figures.goodput() > 0.8 * capacity.rate());
//! assert!(run.dependency.max_in_flight <= 20);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::sim::Rng;
use crate::support::block_on_paused;

// === the dependency ===

/// What the dependency can do: `concurrency` calls at once (C), each taking
/// `latency` (L, the median of its work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Calls worked on at once (C); the others queue.
    pub concurrency: usize,
    /// The median time of one call's work (L).
    pub latency: Duration,
}

impl Capacity {
    /// C calls at once, L each.
    pub fn new(concurrency: usize, latency: Duration) -> Self {
        Self {
            concurrency,
            latency,
        }
    }

    /// C/L: the calls per second the dependency serves when it is busy (at
    /// the median latency; noise makes the mean work longer).
    pub fn rate(&self) -> f64 {
        self.concurrency as f64 / self.latency.as_secs_f64()
    }
}

/// The partition of a [`Call`] when the load names none.
pub const DEFAULT_PARTITION: &str = "all";

/// A request to the dependency: its number, its labels, and whether it
/// reached the dependency.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its number in the load, from 1: it seeds the call's work.
    pub id: u64,
    /// The partition it belongs to (a tenant, a route class).
    pub partition: &'static str,
    /// Whether it is critical: shed last.
    pub critical: bool,
    reached: Arc<AtomicBool>,
}

impl Call {
    /// Call number `id` in [`DEFAULT_PARTITION`], not critical.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            partition: DEFAULT_PARTITION,
            critical: false,
            reached: Arc::new(AtomicBool::new(false)),
        }
    }

    /// This call in `partition`.
    pub fn with_partition(mut self, partition: &'static str) -> Self {
        self.partition = partition;
        self
    }

    /// This call, critical or not.
    pub fn with_critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Whether this call (or a clone of it) reached the dependency.
    pub fn reached_dependency(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }
}

/// The dependency's answer to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The call's number.
    pub id: u64,
    /// How long it waited in the dependency's queue.
    pub queued: Duration,
    /// How long the dependency worked on it.
    pub worked: Duration,
}

/// The dependency failed a call (its failure rate), after working on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependencyError {
    /// The call's number.
    pub id: u64,
}

impl fmt::Display for DependencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the dependency failed call {}", self.id)
    }
}

impl std::error::Error for DependencyError {}

/// What the dependency saw, now and since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DependencyMetrics {
    /// Its capacity now (C).
    pub capacity: usize,
    /// Calls it works on now (under [`Contention::Slowdown`], all it holds,
    /// which may be more than C).
    pub working: usize,
    /// Calls waiting in its queue now (none under
    /// [`Contention::Slowdown`], whose slowdown shows in a call's
    /// [`Served::worked`]).
    pub queued: usize,
    /// The most calls it held at once (working and queued).
    pub max_in_flight: usize,
    /// Calls it answered with a success.
    pub served: u64,
    /// Calls it failed.
    pub failed: u64,
}

impl DependencyMetrics {
    /// Calls it holds now, working and queued.
    pub fn in_flight(&self) -> usize {
        self.working + self.queued
    }
}

/// How the dependency draws a call's work.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Work {
    sigma: f64,
    failure_rate: f64,
    seed: u64,
    contention: Contention,
}

#[derive(Debug)]
struct State {
    capacity: usize,
    /// L: the calls that arrive from now on draw their work around it.
    latency: Duration,
    working: usize,
    queue: VecDeque<oneshot::Sender<()>>,
    max_in_flight: usize,
    window_max: usize,
    served: u64,
    failed: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl State ===

impl State {
    fn in_flight(&self) -> usize {
        self.working + self.queue.len()
    }

    /// A call arrives: it works at once, or gets its turn from the queue.
    fn arrive(&mut self) -> Option<oneshot::Receiver<()>> {
        let turn = if self.working < self.capacity {
            self.working += 1;
            None
        } else {
            let (give, take) = oneshot::channel();
            self.queue.push_back(give);
            Some(take)
        };
        let in_flight = self.in_flight();
        self.max_in_flight = self.max_in_flight.max(in_flight);
        self.window_max = self.window_max.max(in_flight);
        turn
    }

    /// A call arrives and works at once: the factor its work is slowed by,
    /// n/C with n calls in flight beyond C.
    fn arrive_slowed(&mut self) -> f64 {
        self.working += 1;
        let in_flight = self.in_flight();
        self.max_in_flight = self.max_in_flight.max(in_flight);
        self.window_max = self.window_max.max(in_flight);
        (in_flight as f64 / self.capacity.max(1) as f64).max(1.0)
    }

    fn leave(&mut self, failed: bool) {
        self.working -= 1;
        if failed {
            self.failed += 1;
        } else {
            self.served += 1;
        }
        self.dispatch();
    }

    /// Hands free capacity to the queue, first in first out.
    fn dispatch(&mut self) {
        while self.working < self.capacity {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            if next.send(()).is_ok() {
                self.working += 1;
            }
        }
    }

    fn metrics(&self) -> DependencyMetrics {
        DependencyMetrics {
            capacity: self.capacity,
            working: self.working,
            queued: self.queue.len(),
            max_in_flight: self.max_in_flight,
            served: self.served,
            failed: self.failed,
        }
    }
}

/// A simulated remote dependency: see the [module docs](self).
///
/// A tower `Service<Call>`, always ready, that spawns each call's work on
/// the current tokio runtime: call it from inside one. Clones share the
/// dependency (one capacity, one queue).
#[derive(Debug, Clone)]
pub struct Dependency {
    work: Work,
    state: Arc<Mutex<State>>,
}

/// How a [`Dependency`] meets more calls than its capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Contention {
    /// C calls work at once; the others wait their turn, first in, first
    /// out.
    #[default]
    Queue,
    /// Every call works at once; one that arrives to n calls in flight
    /// (itself included) beyond C takes its work times n/C.
    Slowdown,
}

// === impl Dependency ===

impl Dependency {
    /// A dependency of `capacity`, every call taking exactly L, never
    /// failing, seed 17.
    pub fn new(capacity: Capacity) -> Self {
        Self {
            work: Work {
                sigma: 0.0,
                failure_rate: 0.0,
                seed: 17,
                contention: Contention::Queue,
            },
            state: Arc::new(Mutex::new(State {
                capacity: capacity.concurrency,
                latency: capacity.latency,
                working: 0,
                queue: VecDeque::new(),
                max_in_flight: 0,
                window_max: 0,
                served: 0,
                failed: 0,
            })),
        }
    }

    /// This dependency with a call's work drawn from a lognormal of median
    /// L and spread `sigma` (0: exactly L).
    pub fn with_noise(mut self, sigma: f64) -> Self {
        self.work.sigma = sigma;
        self
    }

    /// This dependency failing each call with probability `rate`, after
    /// working on it.
    pub fn with_failure_rate(mut self, rate: f64) -> Self {
        self.work.failure_rate = rate;
        self
    }

    /// This dependency meeting more calls than its capacity by
    /// `contention` (by default [`Contention::Queue`]).
    pub fn with_contention(mut self, contention: Contention) -> Self {
        self.work.contention = contention;
        self
    }

    /// This dependency drawing its work from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.work.seed = seed;
        self
    }

    /// Its capacity now: C now, and L.
    pub fn capacity(&self) -> Capacity {
        let state = lock(&self.state);
        Capacity::new(state.capacity, state.latency)
    }

    /// A handle on its capacity and what it saw.
    pub fn handle(&self) -> DependencyHandle {
        DependencyHandle {
            state: Arc::clone(&self.state),
        }
    }
}

async fn work(
    work: Work,
    state: Arc<Mutex<State>>,
    id: u64,
    reply: oneshot::Sender<Result<Served, DependencyError>>,
) {
    let arrived = Instant::now();
    let mut draws = Rng::stream(work.seed, id);
    let latency = lock(&state).latency;
    let worked = latency.mul_f64((work.sigma * draws.normal()).exp());
    let fails = draws.unit() < work.failure_rate;
    let worked = match work.contention {
        Contention::Queue => {
            let turn = lock(&state).arrive();
            if let Some(turn) = turn {
                // The sender lives in the queue until the call's turn: it is
                // dropped unsent only with the dependency's state.
                let _ = turn.await;
            }
            worked
        }
        Contention::Slowdown => worked.mul_f64(lock(&state).arrive_slowed()),
    };
    let queued = arrived.elapsed();
    tokio::time::sleep(worked).await;
    lock(&state).leave(fails);
    let answer = if fails {
        Err(DependencyError { id })
    } else {
        Ok(Served { id, queued, worked })
    };
    // The caller may have stopped waiting: the work was done all the same.
    let _ = reply.send(answer);
}

impl Service<Call> for Dependency {
    type Response = Served;
    type Error = DependencyError;
    type Future = DependencyFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        call.reached.store(true, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        tokio::spawn(work(self.work, Arc::clone(&self.state), call.id, reply));
        DependencyFuture {
            id: call.id,
            answer,
        }
    }
}

/// The answer to a call of [`Dependency`]. Dropping it does not cancel the
/// call's work.
#[derive(Debug)]
pub struct DependencyFuture {
    id: u64,
    answer: oneshot::Receiver<Result<Served, DependencyError>>,
}

impl Future for DependencyFuture {
    type Output = Result<Served, DependencyError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(DependencyError { id: self.id })))
    }
}

/// Changes a [`Dependency`]'s capacity at run time and reads what it saw.
#[derive(Debug, Clone)]
pub struct DependencyHandle {
    state: Arc<Mutex<State>>,
}

// === impl DependencyHandle ===

impl DependencyHandle {
    /// Sets C: the next calls to start see it. Lowering it cancels nothing:
    /// calls at work finish, and the queue waits until fewer than C work.
    /// Under [`Contention::Slowdown`] a call keeps the slowdown it got on
    /// arrival; the new C slows the calls that arrive after.
    pub fn set_capacity(&self, concurrency: usize) {
        let mut state = lock(&self.state);
        state.capacity = concurrency;
        state.dispatch();
    }

    /// Sets L: the calls that arrive from now on draw their work around
    /// it; the calls already there keep theirs.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    /// Halves C (at least 1).
    pub fn halve(&self) {
        let capacity = lock(&self.state).capacity;
        self.set_capacity((capacity / 2).max(1));
    }

    /// Doubles C.
    pub fn double(&self) {
        let capacity = lock(&self.state).capacity;
        self.set_capacity(capacity.saturating_mul(2));
    }

    /// What the dependency saw.
    pub fn metrics(&self) -> DependencyMetrics {
        lock(&self.state).metrics()
    }

    /// The most calls held at once since the last call of this (or since
    /// the start), and a new window starting from what it holds now.
    fn take_window_max(&self) -> usize {
        let mut state = lock(&self.state);
        let max = state.window_max;
        state.window_max = state.in_flight();
        max
    }
}

// === the load ===

/// A partition of the load and its share of the arrivals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partition {
    /// Its name, as [`Call::partition`].
    pub name: &'static str,
    /// Its share of the arrivals (the shares are normalised).
    pub share: f64,
}

/// A partition sends nothing for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// The idle partition.
    pub partition: &'static str,
    /// When, since the start.
    pub during: Range<Duration>,
}

/// The dependency's capacity changes: C, or L.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityChange {
    /// When, since the start.
    pub at: Duration,
    /// What changes.
    pub to: Change,
}

/// What a [`CapacityChange`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// C, the calls worked on at once.
    Concurrency(usize),
    /// L, the median work of a call.
    Latency(Duration),
}

/// An open-loop load: see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// A short name, for tables and messages.
    pub name: String,
    /// The arrival rate, as a multiple of C/L at the start.
    pub multiple: f64,
    /// How long arrivals go on.
    pub duration: Duration,
    /// How long a client waits for an answer before it gives up.
    pub timeout: Duration,
    /// The span of one window of the trace.
    pub window: Duration,
    /// The partitions and their shares.
    pub partitions: Vec<Partition>,
    /// When partitions are idle.
    pub idle: Vec<Idle>,
    /// The share of critical requests, in [0, 1].
    pub critical_share: f64,
    /// When the dependency's capacity changes.
    pub changes: Vec<CapacityChange>,
    /// The seed of the arrivals and the labels.
    pub seed: u64,
}

/// A request's labels: its partition (an index in [`Load::partitions`])
/// and whether it is critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Labels {
    partition: usize,
    critical: bool,
}

// === impl Load ===

impl Load {
    /// `multiple` times C/L for `duration`: a 1 s client timeout, 1 s
    /// windows, one partition ([`DEFAULT_PARTITION`]), nothing critical, no
    /// capacity change, seed 17.
    pub fn new(multiple: f64, duration: Duration) -> Self {
        Self {
            name: format!("{multiple}x C/L"),
            multiple,
            duration,
            timeout: Duration::from_secs(1),
            window: Duration::from_secs(1),
            partitions: vec![Partition {
                name: DEFAULT_PARTITION,
                share: 1.0,
            }],
            idle: Vec::new(),
            critical_share: 0.0,
            changes: Vec::new(),
            seed: 17,
        }
    }

    /// This load under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// This load with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// This load with another client timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This load traced in windows of `window`.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// This load split into partitions: names and shares.
    pub fn with_partitions(mut self, partitions: &[(&'static str, f64)]) -> Self {
        self.partitions = partitions
            .iter()
            .map(|&(name, share)| Partition { name, share })
            .collect();
        self
    }

    /// This load with `partition` idle `during` that span.
    pub fn with_idle(mut self, partition: &'static str, during: Range<Duration>) -> Self {
        self.idle.push(Idle { partition, during });
        self
    }

    /// This load with a share of critical requests.
    pub fn with_critical_share(mut self, share: f64) -> Self {
        self.critical_share = share;
        self
    }

    /// This load with the dependency's C set to `concurrency` at `at`.
    pub fn with_capacity_change(mut self, at: Duration, concurrency: usize) -> Self {
        self.changes.push(CapacityChange {
            at,
            to: Change::Concurrency(concurrency),
        });
        self
    }

    /// This load with the dependency's L set to `latency` at `at`: every
    /// call that arrives from then on takes that much work, whatever the
    /// load (a dependency slower, or faster, for every call).
    pub fn with_latency_change(mut self, at: Duration, latency: Duration) -> Self {
        self.changes.push(CapacityChange {
            at,
            to: Change::Latency(latency),
        });
        self
    }

    /// Arrivals per second against `capacity` (at the start).
    pub fn rate(&self, capacity: Capacity) -> f64 {
        self.multiple * capacity.rate()
    }

    /// The index of a partition, by name.
    pub fn partition_index(&self, name: &str) -> Option<usize> {
        self.partitions.iter().position(|p| p.name == name)
    }

    /// Request `id`'s labels.
    fn labels(&self, id: u64) -> Labels {
        let mut draws = Rng::stream(self.seed, id);
        let total: f64 = self.partitions.iter().map(|p| p.share).sum();
        let mut point = draws.unit() * total;
        let mut partition = self.partitions.len() - 1;
        for (i, p) in self.partitions.iter().enumerate() {
            if point < p.share {
                partition = i;
                break;
            }
            point -= p.share;
        }
        Labels {
            partition,
            critical: draws.unit() < self.critical_share,
        }
    }

    fn idle_at(&self, partition: &str, elapsed: Duration) -> bool {
        self.idle
            .iter()
            .any(|idle| idle.partition == partition && idle.during.contains(&elapsed))
    }
}

// === the figures ===

/// The fate of the requests of one class (a partition, the critical ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassFigures {
    /// Requests sent.
    pub offered: u64,
    /// Requests whose call reached the dependency.
    pub admitted: u64,
    /// Requests that ended in an error without reaching the dependency.
    pub refused: u64,
    /// Requests answered with a success within the timeout.
    pub succeeded: u64,
}

impl ClassFigures {
    /// Admitted over offered (`NaN` when none was offered).
    pub fn admitted_fraction(&self) -> f64 {
        ratio(self.admitted, self.offered)
    }

    fn merge(&mut self, other: &Self) {
        self.offered += other.offered;
        self.admitted += other.admitted;
        self.refused += other.refused;
        self.succeeded += other.succeeded;
    }
}

/// What became of the requests over a span (a window, or windows added up).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The span the rates are over.
    pub span: Duration,
    /// Requests sent.
    pub offered: u64,
    /// Answered with a success within the timeout.
    pub succeeded: u64,
    /// Answered with an error after reaching the dependency.
    pub failed: u64,
    /// Ended in an error without reaching the dependency: a layer refused.
    pub refused: u64,
    /// Given up by the client at its timeout.
    pub timed_out: u64,
    /// Requests whose call reached the dependency.
    pub admitted: u64,
    /// By partition, in the order of [`Load::partitions`].
    pub partitions: Vec<ClassFigures>,
    /// The critical requests.
    pub critical: ClassFigures,
    latencies: Vec<Duration>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        part as f64 / whole as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded(Duration),
    Failed,
    Refused,
    TimedOut,
}

// === impl Figures ===

impl Figures {
    fn empty(span: Duration, partitions: usize) -> Self {
        Self {
            span,
            partitions: vec![ClassFigures::default(); partitions],
            ..Self::default()
        }
    }

    /// Requests that ended.
    pub fn ended(&self) -> u64 {
        self.succeeded + self.failed + self.refused + self.timed_out
    }

    /// Successes within the timeout per second of the span.
    pub fn goodput(&self) -> f64 {
        self.succeeded as f64 / self.span.as_secs_f64()
    }

    /// Successes over the requests that ended (`NaN` when none did).
    pub fn success_rate(&self) -> f64 {
        ratio(self.succeeded, self.ended())
    }

    /// The `q` quantile (nearest rank) of the successes' latency, from
    /// arrival to answer; `None` without a success.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let (_, nth, _) = sorted.select_nth_unstable(rank - 1);
        Some(*nth)
    }

    /// The median latency of the successes.
    pub fn p50(&self) -> Option<Duration> {
        self.latency_quantile(0.5)
    }

    /// The 99th percentile latency of the successes.
    pub fn p99(&self) -> Option<Duration> {
        self.latency_quantile(0.99)
    }

    /// Adds `other`'s requests and span to these.
    pub fn merge(&mut self, other: &Self) {
        self.span += other.span;
        self.offered += other.offered;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.admitted += other.admitted;
        if self.partitions.len() < other.partitions.len() {
            self.partitions
                .resize(other.partitions.len(), ClassFigures::default());
        }
        for (mine, theirs) in self.partitions.iter_mut().zip(&other.partitions) {
            mine.merge(theirs);
        }
        self.critical.merge(&other.critical);
        self.latencies.extend_from_slice(&other.latencies);
    }

    fn arrive(&mut self, labels: Labels) {
        self.offered += 1;
        self.partitions[labels.partition].offered += 1;
        if labels.critical {
            self.critical.offered += 1;
        }
    }

    fn end(&mut self, labels: Labels, admitted: bool, outcome: Outcome) {
        let mut class = ClassFigures {
            admitted: u64::from(admitted),
            ..ClassFigures::default()
        };
        match outcome {
            Outcome::Succeeded(latency) => {
                self.succeeded += 1;
                class.succeeded = 1;
                self.latencies.push(latency);
            }
            Outcome::Failed => self.failed += 1,
            Outcome::Refused => {
                self.refused += 1;
                class.refused = 1;
            }
            Outcome::TimedOut => self.timed_out += 1,
        }
        self.admitted += class.admitted;
        self.partitions[labels.partition].merge(&class);
        if labels.critical {
            self.critical.merge(&class);
        }
    }
}

/// One window of a run's trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// When it started, since the run's start; it lasts `figures.span`.
    pub start: Duration,
    /// What became of the requests in it.
    pub figures: Figures,
    /// The most calls the dependency held at once during it.
    pub in_flight: usize,
    /// The dependency's C at its end.
    pub capacity: usize,
    /// The probe at its end (the limit in force, for a limiter).
    pub probe: Option<usize>,
}

impl Window {
    /// When it ended, since the run's start.
    pub fn end(&self) -> Duration {
        self.start + self.figures.span
    }
}

/// One reading of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSample {
    /// When, since the run's start.
    pub at: Duration,
    /// The limit.
    pub limit: usize,
}

/// A run of a [`Load`] against a stack: see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The load.
    pub load: Load,
    /// The dependency's capacity at the start.
    pub capacity: Capacity,
    /// Requests sent (arrivals of an idle partition are not).
    pub requests: u64,
    /// Requests still running when the run gave up waiting (a stack that
    /// never answers, even at the client timeout): 0 in a sound run.
    pub unfinished: u64,
    /// The windows, from the start until the last request ended.
    pub trace: Vec<Window>,
    /// What the dependency saw, at the end.
    pub dependency: DependencyMetrics,
}

// === impl Run ===

impl Run {
    /// Every request of the run; rates over the load's duration.
    pub fn overall(&self) -> Figures {
        let mut all = Figures::empty(Duration::ZERO, self.load.partitions.len());
        for window in &self.trace {
            all.merge(&window.figures);
        }
        all.span = self.load.duration;
        all
    }

    /// The windows that lie wholly within `span`, added up.
    pub fn between(&self, span: Range<Duration>) -> Figures {
        let mut sum = Figures::empty(Duration::ZERO, self.load.partitions.len());
        for window in self.windows(span) {
            sum.merge(&window.figures);
        }
        sum
    }

    /// The windows that lie wholly within `span`.
    pub fn windows(&self, span: Range<Duration>) -> impl DoubleEndedIterator<Item = &Window> {
        self.trace
            .iter()
            .filter(move |w| w.start >= span.start && w.end() <= span.end)
    }

    /// The most calls the dependency held at once in the windows within
    /// `span`.
    pub fn max_in_flight(&self, span: Range<Duration>) -> usize {
        self.windows(span).map(|w| w.in_flight).max().unwrap_or(0)
    }

    /// `partition`'s share of the admitted requests within `span` (`NaN`
    /// when none was admitted or the partition is unknown).
    pub fn admitted_share(&self, partition: &str, span: Range<Duration>) -> f64 {
        let figures = self.between(span);
        match self.load.partition_index(partition) {
            Some(i) => ratio(figures.partitions[i].admitted, figures.admitted),
            None => f64::NAN,
        }
    }

    /// The probe's readings, at the end of each window where it read one.
    pub fn limit_trace(&self) -> Vec<LimitSample> {
        self.trace
            .iter()
            .filter_map(|w| w.probe.map(|limit| LimitSample { at: w.end(), limit }))
            .collect()
    }

    /// [`settle_time`] of the probe's trace.
    pub fn settle_time(
        &self,
        span: Range<Duration>,
        target: usize,
        tolerance: f64,
    ) -> Option<Duration> {
        settle_time(&self.limit_trace(), span, target, tolerance)
    }

    /// [`drift_per_minute`] of the probe's trace.
    pub fn drift_per_minute(&self, span: Range<Duration>) -> Option<f64> {
        drift_per_minute(&self.limit_trace(), span)
    }
}

// === reading a limit's trace ===

/// How long after `span.start` the limit settled within `tolerance` (0.1:
/// 10%) of `target` for good: the time of the first reading in `span` from
/// which every reading in `span` is within the band. `None` when the last
/// reading in `span` is outside it, or there is none. Its resolution is
/// the trace's: a window.
pub fn settle_time(
    trace: &[LimitSample],
    span: Range<Duration>,
    target: usize,
    tolerance: f64,
) -> Option<Duration> {
    let band = tolerance * target as f64;
    let within = |s: &LimitSample| (s.limit as f64 - target as f64).abs() <= band;
    let in_span: Vec<&LimitSample> = trace.iter().filter(|s| span.contains(&s.at)).collect();
    let first_of_streak = in_span
        .iter()
        .rposition(|s| !within(s))
        .map_or(0, |last_out| last_out + 1);
    in_span
        .get(first_of_streak)
        .map(|s| s.at.saturating_sub(span.start))
}

/// The limit's slope within `span` in limit units per simulated minute,
/// least squares; `None` under two readings. Positive: the limit drifts up.
pub fn drift_per_minute(trace: &[LimitSample], span: Range<Duration>) -> Option<f64> {
    let points: Vec<(f64, f64)> = trace
        .iter()
        .filter(|s| span.contains(&s.at))
        .map(|s| (s.at.as_secs_f64() / 60.0, s.limit as f64))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_l = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (t, l) in &points {
        cov += (t - mean_t) * (l - mean_l);
        var += (t - mean_t) * (t - mean_t);
    }
    (var > 0.0).then(|| cov / var)
}

/// Erlang's loss formula: the share of arrivals that find all `servers`
/// busy, at `offered` erlangs (arrival rate times mean holding time), in a
/// system without a queue. A fixed limit at C in front of the dependency
/// is one: it carries `offered * (1 - erlang_b(C, offered))` calls at once
/// on average, whatever the distribution of the work.
pub fn erlang_b(servers: usize, offered: f64) -> f64 {
    let mut blocked = 1.0;
    for k in 1..=servers {
        blocked = offered * blocked / offered.mul_add(blocked, k as f64);
    }
    blocked
}

// === the run ===

struct Ledger {
    start: Instant,
    window: Duration,
    partitions: usize,
    windows: Vec<Figures>,
    in_flight: u64,
}

// === impl Ledger ===

impl Ledger {
    /// The window of `at`: a window holds its end and not its start, so
    /// what happens at a boundary counts in the window the boundary closes.
    fn at(&mut self, at: Instant) -> &mut Figures {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        let index = (nanos.saturating_sub(1) / self.window.as_nanos().max(1)) as usize;
        if self.windows.len() <= index {
            let (window, partitions) = (self.window, self.partitions);
            self.windows
                .resize_with(index + 1, || Figures::empty(window, partitions));
        }
        &mut self.windows[index]
    }
}

/// What the dependency and the probe read at a window's end.
#[derive(Debug, Clone, Copy)]
struct Sample {
    in_flight: usize,
    capacity: usize,
    probe: Option<usize>,
}

/// One request, from its arrival at `arrived` to its end, told to `ledger`.
async fn client<S>(
    svc: S,
    call: Call,
    labels: Labels,
    timeout: Duration,
    arrived: Instant,
    ledger: Arc<Mutex<Ledger>>,
) where
    S: Service<Call>,
{
    let reached = Arc::clone(&call.reached);
    let outcome = match tokio::time::timeout(timeout, svc.oneshot(call)).await {
        Ok(Ok(_)) => Outcome::Succeeded(arrived.elapsed()),
        Err(_) => Outcome::TimedOut,
        Ok(Err(_)) if reached.load(Ordering::Relaxed) => Outcome::Failed,
        Ok(Err(_)) => Outcome::Refused,
    };
    let admitted = reached.load(Ordering::Relaxed);
    let mut ledger = lock(&ledger);
    ledger.in_flight -= 1;
    ledger.at(Instant::now()).end(labels, admitted, outcome);
}

/// Runs `load` against the stack `stack` builds in front of `dependency`,
/// reading `probe` at the end of each window: see the [module docs](self).
/// Call it on a current-thread runtime with tokio's clock paused.
///
/// The run waits for every request to end (each ends by its timeout at
/// the latest), then returns; the dependency may still be working on calls
/// whose clients gave up.
pub async fn run<S, F, P>(dependency: Dependency, load: &Load, stack: F, probe: P) -> Run
where
    F: FnOnce(Dependency) -> S,
    S: Service<Call> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    P: Fn() -> Option<usize>,
{
    let capacity = dependency.capacity();
    let handle = dependency.handle();
    let svc = stack(dependency);
    let rate = load.rate(capacity);
    let start = Instant::now();
    let ledger = Arc::new(Mutex::new(Ledger {
        start,
        window: load.window,
        partitions: load.partitions.len(),
        windows: Vec::new(),
        in_flight: 0,
    }));
    let mut changes = load.changes.clone();
    changes.sort_by_key(|c| c.at);
    let mut changes = changes.into_iter().peekable();
    let mut samples = Vec::new();
    let mut arrivals = Rng::stream(load.seed, 0);
    // Arrival times in whole nanoseconds since the start: no float drift
    // between the arrivals and the clock.
    let gap = |rng: &mut Rng| Duration::from_secs_f64(rng.exponential(rate));
    let mut next_arrival = gap(&mut arrivals);
    let mut next_window = load.window;
    let (mut ids, mut requests) = (0u64, 0u64);
    let give_up = load.duration + load.timeout + 2 * load.window;
    loop {
        let mut next = next_window;
        if next_arrival < load.duration {
            next = next.min(next_arrival);
        }
        if let Some(change) = changes.peek() {
            next = next.min(change.at);
        }
        tokio::time::sleep_until(start + next).await;
        // Everything due by now (the timer counts milliseconds), and at
        // least what was slept for, whatever the clock's rounding.
        let now = Instant::now().max(start + next);
        let elapsed = now - start;
        while let Some(change) = changes.next_if(|c| c.at <= elapsed) {
            match change.to {
                Change::Concurrency(concurrency) => handle.set_capacity(concurrency),
                Change::Latency(latency) => handle.set_latency(latency),
            }
        }
        while next_arrival <= elapsed && next_arrival < load.duration {
            ids += 1;
            let id = ids;
            next_arrival += gap(&mut arrivals);
            let labels = load.labels(id);
            let name = load.partitions[labels.partition].name;
            if load.idle_at(name, elapsed) {
                continue;
            }
            requests += 1;
            {
                let mut ledger = lock(&ledger);
                ledger.in_flight += 1;
                ledger.at(now).arrive(labels);
            }
            let call = Call::new(id)
                .with_partition(name)
                .with_critical(labels.critical);
            tokio::spawn(client(
                svc.clone(),
                call,
                labels,
                load.timeout,
                now,
                Arc::clone(&ledger),
            ));
        }
        if next_window <= elapsed {
            samples.push(Sample {
                in_flight: handle.take_window_max(),
                capacity: handle.metrics().capacity,
                probe: probe(),
            });
            next_window += load.window;
            let in_flight = lock(&ledger).in_flight;
            let arriving = next_arrival < load.duration;
            if !arriving && (in_flight == 0 || elapsed >= give_up) {
                break;
            }
        }
    }
    let (mut windows, unfinished) = {
        let mut ledger = lock(&ledger);
        (std::mem::take(&mut ledger.windows), ledger.in_flight)
    };
    let windows_len = samples.len().max(windows.len());
    windows.resize_with(windows_len, || {
        Figures::empty(load.window, load.partitions.len())
    });
    let trace = windows
        .into_iter()
        .enumerate()
        .map(|(i, figures)| {
            let sample = samples.get(i).copied().unwrap_or(Sample {
                in_flight: 0,
                capacity: handle.metrics().capacity,
                probe: None,
            });
            Window {
                start: load.window * i as u32,
                figures,
                in_flight: sample.in_flight,
                capacity: sample.capacity,
                probe: sample.probe,
            }
        })
        .collect();
    Run {
        load: load.clone(),
        capacity,
        requests,
        unfinished,
        trace,
        dependency: handle.metrics(),
    }
}

/// [`run`] on a new current-thread runtime whose clock is paused.
pub fn run_paused<S, F, P>(dependency: Dependency, load: &Load, stack: F, probe: P) -> Run
where
    F: FnOnce(Dependency) -> S,
    S: Service<Call> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
    P: Fn() -> Option<usize>,
{
    block_on_paused(run(dependency, load, stack, probe))
}
