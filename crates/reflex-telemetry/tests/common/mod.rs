//! What the tests against real servers share: starting a child process
//! that dies with the test, on a free loopback port.

pub(crate) use reflex_tests::process::{dying_with_us, free_port};
