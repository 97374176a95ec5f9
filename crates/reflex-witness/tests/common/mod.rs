//! What the witness crate's tests over chains of real witness layers share.

use reflex_core::BoxError;
use reflex_witness::{Clock, ObserveWitness, Witness};
use tower::Layer;
use tower::util::BoxCloneSyncService;

/// A component's service in a chain: takes `()`, answers `()` or fails.
pub(crate) type Svc = BoxCloneSyncService<(), (), BoxError>;

/// A witness on tokio's clock, with its defaults and no runtime.
pub(crate) fn witness() -> Witness {
    Witness::builder().clock(Clock::Tokio).build().unwrap()
}

/// `svc` behind a witness layer for the component `name`.
pub(crate) fn observed<S>(witness: &Witness, name: &str, svc: S) -> ObserveWitness<S> {
    witness.layer(name).build().unwrap().layer(svc)
}
