//! The retry budget: exact fractions, expiry, the floor, and races.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use reflex_retry::RetryBudget;

const TTL: Duration = Duration::from_secs(10);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Retries granted at `now` until the budget refuses.
fn drain(budget: &RetryBudget, now: Duration) -> usize {
    let mut granted = 0;
    while budget.withdraw(now) {
        granted += 1;
        assert!(granted < 1_000_000, "runaway budget");
    }
    granted
}

#[test]
fn fractional_ratios_fund_exactly_their_share_and_never_more() {
    // The ratios tower's TpsBudget gets wrong are plain fractions.
    for (ratio, requests, expected) in [
        (0.1, 100, 10),
        (0.2, 100, 20),
        (0.25, 100, 25),
        (1.0 / 3.0, 100, 33),
        (0.01, 1_000, 10),
        (0.05, 20, 1),
        (0.3, 10, 3),
        (1.5, 4, 6),
    ] {
        let budget = RetryBudget::new(ratio, 0, TTL).unwrap();
        for _ in 0..requests {
            budget.deposit(|| secs(1.0));
        }
        assert_eq!(
            budget.remaining(secs(1.0)),
            expected as u64,
            "ratio {ratio}"
        );
        assert_eq!(drain(&budget, secs(1.0)), expected, "ratio {ratio}");
    }
}

proptest! {
    #[test]
    fn a_budget_never_grants_more_than_its_ratio_of_requests(
        ratio in 0.0f64..3.0,
        requests in 0usize..2_000,
    ) {
        let budget = RetryBudget::new(ratio, 0, TTL).unwrap();
        for _ in 0..requests {
            budget.deposit(|| secs(2.0));
        }
        let granted = drain(&budget, secs(2.0)) as f64;
        let share = requests as f64 * ratio;
        prop_assert!(granted <= share + 1e-9, "granted {granted} of a share of {share}");
        prop_assert!(granted + 1.0 >= share.floor(), "granted {granted} of a share of {share}");
    }
}

#[test]
fn deposits_older_than_the_ttl_no_longer_fund_retries() {
    let budget = RetryBudget::new(0.5, 0, TTL).unwrap();
    for _ in 0..20 {
        budget.deposit(|| secs(1.0));
    }
    assert_eq!(budget.remaining(secs(5.0)), 10);
    // Quiet ever since: a window later, nothing is left.
    assert_eq!(budget.remaining(secs(11.5)), 0);
    assert!(!budget.withdraw(secs(11.5)));
    // New requests fund new retries.
    budget.deposit(|| secs(12.0));
    budget.deposit(|| secs(12.0));
    assert!(budget.withdraw(secs(12.0)));
    assert!(!budget.withdraw(secs(12.0)));
}

#[test]
fn spent_retries_expire_with_their_time_too() {
    let budget = RetryBudget::new(1.0, 0, TTL).unwrap();
    for _ in 0..4 {
        budget.deposit(|| secs(1.0));
    }
    assert_eq!(drain(&budget, secs(1.0)), 4);
    // A reading at 20 s (as the layer's handle makes) moves the budget on.
    assert_eq!(budget.remaining(secs(20.0)), 0);
    // Later deposits are not eaten by retries whose deposits expired.
    for _ in 0..3 {
        budget.deposit(|| secs(20.0));
    }
    assert_eq!(budget.remaining(secs(20.0)), 3);
}

#[test]
fn deposits_after_a_quiet_spell_lose_at_most_64_to_the_stale_clock() {
    // Deposits read the clock once in 32 to 64: after a quiet spell, the first
    // ones land in the bucket of the last reading and may expire with it.
    for requests in [1u64, 3, 10, 31, 32, 63, 64, 65, 100, 1_000] {
        let budget = RetryBudget::new(1.0, 0, TTL).unwrap();
        for _ in 0..5 {
            budget.deposit(|| secs(1.0));
        }
        assert_eq!(drain(&budget, secs(1.0)), 5);
        for _ in 0..requests {
            budget.deposit(|| secs(30.0));
        }
        let remaining = budget.remaining(secs(30.0));
        assert!(
            remaining <= requests,
            "{remaining} of {requests}: over-allocated"
        );
        assert!(
            remaining + 64 >= requests,
            "{remaining} of {requests}: lost more than 64"
        );
    }
}

#[test]
fn the_floor_allows_min_per_sec_retries_per_second_of_ttl_with_no_traffic() {
    let budget = RetryBudget::new(0.0, 2, TTL).unwrap();
    assert_eq!(drain(&budget, secs(1.0)), 20, "2 a second over 10 s");
    assert_eq!(
        drain(&budget, secs(5.0)),
        0,
        "spent until those retries expire"
    );
    assert_eq!(drain(&budget, secs(12.0)), 20, "and back a window later");
}

#[test]
fn invalid_budgets_are_config_errors() {
    assert!(RetryBudget::new(0.2, 0, Duration::from_nanos(5)).is_err());
    assert!(RetryBudget::new(-0.1, 0, TTL).is_err());
    assert!(RetryBudget::new(f64::NAN, 0, TTL).is_err());
    assert!(RetryBudget::new(1_000.5, 0, TTL).is_err());
    assert!(RetryBudget::new(0.2, u32::MAX, Duration::from_secs(u64::MAX / 4)).is_err());
}

#[test]
fn racing_retries_never_overdraw_the_balance() {
    let budget = Arc::new(RetryBudget::new(0.1, 0, TTL).unwrap());
    for _ in 0..1_000 {
        budget.deposit(|| secs(1.0));
    }
    let granted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let budget = budget.clone();
            let granted = granted.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if budget.withdraw(secs(1.0)) {
                        granted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(
        granted.load(Ordering::SeqCst),
        100,
        "1000 requests at 10% fund 100 retries"
    );
    assert_eq!(budget.remaining(secs(1.0)), 0);
}

#[test]
fn a_budget_of_extreme_settings_read_at_extreme_times_never_panics() {
    let ttls = [
        Duration::from_nanos(10),
        Duration::from_secs(1),
        Duration::MAX,
    ];
    let ratios = [0.0, f64::MIN_POSITIVE, 0.2, 1000.0];
    let times = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_nanos(u64::MAX),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ];
    for ttl in ttls {
        for ratio in ratios {
            for floor in [0, 1, u32::MAX] {
                // A floor too large for the ttl is refused, not built.
                let Ok(budget) = RetryBudget::new(ratio, floor, ttl) else {
                    continue;
                };
                for now in times {
                    for _ in 0..70 {
                        budget.deposit(|| now);
                    }
                    let _ = budget.withdraw(now);
                    let _ = budget.remaining(now);
                }
            }
        }
    }
}
