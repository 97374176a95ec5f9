//! Dedup leases against a real `redis-server`, with replicas as fleets of
//! one process: one call per key across replicas, a lease let go on every
//! way out, Redis down or slow. The separate-process tests are in
//! `dedup_fleet.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{DelayProxy, RedisServer};
use reflex_core::{BoxError, ConfigErrorKind, Signal, signal::Recorder};
use reflex_redis::Fleet;
use reflex_redis::dedup::{FleetDedupLayer, FleetDedupMetrics, RawCodec, codec_fn};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn replica(url: &str, namespace: &str, name: &str) -> Fleet {
    common::fleet_up(url, namespace, name, Duration::from_millis(50)).await
}

/// A `redis-server` and two replicas `a` and `b` of the fleet `namespace`.
async fn two_replicas(namespace: &str) -> (RedisServer, Fleet, Fleet) {
    let server = RedisServer::start();
    let a = replica(&server.url(), namespace, "a").await;
    let b = replica(&server.url(), namespace, "b").await;
    (server, a, b)
}

/// A dependency that counts its calls and answers `v<call>:<key>` after
/// `delay`.
fn counting(
    calls: &Arc<AtomicUsize>,
    delay: Duration,
) -> impl Service<String, Response = String, Error = BoxError, Future: Send> + Clone + Send + 'static
{
    let calls = Arc::clone(calls);
    service_fn(move |key: String| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(delay).await;
            Ok::<_, BoxError>(format!("v{n}:{key}"))
        }
    })
}

type KeyOf = fn(&String) -> Option<String>;

#[allow(clippy::ptr_arg, reason = "a key function takes the request: &String")]
fn by_key(key: &String) -> Option<String> {
    Some(key.clone())
}

fn layer(fleet: &Fleet, lease: Duration) -> FleetDedupLayer<String, String, KeyOf, RawCodec> {
    FleetDedupLayer::builder(fleet)
        .component("catalog")
        .key(by_key as KeyOf)
        .codec(RawCodec)
        .lease_ttl(lease)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn sum(a: FleetDedupMetrics, b: FleetDedupMetrics) -> [u64; 6] {
    [
        a.leader_calls + b.leader_calls,
        a.follower_hits + b.follower_hits,
        a.takeovers + b.takeovers,
        a.local_fallbacks + b.local_fallbacks,
        a.waits_timed_out + b.waits_timed_out,
        a.unshared + b.unshared,
    ]
}

/// Polls `check` every 5 ms for up to 5 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn twenty_requests_on_two_replicas_make_one_inner_call() {
    let (server, a, b) = two_replicas("dd-one").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let recorder = Arc::new(Recorder::default());
    let layer_a = FleetDedupLayer::builder(&a)
        .component("catalog")
        .key(by_key as KeyOf)
        .codec(RawCodec)
        .sink(Arc::clone(&recorder))
        .build()
        .unwrap();
    let layer_b = layer(&b, Duration::from_secs(2));
    let svc_a = layer_a.layer(counting(&calls, Duration::from_millis(300)));
    let svc_b = layer_b.layer(counting(&calls, Duration::from_millis(300)));

    let started = Instant::now();
    let requests = (0..20).map(|i| {
        let svc = [&svc_a, &svc_b][i % 2].clone();
        tokio::spawn(svc.oneshot("sku-1".to_owned()))
    });
    let answers: Vec<String> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let elapsed = started.elapsed();

    assert_eq!(calls.load(Ordering::SeqCst), 1, "one inner call for all 20");
    assert!(
        answers.iter().all(|answer| answer == "v1:sku-1"),
        "{answers:?}"
    );
    let [leaders, hits, takeovers, fallbacks, timed_out, unshared] =
        sum(layer_a.handle().metrics(), layer_b.handle().metrics());
    assert_eq!((leaders, hits), (1, 19));
    assert_eq!((takeovers, fallbacks, timed_out, unshared), (0, 0, 0, 0));
    assert_eq!(layer_a.handle().metrics().waiting, 0);
    let coalesced = recorder
        .signals()
        .iter()
        .filter(|(_, signal)| matches!(signal, Signal::Coalesced { .. }))
        .count() as u64;
    assert_eq!(coalesced, layer_a.handle().metrics().follower_hits);
    println!("20 requests on 2 replicas: 1 inner call, all answered in {elapsed:?}");

    // What stays in Redis expires: the lease is gone, the result has a TTL.
    eventually("the lease let go", || {
        server.command(&["EXISTS", "reflex:{dd-one:dedup:catalog}:l:k:sku-1"]) == ":0"
    })
    .await;
    let ttl = server.command(&["PTTL", "reflex:{dd-one:dedup:catalog}:r:k:sku-1"]);
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 2000, "result ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_long_key_is_hashed_in_redis_and_still_shared() {
    let (_server, a, b) = two_replicas("dd-long").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (layer_a, layer_b) = (
        layer(&a, Duration::from_secs(2)),
        layer(&b, Duration::from_secs(2)),
    );
    let svc_a = layer_a.layer(counting(&calls, Duration::from_millis(200)));
    let svc_b = layer_b.layer(counting(&calls, Duration::from_millis(200)));
    let long = "x".repeat(4000);
    let (one, two) = tokio::join!(svc_a.oneshot(long.clone()), async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        svc_b.oneshot(long.clone()).await
    });
    assert_eq!(one.unwrap(), two.unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer_b.handle().metrics().follower_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_leader_renews_its_lease_while_its_call_outlasts_it() {
    let (_server, a, b) = two_replicas("dd-renew").await;
    let lease = Duration::from_millis(300);
    let (layer_a, layer_b) = (layer(&a, lease), layer(&b, lease));
    let calls = Arc::new(AtomicUsize::new(0));
    // A call four leases long.
    let svc_a = layer_a.layer(counting(&calls, Duration::from_millis(1200)));
    let svc_b = layer_b.layer(counting(&calls, Duration::from_millis(1200)));
    let (one, two) = tokio::join!(svc_a.oneshot("slow".to_owned()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        svc_b.oneshot("slow".to_owned()).await
    });
    assert_eq!(one.unwrap(), "v1:slow");
    assert_eq!(two.unwrap(), "v1:slow");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the lease never lapsed");
    assert_eq!(layer_b.handle().metrics().takeovers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_cancelled_leader_lets_its_lease_go_at_once() {
    let (_server, a, b) = two_replicas("dd-cancel").await;
    let lease = Duration::from_secs(10);
    let (layer_a, layer_b) = (layer(&a, lease), layer(&b, lease));
    let calls = Arc::new(AtomicUsize::new(0));
    let hanging = {
        let calls = Arc::clone(&calls);
        service_fn(move |_key: String| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<String, BoxError>>()
        })
    };
    let leader = tokio::spawn(layer_a.layer(hanging).oneshot("k".to_owned()));
    let handle_a = layer_a.handle();
    eventually("a leads", || handle_a.metrics().leader_calls == 1).await;

    let started = Instant::now();
    let follower = tokio::spawn(
        layer_b
            .layer(counting(&calls, Duration::ZERO))
            .oneshot("k".to_owned()),
    );
    let handle_b = layer_b.handle();
    eventually("b waits", || handle_b.metrics().waiting == 1).await;
    leader.abort();
    let answer = follower.await.unwrap().unwrap();
    let took = started.elapsed();

    assert_eq!(answer, "v2:k", "b called after taking over");
    assert_eq!(handle_b.metrics().takeovers, 1);
    assert!(
        took < Duration::from_secs(2),
        "took over after {took:?}, lease {lease:?}"
    );
    println!("a cancelled leader's key taken over in {took:?} (lease {lease:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_leader_error_or_panic_hands_the_key_to_a_waiter() {
    let (_server, a, b) = two_replicas("dd-error").await;
    let lease = Duration::from_secs(10);
    let (layer_a, layer_b) = (layer(&a, lease), layer(&b, lease));
    let calls = Arc::new(AtomicUsize::new(0));
    let handle_b = layer_b.handle();
    for failure in ["error", "panic"] {
        let failing = service_fn(move |_key: String| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(failure != "panic", "the inner service panics");
            Err::<String, BoxError>("dependency failed".into())
        });
        let key = format!("key-{failure}");
        let leader = tokio::spawn(layer_a.layer(failing).oneshot(key.clone()));
        let handle_a = layer_a.handle();
        let leads = if failure == "error" { 1 } else { 2 };
        eventually("a leads", || handle_a.metrics().leader_calls == leads).await;
        let started = Instant::now();
        let follower = layer_b
            .layer(counting(&calls, Duration::ZERO))
            .oneshot(key.clone())
            .await;
        let took = started.elapsed();

        let leader = leader.await;
        match failure {
            "error" => assert_eq!(
                leader.unwrap().unwrap_err().to_string(),
                "dependency failed"
            ),
            _ => assert!(leader.unwrap_err().is_panic()),
        }
        assert!(
            follower.unwrap().starts_with('v'),
            "b answered by its own call"
        );
        assert!(
            took < Duration::from_secs(2),
            "{failure}: took over after {took:?}"
        );
    }
    assert_eq!(handle_b.metrics().takeovers, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn a_result_too_big_or_undecodable_sends_waiters_to_their_own_call() {
    let (_server, a, b) = two_replicas("dd-big").await;
    let big = |fleet: &Fleet| {
        FleetDedupLayer::builder(fleet)
            .key(|key: &String| Some(key.clone()))
            .codec(RawCodec)
            .max_result_bytes(32)
            .build()
            .unwrap()
    };
    let (layer_a, layer_b) = (big(&a), big(&b));
    let calls = Arc::new(AtomicUsize::new(0));
    let long_answer = {
        let calls = Arc::clone(&calls);
        service_fn(move |key: String| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, BoxError>(key.repeat(20))
            }
        })
    };
    let svc_a = layer_a.layer(long_answer.clone());
    let svc_b = layer_b.layer(long_answer);
    let started = Instant::now();
    let (one, two, three) = tokio::join!(
        svc_a.clone().oneshot("big".to_owned()),
        async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            svc_b.clone().oneshot("big".to_owned()).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            svc_a.clone().oneshot("big".to_owned()).await
        },
    );
    for answer in [one, two, three] {
        assert_eq!(answer.unwrap(), "big".repeat(20));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no one waited out max_wait"
    );
    let [leaders, hits, _, fallbacks, timed_out, unshared] =
        sum(layer_a.handle().metrics(), layer_b.handle().metrics());
    assert_eq!(
        (leaders, hits, fallbacks, timed_out, unshared),
        (1, 0, 2, 0, 1)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A codec that cannot read what another replica wrote: a local call.
    let calls = Arc::new(AtomicUsize::new(0));
    let unreadable = |fleet: &Fleet| {
        FleetDedupLayer::builder(fleet)
            .key(|key: &String| Some(key.clone()))
            .codec(codec_fn(
                |answer: &String| Some(Bytes::from(answer.clone())),
                |_bytes: &[u8]| None::<String>,
            ))
            .build()
            .unwrap()
    };
    let (layer_a, layer_b) = (unreadable(&a), unreadable(&b));
    let (one, two) = tokio::join!(
        layer_a
            .layer(counting(&calls, Duration::from_millis(200)))
            .oneshot("odd".to_owned()),
        async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let svc = layer_b.layer(counting(&calls, Duration::from_millis(200)));
            svc.oneshot("odd".to_owned()).await
        },
    );
    assert_eq!(one.unwrap(), "v1:odd");
    assert_eq!(two.unwrap(), "v2:odd");
    assert_eq!(layer_b.handle().metrics().local_fallbacks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn with_redis_dead_requests_call_at_once_and_sharing_resumes_after_restart() {
    let (mut server, a, b) = two_replicas("dd-down").await;
    let (layer_a, layer_b) = (
        layer(&a, Duration::from_secs(2)),
        layer(&b, Duration::from_secs(2)),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let svc_a = layer_a.layer(counting(&calls, Duration::ZERO));
    let svc_b = layer_b.layer(counting(&calls, Duration::ZERO));

    server.kill();
    // Right after the crash (the link may not know yet) and after it went
    // down: every request answered by its own call, none waiting on Redis
    // beyond the 50 ms deadline.
    let mut slowest = Duration::ZERO;
    for round in 0..40 {
        let svc = [&svc_a, &svc_b][round % 2].clone();
        let started = Instant::now();
        let answer = svc.oneshot(format!("key-{}", round % 3)).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert!(answer.starts_with('v'));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 40);
    assert!(
        slowest < Duration::from_millis(50 + 40),
        "slowest request {slowest:?}"
    );
    let [leaders, _, _, fallbacks, _, _] =
        sum(layer_a.handle().metrics(), layer_b.handle().metrics());
    assert_eq!((leaders, fallbacks), (0, 40));
    println!("redis dead: 40 requests, each called locally, slowest {slowest:?} (deadline 50 ms)");

    server.restart();
    assert!(a.wait_up(Duration::from_secs(5)).await && b.wait_up(Duration::from_secs(5)).await);
    calls.store(0, Ordering::SeqCst);
    let svc_a = layer_a.layer(counting(&calls, Duration::from_millis(200)));
    let svc_b = layer_b.layer(counting(&calls, Duration::from_millis(200)));
    let requests = (0..10).map(|i| {
        let svc = [&svc_a, &svc_b][i % 2].clone();
        tokio::spawn(svc.oneshot("again".to_owned()))
    });
    for joined in futures_util::future::join_all(requests).await {
        assert_eq!(joined.unwrap().unwrap(), "v1:again");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "shared again after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
async fn with_redis_slow_no_request_waits_beyond_the_deadline() {
    let server = RedisServer::start();
    let proxy = DelayProxy::start(server.addr());
    let op = Duration::from_millis(30);
    let fleet = common::fleet_up(proxy.url(), "dd-slow", "a", op).await;
    let layer = layer(&fleet, Duration::from_secs(2));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(counting(&calls, Duration::ZERO));

    proxy.set_delay(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let started = Instant::now();
        let answer = svc.clone().oneshot(format!("slow-{round}")).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(answer, format!("v{}:slow-{round}", round + 1));
    }
    assert!(
        slowest < op + Duration::from_millis(50),
        "slowest request {slowest:?}"
    );
    assert_eq!(layer.handle().metrics().local_fallbacks, 20);
    println!("redis 300 ms slow: 20 requests, slowest {slowest:?} (deadline {op:?})");
    proxy.set_delay(Duration::ZERO);
}

#[tokio::test]
async fn with_no_redis_a_keyed_request_calls_the_inner_service() {
    let fleet = Fleet::builder(common::nobody_url()).build().unwrap();
    let layer = layer(&fleet, Duration::from_secs(1));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(counting(&calls, Duration::ZERO));
    assert_eq!(svc.clone().oneshot("a".to_owned()).await.unwrap(), "v1:a");
    assert_eq!(svc.oneshot("a".to_owned()).await.unwrap(), "v2:a");
    assert_eq!(layer.handle().metrics().local_fallbacks, 2);
}

#[tokio::test]
async fn a_request_without_a_key_goes_straight_through() {
    let fleet = Fleet::builder(common::nobody_url()).build().unwrap();
    let layer = FleetDedupLayer::builder(&fleet)
        .key(|key: &String| (!key.is_empty()).then(|| key.clone()))
        .codec(RawCodec)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(counting(&calls, Duration::ZERO));
    assert_eq!(svc.oneshot(String::new()).await.unwrap(), "v1:");
    assert_eq!(layer.handle().metrics(), FleetDedupMetrics::default());
}

#[tokio::test]
async fn bad_configuration_is_refused_with_a_typed_error() {
    let fleet = Fleet::builder("redis://127.0.0.1:1").build().unwrap();
    let builder = || {
        FleetDedupLayer::builder(&fleet)
            .key(|key: &String| Some(key.clone()))
            .codec(RawCodec)
    };
    let refused = [
        (
            builder().lease_ttl(Duration::ZERO).build().unwrap_err(),
            "lease_ttl",
            ConfigErrorKind::Zero,
        ),
        (
            builder().lease_ttl(Duration::MAX).build().unwrap_err(),
            "lease_ttl",
            ConfigErrorKind::OutOfRange,
        ),
        (
            builder()
                .lease_ttl(Duration::from_micros(10))
                .build()
                .unwrap_err(),
            "lease_ttl",
            ConfigErrorKind::OutOfRange,
        ),
        (
            builder().result_ttl(Duration::ZERO).build().unwrap_err(),
            "result_ttl",
            ConfigErrorKind::Zero,
        ),
        (
            builder().result_ttl(Duration::MAX).build().unwrap_err(),
            "result_ttl",
            ConfigErrorKind::OutOfRange,
        ),
        (
            builder().max_wait(Duration::ZERO).build().unwrap_err(),
            "max_wait",
            ConfigErrorKind::Zero,
        ),
        (
            builder().max_wait(Duration::MAX).build().unwrap_err(),
            "max_wait",
            ConfigErrorKind::OutOfRange,
        ),
        (
            builder().max_result_bytes(0).build().unwrap_err(),
            "max_result_bytes",
            ConfigErrorKind::Zero,
        ),
        (
            builder().max_result_bytes(usize::MAX).build().unwrap_err(),
            "max_result_bytes",
            ConfigErrorKind::OutOfRange,
        ),
    ];
    for (error, setting, kind) in refused {
        assert_eq!(
            (error.layer(), error.setting(), error.kind()),
            ("fleet-dedup", setting, kind),
            "{error}"
        );
    }
    // The largest accepted values build.
    builder()
        .lease_ttl(Duration::from_secs(3600))
        .result_ttl(Duration::from_millis(1))
        .max_wait(Duration::from_secs(3600))
        .max_result_bytes(512 * 1024 * 1024)
        .build()
        .unwrap();
}
