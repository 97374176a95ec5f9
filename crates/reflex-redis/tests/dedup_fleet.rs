//! Dedup leases with replicas as separate processes against a real
//! `redis-server`: one inner call per key across the fleet, counted at the
//! dependency (a TCP server in the test process), and a SIGKILLed leader's
//! key taken over once its lease expires.
//!
//! Real processes, a real server and a real clock: the test talks to its
//! replicas over blocking pipes and times them with std's clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dependency::Dependency;
use common::{RedisServer, Replica};
use reflex_core::BoxError;
use reflex_redis::dedup::{FleetDedupLayer, RawCodec};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt, service_fn};

/// Calls per key, as the dependency counted them.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// The dependency: reads a key per connection, answers `v<n>:<key>` (its
/// n-th call for that key) after 300 ms. The first call for a key starting
/// with `hang` never answers.
fn dependency() -> (Dependency, Counts) {
    let counts = Counts::default();
    let counted = Arc::clone(&counts);
    let dependency = Dependency::start(move |mut stream| {
        let mut key = String::new();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        if reader.read_line(&mut key).is_err() {
            return;
        }
        let key = key.trim_end().to_owned();
        let n = {
            let mut counts = counted.lock().unwrap();
            let n = counts.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        if key.starts_with("hang") && n == 1 {
            // Until the caller goes away.
            let _ = reader.read_line(&mut String::new());
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = writeln!(stream, "v{n}:{key}");
    });
    (dependency, counts)
}

/// A replica process: its fleet, a fleet dedup layer over the dependency.
/// Commands: `burst <n> <key>…` (n concurrent requests per key), `hang
/// <key>` (a request left running), `get <key>` (one request).
#[test]
fn dedup_replica() {
    let Some(name) = common::role() else { return };
    let env = |key: &str| std::env::var(key).unwrap();
    let runtime = common::replica_runtime(2);
    let dep: SocketAddr = env("DD_DEP").parse().unwrap();
    let lease = Duration::from_millis(env("DD_LEASE_MS").parse().unwrap());
    let (layer, svc) = runtime.block_on(async {
        let fleet = common::fleet_up(
            env("DD_REDIS"),
            "dd-fleet",
            &name,
            Duration::from_millis(50),
        )
        .await;
        let layer = FleetDedupLayer::builder(&fleet)
            .component("catalog")
            .key(|key: &String| Some(key.clone()))
            .codec(RawCodec)
            .lease_ttl(lease)
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(move |key: String| async move {
            let mut stream = tokio::net::TcpStream::connect(dep).await?;
            stream.write_all(format!("{key}\n").as_bytes()).await?;
            let mut line = String::new();
            tokio::io::BufReader::new(stream)
                .read_line(&mut line)
                .await?;
            Ok::<_, BoxError>(line.trim_end().to_owned())
        }));
        (layer, svc)
    });
    common::answer("ready");
    for line in common::commands() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["burst", n, keys @ ..] => {
                let n: usize = n.parse().unwrap();
                let answers = runtime.block_on(async {
                    let requests = keys.iter().flat_map(|key| {
                        (0..n).map(|_| tokio::spawn(svc.clone().oneshot((*key).to_owned())))
                    });
                    futures_util::future::join_all(requests).await
                });
                let mut by_key: Vec<String> = Vec::new();
                for (i, answer) in answers.into_iter().enumerate() {
                    let answer = answer.unwrap().unwrap();
                    if i % n == 0 {
                        by_key.push(answer);
                    } else if by_key.last() != Some(&answer) {
                        by_key.push(format!("MISMATCH:{answer}"));
                    }
                }
                let m = layer.handle().metrics();
                common::answer(format!(
                    "{} leaders={} hits={} fallbacks={} timed_out={}",
                    by_key.join(","),
                    m.leader_calls,
                    m.follower_hits,
                    m.local_fallbacks,
                    m.waits_timed_out
                ));
            }
            ["hang", key] => {
                runtime.spawn(svc.clone().oneshot((*key).to_owned()));
                let leading = runtime.block_on(async {
                    let leads = async {
                        while layer.handle().metrics().leader_calls == 0 {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    };
                    tokio::time::timeout(Duration::from_secs(5), leads).await
                });
                common::answer(if leading.is_ok() {
                    "leading"
                } else {
                    "not leading"
                });
            }
            ["get", key] => {
                let (answer, took) = runtime.block_on(async {
                    let started = Instant::now();
                    let answer = svc.clone().oneshot((*key).to_owned()).await.unwrap();
                    (answer, started.elapsed())
                });
                let m = layer.handle().metrics();
                common::answer(format!(
                    "{answer} {} takeovers={}",
                    took.as_millis(),
                    m.takeovers
                ));
            }
            _ => common::answer(format!("unknown command {line}")),
        }
    }
}

fn spawn(name: &str, server: &RedisServer, dep: &Dependency, lease_ms: u64) -> Replica {
    let mut replica = Replica::spawn(
        "dedup_replica",
        name,
        &[
            ("DD_REDIS", server.url()),
            ("DD_DEP", dep.addr().to_string()),
            ("DD_LEASE_MS", lease_ms.to_string()),
        ],
    );
    assert_eq!(replica.recv(), "ready");
    replica
}

#[test]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
fn three_replica_processes_make_one_call_per_key() {
    let server = RedisServer::start();
    let (dep, counts) = dependency();
    let mut replicas: Vec<Replica> = ["r1", "r2", "r3"]
        .iter()
        .map(|name| spawn(name, &server, &dep, 2000))
        .collect();
    let keys = ["k1", "k2", "k3", "k4", "k5"];
    let command = format!("burst 10 {}", keys.join(" "));
    let started = Instant::now();
    for replica in &mut replicas {
        replica.send(&command);
    }
    let answers: Vec<String> = replicas.iter_mut().map(Replica::recv).collect();
    let took = started.elapsed();

    let expected: Vec<String> = keys.iter().map(|key| format!("v1:{key}")).collect();
    for answer in &answers {
        let (responses, metrics) = answer.split_once(' ').unwrap();
        assert_eq!(responses, expected.join(","), "{answer}");
        assert!(metrics.ends_with("fallbacks=0 timed_out=0"), "{answer}");
    }
    let counts = counts.lock().unwrap().clone();
    for key in keys {
        assert_eq!(counts.get(key), Some(&1), "calls per key: {counts:?}");
    }
    println!(
        "3 replica processes x 5 keys x 10 concurrent requests = 150 requests: {} inner calls, {took:?}",
        counts.values().sum::<usize>()
    );
    for (name, answer) in ["r1", "r2", "r3"].iter().zip(&answers) {
        println!("  {name}: {}", answer.split_once(' ').unwrap().1);
    }
}

#[test]
#[ignore = "needs redis-server: bash .ci/run installs and runs it"]
fn a_sigkilled_leaders_key_is_taken_over_after_its_lease() {
    let server = RedisServer::start();
    let (dep, counts) = dependency();
    let lease_ms = 500;
    let mut a = spawn("a", &server, &dep, lease_ms);
    let mut b = spawn("b", &server, &dep, lease_ms);

    assert_eq!(a.ask("hang hang-1"), "leading");
    b.send("get hang-1");
    // B waits on A's lease (it renews it) for a while.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(counts.lock().unwrap().get("hang-1"), Some(&1));
    let killed = Instant::now();
    a.kill();
    let answer = b.recv();
    let after_kill = killed.elapsed();

    let mut words = answer.split(' ');
    assert_eq!(words.next(), Some("v2:hang-1"), "{answer}");
    let waited: u64 = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("takeovers=1"), "{answer}");
    assert_eq!(counts.lock().unwrap().get("hang-1"), Some(&2));
    // The lease outlives the kill by at most its TTL; B looks every
    // quarter of it; the new call takes 300 ms.
    assert!(
        after_kill < Duration::from_millis(lease_ms + lease_ms / 4 + 300 + 500),
        "taken over {after_kill:?} after the kill"
    );
    assert!(waited >= 700, "b answered before the kill: {waited} ms");
    println!(
        "leader SIGKILLed: its key taken over and answered {after_kill:?} after the kill (lease {lease_ms} ms, call 300 ms)"
    );
}
