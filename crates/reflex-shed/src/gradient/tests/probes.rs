//! The probes of the gradient limit, on the model of the module above: the
//! calibration, and the probes a stale baseline calls.

use super::*;

#[test]
fn under_a_steady_overload_no_probe_runs_after_the_calibration() {
    // Ten minutes at C = 20, with noise: ±3% on each window's latency, and
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
        let latency = 100.5 * (in_flight / 20.0).max(1.0) * 0.06f64.mul_add(unit(), 0.97);
        let event = state.step(&config(), BOUNDS, &window(latency, in_flight), now);
        probes += usize::from(event == Some(GradientEvent::ProbeStarted));
        limits.push(state.estimate.floor());
    }
    assert_eq!(probes, 1, "the calibration only");
    let (low, high) = span(&limits[60..]);
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
    // Two calls in flight, a latency 20% under, known within 10%: a free
    // measure, but no evidence that the dependency got faster.
    let mut light = window(80.0, 2.0);
    light.latency_error = 0.1;
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
    let (low, high) = span(&limits);
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
fn the_calibration_measures_a_noisy_dependency_until_its_mean_is_known() {
    // Windows as fast as the guess, each known to 0.5%, 3% or 6%: the
    // calibration's mean needs a quarter of the tolerance (1.25%): two
    // windows, six, and at most eight.
    for (error, windows) in [(0.005, 2), (0.03, 6), (0.06, 8)] {
        let mut state = started(22);
        state.slow_start = false;
        let at = |state: &GradientState| Summary {
            latency_error: error,
            ..window(100.5, state.estimate.floor())
        };
        let mut now = SECOND;
        let start = at(&state);
        assert_eq!(
            state.step(&config(), BOUNDS, &start, now),
            Some(GradientEvent::ProbeStarted)
        );
        let mut measured = 0;
        while state.probing() {
            now += WINDOW;
            let window = at(&state);
            state.step(&config(), BOUNDS, &window, now);
            measured += 1;
            assert!(measured <= 8, "error {error}: the calibration ends");
        }
        assert_eq!(measured, windows, "error {error}");
        assert!(state.probed);
    }
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
