//! The soft-limit warning, as a `tracing` subscriber sees it.
//!
//! A test binary of its own: tracing caches per call site whether anyone
//! listens, so a test on another thread with no subscriber could make this
//! one miss its events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reflex_shed::ConcurrencyShedLayer;
use tokio_test::assert_ready_ok;
use tower_test::mock;

/// Counts WARN and INFO events.
#[derive(Default)]
struct Count {
    warn: AtomicUsize,
    info: AtomicUsize,
}

struct Counting(Arc<Count>);

impl tracing::Subscriber for Counting {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        match *event.metadata().level() {
            tracing::Level::WARN => self.0.warn.fetch_add(1, Ordering::SeqCst),
            tracing::Level::INFO => self.0.info.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_soft_limit_warning_is_logged_once_per_excursion() {
    let count = Arc::new(Count::default());
    tracing::subscriber::with_default(Counting(count.clone()), || {
        let layer = ConcurrencyShedLayer::builder()
            .hard_limit(8)
            .soft_limit(2)
            .build()
            .unwrap();
        let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
        let mut held = Vec::new();
        for excursion in 1..=2 {
            // Up to 6 in flight (above 2 from the third), back down to 1
            // (half the soft limit), twice.
            while held.len() < 6 {
                assert_ready_ok!(svc.poll_ready());
                held.push(svc.call(()));
            }
            assert_eq!(count.warn.load(Ordering::SeqCst), excursion);
            held.truncate(1);
            assert_eq!(count.info.load(Ordering::SeqCst), excursion);
        }
    });
}
