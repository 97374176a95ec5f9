//! SlotAdmission's cost of admission, beside a plain `tokio::sync::Mutex`
//! per key (found in a map under a lock, as one would write it by hand):
//! an uncontended slot (one call at a time), and a hot slot that 64 tasks
//! on 2 workers queue for. Run with `cargo bench -p reflex-benches --bench slot`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use reflex_benches::{Echo, allocations_per_call, bench_contended, bench_single};
use reflex_slot::{LayerPolicy, Policy, SlotAdmission, SlotAdmissionLayer};
use tokio::time::Instant;
use tower::Layer;

const TASKS: u64 = 64;

type SlotOf = fn(&u64) -> Option<u64>;

/// Every request is for slot 7.
fn hot(_: &u64) -> Option<u64> {
    Some(7)
}

fn slots() -> SlotAdmission<Echo, u64, SlotOf, LayerPolicy> {
    SlotAdmissionLayer::builder()
        .key(hot as SlotOf)
        .policy(Policy::Queue)
        .queue_limit(TASKS as usize)
        .global_queue_limit(TASKS as usize)
        .build()
        .expect("valid")
        .layer(Echo)
}

/// The hand-written alternative: a map of per-key tokio mutexes.
#[derive(Clone, Default)]
struct MutexPerKey(Arc<Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>>);

impl MutexPerKey {
    async fn call(&self, key: u64, req: u64) -> u64 {
        let lock = Arc::clone(self.0.lock().expect("poisoned").entry(key).or_default());
        let _held = lock.lock().await;
        std::hint::black_box(req)
    }
}

fn uncontended(c: &mut Criterion) {
    eprintln!(
        "allocations per call, uncontended slot: reflex {:.3}",
        allocations_per_call(&mut slots(), 100_000)
    );
    let mut group = c.benchmark_group("slot/uncontended");
    bench_single(&mut group, "reflex SlotAdmission (Queue)", slots());
    let mut n = 0u64;
    let theirs = MutexPerKey::default();
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function("tokio Mutex per key", |b| {
        b.iter(|| {
            n += 1;
            match pin!(theirs.call(7, n)).poll(&mut cx) {
                Poll::Ready(out) => out,
                Poll::Pending => panic!("uncontended"),
            }
        })
    });
    group.finish();
}

fn hot_slot(c: &mut Criterion) {
    let runtime = reflex_benches::two_workers();
    let mut group = c.benchmark_group("slot/hot_slot_64_tasks_2_workers");
    bench_contended(
        &mut group,
        &runtime,
        "reflex SlotAdmission (Queue)",
        slots(),
        TASKS,
    );
    let theirs = MutexPerKey::default();
    group.bench_with_input(
        BenchmarkId::from_parameter("tokio Mutex per key"),
        &theirs,
        |b, mutexes| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(TASKS);
                runtime.block_on(async {
                    let start = Instant::now();
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..TASKS {
                        let mutexes = mutexes.clone();
                        set.spawn(async move {
                            for n in 0..per_task {
                                std::hint::black_box(mutexes.call(7, n).await);
                            }
                        });
                    }
                    while let Some(done) = set.join_next().await {
                        done.expect("task");
                    }
                    start.elapsed()
                })
            })
        },
    );
    group.finish();
}

criterion_group!(benches, uncontended, hot_slot);
criterion_main!(benches);
