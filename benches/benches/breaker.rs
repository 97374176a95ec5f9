//! CircuitBreak on the Closed happy path, beside tower-resilience's circuit
//! breaker and failsafe's consecutive-failure breaker, single-threaded and
//! with 64 tasks on 2 workers. Run with
//! `cargo bench -p reflex-benches --bench breaker`.
//!
//! Breakers are built outside the timed loop. Allocations per call are
//! printed before the timings.
//!
//! "inside a request frame" runs each call as a witness layer above the
//! breaker would: in a `reflex_core::origin` frame, where the breaker reads
//! the request's failed calls below to tell echoes from its own failures.
//! Compare with "bare Echo inside a request frame" (the frame's own cost).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, allocations_per_call, bench_contended, bench_single};
use reflex_breaker::{CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::origin::{Frame, Scoped};
use tower::{Layer, Service};

const TASKS: u64 = 64;

/// A reflex breaker built from `builder`, around [`Echo`].
fn reflex(
    builder: CircuitBreakBuilder,
) -> impl Service<u64, Response = u64, Error = reflex_core::BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    builder.build().expect("valid").layer(Echo)
}

/// The default configuration: failure rate 50% over the last 100 calls,
/// at least 20 calls.
fn default_rule() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
}

/// Consecutive failures only, as failsafe's breaker.
fn consecutive() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder().consecutive_failures(5)
}

/// Every trip condition on: consecutive failures, failure rate and
/// slow-call rate over a count window (two clock reads a call).
fn full_count() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .consecutive_failures(5)
        .failure_rate(0.5)
        .slow_calls(0.8, Duration::from_secs(1))
        .count_window(100)
}

/// Failure rate over a 10 s time window in 10 buckets (a clock read a call).
fn time_window() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder().time_window(Duration::from_secs(10), 10)
}

/// tower-resilience's breaker with the same rule as [`default_rule`].
fn tower_resilience()
-> impl Service<u64, Response = u64, Error: std::fmt::Debug + Send, Future: Send>
+ Clone
+ Send
+ 'static {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
        .build()
        .expect("valid")
        .layer(Echo)
}

/// failsafe's consecutive-failure breaker, behind a `Service` so the same
/// drivers call it (its own API is a synchronous `call(|| ..)`).
#[derive(Clone)]
struct Failsafe<B>(B);

impl<B: failsafe::CircuitBreaker> Service<u64> for Failsafe<B> {
    type Response = u64;
    type Error = failsafe::Error<Infallible>;
    type Future = Ready<Result<u64, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(self.0.call(|| Ok::<_, Infallible>(req)))
    }
}

fn failsafe_consecutive() -> Failsafe<impl failsafe::CircuitBreaker + Clone + Send + Sync + 'static>
{
    let backoff = failsafe::backoff::constant(Duration::from_secs(30));
    let policy = failsafe::failure_policy::consecutive_failures(5, backoff);
    Failsafe(failsafe::Config::new().failure_policy(policy).build())
}

/// Each call in a request frame of its own, as under a witness layer.
#[derive(Clone)]
struct InFrame<S>(S);

impl<S: Service<u64>> Service<u64> for InFrame<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: u64) -> Self::Future {
        let mut frame = Frame::start(0, 0);
        let future = frame.enter(|| self.0.call(req));
        Scoped::new(frame, future)
    }
}

fn print_allocations() {
    eprintln!(
        "allocations per call: reflex default {:.3}, reflex consecutive {:.3}, reflex full (count) {:.3}, reflex time window {:.3}, tower-resilience {:.3}, failsafe {:.3}",
        allocations_per_call(&mut reflex(default_rule()), 100_000),
        allocations_per_call(&mut reflex(consecutive()), 100_000),
        allocations_per_call(&mut reflex(full_count()), 100_000),
        allocations_per_call(&mut reflex(time_window()), 100_000),
        allocations_per_call(&mut tower_resilience(), 100_000),
        allocations_per_call(&mut failsafe_consecutive(), 100_000),
    );
}

fn single_threaded(c: &mut Criterion) {
    print_allocations();
    let mut group = c.benchmark_group("breaker/single_thread");
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(
        &mut group,
        "reflex default (rate, count window)",
        reflex(default_rule()),
    );
    bench_single(&mut group, "reflex consecutive only", reflex(consecutive()));
    bench_single(
        &mut group,
        "reflex full (consecutive + rate + slow, count window)",
        reflex(full_count()),
    );
    bench_single(
        &mut group,
        "reflex rate over time window",
        reflex(time_window()),
    );
    bench_single(
        &mut group,
        "bare Echo inside a request frame",
        InFrame(Echo),
    );
    bench_single(
        &mut group,
        "reflex default inside a request frame",
        InFrame(reflex(default_rule())),
    );
    bench_single(&mut group, "tower-resilience", tower_resilience());
    bench_single(&mut group, "failsafe consecutive", failsafe_consecutive());
    group.finish();
}

fn contended_64_tasks(c: &mut Criterion) {
    let runtime = reflex_benches::two_workers();
    let mut group = c.benchmark_group("breaker/64_tasks_2_workers");
    bench_contended(&mut group, &runtime, "bare Echo", Echo, TASKS);
    bench_contended(
        &mut group,
        &runtime,
        "reflex default (rate, count window)",
        reflex(default_rule()),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "reflex consecutive only",
        reflex(consecutive()),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "tower-resilience",
        tower_resilience(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "failsafe consecutive",
        failsafe_consecutive(),
        TASKS,
    );
    group.finish();
}

criterion_group!(benches, single_threaded, contended_64_tasks);
criterion_main!(benches);
