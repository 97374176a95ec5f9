//! The one way in: both dedup builders built by code that knows only the
//! reflex contract (`Classified`, `LayerBuilder`, `Handled`,
//! `LayerHandle`), the stack's classifier deciding what the cache keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, Classified, Component, ConfigError, Handled, LayerBuilder, LayerHandle, Outcome,
    Signal, Sink,
};
use reflex_dedup::DedupLayer;
use tower::{Layer, ServiceExt, service_fn};

/// What a stack does with any of its parts: gives it the stack's
/// classifier, its name and its sink, and builds it.
fn build_part<P, C>(
    part: P,
    classifier: C,
    component: &str,
    sink: Sink,
) -> Result<<P::Builder as LayerBuilder>::Layer, ConfigError>
where
    P: Classified<C>,
{
    part.classified_by(classifier)
        .component(Component::new(component))
        .sink(sink)
        .build()
}

#[tokio::test]
async fn a_stack_built_dedup_layer_caches_what_the_stacks_classifier_calls_a_success() {
    let recorder = Arc::new(Recorder::default());
    let even_only = |result: Result<&u64, &BoxError>| match result {
        Ok(n) if n % 2 == 0 => Outcome::Success,
        _ => Outcome::Failure,
    };
    let builder = DedupLayer::builder()
        .key(|n: &u64| Some(*n))
        .cache(Duration::from_secs(60), 10);
    let layer = build_part(builder, even_only, "numbers", Sink::new(recorder.clone())).unwrap();
    let handle = Handled::handle(&layer);
    assert!(layer.control().is_none(), "nothing for a reflex to steer");
    assert_eq!(LayerHandle::component(&handle).as_str(), "numbers");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = layer.layer(service_fn(move |n: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(n) }
    }));
    for n in [2, 2, 3, 3] {
        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "2 was kept, 3 was not");
    let metrics = LayerHandle::metrics(&handle);
    assert_eq!((metrics.cache_hits, metrics.cache_entries), (1, 1));
    assert_eq!(
        metrics,
        handle.metrics(),
        "one shape, with or without the trait"
    );
    let hits: Vec<_> = recorder
        .signals()
        .into_iter()
        .filter(|(component, signal)| {
            component.as_str() == "numbers" && *signal == Signal::DedupCacheHit { stale: false }
        })
        .collect();
    assert_eq!(hits.len(), 1, "the stack's sink, under the stack's name");
}

#[test]
fn a_stack_gets_the_builders_config_error_not_a_panic() {
    let builder = DedupLayer::builder().key(|n: &u64| Some(*n)).max_keys(0);
    let err = build_part(builder, reflex_core::DefaultClassifier, "x", Sink::none()).unwrap_err();
    assert_eq!(err.setting(), "max_keys");
}

#[cfg(feature = "http")]
mod over_http {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{Empty, Full};
    use reflex_dedup::Sharing;
    use reflex_dedup::http::CallBody;

    use super::*;

    #[tokio::test]
    async fn a_stack_built_http_dedup_layer_caches_what_the_stacks_classifier_calls_a_success() {
        let builder = DedupLayer::builder()
            .http()
            .cache(Duration::from_secs(60), 10);
        let not_found_fails = |result: Result<&Response<CallBody>, &BoxError>| match result {
            Ok(response) if response.status() != 404 => Outcome::Success,
            _ => Outcome::Failure,
        };
        let layer = build_part(builder, not_found_fails, "catalog", Sink::none()).unwrap();
        let handle = Handled::handle(&layer);
        assert_eq!(LayerHandle::component(&handle).as_str(), "catalog");
        let svc = layer.layer(service_fn(|req: Request<Empty<Bytes>>| async move {
            // 501: a 5xx a cache may keep unasked (RFC 9111).
            let status = if req.uri().path() == "/missing" {
                404
            } else {
                501
            };
            let response = Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()));
            Ok::<_, BoxError>(response.unwrap())
        }));
        let get = |path: &str| Request::get(path).body(Empty::new()).unwrap();
        for (path, kept) in [("/missing", false), ("/unimplemented", true)] {
            svc.clone().oneshot(get(path)).await.unwrap();
            let again = svc.clone().oneshot(get(path)).await.unwrap();
            let cached = again.extensions().get::<Sharing>() == Some(&Sharing::Cached);
            assert_eq!(
                cached, kept,
                "{path}: the stack's classifier, not the 5xx default"
            );
        }
    }
}
