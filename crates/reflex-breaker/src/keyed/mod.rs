//! Per-key breakers: the layer ([`layer`]), its service ([`service`]), the
//! table of breakers ([`table`]) and the bound on searching it ([`room`]),
//! and the handle ([`handle`]).

mod handle;
mod layer;
mod room;
mod service;
mod table;

pub use handle::{KeyedBreakerHandle, KeyedBreakerMetrics};
pub use layer::KeyedCircuitBreakLayer;
pub use service::KeyedCircuitBreak;
