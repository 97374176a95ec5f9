//! Workspace integration tests of reflex, and [`contract`]: the behaviour
//! every reflex layer owes its users, as a test suite each layer runs.
//!
//! A layer's test file implements [`contract::Subject`] for it and invokes
//! [`layer_contract!`]; the suite then checks, against that layer: clones
//! taken before readiness, readiness before every call, state shared across
//! clones, inner errors passed through, release on drop, on panic and on a
//! timeout, and invalid configuration refused without a panic.

pub mod capacity;
pub mod capture;
pub mod contract;
pub mod process;
pub mod sim;
pub mod slot_rig;
pub mod support;
pub mod traffic;
