//! [`MetricsService`]: a tower service that answers a Prometheus scrape.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::registry::Registry;
use reflex_witness::Witness;
use tower_service::Service;

use super::WitnessCollector;

/// The content type of a scrape's answer: the OpenMetrics text format,
/// which `prometheus-client` writes (Prometheus asks for it first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A tower service that answers every request with the metrics of a
/// registry in the OpenMetrics text format ([`CONTENT_TYPE`]): mount it
/// where Prometheus scrapes (`/metrics`). It does not look at the request:
/// the router you mount it on chooses the path and method.
///
/// Always ready, never fails: a registry that cannot be encoded (a
/// collector of yours returning an error) is a 500 with a short text.
///
/// # Clone
///
/// Clones share the registry.
///
/// # Examples
///
/// On axum, at `/metrics`:
///
/// ```
/// use axum::Router;
/// use reflex_telemetry::prometheus::MetricsService;
/// use reflex_witness::Witness;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let witness = Witness::builder().start()?;
/// let app: Router = Router::new().route_service("/metrics", MetricsService::new(&witness));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
///
/// Called directly:
///
/// ```
/// use http::{Request, header};
/// use http_body_util::BodyExt;
/// use reflex_telemetry::prometheus::{CONTENT_TYPE, MetricsService};
/// use reflex_witness::Witness;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let witness = Witness::builder().build()?;
/// let _db = witness.layer("db").build()?;
/// witness.cycle_now();
/// let answer = MetricsService::new(&witness).oneshot(Request::new(())).await?;
/// assert_eq!(answer.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
/// let text = answer.into_body().collect().await?.to_bytes();
/// let text = std::str::from_utf8(&text)?;
/// assert!(text.contains(r#"reflex_in_flight{component="db"} 0"#));
/// assert!(text.ends_with("# EOF\n"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MetricsService {
    registry: Arc<Registry>,
}

// === impl MetricsService ===

impl MetricsService {
    /// A service answering with `witness`'s metrics alone (a registry with
    /// one [`WitnessCollector`], no prefix). It holds a handle of the
    /// witness, which lives as long as the service does.
    pub fn new(witness: &Witness) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(WitnessCollector::new(witness)));
        Self::from_registry(Arc::new(registry))
    }

    /// A service answering with every metric of `registry`: register a
    /// [`WitnessCollector`] in it beside your own metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use prometheus_client::metrics::counter::Counter;
    /// use prometheus_client::registry::Registry;
    /// use reflex_telemetry::prometheus::{MetricsService, WitnessCollector};
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// let mut registry = Registry::default();
    /// let orders: Counter = Counter::default();
    /// registry.register("orders", "Orders taken", orders.clone());
    /// registry.register_collector(Box::new(WitnessCollector::new(&witness)));
    /// let service = MetricsService::from_registry(Arc::new(registry));
    /// # let _ = service;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn from_registry(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The registry it answers with.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn answer(&self) -> Response<Full<Bytes>> {
        let mut text = String::new();
        let (status, content_type, body) =
            match prometheus_client::encoding::text::encode(&mut text, &self.registry) {
                Ok(()) => (StatusCode::OK, CONTENT_TYPE, text),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "the metrics could not be encoded\n".to_owned(),
                ),
            };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

impl<B> Service<Request<B>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(self.answer()))
    }
}

impl fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService").finish_non_exhaustive()
    }
}
