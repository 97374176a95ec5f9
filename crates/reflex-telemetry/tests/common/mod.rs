//! What the tests against real servers share: starting a child process
//! that dies with the test, on a free loopback port.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

/// A command running `bin` that dies with this process: through
/// `setpriv --pdeathsig KILL` (util-linux) when there is one, so that a
/// test killed midway leaves no server behind (the signal comes when the
/// thread that spawned it ends, so it also covers a test thread that
/// panics past its guard); the plain command otherwise.
pub(crate) fn dying_with_us(bin: &str) -> Command {
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
pub(crate) fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
