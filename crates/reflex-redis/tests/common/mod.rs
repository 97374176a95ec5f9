//! What the Redis tests share: a real `redis-server` on a loopback port, a
//! TCP proxy that can delay it, and replicas as separate processes.
//!
//! Each test starts what it needs and stops it when it ends (or panics):
//! the servers die with the test process (`setpriv --pdeathsig`), the
//! replicas when their stdin closes.

#![allow(dead_code)]
// Servers, proxies and replica processes are driven over blocking sockets
// and pipes, in real time: a paused tokio clock cannot stand for them.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) use reflex_tests::process::dying_with_us;

/// A loopback port nobody listens on (bound, then let go).
pub(crate) fn free_port() -> u16 {
    reflex_tests::process::free_port().port()
}

/// The URL of a Redis nobody runs: a fleet on it stays down.
pub(crate) fn nobody_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

/// Replica `replica` of the fleet `namespace` on the Redis at `url`, with
/// the request path's deadline `op_timeout`, once its link is up (at most
/// 5 s).
pub(crate) async fn fleet_up(
    url: impl Into<String>,
    namespace: &str,
    replica: &str,
    op_timeout: Duration,
) -> reflex_redis::Fleet {
    let fleet = reflex_redis::Fleet::builder(url)
        .namespace(namespace)
        .replica_id(replica)
        .op_timeout(op_timeout)
        .build()
        .unwrap();
    assert!(
        fleet.wait_up(Duration::from_secs(5)).await,
        "{replica} never came up"
    );
    fleet
}

/// A shed layer on "db" (its own limit 50) under a budget of `fleet`'s:
/// `cap` permits for the whole fleet, leased `block` at a time for `ttl`.
/// Call it inside a tokio runtime (the budget's task starts at once).
pub(crate) fn budgeted_shed(
    fleet: &reflex_redis::Fleet,
    cap: usize,
    block: usize,
    ttl: Duration,
) -> (
    reflex_shed::ConcurrencyShedLayer,
    reflex_redis::budget::FleetBudget,
) {
    let layer = reflex_shed::ConcurrencyShedLayer::builder()
        .hard_limit(50)
        .component("db")
        .build()
        .unwrap();
    let budget = reflex_redis::budget::FleetBudget::builder(fleet, &layer.handle())
        .cap(cap)
        .block(block)
        .ttl(ttl)
        .start()
        .unwrap();
    (layer, budget)
}

/// A replica process's runtime, with `workers` threads.
pub(crate) fn replica_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A `redis-server` on a loopback port, with no persistence. Killed on
/// drop.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one and waits until it answers (at most 10 s).
    pub(crate) fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGKILL, as a crash: nothing is saved.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (killing it first if it runs).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = dying_with_us(&bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (bash .ci/run installs it): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.addr()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer on port {} within 10 s",
            self.port
        );
    }

    /// Runs one command through a fresh connection (for the test's own
    /// checks): the RESP reply as text.
    pub(crate) fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(self.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    use std::io::Read;
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A TCP proxy on a loopback port in front of `upstream`, that holds each
/// chunk for the delay it is set to (zero: none). Runs on its own threads
/// until dropped.
pub(crate) struct DelayProxy {
    pub(crate) port: u16,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DelayProxy {
    pub(crate) fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (delay, stopped) = (Arc::clone(&delay_ms), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        client.set_nonblocking(false).unwrap();
                        pipe(&client, &server, &delay, &stopped);
                        pipe(&server, &client, &delay, &stopped);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            delay_ms,
            stop,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(
    from: &TcpStream,
    to: &TcpStream,
    delay: &Arc<AtomicU64>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) {
    use std::io::Read;
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let (delay, stop) = (Arc::clone(delay), Arc::clone(stop));
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let wait = delay.load(Ordering::Relaxed);
            if wait > 0 {
                std::thread::sleep(Duration::from_millis(wait));
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

/// The env var a re-executed test binary reads its role from.
pub(crate) const ROLE: &str = "REFLEX_REDIS_REPLICA";

/// A replica: this very test binary, run again with only `entry` (a test
/// that returns at once unless [`ROLE`] is set) and `role` in [`ROLE`].
/// Talks in lines: the test writes commands to its stdin, reads answers
/// from its stdout. It ends when its stdin closes (on drop).
pub(crate) struct Replica {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Replica {
    pub(crate) fn spawn(entry: &str, role: &str, envs: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut command = dying_with_us(exe.to_str().unwrap());
        command
            .args([
                entry,
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command line.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next answer the replica wrote (after `@>`; libtest's own lines
    /// are skipped).
    pub(crate) fn recv(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the replica ended before answering");
            // libtest may have written "test entry ... " on the same line.
            if let Some(at) = line.find("@>") {
                return line[at + 2..].trim_end().to_owned();
            }
        }
    }

    /// Sends `line`, returns the answer.
    pub(crate) fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
    }

    /// SIGKILL, as a crash.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// In a replica process: the role it was started with, if any.
pub(crate) fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// In a replica process: answers one line to the test.
pub(crate) fn answer(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@>{line}").unwrap();
    out.flush().unwrap();
}

/// In a replica process: the test's command lines, until its stdin closes.
pub(crate) fn commands() -> impl Iterator<Item = String> {
    std::io::stdin().lines().map_while(Result::ok)
}

pub(crate) mod dependency;
