//! The layer contract, run against `DedupLayer`.
//!
//! Every request is keyed by its text, so each is a shared call of its
//! own: what a request holds is its key in flight.

use std::time::Duration;

use reflex_core::ConfigError;
use reflex_dedup::DedupLayer;
use reflex_tests::contract::Subject;

struct Dedup;

type KeyFn = fn(&String) -> Option<String>;

/// Each request is its own key.
fn by_text() -> KeyFn {
    |request| Some(request.clone())
}

impl Subject for Dedup {
    type Layer = DedupLayer<String, String, KeyFn>;

    fn layer() -> Self::Layer {
        DedupLayer::builder()
            .key(by_text())
            .cache(Duration::from_secs(60), 16)
            .build()
            .expect("valid config")
    }

    fn held(layer: &Self::Layer) -> usize {
        layer.handle().metrics().in_flight_keys
    }

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        let builder = || DedupLayer::builder().key(by_text());
        vec![
            builder().max_keys(0).build(),
            builder().wait_timeout(Duration::ZERO).build(),
            builder().cache(Duration::ZERO, 1).build(),
            builder().cache(Duration::from_secs(1), 0).build(),
        ]
    }
}

reflex_tests::layer_contract!(Dedup);
