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

#[test]
fn a_probe_holds_the_limit_at_what_the_dependency_serves_then_puts_it_back() {
    let mut state = started(22);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    assert!(state.probed, "a first probe checked the first guess");
    // Due now: the next window that is not queued starts one.
    state.next_probe = now;
    let saved = state.estimate;
    let mut events = Vec::new();
    let mut levels = Vec::new();
    for _ in 0..3 {
        now += WINDOW;
        let in_flight = state.estimate.floor();
        let median = 100.5 * (in_flight / 20.0).max(1.0);
        events.push(state.step(&config(), BOUNDS, &window(median, in_flight), now));
        levels.push(state.estimate);
    }
    assert_eq!(events[0], Some(GradientEvent::ProbeStarted), "{events:?}");
    assert!(levels[0] < saved && levels[0] >= 19.0, "{levels:?}");
    assert_eq!(events[2], Some(GradientEvent::ProbeEnded), "two windows");
    assert_eq!(levels[2], saved, "the limit is put back");
    assert!(
        state.next_probe >= now + 22 * SECOND,
        "jittered, not sooner"
    );
}

#[test]
fn a_probe_due_while_calls_stay_below_the_limit_is_put_off() {
    let mut state = started(22);
    let mut now = 0;
    overload(&mut state, &mut now, 40, 20.0, 100.5);
    assert!(state.probed);
    state.next_probe = now;
    let limit = state.estimate;
    // Calls in flight at 70% of the limit, as fast as without load: a
    // probe would hold the limit near them and refuse their peaks.
    now += WINDOW;
    let event = state.step(&config(), BOUNDS, &window(100.5, limit * 0.7), now);
    assert_eq!(event, None);
    assert!(!state.probing());
    assert_eq!(state.estimate, limit, "neither probed nor moved");
    assert!(state.next_probe >= now + 22 * SECOND, "put off an interval");
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
fn a_probe_never_goes_below_its_depth_or_the_floor() {
    let mut state = started(4);
    state.slow_start = false;
    state.probed = true;
    state.next_probe = 0;
    // Far over the margin, yet settled: a probe starts.
    state.step(&config(), BOUNDS, &window(150.0, 4.0), SECOND);
    assert!(state.estimate >= 3.0, "depth 25% of 4: {}", state.estimate);
    assert!(state.estimate >= BOUNDS.floor);
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
    state.step(&config(), BOUNDS, &window(150.0, 20.0), SECOND);
    assert_eq!(GradientState::from_words(state.to_words()), state);
}
