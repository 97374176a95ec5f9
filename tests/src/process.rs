//! Child processes for the tests against real servers (Prometheus, Redis,
//! a browser driver, replica processes): started so that they die with
//! the test, on a free loopback port.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

/// A command running `bin` that dies with this process: through
/// `setpriv --pdeathsig KILL` (util-linux) when there is one, so that a
/// test killed midway leaves no server behind (the signal comes when the
/// thread that spawned it ends, so it also covers a test thread that
/// panics past its guard); the plain command otherwise.
///
/// # Examples
///
/// ```
/// let status = reflex_tests::process::dying_with_us("true").status().unwrap();
/// assert!(status.success());
/// ```
pub fn dying_with_us(bin: &str) -> Command {
    let setpriv = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("setpriv"))
            .find(|candidate| candidate.is_file())
    });
    match setpriv {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--", bin]);
            command
        }
        None => Command::new(bin),
    }
}

/// A loopback address nobody listens on (bound, then let go).
///
/// # Examples
///
/// ```
/// let addr = reflex_tests::process::free_port();
/// assert!(addr.ip().is_loopback());
/// assert_ne!(addr.port(), 0);
/// ```
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}
