//! The harness of issue 17 (`reflex_tests::capacity`) checked against
//! answers known in advance, before any adaptive limit is measured with it:
//! the dependency queues and serves as a FIFO server of C workers should,
//! the load draws what it is asked to, an unprotected dependency behaves as
//! queueing theory says below and above its capacity, a fixed limit at C
//! turns it into an Erlang loss system, and a change of C under a fixed
//! limit does the harm an adaptive limit is for.
//!
//! Everything runs on tokio's paused clock; C = 20 and L = 100 ms
//! throughout (C/L = 200 calls/s), over several rates and seeds.

use std::time::Duration;

use reflex::shed::ConcurrencyShedLayer;
use reflex_tests::capacity::{
    Call, Capacity, Contention, Dependency, LimitSample, Load, Run, Served, drift_per_minute,
    erlang_b, run, run_paused, settle_time,
};
use reflex_tests::support::block_on_paused;
use tower::{Layer, Service, ServiceExt};

const C: usize = 20;
const L: Duration = Duration::from_millis(100);
/// A tick of tokio's timer: arrivals and completions land on milliseconds.
const TICK: Duration = Duration::from_millis(1);

fn capacity() -> Capacity {
    Capacity::new(C, L)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn unprotected(dependency: Dependency, load: &Load) -> Run {
    run_paused(dependency, load, |dependency| dependency, || None)
}

/// A fixed shed limit at `limit` in front of the dependency; the probe
/// reads the limit in force.
fn fixed(limit: usize, dependency: Dependency, load: &Load) -> Run {
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(limit)
        .build()
        .expect("a valid limit");
    let handle = shed.handle();
    run_paused(
        dependency,
        load,
        |dependency| shed.layer(dependency),
        || Some(handle.metrics().hard_limit),
    )
}

/// A shed limit at `limit`, set to `then` at `at`, as a perfect adaptive
/// limit would: the reference for what following C buys.
fn oracle(limit: usize, at: Duration, then: usize, dependency: Dependency, load: &Load) -> Run {
    let shed = ConcurrencyShedLayer::builder()
        .hard_limit(limit)
        .build()
        .expect("a valid limit");
    let handle = shed.handle();
    block_on_paused(async {
        let steer = async {
            tokio::time::sleep(at).await;
            handle.set_hard_limit(then).expect("a valid limit");
        };
        let (run, ()) = tokio::join!(
            run(
                dependency,
                load,
                |dependency| shed.layer(dependency),
                || Some(handle.metrics().hard_limit)
            ),
            steer
        );
        run
    })
}

/// The mean of a lognormal work of median L and spread `sigma`.
fn mean_work(sigma: f64) -> f64 {
    L.as_secs_f64() * (sigma * sigma / 2.0).exp()
}

/// The p99 of a lognormal work of median L and spread `sigma`.
fn p99_work(sigma: f64) -> Duration {
    L.mul_f64((2.326 * sigma).exp())
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance * expected
}

// === the dependency ===

#[tokio::test(start_paused = true)]
async fn dependency_queues_calls_beyond_its_capacity_first_in_first_out() {
    let dependency = Dependency::new(Capacity::new(2, L));
    let calls: Vec<_> = (1..=5)
        .map(|id| dependency.clone().oneshot(Call::new(id)))
        .collect();
    let served = futures_all(calls).await;
    let latencies: Vec<u128> = served
        .iter()
        .map(|s| (s.queued + s.worked).as_millis())
        .collect();
    assert_eq!(latencies, [100, 100, 200, 200, 300]);
    let metrics = dependency.handle().metrics();
    assert_eq!((metrics.max_in_flight, metrics.served), (5, 5));
    assert_eq!(metrics.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn dependency_capacity_changes_at_run_time_for_the_queue() {
    let dependency = Dependency::new(Capacity::new(2, L));
    let handle = dependency.handle();
    let calls: Vec<_> = (1..=6)
        .map(|id| dependency.clone().oneshot(Call::new(id)))
        .collect();
    let double = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(handle.metrics().queued, 4);
        handle.double();
    };
    let (served, ()) = tokio::join!(futures_all(calls), double);
    let latencies: Vec<u128> = served
        .iter()
        .map(|s| (s.queued + s.worked).as_millis())
        .collect();
    assert_eq!(latencies, [100, 100, 150, 150, 200, 200]);
    handle.halve();
    handle.halve();
    assert_eq!(handle.metrics().capacity, 1);
}

#[tokio::test(start_paused = true)]
async fn dependency_works_on_a_call_whose_caller_gave_up() {
    let dependency = Dependency::new(Capacity::new(1, L));
    let call = Call::new(1);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        dependency.clone().oneshot(call.clone()),
    )
    .await;
    assert!(gave_up.is_err());
    assert!(call.reached_dependency());
    assert_eq!(dependency.handle().metrics().working, 1);
    tokio::time::sleep(L).await;
    let metrics = dependency.handle().metrics();
    assert_eq!((metrics.working, metrics.served), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn dependency_fails_its_failure_rate_after_doing_the_work() {
    let mut dependency = Dependency::new(Capacity::new(2000, L))
        .with_failure_rate(0.3)
        .with_seed(5);
    let start = tokio::time::Instant::now();
    let calls: Vec<_> = (1..=2000)
        .map(|id| dependency.call(Call::new(id)))
        .collect();
    let mut failed = 0;
    for call in calls {
        if call.await.is_err() {
            failed += 1;
            assert_eq!(start.elapsed(), L, "a failure comes after the work");
        }
    }
    assert!((540..=660).contains(&failed), "{failed} of 2000 failed");
    assert_eq!(dependency.handle().metrics().failed, failed);
}

/// How long each call waited in the queue and worked, in milliseconds.
fn waits_and_work(served: &[Served]) -> Vec<(u128, u128)> {
    served
        .iter()
        .map(|s| (s.queued.as_millis(), s.worked.as_millis()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn dependency_latency_changes_at_run_time_for_the_calls_that_arrive_after() {
    let dependency = Dependency::new(Capacity::new(2, L));
    let handle = dependency.handle();
    let early: Vec<_> = (1..=2)
        .map(|id| dependency.clone().oneshot(Call::new(id)))
        .collect();
    let early = tokio::spawn(futures_all(early));
    tokio::time::sleep(Duration::from_millis(50)).await;
    handle.set_latency(2 * L);
    assert_eq!(dependency.capacity().latency, 2 * L);
    // Arrives at 50 ms, waits for a worker until 100 ms, then works 200.
    let late = dependency
        .clone()
        .oneshot(Call::new(3))
        .await
        .expect("served");
    let early = early.await.expect("the task ends");
    let worked: Vec<u128> = early.iter().map(|s| s.worked.as_millis()).collect();
    assert_eq!(
        worked,
        [100, 100],
        "the calls already there keep their work"
    );
    assert_eq!(
        (late.queued.as_millis(), late.worked.as_millis()),
        (50, 200)
    );
}

#[tokio::test(start_paused = true)]
async fn under_slowdown_every_call_works_at_once_and_n_over_c_times_slower() {
    let dependency = Dependency::new(Capacity::new(2, L)).with_contention(Contention::Slowdown);
    // Four calls arrive together: to 1, 2, 3 and 4 calls in flight.
    let calls: Vec<_> = (1..=4)
        .map(|id| dependency.clone().oneshot(Call::new(id)))
        .collect();
    let served = futures_all(calls).await;
    let work = waits_and_work(&served);
    assert_eq!(work, [(0, 100), (0, 100), (0, 150), (0, 200)]);
    let metrics = dependency.handle().metrics();
    assert_eq!((metrics.max_in_flight, metrics.in_flight()), (4, 0));
    // Once they left, a call works at L again.
    let next = dependency.oneshot(Call::new(5)).await.expect("served");
    assert_eq!(next.worked, L);
}

#[tokio::test(start_paused = true)]
async fn a_call_already_queued_when_the_latency_changes_keeps_its_work() {
    let dependency = Dependency::new(Capacity::new(1, L));
    let handle = dependency.handle();
    // The second call queues behind the first; L changes while it waits.
    let calls: Vec<_> = (1..=2)
        .map(|id| dependency.clone().oneshot(Call::new(id)))
        .collect();
    let calls = tokio::spawn(futures_all(calls));
    tokio::time::sleep(Duration::from_millis(50)).await;
    handle.set_latency(3 * L);
    let served = calls.await.expect("the task ends");
    let work = waits_and_work(&served);
    assert_eq!(work, [(0, 100), (100, 100)], "work drawn on arrival");
}

#[test]
fn a_load_changes_the_latency_of_the_dependency_when_it_says() {
    // 0.5x C/L, nothing queues: calls take L, then 1.5 L from 10 s.
    let load = Load::new(0.5, secs(20))
        .with_seed(5)
        .with_latency_change(secs(10), L.mul_f64(1.5));
    let run = unprotected(Dependency::new(capacity()), &load);
    let before = ms(run.between(secs(1)..secs(10)).p50());
    let after = ms(run.between(secs(11)..secs(20)).p50());
    assert!(within(before, 100.0, 0.01), "{before}");
    assert!(within(after, 150.0, 0.01), "{after}");
}

/// Awaits every call in order and unwraps its answer.
async fn futures_all<F, T, E>(calls: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Debug + Send + 'static,
{
    let tasks: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(
            task.await
                .expect("the task ends")
                .expect("the call succeeds"),
        );
    }
    out
}

// === the load ===

#[test]
fn load_draws_partitions_and_critical_requests_in_their_shares() {
    let load = Load::new(0.5, secs(10))
        .with_partitions(&[("a", 0.7), ("b", 0.3)])
        .with_critical_share(0.1)
        .with_idle("b", secs(4)..secs(6))
        .with_seed(3);
    let run = unprotected(Dependency::new(capacity()), &load);
    let all = run.overall();
    let (a, b) = (all.partitions[0], all.partitions[1]);
    eprintln!(
        "labels: {} sent, a {} b {} critical {}; b during idle {}",
        all.offered,
        a.offered,
        b.offered,
        all.critical.offered,
        run.between(secs(4)..secs(6)).partitions[1].offered
    );
    assert_eq!(run.unfinished, 0);
    assert_eq!(all.offered, run.requests);
    assert_eq!(run.between(secs(4)..secs(6)).partitions[1].offered, 0);
    let busy = run.between(secs(0)..secs(4));
    let share_a = busy.partitions[0].offered as f64 / busy.offered as f64;
    assert!(within(share_a, 0.7, 0.05), "a's share {share_a:.3}");
    let critical = all.critical.offered as f64 / all.offered as f64;
    assert!(within(critical, 0.1, 0.2), "critical share {critical:.3}");
    // Unprotected at half load: everything is admitted and succeeds.
    assert_eq!((all.admitted, all.succeeded), (all.offered, all.offered));
    assert!(within(run.admitted_share("a", secs(0)..secs(4)), 0.7, 0.05));
    // b's last requests before its idle spell end in the window from 4 s.
    assert!(within(run.admitted_share("a", secs(5)..secs(6)), 1.0, 1e-9));
}

// === unprotected ===

#[test]
fn unprotected_dependency_at_half_load_serves_everything_at_its_base_latency() {
    for (seed, sigma) in [(1, 0.0), (2, 0.0), (3, 0.25), (4, 0.25)] {
        let load = Load::new(0.5, secs(10)).with_seed(seed);
        let run = unprotected(Dependency::new(capacity()).with_noise(sigma), &load);
        let all = run.overall();
        let offered_rate = all.offered as f64 / 10.0;
        eprintln!(
            "unprotected 0.5x seed {seed} sigma {sigma}: offered {offered_rate:.1}/s goodput {:.1}/s p50 {:.1} ms p99 {:.1} ms max in flight {}",
            all.goodput(),
            ms(all.p50()),
            ms(all.p99()),
            run.dependency.max_in_flight
        );
        assert!(within(offered_rate, load.rate(capacity()), 0.1));
        assert_eq!(all.succeeded, all.offered);
        assert!(within(all.goodput(), offered_rate, 1e-9));
        let p99 = all.p99().expect("successes");
        if sigma == 0.0 {
            assert!(p99 >= L && p99 <= L + TICK, "p99 {p99:?}");
        } else {
            assert!(
                within(p99.as_secs_f64(), p99_work(sigma).as_secs_f64(), 0.1),
                "p99 {p99:?}, the work's own {:?}",
                p99_work(sigma)
            );
        }
    }
}

#[test]
fn unprotected_dependency_over_capacity_queues_without_bound() {
    for seed in [1, 2, 3] {
        // No timeout to speak of: every request waits its turn.
        let load = Load::new(2.0, secs(20))
            .with_timeout(secs(3600))
            .with_seed(seed);
        let run = unprotected(Dependency::new(capacity()), &load);
        let during = run.between(secs(1)..secs(20));
        let p50 = |s| ms(run.between(secs(s - 1)..secs(s)).p50());
        let backlog = (load.rate(capacity()) - capacity().rate()) * 20.0;
        eprintln!(
            "unprotected 2x no timeout seed {seed}: goodput {:.1}/s max in flight {} (backlog {backlog:.0}), window p50 at 5 s {:.0} ms, 10 s {:.0} ms, 20 s {:.0} ms",
            during.goodput(),
            run.dependency.max_in_flight,
            p50(5),
            p50(10),
            p50(20),
        );
        assert_eq!(run.unfinished, 0);
        // The dependency serves C/L, no more...
        assert!(within(during.goodput(), capacity().rate(), 0.02));
        // ...so the rest piles up in its queue...
        assert!(within(
            run.dependency.max_in_flight as f64,
            backlog + C as f64,
            0.1
        ));
        // ...and a request arriving at a waits about a for its turn (the
        // backlog then, served at C/L): it ends at 2a, and the window ending
        // at t sees latencies of t/2, once the backlog has formed.
        assert!(p50(5) < p50(10) && p50(10) < p50(15) && p50(15) < p50(20));
        for t in [10, 15, 20] {
            assert!(within(p50(t), 1000.0 * t as f64 / 2.0, 0.1), "p50 {t}");
        }
    }
}

#[test]
fn unprotected_dependency_over_capacity_loses_its_goodput_to_a_client_timeout() {
    for (multiple, seed) in [(1.5, 1), (2.0, 2), (2.0, 5), (3.0, 3)] {
        let load = Load::new(multiple, secs(20)).with_seed(seed);
        let run = unprotected(Dependency::new(capacity()), &load);
        let late = run.between(secs(5)..secs(20));
        eprintln!(
            "unprotected {multiple}x 1 s timeout seed {seed}: goodput after 5 s {:.1}/s, timed out {:.1}%, dependency served {}",
            late.goodput(),
            100.0 * late.timed_out as f64 / late.ended() as f64,
            run.dependency.served
        );
        assert_eq!(run.unfinished, 0);
        // The queue's wait passes the timeout after about
        // timeout * (C/L) / (rate - C/L): at most 2 s here.
        assert!(late.goodput() <= 0.01 * capacity().rate());
        assert!(late.timed_out as f64 >= 0.99 * late.ended() as f64);
        // All the while the dependency works at capacity, for nobody.
        assert!(run.dependency.served as f64 >= 0.95 * capacity().rate() * 20.0);
    }
}

// === a fixed limit at C ===

#[test]
fn fixed_limit_at_capacity_keeps_base_latency_and_carries_erlang_goodput() {
    let cases = [
        (1.5, 1, 0.0),
        (1.5, 6, 0.25),
        (2.0, 2, 0.0),
        (2.0, 3, 0.25),
        (2.0, 7, 0.5),
        (3.0, 4, 0.0),
        (3.0, 5, 0.25),
    ];
    for (multiple, seed, sigma) in cases {
        let load = Load::new(multiple, secs(15))
            .with_partitions(&[("a", 0.7), ("b", 0.3)])
            .with_seed(seed);
        let run = fixed(C, Dependency::new(capacity()).with_noise(sigma), &load);
        let all = run.overall();
        let offered = load.rate(capacity()) * mean_work(sigma);
        let blocked = erlang_b(C, offered);
        let expected = offered * (1.0 - blocked) / mean_work(sigma);
        eprintln!(
            "fixed C {multiple}x seed {seed} sigma {sigma}: goodput {:.1}/s ({:.1}% of C/L; Erlang {expected:.1}/s), success {:.1}% (Erlang {:.1}%), p50 {:.1} ms p99 {:.1} ms, max in flight {}, a's share {:.3}",
            all.goodput(),
            100.0 * all.goodput() / capacity().rate(),
            100.0 * all.success_rate(),
            100.0 * (1.0 - blocked),
            ms(all.p50()),
            ms(all.p99()),
            run.dependency.max_in_flight,
            run.admitted_share("a", secs(0)..secs(15)),
        );
        assert_eq!(run.unfinished, 0);
        assert!(run.dependency.max_in_flight <= C);
        assert_eq!(all.admitted + all.refused, all.ended());
        assert!(
            within(all.goodput(), expected, 0.03),
            "goodput {:.1}/s, Erlang {expected:.1}/s",
            all.goodput()
        );
        assert!(within(all.success_rate(), 1.0 - blocked, 0.05));
        let p99 = all.p99().expect("successes");
        assert!(p99 <= p99_work(sigma).mul_f64(1.1) + TICK, "p99 {p99:?}");
        // The fixed limit is blind to partitions: each keeps its share.
        assert!(within(
            run.admitted_share("a", secs(0)..secs(15)),
            0.7,
            0.05
        ));
        assert_eq!(run.settle_time(secs(0)..secs(15), C, 0.1), Some(secs(1)));
    }
}

// === C changes under a fixed limit ===

#[test]
fn halving_capacity_under_a_fixed_limit_doubles_latency_until_the_limit_follows() {
    for seed in [1, 2, 3] {
        let load = Load::new(2.0, secs(20))
            .with_capacity_change(secs(10), C / 2)
            .with_seed(seed);
        let stuck = fixed(C, Dependency::new(capacity()), &load);
        let followed = oracle(C, secs(10), C / 2, Dependency::new(capacity()), &load);
        let (before, after) = (
            stuck.between(secs(1)..secs(10)),
            stuck.between(secs(12)..secs(20)),
        );
        let after_oracle = followed.between(secs(11)..secs(20));
        eprintln!(
            "halving seed {seed}: fixed C before p99 {:.1} ms goodput {:.1}/s; after p50 {:.1} ms p99 {:.1} ms goodput {:.1}/s in flight {}; following limit after p99 {:.1} ms goodput {:.1}/s in flight {}",
            ms(before.p99()),
            before.goodput(),
            ms(after.p50()),
            ms(after.p99()),
            after.goodput(),
            stuck.max_in_flight(secs(12)..secs(20)),
            ms(after_oracle.p99()),
            after_oracle.goodput(),
            followed.max_in_flight(secs(11)..secs(20)),
        );
        assert!(before.p99().expect("successes") <= L + TICK);
        // C calls in flight and C/2 workers: every call waits for about one
        // other's work.
        assert_eq!(stuck.max_in_flight(secs(12)..secs(20)), C);
        assert!(after.p50().expect("successes") >= L.mul_f64(1.8));
        assert!(after.p99().expect("successes") >= L.mul_f64(1.9));
        assert!(within(after.goodput(), capacity().rate() / 2.0, 0.05));
        assert_eq!(stuck.settle_time(secs(10)..secs(20), C / 2, 0.1), None);
        // A limit that follows C brings the base latency back...
        assert!(after_oracle.p99().expect("successes") <= L + TICK);
        assert!(followed.max_in_flight(secs(11)..secs(20)) <= C / 2);
        // ...and settles by the end of the first window after the change
        // (the reading at 10 s itself may come before or after it).
        let settled = followed.settle_time(secs(10)..secs(20), C / 2, 0.1);
        assert!(settled.is_some_and(|t| t <= secs(1)), "{settled:?}");
    }
}

#[test]
fn doubling_capacity_leaves_a_fixed_limit_carrying_half_of_what_it_could() {
    for seed in [7, 8] {
        // 4x C/L at the start: 2x the doubled capacity.
        let load = Load::new(4.0, secs(20))
            .with_capacity_change(secs(10), 2 * C)
            .with_seed(seed);
        let stuck = fixed(C, Dependency::new(capacity()), &load);
        let followed = oracle(C, secs(10), 2 * C, Dependency::new(capacity()), &load);
        let after = stuck.between(secs(11)..secs(20));
        let after_oracle = followed.between(secs(11)..secs(20));
        let doubled = 2.0 * capacity().rate();
        eprintln!(
            "doubling seed {seed}: fixed C after goodput {:.1}/s ({:.1}% of the new C/L) p99 {:.1} ms; following limit goodput {:.1}/s ({:.1}%) p99 {:.1} ms",
            after.goodput(),
            100.0 * after.goodput() / doubled,
            ms(after.p99()),
            after_oracle.goodput(),
            100.0 * after_oracle.goodput() / doubled,
            ms(after_oracle.p99()),
        );
        assert!(within(after.goodput(), doubled / 2.0, 0.05));
        assert!(after.p99().expect("successes") <= L + TICK);
        let expected = load.rate(capacity()) * (1.0 - erlang_b(2 * C, 4.0 * C as f64));
        assert!(within(after_oracle.goodput(), expected, 0.03));
        assert!(after_oracle.p99().expect("successes") <= L + TICK);
        let settled = followed.settle_time(secs(10)..secs(20), 2 * C, 0.1);
        assert!(settled.is_some_and(|t| t <= secs(1)), "{settled:?}");
    }
}

// === reading a trace ===

#[test]
fn settle_time_is_the_start_of_the_last_streak_within_the_band() {
    let trace: Vec<LimitSample> = [200, 150, 100, 50, 22, 19, 21, 20, 20]
        .into_iter()
        .enumerate()
        .map(|(i, limit)| LimitSample {
            at: secs(i as u64 + 1),
            limit,
        })
        .collect();
    assert_eq!(
        settle_time(&trace, secs(0)..secs(10), 20, 0.1),
        Some(secs(5))
    );
    assert_eq!(
        settle_time(&trace, secs(2)..secs(10), 20, 0.1),
        Some(secs(3))
    );
    // A reading outside the band later restarts the clock.
    let mut bounced = trace;
    bounced[6].limit = 30;
    assert_eq!(
        settle_time(&bounced, secs(0)..secs(10), 20, 0.1),
        Some(secs(8))
    );
    // Never settled: the last reading is out.
    bounced[8].limit = 30;
    assert_eq!(settle_time(&bounced, secs(0)..secs(10), 20, 0.1), None);
    assert_eq!(settle_time(&[], secs(0)..secs(10), 20, 0.1), None);
}

#[test]
fn drift_is_the_least_squares_slope_per_minute() {
    let rising: Vec<LimitSample> = (0..=600)
        .map(|s| LimitSample {
            at: secs(s),
            limit: 20 + (s / 30) as usize,
        })
        .collect();
    let drift = drift_per_minute(&rising, secs(300)..secs(601)).expect("readings");
    assert!(within(drift, 2.0, 0.02), "drift {drift}");
    let flat: Vec<LimitSample> = (0..=600)
        .map(|s| LimitSample {
            at: secs(s),
            limit: 20 + (s % 2) as usize,
        })
        .collect();
    let drift = drift_per_minute(&flat, secs(0)..secs(601)).expect("readings");
    assert!(drift.abs() < 0.01, "drift {drift}");
    assert_eq!(drift_per_minute(&flat[..1], secs(0)..secs(601)), None);
}

#[test]
fn erlang_b_matches_its_textbook_values() {
    assert_eq!(erlang_b(0, 3.0), 1.0);
    assert!((erlang_b(1, 1.0) - 0.5).abs() < 1e-12);
    assert!((erlang_b(2, 1.0) - 0.2).abs() < 1e-12);
    // The tables: 20 servers at 40 erlangs lose about 52%.
    assert!((erlang_b(20, 40.0) - 0.5213).abs() < 1e-3);
}
