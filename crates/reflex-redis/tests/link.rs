//! The fleet's link against a real `redis-server`: it comes up, notices a
//! crash and a slow server, and comes back.

mod common;

use std::time::Duration;

use common::{DelayProxy, RedisServer};
use reflex_redis::{Fleet, FleetError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn the_link_goes_down_when_redis_dies_and_comes_back_when_it_returns() {
    let mut server = RedisServer::start();
    let fleet = common::fleet_up(server.url(), "link-test", "a", Duration::from_millis(50)).await;
    assert_eq!(fleet.downs(), 0);

    server.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while fleet.is_up() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!fleet.is_up(), "still up 3 s after redis was killed");
    assert_eq!(fleet.downs(), 1);

    server.restart();
    assert!(
        fleet.wait_up(Duration::from_secs(5)).await,
        "did not come back within 5 s of the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_slow_redis_puts_the_link_down_within_a_few_deadlines() {
    let server = RedisServer::start();
    let proxy = DelayProxy::start(server.addr());
    let op = Duration::from_millis(20);
    let fleet = common::fleet_up(proxy.url(), "slow-test", "a", op).await;

    proxy.set_delay(Duration::from_millis(100));
    let started = tokio::time::Instant::now();
    while fleet.is_up() && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!fleet.is_up(), "still up with redis 100 ms slow");
    // Two missed pings, 100 ms apart at most, each bounded by the deadline.
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "took {:?} to notice",
        started.elapsed()
    );

    proxy.set_delay(Duration::ZERO);
    assert!(
        fleet.wait_up(Duration::from_secs(3)).await,
        "did not recover"
    );
}

#[tokio::test]
async fn bad_configuration_is_refused_with_a_typed_error() {
    let bad = [
        Fleet::builder("not a url").build().unwrap_err(),
        Fleet::builder("redis://127.0.0.1:1")
            .namespace("a{b}")
            .build()
            .unwrap_err(),
        Fleet::builder("redis://127.0.0.1:1")
            .replica_id("")
            .build()
            .unwrap_err(),
        Fleet::builder("redis://127.0.0.1:1")
            .op_timeout(Duration::ZERO)
            .build()
            .unwrap_err(),
        Fleet::builder("redis://127.0.0.1:1")
            .op_timeout(Duration::MAX)
            .build()
            .unwrap_err(),
    ];
    assert!(matches!(bad[0], FleetError::Url(_)));
    assert!(matches!(
        bad[1],
        FleetError::Name {
            name: "namespace",
            ..
        }
    ));
    assert!(matches!(
        bad[2],
        FleetError::Name {
            name: "replica_id",
            ..
        }
    ));
    assert!(matches!(
        bad[3],
        FleetError::Timeout {
            name: "op_timeout",
            ..
        }
    ));
    assert!(matches!(
        bad[4],
        FleetError::Timeout {
            name: "op_timeout",
            ..
        }
    ));
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let error = Fleet::builder("redis://127.0.0.1:1").build().unwrap_err();
    assert_eq!(error, FleetError::NoRuntime);
}

#[tokio::test]
async fn with_no_redis_the_link_stays_down_and_says_so() {
    let fleet = Fleet::builder(common::nobody_url()).build().unwrap();
    assert!(!fleet.wait_up(Duration::from_millis(300)).await);
    assert!(!fleet.is_up());
}
