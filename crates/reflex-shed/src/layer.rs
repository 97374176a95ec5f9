//! [`ConcurrencyShedLayer`] and its [`ConcurrencyShedBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, Control, Handled, LayerBuilder, Sink};
use tower_layer::Layer;

use crate::handle::ShedHandle;
use crate::service::ConcurrencyShed;
use crate::shared::{self, LAYER, Shared};

/// What a shed request tells its caller to wait before trying again, unless
/// [`ConcurrencyShedBuilder::retry_after`] says otherwise: one second.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Caps the requests in flight in the services it wraps and sheds the rest
/// at once. See the [crate docs](crate).
///
/// # Clone
///
/// A layer holds one budget of permits: its clones, and every service it
/// wraps, draw on the same one. Build one layer per budget.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_shed::ConcurrencyShedLayer;
///
/// let layer = ConcurrencyShedLayer::builder()
///     .hard_limit(256)
///     .soft_limit(192)
///     .retry_after(Duration::from_secs(1))
///     .component("payments")
///     .build()?;
/// assert_eq!(layer.handle().metrics().hard_limit, 256);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ConcurrencyShedLayer {
    shared: Arc<Shared>,
}

/// Configures a [`ConcurrencyShedLayer`]; from
/// [`ConcurrencyShedLayer::builder`].
///
/// A [`LayerBuilder`] for generic code such as a preset, and
/// [`Classified`](reflex_core::Classified) with any classifier: the shed
/// does not judge outcomes, so the stack's classifier leaves it as it is.
///
/// # Examples
///
/// ```
/// use reflex_core::ConfigErrorKind;
/// use reflex_shed::ConcurrencyShedLayer;
///
/// let err = ConcurrencyShedLayer::builder().hard_limit(8).soft_limit(8).build().unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::NotBelow);
/// assert_eq!(err.setting(), "soft_limit");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConcurrencyShedBuilder {
    hard_limit: Option<usize>,
    soft_limit: Option<usize>,
    retry_after: Duration,
    component: Component,
    sink: Sink,
}

// === impl ConcurrencyShedLayer ===

impl ConcurrencyShedLayer {
    /// Starts configuring a layer. [`ConcurrencyShedBuilder::hard_limit`] is required.
    pub fn builder() -> ConcurrencyShedBuilder {
        ConcurrencyShedBuilder {
            hard_limit: None,
            soft_limit: None,
            retry_after: DEFAULT_RETRY_AFTER,
            component: Component::default(),
            sink: Sink::none(),
        }
    }

    /// A handle to read this layer's live state and change its hard limit,
    /// shared by every service the layer wraps.
    pub fn handle(&self) -> ShedHandle {
        ShedHandle::new(Arc::clone(&self.shared))
    }
}

impl<S> Layer<S> for ConcurrencyShedLayer {
    type Service = ConcurrencyShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyShed::new(inner, Arc::clone(&self.shared))
    }
}

/// The handle, and the hard limit for a witness's reflexes to steer.
impl Handled for ConcurrencyShedLayer {
    type Handle = ShedHandle;

    fn handle(&self) -> ShedHandle {
        Self::handle(self)
    }

    fn control(&self) -> Option<Control> {
        Some(Control::Shed(Arc::new(Self::handle(self))))
    }
}

impl fmt::Debug for ConcurrencyShedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyShedLayer")
            .field("component", self.shared.component())
            .field("hard_limit", &self.shared.counter.hard_limit())
            .field("soft_limit", &self.shared.soft_limit())
            .field("retry_after", &self.shared.retry_after())
            .finish()
    }
}

// === impl ConcurrencyShed ===

impl ConcurrencyShed<()> {
    /// A layer that admits at most `hard_limit` requests at once, with the
    /// other settings at their defaults: a shorthand for
    /// `ConcurrencyShedLayer::builder().hard_limit(hard_limit).build()`.
    ///
    /// # Errors
    ///
    /// When `hard_limit` is zero or above 2³¹ − 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_shed::ConcurrencyShed;
    /// use tower::ServiceBuilder;
    ///
    /// let layer = ConcurrencyShed::layer(64)?;
    /// let svc = ServiceBuilder::new()
    ///     .layer(layer)
    ///     .service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) });
    /// # let _ = svc;
    /// assert!(ConcurrencyShed::layer(0).is_err());
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn layer(hard_limit: usize) -> Result<ConcurrencyShedLayer, ConfigError> {
        ConcurrencyShedLayer::builder()
            .hard_limit(hard_limit)
            .build()
    }
}

// === impl ConcurrencyShedBuilder ===

impl ConcurrencyShedBuilder {
    /// The most requests in flight in the inner service at once; one more is
    /// shed. Required (no default): from 1 to 2³¹ − 1.
    pub fn hard_limit(mut self, hard_limit: usize) -> Self {
        self.hard_limit = Some(hard_limit);
        self
    }

    /// Going above this many requests in flight logs a warning and emits
    /// [`Signal::SoftLimitExceeded`](reflex_core::Signal::SoftLimitExceeded),
    /// once per excursion: the excursion ends, with
    /// [`Signal::SoftLimitRecovered`](reflex_core::Signal::SoftLimitRecovered),
    /// when in-flight requests fall to half the soft limit. Must be below the
    /// hard limit and at least 1. Defaults to none: no warning.
    pub fn soft_limit(mut self, soft_limit: usize) -> Self {
        self.soft_limit = Some(soft_limit);
        self
    }

    /// What a shed request's [`Rejected::retry_after`](reflex_core::Rejected::retry_after)
    /// tells its caller (an http mapping turns it into `Retry-After`, a gRPC
    /// one into `grpc-retry-pushback-ms`). Defaults to
    /// [`DEFAULT_RETRY_AFTER`], one second: a refused caller is always told
    /// when to come back, and a shed clears as fast as requests finish.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflex_shed::{ConcurrencyShedLayer, DEFAULT_RETRY_AFTER};
    ///
    /// let layer = ConcurrencyShedLayer::builder().hard_limit(8).build()?;
    /// assert_eq!(layer.handle().retry_after(), DEFAULT_RETRY_AFTER);
    /// let layer = ConcurrencyShedLayer::builder()
    ///     .hard_limit(8)
    ///     .retry_after(Duration::from_millis(250))
    ///     .build()?;
    /// assert_eq!(layer.handle().retry_after(), Duration::from_millis(250));
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    reflex_core::component_and_sink!(self);

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the hard limit is missing, zero or above
    /// 2³¹ − 1, or when the soft limit is zero or not below the hard limit.
    pub fn build(self) -> Result<ConcurrencyShedLayer, ConfigError> {
        let Some(hard) = self.hard_limit else {
            return Err(ConfigError::new(
                LAYER,
                "hard_limit",
                ConfigErrorKind::Missing,
                "is required",
            ));
        };
        shared::validate_hard_limit(hard)?;
        if let Some(soft) = self.soft_limit {
            if soft == 0 {
                return Err(ConfigError::new(
                    LAYER,
                    "soft_limit",
                    ConfigErrorKind::Zero,
                    "must be at least 1 (a soft limit of 0 would warn on every request)",
                ));
            }
            if soft >= hard {
                return Err(ConfigError::new(
                    LAYER,
                    "soft_limit",
                    ConfigErrorKind::NotBelow,
                    format!("must be below hard_limit (soft_limit {soft}, hard_limit {hard})"),
                ));
            }
        }
        Ok(ConcurrencyShedLayer {
            shared: Arc::new(Shared::new(
                hard,
                self.soft_limit,
                self.retry_after,
                self.component,
                self.sink,
            )),
        })
    }
}

impl LayerBuilder for ConcurrencyShedBuilder {
    type Layer = ConcurrencyShedLayer;

    reflex_core::layer_builder_methods!(self);
}

// The shed does not judge outcomes: the stack's classifier leaves it as it is.
reflex_core::unclassified!(ConcurrencyShedBuilder);

impl fmt::Debug for ConcurrencyShedBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyShedBuilder")
            .field("hard_limit", &self.hard_limit)
            .field("soft_limit", &self.soft_limit)
            .field("retry_after", &self.retry_after)
            .field("component", &self.component)
            .field("sink", &self.sink)
            .finish()
    }
}
