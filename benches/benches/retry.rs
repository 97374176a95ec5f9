//! Retry on the no-retry happy path (the inner service always succeeds), with
//! and without its budget, beside tower's Retry (a minimal policy, and the
//! same policy over a TpsBudget) and tower-resilience's retry,
//! single-threaded and with 64 tasks on 2 workers. Run with
//! `cargo bench -p reflex-benches --bench retry`.
//!
//! Every service allows 3 attempts (2 retries); none retries here, so what
//! is timed is the cost of being ready to. Layers are built outside the
//! timed loop. Allocations per call are printed before the timings.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, allocations_per_call, bench_contended, bench_single};
use reflex_retry::RetryLayer;
use tower::Layer;
use tower::retry::budget::{Budget, TpsBudget};

const TASKS: u64 = 64;

/// Retries after the first attempt, as reflex's default 3 attempts.
const RETRIES: u32 = 2;

/// The default configuration: 3 attempts, budget of 20% of the requests of
/// the last 10 s plus 10 retries a second.
fn reflex_budget() -> reflex_retry::Retry<Echo> {
    RetryLayer::builder().build().expect("valid").layer(Echo)
}

/// The default configuration without the budget.
fn reflex_no_budget() -> reflex_retry::Retry<Echo> {
    RetryLayer::builder()
        .no_budget()
        .build()
        .expect("valid")
        .layer(Echo)
}

/// The least a tower policy can do: copy the request, retry an error up to
/// [`RETRIES`] times, at once. Cloned into every response future, so the
/// count is per request.
#[derive(Clone, Debug)]
struct Attempts {
    retries_left: u32,
}

impl<Res, E> tower::retry::Policy<u64, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.retries_left > 0 => {
                self.retries_left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// [`Attempts`] over a shared budget, as tower's budget docs show: every
/// success deposits, every retry withdraws first.
#[derive(Clone, Debug)]
struct Budgeted {
    retries_left: u32,
    budget: Arc<TpsBudget>,
}

impl<Res, E> tower::retry::Policy<u64, Res, E> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.retries_left > 0 && self.budget.withdraw() => {
                self.retries_left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn tower_retry() -> tower::retry::Retry<Attempts, Echo> {
    tower::retry::RetryLayer::new(Attempts {
        retries_left: RETRIES,
    })
    .layer(Echo)
}

/// tower's Retry with a policy that reaches shared state (a retry counter
/// behind an `Arc`), as any policy that reports what it did must: tower
/// clones the policy for every request.
#[derive(Clone, Debug)]
struct Counted {
    retries_left: u32,
    retries: Arc<std::sync::atomic::AtomicU64>,
}

impl<Res, E> tower::retry::Policy<u64, Res, E> for Counted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.retries_left > 0 => {
                self.retries_left -= 1;
                self.retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn tower_retry_counted() -> tower::retry::Retry<Counted, Echo> {
    tower::retry::RetryLayer::new(Counted {
        retries_left: RETRIES,
        retries: Arc::default(),
    })
    .layer(Echo)
}

/// The same budget as `reflex_budget`: 20% of the last 10 s, 10 a second.
fn tower_retry_budget() -> tower::retry::Retry<Budgeted, Echo> {
    tower::retry::RetryLayer::new(Budgeted {
        retries_left: RETRIES,
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
    })
    .layer(Echo)
}

/// tower-resilience's retry with 3 attempts (its default backoff; no
/// budget, its default).
fn tower_resilience() -> tower_resilience_retry::Retry<Echo, u64, u64, Infallible> {
    tower_resilience_retry::RetryLayer::<u64, u64, Infallible>::builder()
        .max_attempts(RETRIES as usize + 1)
        .build()
        .layer(Echo)
}

fn print_allocations() {
    eprintln!(
        "allocations per call: reflex budget {:.3}, reflex no budget {:.3}, tower retry {:.3}, tower retry + TpsBudget {:.3}, tower-resilience retry {:.3}, bare Echo {:.3}",
        allocations_per_call(&mut reflex_budget(), 100_000),
        allocations_per_call(&mut reflex_no_budget(), 100_000),
        allocations_per_call(&mut tower_retry(), 100_000),
        allocations_per_call(&mut tower_retry_budget(), 100_000),
        allocations_per_call(&mut tower_resilience(), 100_000),
        allocations_per_call(&mut Echo, 100_000),
    );
}

fn single_threaded(c: &mut Criterion) {
    print_allocations();
    let mut group = c.benchmark_group("retry/single_thread");
    bench_single(&mut group, "bare Echo", Echo);
    bench_single(&mut group, "reflex budget", reflex_budget());
    bench_single(&mut group, "reflex no budget", reflex_no_budget());
    bench_single(&mut group, "tower retry", tower_retry());
    bench_single(
        &mut group,
        "tower retry + shared counter",
        tower_retry_counted(),
    );
    bench_single(&mut group, "tower retry + TpsBudget", tower_retry_budget());
    bench_single(&mut group, "tower-resilience retry", tower_resilience());
    group.finish();
}

fn contended_64_tasks(c: &mut Criterion) {
    let runtime = reflex_benches::two_workers();
    let mut group = c.benchmark_group("retry/64_tasks_2_workers");
    bench_contended(&mut group, &runtime, "bare Echo", Echo, TASKS);
    bench_contended(
        &mut group,
        &runtime,
        "reflex budget",
        reflex_budget(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "reflex no budget",
        reflex_no_budget(),
        TASKS,
    );
    bench_contended(&mut group, &runtime, "tower retry", tower_retry(), TASKS);
    bench_contended(
        &mut group,
        &runtime,
        "tower retry + shared counter",
        tower_retry_counted(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "tower retry + TpsBudget",
        tower_retry_budget(),
        TASKS,
    );
    bench_contended(
        &mut group,
        &runtime,
        "tower-resilience retry",
        tower_resilience(),
        TASKS,
    );
    group.finish();
}

criterion_group!(benches, single_threaded, contended_64_tasks);
criterion_main!(benches);
