//! The window's histogram, its latency statistic and its gate.

use super::*;

#[test]
fn buckets_cover_every_latency_in_order() {
    let mut last = 0;
    for units in (0..5000).chain([MAX_UNITS - 1, MAX_UNITS, u64::MAX]) {
        let i = index(units);
        assert!(i < BUCKETS, "{units} -> {i}");
        assert!(i >= last, "monotonic at {units}");
        last = i;
        let (low, width) = bounds(i);
        assert!(low <= units.min(MAX_UNITS) && units.min(MAX_UNITS) < low + width);
    }
    assert_eq!(index(u64::MAX), BUCKETS - 1);
}

#[test]
fn the_latency_is_within_a_bucket_of_the_truth() {
    let window = Accumulators::new();
    for ms in 90..=110u64 {
        window.success(ms * 1_000_000, 20);
    }
    let summary = window.take();
    assert_eq!(summary.successes, 21);
    assert!(
        (summary.latency_ns / 1e6 - 100.0).abs() < 2.0,
        "{summary:?}"
    );
    assert_eq!(summary.in_flight, 20.0);
    assert!(summary.latency_error > 0.0 && summary.latency_error < 0.05);
    assert_eq!(window.take().successes, 0, "taking empties the window");
}

fn latency_ms(samples: &[(u64, u64)]) -> f64 {
    let window = Accumulators::new();
    for &(ms, count) in samples {
        for _ in 0..count {
            window.success(ms * 1_000_000, 1);
        }
    }
    window.take().latency_ns / 1e6
}

#[test]
fn latencies_on_a_coarse_clock_move_the_latency_smoothly() {
    // A 10 ms call on a 1 ms clock takes 10 or 11 ms here. As the share at
    // 11 ms grows by a tenth, the latency moves by about a tenth of a
    // millisecond, never by the whole tick a median jumps by.
    let mut last = latency_ms(&[(10, 100)]);
    assert!((last - 10.0).abs() < 0.35, "{last}");
    for slow in (10..=90).step_by(10) {
        let now = latency_ms(&[(10, 100 - slow), (11, slow)]);
        let step = now - last;
        assert!(
            step > 0.0 && step < 0.35,
            "{slow}% at 11 ms: {last} -> {now}"
        );
        last = now;
    }
    assert!((last - 10.9).abs() < 0.35, "{last}");
}

#[test]
fn a_few_calls_far_off_barely_move_the_latency() {
    let typical = latency_ms(&[(95, 50), (100, 100), (105, 50)]);
    let with_outliers = latency_ms(&[(95, 50), (100, 100), (105, 50), (10_000, 20), (1, 20)]);
    assert!((typical - 100.0).abs() < 2.0, "{typical}");
    assert!(
        (with_outliers - typical).abs() < 2.0,
        "{typical} -> {with_outliers}"
    );
}

#[test]
fn under_four_calls_the_latency_is_their_median() {
    let two = latency_ms(&[(1, 1), (10_000, 1)]);
    assert!(two < 2.0, "not the 5 s between them: {two}");
    let three = latency_ms(&[(1, 1), (100, 1), (10_000, 1)]);
    assert!((three - 100.0).abs() < 4.0, "{three}");
}

#[test]
fn drops_count_in_flight_but_no_latency() {
    let window = Accumulators::new();
    window.drop_signal(4);
    window.success(1_000, 2);
    assert_eq!(window.count(), (1, 1));
    let summary = window.take();
    assert_eq!((summary.successes, summary.drops), (1, 1));
    assert_eq!(summary.in_flight, 3.0);
}

#[test]
fn only_one_caller_closes_a_due_window() {
    let gate = Gate::new(10);
    assert!(!gate.due(9));
    assert!(gate.try_close(9).is_none());
    let closing = gate.try_close(10).expect("due");
    assert!(gate.try_close(11).is_none(), "being closed");
    assert!(!gate.due(u64::MAX));
    closing.reopen(20);
    assert!(gate.try_close(19).is_none());
    drop(gate.try_close(25).expect("due"));
    assert!(gate.due(25), "a closer that did not reopen leaves it due");
}
