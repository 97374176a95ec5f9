//! The Closed happy path allocates nothing.

use std::time::Duration;

use reflex_breaker::CircuitBreakLayer;
use reflex_tests::support::{Echo, allocations_per_call};
use tower::Layer;

#[test]
fn a_closed_breaker_admits_and_records_without_allocating() {
    let count_window = CircuitBreakLayer::builder()
        .consecutive_failures(5)
        .slow_calls(0.5, Duration::from_secs(1))
        .build()
        .unwrap();
    let time_window = CircuitBreakLayer::builder()
        .time_window(Duration::from_secs(10), 10)
        .build()
        .unwrap();
    assert_eq!(
        allocations_per_call(&mut count_window.layer(Echo), 1000),
        0.0
    );
    assert_eq!(
        allocations_per_call(&mut time_window.layer(Echo), 1000),
        0.0
    );
    assert_eq!(
        count_window.handle().metrics().calls,
        100,
        "the window is full of successes"
    );
}

#[test]
fn a_keyed_breaker_admits_and_records_a_kept_key_without_allocating() {
    // Four keys, all kept after the first calls: no breaker is built again.
    let keyed = CircuitBreakLayer::builder()
        .key(|n: &u64| Some(n % 4))
        .max_keys(16)
        .build()
        .unwrap();
    let mut svc = keyed.layer(Echo);
    for n in 0..4 {
        reflex_tests::support::call_once(&mut svc, n);
    }
    assert_eq!(keyed.handle().len(), 4);
    assert_eq!(allocations_per_call(&mut svc, 1000), 0.0);
}
