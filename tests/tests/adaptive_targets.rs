//! Issue 17's targets for `ConcurrencyShed`'s adaptive limit, checked on
//! the simulated dependency of `reflex_tests::capacity` (C = 20 calls at
//! once at L = 100 ms each, lognormal work, FIFO beyond C) on tokio's
//! paused clock, over several seeds and rates.
//!
//! The layer is given no knowledge of C or L: the gradient limit with its
//! defaults, and only a start limit. The 10-minute run is here at one seed
//! (a few seconds of real time); the bench (`cargo bench -p
//! reflex-benches --bench adaptive`) prints every scenario beside a fixed
//! limit and tower-resilience's limiters.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflex_core::DefaultClassifier;
use reflex_shed::{
    Adaptive, ConcurrencyShedLayer, Critical, CriticalBy, ShedHandle, Unpartitioned,
};
use reflex_tests::capacity::{
    Call, Capacity, Contention, Dependency, Figures, Load, Run, run_paused,
};
use tower::{Layer, Service};

const C: usize = 20;
const L: Duration = Duration::from_millis(100);
const NOISE: f64 = 0.1;
const SEEDS: [u64; 3] = [17, 23, 42];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn dependency(seed: u64) -> Dependency {
    Dependency::new(Capacity::new(C, L))
        .with_noise(NOISE)
        .with_seed(seed)
}

/// `multiple` times C/L for `duration`, traced in 100 ms windows.
fn load(multiple: f64, duration: Duration, seed: u64) -> Load {
    Load::new(multiple, duration)
        .with_window(Duration::from_millis(100))
        .with_seed(seed)
}

fn adaptive(start: usize) -> ConcurrencyShedLayer {
    ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient().initial(start).seed(7))
        .build()
        .expect("a valid limit")
}

/// Runs `layer` (its services) in front of the dependency under `load`;
/// the trace reads the limit in force, and whether a probe of the no-load
/// latency was under way, at the end of each window.
fn run<S>(layer: &S, handle: &ShedHandle, seed: u64, load: &Load) -> (Run, Vec<bool>)
where
    S: Layer<Dependency>,
    S::Service: Service<Call> + Clone + Send + 'static,
    <S::Service as Service<Call>>::Response: Send + 'static,
    <S::Service as Service<Call>>::Error: Send + 'static,
    <S::Service as Service<Call>>::Future: Send + 'static,
{
    let probing = Arc::new(Mutex::new(Vec::new()));
    let (probe_handle, trace) = (handle.clone(), Arc::clone(&probing));
    let run = run_paused(
        dependency(seed),
        load,
        |dependency| layer.layer(dependency),
        move || {
            let metrics = probe_handle.metrics();
            let probe = metrics.adaptive.is_some_and(|a| a.probing);
            trace.lock().unwrap().push(probe);
            Some(metrics.hard_limit)
        },
    );
    let probing = std::mem::take(&mut *probing.lock().unwrap());
    (run, probing)
}

/// Goodput as a share of `concurrency / L`, and p99 in units of L.
fn shape(figures: &Figures, concurrency: usize) -> (f64, f64) {
    shape_at(figures, concurrency, L)
}

/// Goodput as a share of `concurrency / latency`, and p99 in units of
/// `latency`.
fn shape_at(figures: &Figures, concurrency: usize, latency: Duration) -> (f64, f64) {
    let goodput = figures.goodput() / Capacity::new(concurrency, latency).rate();
    let p99 = figures
        .p99()
        .map_or(f64::INFINITY, |p| p.as_secs_f64() / latency.as_secs_f64());
    (goodput, p99)
}

fn limits(run: &Run, span: Range<Duration>) -> (usize, usize) {
    let limits: Vec<usize> = run.windows(span).filter_map(|w| w.probe).collect();
    (
        limits.iter().copied().min().unwrap_or(0),
        limits.iter().copied().max().unwrap_or(0),
    )
}

#[test]
fn from_a_start_10x_off_the_limit_settles_within_10_percent_of_c_in_under_30_s() {
    for seed in SEEDS {
        for (name, start) in [("10x high", 10 * C), ("10x low", C / 10)] {
            let layer = adaptive(start);
            let (run, _) = run(&layer, &layer.handle(), seed, &load(2.0, secs(40), seed));
            let no_load = layer
                .handle()
                .metrics()
                .adaptive
                .and_then(|a| a.no_load_latency);
            eprintln!("no-load latency {no_load:?}");
            let settle = run.settle_time(Duration::ZERO..secs(40), C, 0.1);
            let (goodput, p99) = shape(&run.between(secs(30)..secs(40)), C);
            eprintln!(
                "{name} seed {seed}: settled in {settle:?}; 30-40 s: goodput {:.1}% of C/L, p99 {p99:.2} L, limit {:?}",
                100.0 * goodput,
                limits(&run, secs(30)..secs(40)),
            );
            assert!(settle.is_some_and(|t| t < secs(30)), "{name} seed {seed}");
            assert!(goodput >= 0.95, "{name} seed {seed}: goodput {goodput}");
            assert!(p99 <= 2.0, "{name} seed {seed}: p99 {p99}");
        }
    }
}

#[test]
fn under_overload_goodput_stays_at_95_percent_of_c_over_l_at_2x_and_3x_and_p99_at_2_l() {
    for seed in SEEDS {
        for multiple in [1.5, 2.0, 3.0] {
            let layer = adaptive(C);
            let (run, _) = run(
                &layer,
                &layer.handle(),
                seed,
                &load(multiple, secs(30), seed),
            );
            let (goodput, p99) = shape(&run.between(secs(10)..secs(30)), C);
            eprintln!(
                "{multiple}x seed {seed}: goodput {:.1}% of C/L, p99 {p99:.2} L, limit {:?}",
                100.0 * goodput,
                limits(&run, secs(10)..secs(30)),
            );
            // Issue 17 asks 95% at 2x. At 1.5x, a limit within the 10%
            // band carries a little less at C = 20: the Poisson gaps a
            // queue of two calls would fill cost 4-5% (a limit fixed at
            // 21 carries 94.5%, at 22 95.9%; the band ends at 22).
            let floor = if multiple < 2.0 { 0.94 } else { 0.95 };
            assert!(
                goodput >= floor,
                "{multiple}x seed {seed}: goodput {goodput}"
            );
            assert!(p99 <= 2.0, "{multiple}x seed {seed}: p99 {p99}");
        }
    }
}

#[test]
fn when_c_halves_the_limit_follows_within_5_s_and_p99_returns_under_2_l() {
    for seed in SEEDS {
        let layer = adaptive(C);
        let load = load(2.0, secs(40), seed).with_capacity_change(secs(20), C / 2);
        let (run, _) = run(&layer, &layer.handle(), seed, &load);
        let settle = run.settle_time(secs(20)..secs(40), C / 2, 0.1);
        let (_, p99) = shape(&run.between(secs(25)..secs(40)), C / 2);
        eprintln!(
            "halves seed {seed}: settled in {settle:?}, p99 from 25 s {p99:.2} L, limit {:?}",
            limits(&run, secs(25)..secs(40)),
        );
        assert!(settle.is_some_and(|t| t < secs(5)), "seed {seed}");
        assert!(p99 <= 2.0, "seed {seed}: p99 {p99}");
    }
}

#[test]
fn when_c_doubles_the_limit_follows_within_10_s() {
    for seed in SEEDS {
        let layer = adaptive(C);
        // 2x the doubled C/L.
        let load = load(4.0, secs(40), seed).with_capacity_change(secs(20), 2 * C);
        let (run, _) = run(&layer, &layer.handle(), seed, &load);
        let settle = run.settle_time(secs(20)..secs(40), 2 * C, 0.1);
        let (goodput, p99) = shape(&run.between(secs(30)..secs(40)), 2 * C);
        eprintln!(
            "doubles seed {seed}: settled in {settle:?}; 30-40 s: goodput {:.1}% of 2C/L, p99 {p99:.2} L, limit {:?}",
            100.0 * goodput,
            limits(&run, secs(30)..secs(40)),
        );
        assert!(settle.is_some_and(|t| t < secs(10)), "seed {seed}");
    }
}

#[test]
fn when_c_doubles_under_a_steady_load_the_limit_follows_within_10_s() {
    // The load stays at 2x the first C/L: once C doubles it is what the
    // dependency serves, and calls press against the limit only in its
    // bursts. The limit follows, and no further: a burst's few refusals
    // grew it to 1.15 C, and a run of clear windows counted across windows
    // that did not press leapt to 2.9 C (no run of 30, seeds 1-10 at
    // C = 10, 20 and 50, settled within 10 s; 28 now). Still short: a
    // baseline a percent or two low leaves the windows below the knee just
    // short of clear, and the limit crawls (seed 17 at C = 20: 26-35 of 40
    // in the last 10 s). Five of the six runs here settle in time, and
    // every one is well above the old C by the end.
    let mut settled = 0;
    for seed in SEEDS {
        for capacity in [C, 50] {
            let layer = adaptive(capacity);
            let dependency = Dependency::new(Capacity::new(capacity, L))
                .with_noise(NOISE)
                .with_seed(seed);
            let rate = Load::new(2.0, secs(40))
                .with_window(Duration::from_millis(100))
                .with_seed(seed)
                .with_capacity_change(secs(20), 2 * capacity);
            let handle = layer.handle();
            let run = run_paused(
                dependency,
                &rate,
                |dependency| layer.layer(dependency),
                move || Some(handle.metrics().hard_limit),
            );
            let settle = run.settle_time(secs(20)..secs(40), 2 * capacity, 0.1);
            eprintln!(
                "C {capacity} doubles, steady load, seed {seed}: settled in {settle:?}, limit {:?} in 30-40 s",
                limits(&run, secs(30)..secs(40)),
            );
            settled += usize::from(settle.is_some_and(|t| t < secs(10)));
            let (low, _) = limits(&run, secs(35)..secs(40));
            assert!(
                low as f64 >= 1.3 * capacity as f64,
                "C {capacity} seed {seed}: it follows ({low})"
            );
        }
    }
    assert!(settled >= 5, "{settled} of 6 settled within 10 s");
}

#[test]
fn under_a_load_the_dependency_serves_probes_refuse_nothing() {
    // 0.7 C/L: the calls in flight stay below the limit, which a probe
    // would hold where they are on average, refusing their peaks (Envoy
    // #8337 at a moderate load). A limit at exactly C refuses about 1.6%
    // of such a load (Erlang); nothing more is lost to probes.
    for seed in SEEDS {
        let layer = adaptive(C);
        let load = load(0.7, secs(150), seed).with_window(Duration::from_secs(1));
        let (run, probing) = run(&layer, &layer.handle(), seed, &load);
        let after = |w: &(&reflex_tests::capacity::Window, &bool)| w.0.start >= secs(60);
        let probes = run
            .trace
            .iter()
            .zip(&probing)
            .filter(after)
            .filter(|w| *w.1)
            .count();
        let success = run.between(secs(60)..secs(150)).success_rate();
        eprintln!(
            "0.7x seed {seed}: success {:.2}%, probe windows after the first minute {probes}",
            100.0 * success
        );
        assert!(success >= 0.96, "seed {seed}: {success}");
        assert_eq!(probes, 0, "seed {seed}");
    }
}

#[test]
fn ten_minutes_at_2x_overload_neither_drift_up_nor_lose_success_to_probes() {
    let seed = 17;
    let layer = adaptive(C);
    let load = load(2.0, secs(600), seed).with_window(Duration::from_secs(1));
    let (run, probing) = run(&layer, &layer.handle(), seed, &load);
    let drift = run.drift_per_minute(secs(60)..secs(600)).expect("a trace");
    let (first, last) = (
        limits(&run, secs(60)..secs(120)),
        limits(&run, secs(540)..secs(600)),
    );
    let (goodput, p99) = shape(&run.between(secs(60)..secs(600)), C);
    let probe_windows = run
        .trace
        .iter()
        .zip(&probing)
        .filter(|(w, p)| w.start >= secs(60) && **p)
        .count();
    eprintln!(
        "10 min: drift {drift:+.3}/min, limit {first:?} in the 2nd minute, {last:?} in the 10th; goodput {:.1}%, p99 {p99:.2} L; probe windows after the first minute {probe_windows}",
        100.0 * goodput,
    );
    // No upward drift: the slope of the limit is below a call in ten
    // minutes, and the last minute stays within 10% of C.
    assert!(drift <= 0.1, "the limit drifts up: {drift:+.3}/min");
    assert!(last.1 <= C + C / 10, "{last:?}");
    assert!(goodput >= 0.95 && p99 <= 2.0);
    // Nothing is lost to probes: under a steady overload the calls at the
    // limit are the measure, and no probe runs after the calibration.
    assert_eq!(probe_windows, 0, "probes ran under a steady overload");
}

#[test]
fn a_dependency_slower_for_every_call_is_followed_within_30_s() {
    // L goes from 100 ms to 150 or 200 ms at 20 s, whatever the load: the
    // calls at the limit look queued, and the limit comes down until
    // clearly fewer calls are clearly slower; probes then measure the new
    // no-load latency, and the limit comes back to C. (With probes on a
    // timer it fell to the floor: goodput 5-7% of C/L.)
    for seed in SEEDS {
        for factor in [1.5, 2.0] {
            let layer = adaptive(C);
            let slower = L.mul_f64(factor);
            let load = load(2.0, secs(60), seed).with_latency_change(secs(20), slower);
            let (run, probing) = run(&layer, &layer.handle(), seed, &load);
            let settle = run.settle_time(secs(20)..secs(60), C, 0.1);
            let (goodput, p99) = shape_at(&run.between(secs(40)..secs(60)), C, slower);
            let probes = probing.windows(2).filter(|w| !w[0] && w[1]).count();
            let no_load = layer
                .handle()
                .metrics()
                .adaptive
                .and_then(|a| a.no_load_latency);
            eprintln!(
                "L x{factor} seed {seed}: settled in {settle:?}; 40-60 s: goodput {:.1}% of C/L', p99 {p99:.2} L', limit {:?}; {probes} probes, no-load latency {no_load:?}",
                100.0 * goodput,
                limits(&run, secs(40)..secs(60)),
            );
            assert!(
                settle.is_some_and(|t| t < secs(30)),
                "x{factor} seed {seed}"
            );
            assert!(goodput >= 0.95, "x{factor} seed {seed}: {goodput}");
            assert!(p99 <= 2.0, "x{factor} seed {seed}: {p99}");
            // Probes found the new no-load latency.
            assert!(probes >= 1, "x{factor} seed {seed}: no probe");
            let no_load = no_load.expect("measured").as_secs_f64();
            assert!(
                (no_load / slower.as_secs_f64() - 1.0).abs() <= 0.05,
                "x{factor} seed {seed}: {no_load}"
            );
        }
    }
}

#[test]
fn two_partitions_at_70_30_each_get_their_share_and_an_idle_ones_share_comes_back() {
    for seed in SEEDS {
        let layer = ConcurrencyShedLayer::builder()
            .adaptive(Adaptive::gradient().initial(C).seed(7))
            .partition(|call: &Call| Some(call.partition))
            .share("a", 0.7)
            .share("b", 0.3)
            .build()
            .expect("valid shares");
        // Both ask for as much; b is away from 20 s to 30 s.
        let load = load(2.0, secs(40), seed)
            .with_partitions(&[("a", 0.5), ("b", 0.5)])
            .with_idle("b", secs(20)..secs(30));
        let (run, _) = run(&layer, &layer.handle(), seed, &load);
        let share = |span: Range<Duration>| run.admitted_share("a", span);
        let (busy, alone, back) = (
            share(secs(5)..secs(20)),
            share(secs(21)..secs(30)),
            share(secs(30) + Duration::from_millis(500)..secs(40)),
        );
        let returned = run.admitted_share("b", secs(30)..secs(30) + Duration::from_millis(500));
        eprintln!(
            "partitions seed {seed}: a's share {busy:.3} both busy, {alone:.3} alone, {back:.3} after b is back (b {returned:.3} in its first 500 ms)"
        );
        assert!((busy - 0.7).abs() <= 0.05, "seed {seed}: {busy}");
        assert!(alone >= 0.99, "a uses b's idle share: {alone}");
        assert!((back - 0.7).abs() <= 0.05, "seed {seed}: {back}");
        assert!(
            returned >= 0.2,
            "b's share comes back within a window: {returned}"
        );
    }
}

/// Marks the critical calls.
fn critical(call: &Call) -> Option<Critical> {
    call.critical.then_some(Critical)
}

/// A layer whose critical calls are marked by [`critical`].
type Reserved = ConcurrencyShedLayer<
    DefaultClassifier,
    Unpartitioned,
    CriticalBy<fn(&Call) -> Option<Critical>>,
>;

/// The gradient limit from `start`, `reserve` of it kept for critical
/// calls (the default, 10%, if none).
fn with_reserve(start: usize, reserve: Option<f64>) -> Reserved {
    let builder = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient().initial(start).seed(7))
        .critical(critical as fn(&Call) -> Option<Critical>);
    match reserve {
        Some(reserve) => builder.critical_reserve(reserve),
        None => builder,
    }
    .build()
    .expect("a valid reserve")
}

#[test]
fn critical_requests_under_3x_overload_are_admitted_at_least_99_percent() {
    // Critical calls take their slots from the others, never from the
    // reserve: it stays free for the next one, whatever share of the load
    // they are. Only a burst of them while the others give slots back
    // finds it full. With the default reserve (10%, 2 slots) at 1% and 5%
    // critical (0.6 and 3 of them in flight on average), and a fifth kept
    // at 10% (6 in flight). (While critical calls in flight used up the
    // reserve, 1% at the default was 89-92% admitted, 5% 54%.)
    for (share, reserve, floor) in [
        (0.01, None, 0.99),
        (0.05, None, 0.985),
        (0.1, Some(0.2), 0.99),
    ] {
        for seed in SEEDS {
            let layer = with_reserve(C, reserve);
            let load = load(3.0, secs(30), seed).with_critical_share(share);
            let (run, _) = run(&layer, &layer.handle(), seed, &load);
            let figures = run.between(secs(5)..secs(30));
            let (critical, all) = (
                figures.critical.admitted_fraction(),
                figures.admitted as f64 / figures.offered as f64,
            );
            let (goodput, _) = shape(&figures, C);
            eprintln!(
                "critical {share} reserve {reserve:?} seed {seed}: {:.2}% of {} critical admitted ({:.1}% of all); goodput {:.1}%",
                100.0 * critical,
                figures.critical.offered,
                100.0 * all,
                100.0 * goodput,
            );
            assert!(critical >= floor, "{share} seed {seed}: {critical}");
        }
    }
}

#[test]
fn with_a_critical_reserve_the_other_calls_still_fill_the_dependency() {
    // A fifth of the limit is kept for critical calls, which are 1% of
    // the load: the others fill at most four fifths of it, in flight well
    // below it. Refusals tell the limit they press against it, so it grows
    // until calls queue in the dependency, not until the others fill it.
    // Counting only calls in flight, it stayed at 22 here (87% of C/L),
    // and at 20 under 3x (80%).
    for seed in SEEDS {
        for start in [C, C / 10] {
            let layer = with_reserve(start, Some(0.2));
            let load = load(2.0, secs(40), seed).with_critical_share(0.01);
            let (run, _) = run(&layer, &layer.handle(), seed, &load);
            let (goodput, p99) = shape(&run.between(secs(20)..secs(40)), C);
            eprintln!(
                "reserve from {start} seed {seed}: goodput {:.1}% of C/L, p99 {p99:.2} L, limit {:?}",
                100.0 * goodput,
                limits(&run, secs(20)..secs(40)),
            );
            assert!(
                goodput >= 0.9 && p99 <= 2.0,
                "from {start} seed {seed}: {goodput} {p99}"
            );
        }
    }
}

#[test]
fn over_12_seeds_the_limit_comes_within_20_percent_of_c_in_10_s_and_mostly_within_10() {
    // The spread behind the targets: 12 seeds, both starts. At C = 20 a
    // call is 5% of C, and the knee is soft (Poisson arrivals, lognormal
    // work): the limit sits at 20-22, and now and then at 23 for a window.
    let (mut within_10, mut runs) = (0, 0);
    for seed in 1..=12u64 {
        for start in [10 * C, C / 10] {
            let layer = adaptive(start);
            let (run, _) = run(&layer, &layer.handle(), seed, &load(2.0, secs(40), seed));
            let span = Duration::ZERO..secs(40);
            let settle_20 = run.settle_time(span.clone(), C, 0.2);
            let settle_10 = run.settle_time(span, C, 0.1);
            let (goodput, p99) = shape(&run.between(secs(20)..secs(40)), C);
            assert!(
                settle_20.is_some_and(|t| t < secs(10)),
                "start {start} seed {seed}"
            );
            assert!(
                goodput >= 0.94 && p99 <= 2.0,
                "start {start} seed {seed}: {goodput} {p99}"
            );
            runs += 1;
            within_10 += usize::from(settle_10.is_some_and(|t| t < secs(30)));
        }
    }
    eprintln!("12 seeds: {within_10} of {runs} runs within 10% of C for good before 30 s");
    assert!(within_10 * 12 >= runs * 11, "{within_10} of {runs}");
}

#[test]
fn at_other_capacities_too_the_limit_settles_within_10_percent_from_10x_off() {
    // C = 10 is the hardest: a call is 10% of C, so the band is 9..=11,
    // and at 2x only 11 both stays in it and fills the Poisson gaps (a
    // limit fixed at 10 carries 90.6% of C/L here, at 11 95.3%). The
    // limit sits at 10-12: goodput 91-96%, not always 95%, and now and
    // then a window at 12. (Before refusals counted as pressure, calls
    // that left Poisson gaps below the limit held it at 10-11: in the band
    // more often, 7 of 8 here, at 90-96%. Over 60 runs, both at once went
    // from 6 to 13.)
    for (capacity, least, goodput_floor) in [(10, 5, 0.91), (50, 8, 0.95), (100, 8, 0.95)] {
        let mut within_10 = 0;
        for seed in 1..=4u64 {
            for start in [10 * capacity, (capacity / 10).max(1)] {
                let layer = adaptive(start);
                let handle = layer.handle();
                let dependency = Dependency::new(Capacity::new(capacity, L))
                    .with_noise(NOISE)
                    .with_seed(seed);
                let run = run_paused(
                    dependency,
                    &load(2.0, secs(40), seed),
                    |dependency| layer.layer(dependency),
                    move || Some(handle.metrics().hard_limit),
                );
                let settle = run.settle_time(Duration::ZERO..secs(40), capacity, 0.1);
                let (goodput, p99) = shape(&run.between(secs(30)..secs(40)), capacity);
                eprintln!(
                    "C {capacity} from {start} seed {seed}: settled in {settle:?}; 30-40 s: goodput {:.1}%, p99 {p99:.2} L",
                    100.0 * goodput
                );
                assert!(
                    goodput >= goodput_floor && p99 <= 2.0,
                    "C {capacity} from {start} seed {seed}: {goodput} {p99}"
                );
                within_10 += usize::from(settle.is_some_and(|t| t < secs(30)));
            }
        }
        assert!(within_10 >= least, "C {capacity}: {within_10} of 8");
    }
}

/// A 2x load for 40 s on a dependency of `capacity` at `latency` whose
/// every call is slower beyond C ([`Contention::Slowdown`]), from `start`.
fn slowdown_run(capacity: usize, latency: Duration, start: usize, seed: u64) -> Run {
    let layer = adaptive(start);
    let handle = layer.handle();
    let dependency = Dependency::new(Capacity::new(capacity, latency))
        .with_contention(Contention::Slowdown)
        .with_noise(NOISE)
        .with_seed(seed);
    let load = Load::new(2.0, secs(40))
        .with_window(Duration::from_millis(100))
        .with_timeout(40 * latency)
        .with_seed(seed);
    run_paused(
        dependency,
        &load,
        |dependency| layer.layer(dependency),
        move || Some(handle.metrics().hard_limit),
    )
}

/// Goodput over 20-40 s as a share of C/L, and p99 in units of L.
fn slowdown_shape(run: &Run, capacity: usize, latency: Duration) -> (f64, f64) {
    shape_at(&run.between(secs(20)..secs(40)), capacity, latency)
}

#[test]
fn with_every_call_slower_beyond_c_the_limit_settles_within_10_percent_too() {
    // The other model a simulation writes: no queue, every call n/C times
    // slower when it arrives to n in flight beyond C. Every run settles in
    // the band; at C = 20 one run in ten or so sits a call under C for
    // good (a calibration that measured the no-load latency 2-3% low:
    // below the knee calls are as fast with fewer, and no window asks for
    // more), and carries 88% there. That run is new with the middle-half
    // latency and the ¾ set point (seed 2 from 2 carried 97% before): the
    // first window after a limit change counts the fast calls of its last
    // admissions and not their slow siblings, and reads a few percent low.
    for (capacity, latency, least) in [(20, 100, 9), (50, 100, 10), (50, 30, 10)] {
        let latency = Duration::from_millis(latency);
        let mut carried = 0;
        for seed in 1..=5u64 {
            for start in [10 * capacity, capacity / 10] {
                let run = slowdown_run(capacity, latency, start, seed);
                let settle = run.settle_time(Duration::ZERO..secs(40), capacity, 0.1);
                let (goodput, p99) = slowdown_shape(&run, capacity, latency);
                let name = format!("C {capacity} L {latency:?} from {start} seed {seed}");
                eprintln!(
                    "{name}: settled in {settle:?}; 20-40 s: goodput {:.1}%, p99 {p99:.2} L, limit {:?}",
                    100.0 * goodput,
                    limits(&run, secs(20)..secs(40)),
                );
                assert!(settle.is_some_and(|t| t < secs(30)), "{name}: {settle:?}");
                assert!(goodput >= 0.85 && p99 <= 2.0, "{name}: {goodput} {p99}");
                carried += usize::from(goodput >= 0.95);
            }
        }
        assert!(
            carried >= least,
            "C {capacity} L {latency:?}: {carried} of 10 at 95%"
        );
    }
}

#[test]
fn on_a_millisecond_clock_at_l_10_ms_goodput_holds() {
    // tokio's paused clock counts whole milliseconds: a 10 ms call takes
    // 10, 11 or 12, and a window's median jumped between them. With the
    // median this test fails at C = 50 on the band (the limit at 58-63);
    // behind a dependency written as a plain future, without this
    // harness's spawned task, the limit slid to 0.4 C (goodput 47%; docs/
    // shed.md). Here a tick is a tenth of L, and answers a tick late hold
    // permits a little longer
    // than the work: the limit that keeps the dependency busy sits 10-20%
    // above C (in this harness a limit fixed at C carries 86% at C = 20,
    // at 1.15 C 95%), so the band asked is 25%.
    let latency = Duration::from_millis(10);
    for capacity in [20, 50] {
        for start in [10 * capacity, capacity / 10] {
            let run = slowdown_run(capacity, latency, start, 1);
            let (goodput, p99) = slowdown_shape(&run, capacity, latency);
            let (low, high) = limits(&run, secs(20)..secs(40));
            let name = format!("C {capacity} from {start}");
            eprintln!(
                "{name}: 20-40 s: goodput {:.1}%, p99 {p99:.2} L, limit ({low}, {high})",
                100.0 * goodput,
            );
            assert!(goodput >= 0.95 && p99 <= 2.0, "{name}: {goodput} {p99}");
            assert!(
                low >= capacity && high * 4 <= capacity * 5,
                "{name}: {low}..={high}"
            );
        }
    }
}

#[test]
fn clients_that_give_up_before_a_10x_high_limit_drains_do_not_hold_it_there() {
    // A start 10x high queues calls at the dependency for a second and
    // more; clients that give up sooner (1.5 to 5 L) take every call back
    // before it completes, so no window fills with samples. Their calls
    // say they do not come back: the limit comes down, and settles. (It
    // stayed at 10x for good before: at a 300 ms deadline, in flight never
    // reached it, and nothing completed to close a window.)
    for seed in SEEDS {
        for deadline_ms in [150, 300, 500] {
            let layer = adaptive(10 * C);
            let load = load(2.0, secs(40), seed).with_timeout(Duration::from_millis(deadline_ms));
            let (run, _) = run(&layer, &layer.handle(), seed, &load);
            let settle = run.settle_time(Duration::ZERO..secs(40), C, 0.1);
            let (goodput, p99) = shape(&run.between(secs(30)..secs(40)), C);
            eprintln!(
                "deadline {deadline_ms} ms seed {seed}: settled in {settle:?}; 30-40 s: goodput {:.1}%, p99 {p99:.2} L, limit {:?}",
                100.0 * goodput,
                limits(&run, secs(30)..secs(40)),
            );
            assert!(
                settle.is_some_and(|t| t < secs(30)),
                "deadline {deadline_ms} ms seed {seed}: {settle:?}"
            );
            assert!(
                goodput >= 0.95,
                "deadline {deadline_ms} ms seed {seed}: {goodput}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_dependency_that_hangs_brings_the_limit_down_and_one_that_answers_again_back() {
    // Calls take 100 ms for 5 s, then hang for 10 s, then take 100 ms
    // again; clients give up after 300 ms (the response future dropped, as
    // a timeout does). No call completes while it hangs: without a sign
    // from the calls given up on, no window would close and the limit
    // would stay where it was.
    use std::sync::atomic::{AtomicBool, Ordering};
    let hung = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&hung);
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient().initial(200).seed(7))
        .build()
        .expect("a valid limit");
    let handle = layer.handle();
    let service = layer.layer(tower::service_fn(move |_: ()| {
        let hung = flag.load(Ordering::Relaxed);
        async move {
            if hung {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(L).await;
            Ok::<_, std::convert::Infallible>(())
        }
    }));
    // 400 calls a second, each its own task, for `until`; the lowest limit
    // seen on the way.
    let drive = |until: Duration| {
        let (service, handle) = (service.clone(), handle.clone());
        async move {
            let start = tokio::time::Instant::now();
            let mut lowest = usize::MAX;
            while start.elapsed() < until {
                let mut service = service.clone();
                tokio::spawn(async move {
                    let call = tower::ServiceExt::oneshot(&mut service, ());
                    let _ = tokio::time::timeout(Duration::from_millis(300), call).await;
                });
                tokio::time::sleep(Duration::from_micros(2500)).await;
                lowest = lowest.min(handle.metrics().hard_limit);
            }
            lowest
        }
    };
    drive(secs(5)).await;
    let healthy = handle.metrics().hard_limit;
    assert!(healthy >= 40, "healthy, it carries the load: {healthy}");
    hung.store(true, Ordering::Relaxed);
    let lowest = drive(secs(10)).await;
    let hung_limit = handle.metrics().hard_limit;
    assert!(lowest <= 5, "the limit came down: {healthy} -> {lowest}");
    hung.store(false, Ordering::Relaxed);
    drive(secs(20)).await;
    let limit = handle.metrics().hard_limit;
    assert!(
        limit >= 40,
        "back up once calls answer: {hung_limit} -> {limit}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_light_bursty_load_keeps_its_limit() {
    // 15 calls a second of 20 ms, in threes from a limit of 2, one in
    // thirty taking 50 ms and given up on after 30: a refusal finds every
    // slot taken by the burst, and a window sees few calls come back. None
    // of it says calls do not come back (a review found refusals taken for
    // that sign held a limit of 1 at such a load, refusing 18%); the
    // limit grows on the refusals instead.
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient().initial(2).floor(1).seed(7))
        .build()
        .expect("a valid limit");
    let handle = layer.handle();
    let service = layer.layer(tower::service_fn(|slow: bool| async move {
        let took = if slow { 50 } else { 20 };
        tokio::time::sleep(Duration::from_millis(took)).await;
        Ok::<_, std::convert::Infallible>(())
    }));
    let (mut refused, mut sent) = (0usize, 0usize);
    let mut lowest = usize::MAX;
    for i in 0..150u32 {
        let calls: Vec<_> = (0..3)
            .map(|k| {
                let mut service = service.clone();
                // Every tenth burst has a call that takes 50 ms, given up on
                // after 30.
                let slow = k == 2 && i % 10 == 0;
                tokio::spawn(async move {
                    let call = tower::ServiceExt::oneshot(&mut service, slow);
                    tokio::time::timeout(Duration::from_millis(30), call).await
                })
            })
            .collect();
        for call in calls {
            sent += 1;
            if let Ok(Ok(Err(_))) = call.await {
                refused += 1;
            }
        }
        lowest = lowest.min(handle.metrics().hard_limit);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let share = refused as f64 / sent as f64;
    eprintln!("light bursty load: lowest limit {lowest}, {refused} of {sent} refused");
    assert!(lowest >= 2, "the limit held: {lowest}");
    assert!(share < 0.1, "{share}");
}
