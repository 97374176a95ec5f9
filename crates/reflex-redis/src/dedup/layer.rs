//! [`FleetDedupLayer`]: what a built fleet dedup layer holds, and the
//! services it makes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use reflex_core::Handled;
use tower_layer::Layer;
use tower_service::Service;

use super::codec::Codec;
use super::flow::Core;
use super::handle::{FleetDedupHandle, Stats};
use super::service::FleetDedup;
use super::settings::Settings;
use crate::Fleet;

/// Identical requests in flight on any replica of the fleet share one
/// inner call. See the [module docs](super); built by
/// [`FleetDedupBuilder`](super::FleetDedupBuilder), from
/// [`FleetDedupLayer::builder`].
///
/// `Req` is the request type and `K` the key its key function `KF`
/// returns (text); `Co` is the [`Codec`] of the inner service's responses.
///
/// # Clone
///
/// Clones, and every service they make, share one handle and take the
/// same keys' leases: identical requests through any of them, on any
/// replica, coalesce.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use reflex_redis::Fleet;
/// use reflex_redis::dedup::{FleetDedupLayer, RawCodec};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").namespace("shop").build()?;
/// let layer = FleetDedupLayer::builder(&fleet)
///     .component("catalog")
///     .key(|sku: &String| Some(sku.clone()))
///     .codec(RawCodec)
///     .lease_ttl(Duration::from_secs(1))
///     .build()?;
/// let catalog = layer.layer(service_fn(|sku: String| async move {
///     Ok::<_, std::io::Error>(format!("item {sku}"))
/// }));
/// assert_eq!(catalog.oneshot("sku-1".to_owned()).await?, "item sku-1");
/// # Ok(()) }
/// ```
pub struct FleetDedupLayer<Req, K, KF, Co> {
    key: Arc<KF>,
    core: Arc<Core<Co>>,
    _request: PhantomData<fn(&Req) -> K>,
}

// === impl FleetDedupLayer ===

impl<Req, K, KF, Co> FleetDedupLayer<Req, K, KF, Co> {
    /// A layer of checked `settings`.
    pub(crate) fn new(fleet: Fleet, key: KF, codec: Co, settings: Settings) -> Self {
        let stats = Arc::new(Stats::new(
            settings.component.clone(),
            settings.sink.clone(),
        ));
        Self {
            key: Arc::new(key),
            core: Arc::new(Core::new(fleet, codec, settings, stats)),
            _request: PhantomData,
        }
    }

    /// A handle to read the layer's counts on this replica.
    pub fn handle(&self) -> FleetDedupHandle {
        FleetDedupHandle::new(Arc::clone(&self.core.stats))
    }
}

impl<Req, K, KF, Co> Handled for FleetDedupLayer<Req, K, KF, Co> {
    type Handle = FleetDedupHandle;

    fn handle(&self) -> FleetDedupHandle {
        Self::handle(self)
    }
}

impl<Req, K, KF, Co> Clone for FleetDedupLayer<Req, K, KF, Co> {
    fn clone(&self) -> Self {
        Self {
            key: Arc::clone(&self.key),
            core: Arc::clone(&self.core),
            _request: PhantomData,
        }
    }
}

impl<S, Req, K, KF, Co> Layer<S> for FleetDedupLayer<Req, K, KF, Co>
where
    S: Service<Req>,
    Co: Codec<S::Response>,
{
    type Service = FleetDedup<S, Req, K, KF, Co>;

    fn layer(&self, inner: S) -> Self::Service {
        FleetDedup::new(inner, Arc::clone(&self.key), Arc::clone(&self.core))
    }
}

impl<Req, K, KF, Co> fmt::Debug for FleetDedupLayer<Req, K, KF, Co> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetDedupLayer")
            .field("fleet", &self.core.fleet)
            .field("settings", &self.core.settings)
            .finish_non_exhaustive()
    }
}
