//! The gradient limit on windows written by hand, and on a model of a
//! dependency of known capacity (deterministic: no noise but what a test
//! writes).

use super::*;

const MS: f64 = 1e6;
const SECOND: u64 = 1_000_000_000;
const WINDOW: u64 = SECOND / 2;
const BOUNDS: Bounds = Bounds {
    floor: 2.0,
    ceiling: 1000.0,
};

fn config() -> GradientConfig {
    GradientConfig {
        tolerance: 0.05,
        smoothing: 0.5,
        probe_interval_ns: 30 * SECOND,
        probe_depth: 0.25,
        seed: None,
    }
}

/// A window of many samples (its own noise well below the tolerance).
fn window(median_ms: f64, in_flight: f64) -> Summary {
    Summary {
        successes: 200,
        drops: 0,
        median_ns: median_ms * MS,
        median_error: 0.005,
        in_flight,
    }
}

/// A limit that saw a first window at 100 ms (a baseline of 100.5 ms).
fn started(initial: usize) -> GradientState {
    let mut state = GradientState::new(initial, 7);
    assert_eq!(
        state.step(&config(), BOUNDS, &window(100.0, 5.0), 0),
        Some(GradientEvent::Baseline)
    );
    assert_eq!(
        state.estimate, initial as f64,
        "the first window only measures"
    );
    state
}

/// Runs `state` against a FIFO dependency of `capacity` calls at
/// `latency_ms` each, its calls in flight at the limit (an overload), from
/// `*now` for `windows` windows; returns the limits it published.
fn overload(
    state: &mut GradientState,
    now: &mut u64,
    windows: usize,
    capacity: f64,
    latency_ms: f64,
) -> Vec<f64> {
    (0..windows)
        .map(|_| {
            *now += WINDOW;
            let in_flight = state.estimate.floor();
            let median = latency_ms * (in_flight / capacity).max(1.0);
            state.step(&config(), BOUNDS, &window(median, in_flight), *now);
            state.estimate.floor()
        })
        .collect()
}

#[test]
fn it_doubles_from_the_start_until_calls_first_queue() {
    let mut state = started(2);
    let mut now = 0;
    let limits = overload(&mut state, &mut now, 6, 20.0, 100.0);
    assert_eq!(&limits[..4], [4.0, 8.0, 16.0, 32.0], "slow start");
    assert!(!state.slow_start, "32 in flight queue: slow start is over");
    assert!(limits[4] < 32.0, "{limits:?}");
}

#[test]
fn queueing_brings_the_limit_towards_what_the_dependency_serves() {
    // 60 in flight, twice as slow as without load: it serves 30 at once.
    let mut state = started(60);
    state.slow_start = false;
    state.next_probe = u64::MAX;
    state.step(&config(), BOUNDS, &window(201.0, 60.0), SECOND);
    // Half of the way to 30 × 1.025.
    assert!((state.estimate - 45.4).abs() < 0.2, "{}", state.estimate);
    let mut now = SECOND;
    let limits = overload(&mut state, &mut now, 12, 30.0, 100.5);
    let last = *limits.last().unwrap();
    assert!((30.0..=32.0).contains(&last), "{limits:?}");
}

#[test]
fn from_10x_off_it_settles_near_the_capacity_and_stays() {
    for start in [200, 2] {
        let mut state = started(start);
        let mut now = 0;
        let limits = overload(&mut state, &mut now, 1200, 20.0, 100.5);
        let settled = &limits[40..];
        let (low, high) = settled
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        assert!(low >= 18.0 && high <= 22.0, "from {start}: {low}..{high}");
    }
}

#[test]
fn sustained_overload_never_raises_the_baseline_or_the_limit() {
    // The concurrency-limits #134 failure: under an overload that keeps a
    // queue, the limit must not creep up. Ten simulated minutes.
    let mut state = started(20);
    let mut now = 0;
    let limits = overload(&mut state, &mut now, 1200, 20.0, 100.5);
    let (first, last) = (&limits[60..180], &limits[1080..]);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(
        mean(last) <= mean(first) + 0.5,
        "{} -> {}",
        mean(first),
        mean(last)
    );
    assert!(state.baseline <= 101.5 * MS, "{}", state.baseline / MS);
    assert!(state.baseline >= 100.0 * MS, "{}", state.baseline / MS);
}

/// One window of a FIFO dependency of `capacity` calls at `latency_ms`,
/// its calls at the limit (an overload); returns the event.
fn window_at(
    state: &mut GradientState,
    now: &mut u64,
    capacity: f64,
    latency_ms: f64,
) -> Option<GradientEvent> {
    *now += WINDOW;
    let in_flight = state.estimate.floor();
    let median = latency_ms * (in_flight / capacity).max(1.0);
    state.step(&config(), BOUNDS, &window(median, in_flight), *now)
}

#[test]
fn under_a_steady_overload_no_probe_runs_after_the_calibration() {
    // Ten minutes at C = 20, with noise: ±3% on each window's median, and
    // half a call on its calls in flight. The calls at the limit are the
    // measure; a probe would only refuse some of them (Envoy #8337).
    let mut state = started(22);
    let mut now = 0;
    let mut rng = 11u64;
    let mut unit = || (probe::splitmix(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
    let mut probes = 0;
    let mut limits = Vec::new();
    for _ in 0..1200 {
        now += WINDOW;
        let in_flight = 0.5f64.mul_add(-unit(), state.estimate.floor());
        let median = 100.5 * (in_flight / 20.0).max(1.0) * 0.06f64.mul_add(unit(), 0.97);
        let event = state.step(&config(), BOUNDS, &window(median, in_flight), now);
        probes += usize::from(event == Some(GradientEvent::ProbeStarted));
        limits.push(state.estimate.floor());
    }
    assert_eq!(probes, 1, "the calibration only");
    let (low, high) = limits[60..]
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
    assert!(low >= 18.0 && high <= 22.0, "{low}..{high}");
}

#[test]
fn a_stale_baseline_calls_a_probe_at_what_the_dependency_serves_then_the_limit_is_put_back() {
    let mut state = started(22);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    assert!(state.probed && !state.probing(), "calibrated");
    let baseline = state.baseline;
    // Every call now takes 1.5 times as long, whatever the load: the limit
    // comes down as if calls queued, until fewer of them are no faster.
    let mut started_at = None;
    for i in 0..8 {
        let before = state.estimate;
        if window_at(&mut state, &mut now, 20.0, 150.75) == Some(GradientEvent::ProbeStarted) {
            started_at = Some((i, before));
            break;
        }
    }
    let (i, saved) = started_at.expect("a probe, called by the windows");
    assert!(i >= 1, "one window is no evidence");
    // Its level: what the dependency served at the baseline it had, half a
    // call above, at most.
    assert!(state.estimate <= saved - 1.0, "{} {saved}", state.estimate);
    assert!(state.estimate >= BOUNDS.floor);
    window_at(&mut state, &mut now, 20.0, 150.75);
    let event = window_at(&mut state, &mut now, 20.0, 150.75);
    assert_eq!(event, Some(GradientEvent::ProbeEnded), "two windows");
    assert_eq!(state.estimate, saved, "the limit is put back");
    assert!(
        state.baseline >= baseline * 1.04,
        "raised: {}",
        state.baseline / MS
    );
}

#[test]
fn a_dependency_that_lost_capacity_keeps_its_baseline() {
    // C halves: fewer calls are slower at first, as for a dependency
    // slower for every call, but a probe at what it serves finds the
    // same no-load latency.
    let mut state = started(22);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    let baseline = state.baseline;
    let limits = overload(&mut state, &mut now, 40, 10.0, 100.5);
    assert!(
        (state.baseline - baseline).abs() <= baseline * 0.01,
        "{} -> {}",
        baseline / MS,
        state.baseline / MS
    );
    let last = &limits[20..];
    assert!(last.iter().all(|l| (9.0..=11.0).contains(l)), "{limits:?}");
}

#[test]
fn each_raise_the_cap_held_back_lets_the_next_one_raise_twice_as_much() {
    // Four times as slow: 5%, 10%, 20%, 40%, 80%, ... a few probes, not
    // the 29 a fixed 5% would take.
    let mut state = started(22);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    let mut probes = 0;
    let mut windows = 0;
    while state.baseline < 0.95 * 402.0 * MS {
        let saved = state.estimate;
        let event = window_at(&mut state, &mut now, 20.0, 402.0);
        if event == Some(GradientEvent::ProbeStarted) {
            probes += 1;
            // The first goes where the stale baseline says the dependency
            // serves (a quarter of it); those in the chain, by what the
            // probe before measured, one call below the limit.
            if probes > 1 {
                assert!(
                    state.estimate >= saved - 1.0,
                    "{saved} -> {}",
                    state.estimate
                );
            }
        }
        windows += 1;
        assert!(
            windows <= 40,
            "{} after {probes} probes",
            state.baseline / MS
        );
    }
    assert!(probes <= 9, "{probes} probes");
    assert!(
        state.baseline <= 402.0 * MS * 1.01,
        "never above the measure"
    );
}

#[test]
fn a_probe_due_under_load_is_put_off_whether_calls_press_or_not() {
    for share in [0.7, 1.0] {
        let mut state = started(22);
        let mut now = 0;
        overload(&mut state, &mut now, 40, 20.0, 100.5);
        assert!(state.probed);
        state.next_probe = now;
        let limit = state.estimate;
        // Calls at 70% of the limit or pressing against it, as fast as
        // the baseline allows: the windows are the measure, and a probe
        // would refuse calls to learn nothing.
        now += WINDOW;
        let event = state.step(
            &config(),
            BOUNDS,
            &window(100.5, limit.floor() * share),
            now,
        );
        assert_eq!(event, None, "{share}");
        assert!(!state.probing());
        assert!(state.next_probe >= now + 22 * SECOND, "put off an interval");
    }
}

#[test]
fn a_light_noisy_window_lowers_the_baseline_only_with_evidence() {
    let mut state = started(22);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    let baseline = state.baseline;
    state.next_probe = now;
    // Two calls in flight, a median 20% under, known within 10%: a free
    // measure, but no evidence that the dependency got faster.
    let mut light = window(80.0, 2.0);
    light.median_error = 0.1;
    now += WINDOW;
    state.step(&config(), BOUNDS, &light, now);
    assert_eq!(state.baseline, baseline);
    // Known within 0.5%, it is evidence.
    state.next_probe = now;
    now += WINDOW;
    state.step(&config(), BOUNDS, &window(80.0, 2.0), now);
    assert!(state.baseline < 0.82 * baseline, "{}", state.baseline / MS);
}

#[test]
fn at_the_floor_slow_calls_raise_the_baseline_a_tolerance_per_interval() {
    // No probe has room at the floor: what the calls take there is the
    // measure, a capped raise and no chain (a dependency that serves
    // fewer than the floor would otherwise have its queue taken in).
    let mut state = started(2);
    state.slow_start = false;
    state.probed = true;
    state.next_probe = 0;
    let baseline = state.baseline;
    state.step(&config(), BOUNDS, &window(402.0, 2.0), SECOND);
    assert!(
        state.baseline <= baseline * 1.0501,
        "{}",
        state.baseline / MS
    );
    assert!(state.baseline > baseline, "raised");
    assert_eq!(state.stale, 0, "no chain");
    let raised = state.baseline;
    state.step(&config(), BOUNDS, &window(402.0, 2.0), SECOND + WINDOW);
    assert_eq!(state.baseline, raised, "not again before an interval");
}

#[test]
fn a_dependency_slower_for_every_call_is_followed_and_the_limit_stops_falling() {
    // Settled on 100 ms; then every call takes 200 ms whatever the load.
    let mut state = started(20);
    let mut now = 0;
    overload(&mut state, &mut now, 100, 20.0, 100.5);
    let limits = overload(&mut state, &mut now, 240, 20.0, 201.0);
    assert!(state.baseline >= 190.0 * MS, "{}", state.baseline / MS);
    let last = *limits.last().unwrap();
    assert!(last >= 18.0, "the limit came back: {limits:?}");
}

#[test]
fn the_first_probe_steps_down_until_calls_stop_queueing_and_replaces_the_guess() {
    // A first window from calls that queued: a guess twice the truth.
    let mut state = GradientState::new(40, 7);
    state.step(&config(), BOUNDS, &window(200.0, 40.0), 0);
    assert!(state.baseline > 200.0 * MS, "{}", state.baseline / MS);
    let mut now = 0;
    let mut lowest = f64::MAX;
    for _ in 0..14 {
        overload(&mut state, &mut now, 1, 20.0, 100.0);
        lowest = lowest.min(state.estimate);
    }
    assert!(state.probed && !state.probing(), "the calibration ended");
    assert!(lowest < 18.0, "it went below the queue: {lowest}");
    let baseline = state.baseline / MS;
    assert!((100.0..=101.0).contains(&baseline), "{baseline}");
    // The limit starts from what the dependency served, and stays there.
    let limits = overload(&mut state, &mut now, 60, 20.0, 100.0);
    let (low, high) = limits
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
    assert!(low >= 18.0 && high <= 22.0, "{limits:?}");
}

#[test]
fn the_first_probe_stops_at_once_when_its_level_did_not_queue() {
    // A right guess: one step down, as fast, and the limit is put back.
    let mut state = started(22);
    let mut now = 0;
    let mut levels = Vec::new();
    for _ in 0..6 {
        overload(&mut state, &mut now, 1, 20.0, 100.5);
        levels.push(state.estimate.floor());
    }
    assert!(state.probed, "{levels:?}");
    assert!(levels.iter().all(|l| *l >= 14.0), "one step: {levels:?}");
    assert!(state.baseline <= 101.5 * MS, "{}", state.baseline / MS);
}

#[test]
fn a_probe_never_goes_below_the_floor() {
    let mut state = started(4);
    state.slow_start = false;
    state.probed = true;
    state.stale = STALE;
    // Four times as slow: what the dependency serves is one call, the
    // floor is two.
    let event = state.step(&config(), BOUNDS, &window(402.0, 4.0), SECOND);
    assert_eq!(event, Some(GradientEvent::ProbeStarted));
    assert_eq!(state.estimate, BOUNDS.floor);
}

#[test]
fn the_calibration_starts_a_probe_depth_below_the_limit() {
    let mut state = started(40);
    state.slow_start = false;
    // Calls at the limit, as fast as the first guess: the calibration
    // checks it a `probe_depth` (25%) below, no deeper.
    let event = state.step(&config(), BOUNDS, &window(100.5, 40.0), SECOND);
    assert_eq!(event, Some(GradientEvent::ProbeStarted));
    assert_eq!(state.estimate, 30.0);
}

#[test]
fn a_noisy_window_moves_the_limit_by_the_tolerance_at_most() {
    // Twice as slow: with evidence, the limit goes half way to what the
    // dependency serves (10); from a window whose median is only known
    // within 50%, by the tolerance at most.
    let mut clean = started(20);
    clean.slow_start = false;
    clean.next_probe = u64::MAX;
    let mut noisy = clean;
    clean.step(&config(), BOUNDS, &window(201.0, 20.0), SECOND);
    assert!(clean.estimate < 16.0, "{}", clean.estimate);
    let mut window = window(201.0, 20.0);
    window.median_error = 0.5;
    noisy.step(&config(), BOUNDS, &window, SECOND);
    assert!(noisy.estimate >= 19.0, "{}", noisy.estimate);
}

#[test]
fn an_unused_limit_does_not_grow() {
    let mut state = started(40);
    state.slow_start = false;
    for i in 1..=20 {
        state.step(&config(), BOUNDS, &window(100.0, 12.0), i * SECOND);
    }
    assert_eq!(state.estimate, 40.0);
}

#[test]
fn the_state_survives_its_words() {
    let mut state = started(20);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    // Mid-probe, called by a stale baseline: every field in use.
    for _ in 0..10 {
        if state.probing() {
            break;
        }
        window_at(&mut state, &mut now, 20.0, 201.0);
    }
    assert!(state.probing(), "a probe, called by the windows");
    window_at(&mut state, &mut now, 20.0, 201.0);
    assert!(state.probe.last_median > 0.0 && state.last.median > 0.0);
    assert_eq!(GradientState::from_words(state.to_words()), state);
}
