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
fn window(latency_ms: f64, in_flight: f64) -> Summary {
    Summary {
        successes: 200,
        drops: 0,
        latency_ns: latency_ms * MS,
        latency_error: 0.005,
        in_flight,
        refused: 0,
        given_up: 0,
        returned: 200,
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
            window_at(state, now, capacity, latency_ms);
            state.estimate.floor()
        })
        .collect()
}

/// The lowest and the highest of `limits`.
fn span(limits: &[f64]) -> (f64, f64) {
    limits
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)))
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
    let latency = latency_ms * (in_flight / capacity).max(1.0);
    state.step(&config(), BOUNDS, &window(latency, in_flight), *now)
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
        let (low, high) = span(settled);
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
fn a_noisy_window_moves_the_limit_by_the_tolerance_at_most() {
    // Twice as slow: with evidence, the limit goes half way to what the
    // dependency serves (10); from a window whose latency is only known
    // within 50%, by the tolerance at most.
    let mut clean = started(20);
    clean.slow_start = false;
    clean.next_probe = u64::MAX;
    let mut noisy = clean;
    clean.step(&config(), BOUNDS, &window(201.0, 20.0), SECOND);
    assert!(clean.estimate < 16.0, "{}", clean.estimate);
    let mut window = window(201.0, 20.0);
    window.latency_error = 0.5;
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
fn refusals_say_calls_press_against_a_limit_they_cannot_fill() {
    // A critical reserve of a fifth keeps the other calls at 32 of 40: at
    // the no-load latency, with requests refused (half as many as
    // completed), the limit grows; the same windows without refusals, or
    // with a burst's few (5% as many), leave it where it is.
    let grown = |refused: u64| {
        let mut state = started(40);
        state.slow_start = false;
        let window = Summary {
            refused,
            ..window(100.0, 32.0)
        };
        for i in 1..=5 {
            state.step(&config(), BOUNDS, &window, i * SECOND);
        }
        state.estimate
    };
    assert_eq!(grown(0), 40.0);
    assert_eq!(grown(10), 40.0, "a burst's refusals");
    assert!(grown(100) > 41.0, "{}", grown(100));
}

#[test]
fn a_run_of_clear_windows_ends_where_calls_stop_pressing() {
    // At the no-load latency, calls fill the limit for three windows (a
    // run begins), then one window in two: the windows between say nothing
    // of more room, and end the run. Counted across them, the run's steps
    // doubled to a leap.
    let mut state = started(40);
    state.slow_start = false;
    state.probed = true;
    state.next_probe = u64::MAX;
    let mut limits = Vec::new();
    for i in 1..=20 {
        let pressed = i <= 3 || i % 2 == 0;
        let in_flight = if pressed {
            state.estimate.floor()
        } else {
            30.0
        };
        state.step(&config(), BOUNDS, &window(100.5, in_flight), i * SECOND);
        limits.push(state.estimate);
    }
    let steps: Vec<f64> = limits.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps.iter().all(|s| *s < 1.5), "no leap: {limits:?}");
    assert!(*limits.last().unwrap() < 55.0, "{limits:?}");
}

#[test]
fn a_starved_window_goes_towards_what_came_back_and_starts_again() {
    let mut state = started(40);
    state.slow_start = false;
    // 100 calls came back in 500 ms at a no-load latency of 100.5 ms: the
    // dependency served about 20 at once; half of the way there.
    state.starved(&config(), BOUNDS, 100, WINDOW);
    let served = 100.0 * 100.5 / 500.0 * 1.025;
    assert!(
        (state.estimate - (40.0 + served) / 2.0).abs() < 0.01,
        "{}",
        state.estimate
    );
    // None came back: halved, never below the floor.
    for _ in 0..10 {
        state.starved(&config(), BOUNDS, 0, WINDOW);
    }
    assert_eq!(state.estimate, BOUNDS.floor);
    // Calls that come back at the no-load latency, using the limit: it
    // doubles per window, as it did from the start.
    state.step(&config(), BOUNDS, &window(100.0, 2.0), 100 * SECOND);
    assert_eq!(state.estimate, 4.0);
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
    assert!(state.probe.last_latency > 0.0 && state.last.latency > 0.0);
    assert_eq!(GradientState::from_words(state.to_words()), state);
}

mod probes;
