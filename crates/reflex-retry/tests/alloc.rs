//! A request that is not retried allocates nothing.

use reflex_retry::RetryLayer;
use reflex_tests::support::{Echo, allocations_per_call};
use tower::Layer;

#[test]
fn a_request_that_succeeds_at_once_allocates_nothing() {
    let budgeted = RetryLayer::builder().build().unwrap();
    let plain = RetryLayer::builder().no_budget().build().unwrap();
    assert_eq!(allocations_per_call(&mut budgeted.layer(Echo), 1000), 0.0);
    assert_eq!(allocations_per_call(&mut plain.layer(Echo), 1000), 0.0);
    // The 1001 requests funded their share of retries: the budget ran.
    let remaining = budgeted.handle().budget_remaining().unwrap();
    assert!(remaining >= 100 + 937 / 5, "{remaining} retries funded");
}

#[test]
fn a_request_with_a_timer_allocates_nothing_once_the_timer_runs() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let timed = RetryLayer::builder()
        .attempt_timeout(std::time::Duration::from_secs(1))
        .deadline(std::time::Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(allocations_per_call(&mut timed.layer(Echo), 1000), 0.0);
}
