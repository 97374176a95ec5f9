//! Extreme settings (`Duration::MAX`, `usize::MAX`, zero) are refused by
//! `build` with a `ConfigError` or saturate: no request panics, and each
//! gets exactly one outcome.

use std::time::Duration;

use proptest::prelude::*;
use reflex_core::BoxError;
use reflex_dedup::DedupLayer;
use tower::{Layer, ServiceExt, service_fn};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

fn count() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(usize::MAX),
        Just(usize::MAX / 2 + 1),
        any::<usize>(),
    ]
}

#[derive(Debug, Clone)]
struct Settings {
    max_keys: usize,
    wait_timeout: Option<Duration>,
    cache: Option<(Duration, usize)>,
    cache_max_bytes: Option<usize>,
    serve_stale: Option<Duration>,
    /// How far the clock moves between the two requests.
    later: Duration,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        count(),
        proptest::option::of(duration()),
        proptest::option::of((duration(), count())),
        proptest::option::of(count()),
        proptest::option::of(duration()),
        0u64..10_000,
    )
        .prop_map(
            |(max_keys, wait_timeout, cache, cache_max_bytes, serve_stale, later)| Settings {
                max_keys,
                wait_timeout,
                cache,
                cache_max_bytes,
                serve_stale,
                later: Duration::from_millis(later),
            },
        )
}

/// Two requests for one key through a layer built with `settings` (if it
/// builds), on a paused clock moved `later` between them: what each got.
fn run(settings: &Settings) -> Option<[Result<u64, BoxError>; 2]> {
    let mut builder = DedupLayer::builder()
        .key(|n: &u64| Some(*n))
        .max_keys(settings.max_keys);
    if let Some(timeout) = settings.wait_timeout {
        builder = builder.wait_timeout(timeout);
    }
    if let Some((ttl, entries)) = settings.cache {
        builder = builder.cache(ttl, entries);
    }
    if let Some(bytes) = settings.cache_max_bytes {
        builder = builder.cache_max_bytes(bytes);
    }
    if let Some(window) = settings.serve_stale {
        builder = builder.serve_stale(window);
    }
    let layer = builder.build().ok()?;
    Some(reflex_tests::support::block_on_paused(async {
        let svc = layer.layer(service_fn(|n: u64| async move {
            tokio::task::yield_now().await;
            Ok::<_, BoxError>(n)
        }));
        let first = svc.clone().oneshot(7).await;
        tokio::time::advance(settings.later).await;
        let second = svc.clone().oneshot(7).await;
        [first, second]
    }))
}

proptest! {
    #[test]
    fn extreme_settings_are_refused_or_answer_every_request_once(settings in settings()) {
        let must_refuse = settings.max_keys == 0
            || settings.wait_timeout.is_some_and(|t| t.is_zero())
            || settings.serve_stale.is_some_and(|w| w.is_zero())
            || (settings.serve_stale.is_some() || settings.cache_max_bytes.is_some())
                && settings.cache.is_none()
            || settings
                .cache
                .is_some_and(|(ttl, entries)| ttl.is_zero() || entries == 0);
        match run(&settings) {
            None => prop_assert!(must_refuse, "refused: {settings:?}"),
            Some(answers) => {
                prop_assert!(!must_refuse, "built: {settings:?}");
                for answer in answers {
                    prop_assert_eq!(answer.ok(), Some(7));
                }
            }
        }
    }
}
