//! [`ConcurrencyShedBuilder`]: how a [`ConcurrencyShedLayer`] is
//! configured, and what `build` checks.

use std::fmt;
use std::time::Duration;

use reflex_core::{
    Classified, Component, ConfigError, ConfigErrorKind, DefaultClassifier, LayerBuilder, Sink,
};

use crate::adaptive::Adaptive;
use crate::classes::{Critical, CriticalBy, KeyFns, NoCritical, Partitions, Unpartitioned};
use crate::layer::ConcurrencyShedLayer;
use crate::service::ConcurrencyShed;
use crate::shared::{LimitSetting, Settings, Shared};
use crate::validate::{self, LAYER};

/// What a shed request tells its caller to wait before trying again, unless
/// [`ConcurrencyShedBuilder::retry_after`] says otherwise: one second.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The share of the limit kept for critical requests once a critical key
/// is given, unless [`ConcurrencyShedBuilder::critical_reserve`] says
/// otherwise: 10%.
pub const DEFAULT_CRITICAL_RESERVE: f64 = 0.1;

/// Configures a [`ConcurrencyShedLayer`]; from
/// [`ConcurrencyShedLayer::builder`].
///
/// The limit is fixed ([`hard_limit`](Self::hard_limit)) or adaptive
/// ([`adaptive`](Self::adaptive)); one of the two is required, and the
/// last one given counts. Partitions ([`partition`](Self::partition) and
/// [`share`](Self::share)) and critical requests
/// ([`critical`](Self::critical)) work with either.
///
/// A [`LayerBuilder`] for generic code such as a preset, and
/// [`Classified`]: the stack's classifier is what an adaptive limit counts
/// as a drop (a fixed limit does not judge outcomes).
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
pub struct ConcurrencyShedBuilder<C = DefaultClassifier, P = Unpartitioned, Cr = NoCritical> {
    limit: Option<Limit>,
    soft_limit: Option<usize>,
    retry_after: Duration,
    component: Component,
    sink: Sink,
    classifier: C,
    partitions: P,
    /// The listed partitions' shares, by index.
    shares: Vec<f64>,
    partitioned: bool,
    critical: Cr,
    critical_reserve: f64,
}

#[derive(Debug, Clone)]
enum Limit {
    Fixed(usize),
    Adaptive(Adaptive),
}

// === impl ConcurrencyShedLayer ===

impl ConcurrencyShedLayer {
    /// Starts configuring a layer: [`hard_limit`](ConcurrencyShedBuilder::hard_limit)
    /// or [`adaptive`](ConcurrencyShedBuilder::adaptive) is required.
    pub fn builder() -> ConcurrencyShedBuilder {
        ConcurrencyShedBuilder {
            limit: None,
            soft_limit: None,
            retry_after: DEFAULT_RETRY_AFTER,
            component: Component::default(),
            sink: Sink::none(),
            classifier: DefaultClassifier,
            partitions: Unpartitioned,
            shares: Vec::new(),
            partitioned: false,
            critical: NoCritical,
            critical_reserve: 0.0,
        }
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

impl<C, P, Cr> ConcurrencyShedBuilder<C, P, Cr> {
    /// A fixed limit: the most requests in flight in the inner service at
    /// once; one more is shed. From 1 to 2³¹ − 1. Replaces an
    /// [`adaptive`](Self::adaptive) limit given before. No default: this or
    /// an adaptive limit is required.
    pub fn hard_limit(mut self, hard_limit: usize) -> Self {
        self.limit = Some(Limit::Fixed(hard_limit));
        self
    }

    /// A limit the layer finds by itself, from the latency
    /// ([`Adaptive::gradient`]) or the outcomes ([`Adaptive::aimd`]) of
    /// the calls it admits, between a floor and a ceiling; see
    /// `docs/shed.md`. Replaces a [`hard_limit`](Self::hard_limit) given
    /// before. The handle reads it, and can pin it
    /// ([`ShedHandle::pin_limit`](crate::ShedHandle::pin_limit)).
    pub fn adaptive(mut self, adaptive: impl Into<Adaptive>) -> Self {
        self.limit = Some(Limit::Adaptive(adaptive.into()));
        self
    }

    /// Going above this many requests in flight logs a warning and emits
    /// [`Signal::SoftLimitExceeded`](reflex_core::Signal::SoftLimitExceeded),
    /// once per excursion: the excursion ends, with
    /// [`Signal::SoftLimitRecovered`](reflex_core::Signal::SoftLimitRecovered),
    /// when in-flight requests fall to half the soft limit. Must be below the
    /// hard limit (an adaptive limit's initial one) and at least 1; it keeps
    /// its proportion when the limit changes. Defaults to none: no warning.
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

    /// What counts as a failure of a call, for an adaptive limit: a
    /// failure (or an AIMD timeout) is a drop, and only successes are
    /// latency samples. A [`Classify`](reflex_core::Classify) over the
    /// response and the error converted to `BoxError`, as for every reflex
    /// layer; a stack gives its own through [`Classified`]. Defaults to
    /// [`DefaultClassifier`]: `Err` is a failure.
    pub fn classifier<C2>(self, classifier: C2) -> ConcurrencyShedBuilder<C2, P, Cr> {
        self.retype(|_, partitions, critical| (classifier, partitions, critical))
    }

    /// Splits the limit into partitions (a tenant, a route class): the
    /// key function gives each request its partition, and
    /// [`share`](ConcurrencyShedBuilder::share) each partition its
    /// guaranteed share. A partition may borrow what an idle one does not
    /// use, and gives it back first when that one needs it. A request with
    /// no key (`None`), or a key given no share, is in the partition of
    /// the shares left over. Replaces partitions given before.
    pub fn partition<Req, K, F>(self, key: F) -> ConcurrencyShedBuilder<C, Partitions<K, F>, Cr>
    where
        F: Fn(&Req) -> Option<K>,
    {
        self.partition_with(key)
    }

    /// As [`partition`](Self::partition), with any [`KeyFn`](reflex_core::KeyFn) of the
    /// requests (checked where the layer wraps a service, for its request
    /// type).
    pub fn partition_with<K, KF>(
        self,
        key: KF,
    ) -> ConcurrencyShedBuilder<C, Partitions<K, KF>, Cr> {
        let mut builder =
            self.retype(|classifier, _, critical| (classifier, Partitions::new(key), critical));
        builder.shares = Vec::new();
        builder.partitioned = true;
        builder
    }

    /// Marks critical requests: those the key function gives
    /// [`Critical`] keep the [`critical_reserve`](ConcurrencyShedBuilder::critical_reserve)
    /// and are shed last. They come before partitions: the partitions share
    /// what the reserve leaves.
    pub fn critical<Req, F>(self, key: F) -> ConcurrencyShedBuilder<C, P, CriticalBy<F>>
    where
        F: Fn(&Req) -> Option<Critical>,
    {
        self.critical_with(key)
    }

    /// As [`critical`](Self::critical), with any [`KeyFn`](reflex_core::KeyFn) returning
    /// [`Critical`] (checked where the layer wraps a service, for its
    /// request type), such as
    /// [`CriticalExtension`](crate::CriticalExtension) (feature `http`).
    pub fn critical_with<KF>(self, key: KF) -> ConcurrencyShedBuilder<C, P, CriticalBy<KF>> {
        let mut builder =
            self.retype(|classifier, partitions, _| (classifier, partitions, CriticalBy::new(key)));
        builder.critical_reserve = DEFAULT_CRITICAL_RESERVE;
        builder
    }

    /// The same settings with the classifier, partitions and critical key
    /// `parts` makes of the old ones.
    fn retype<C2, P2, Cr2>(
        self,
        parts: impl FnOnce(C, P, Cr) -> (C2, P2, Cr2),
    ) -> ConcurrencyShedBuilder<C2, P2, Cr2> {
        let (classifier, partitions, critical) =
            parts(self.classifier, self.partitions, self.critical);
        ConcurrencyShedBuilder {
            limit: self.limit,
            soft_limit: self.soft_limit,
            retry_after: self.retry_after,
            component: self.component,
            sink: self.sink,
            classifier,
            partitions,
            shares: self.shares,
            partitioned: self.partitioned,
            critical,
            critical_reserve: self.critical_reserve,
        }
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: no limit; a hard limit of zero
    /// or above 2³¹ − 1; a soft limit of zero or not below the (initial)
    /// limit; an adaptive limit's floor, ceiling or initial limit out of
    /// order, or another of its settings out of range; partitions without
    /// a share, a share outside `(0, 1]` or shares adding up to more than
    /// 1; a critical reserve outside `[0, 1)`.
    pub fn build(self) -> Result<ConcurrencyShedLayer<C, P, Cr>, ConfigError> {
        let limit = match &self.limit {
            None => {
                return Err(ConfigError::new(
                    LAYER,
                    "hard_limit",
                    ConfigErrorKind::Missing,
                    "is required (or an adaptive limit)",
                ));
            }
            Some(Limit::Fixed(hard)) => {
                validate::hard_limit("hard_limit", *hard)?;
                LimitSetting::Fixed(*hard)
            }
            Some(Limit::Adaptive(adaptive)) => LimitSetting::Adaptive(adaptive.validate()?),
        };
        let hard = match limit {
            LimitSetting::Fixed(hard) => hard,
            LimitSetting::Adaptive(config) => config.initial,
        };
        if let Some(soft) = self.soft_limit {
            validate::soft_limit(soft, hard)?;
        }
        if self.partitioned && self.shares.is_empty() {
            return Err(ConfigError::new(
                LAYER,
                "share",
                ConfigErrorKind::Missing,
                "is required for at least one partition once partition is set",
            ));
        }
        validate::shares(&self.shares)?;
        validate::fraction("critical_reserve", self.critical_reserve, true)?;
        let settings = Settings {
            limit,
            soft: self.soft_limit,
            retry_after: self.retry_after,
            component: self.component,
            sink: self.sink,
            shares: self.shares,
            critical_reserve: self.critical_reserve,
        };
        let keys = KeyFns {
            partitions: self.partitions,
            critical: self.critical,
        };
        Ok(ConcurrencyShedLayer::new(
            Shared::new(settings, validate::seed()),
            self.classifier,
            keys,
        ))
    }
}

impl<C, K: PartialEq, F, Cr> ConcurrencyShedBuilder<C, Partitions<K, F>, Cr> {
    /// Guarantees partition `key` this share of the limit, in `(0, 1]`
    /// (of what the critical reserve leaves); the shares add up to 1 at
    /// most, and what is left over goes to requests with no listed key.
    /// Given again for the same key, the last share counts. At least one
    /// is required once [`partition`](Self::partition) is set.
    pub fn share(mut self, key: K, share: f64) -> Self {
        let index = self.partitions.push(key);
        if index == self.shares.len() {
            self.shares.push(share);
        } else if let Some(slot) = self.shares.get_mut(index) {
            *slot = share;
        }
        self
    }
}

impl<C, P, F> ConcurrencyShedBuilder<C, P, CriticalBy<F>> {
    /// The share of the limit only critical requests may use, in `[0, 1)`
    /// (at least one slot, never all of them, when not 0): other requests
    /// leave it free beyond every call in flight, critical ones included
    /// (critical calls take their slots from the others, not from the
    /// reserve), and critical ones may use any free slot. Defaults to
    /// [`DEFAULT_CRITICAL_RESERVE`].
    pub fn critical_reserve(mut self, reserve: f64) -> Self {
        self.critical_reserve = reserve;
        self
    }
}

impl<C, P, Cr> LayerBuilder for ConcurrencyShedBuilder<C, P, Cr> {
    type Layer = ConcurrencyShedLayer<C, P, Cr>;

    reflex_core::layer_builder_methods!(self);
}

/// The stack's classifier replaces the builder's: an adaptive limit
/// counts its failures as drops.
impl<C, C2, P, Cr> Classified<C2> for ConcurrencyShedBuilder<C, P, Cr> {
    type Builder = ConcurrencyShedBuilder<C2, P, Cr>;

    fn classified_by(self, classifier: C2) -> Self::Builder {
        self.classifier(classifier)
    }
}

impl<C, P, Cr> fmt::Debug for ConcurrencyShedBuilder<C, P, Cr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyShedBuilder")
            .field("limit", &self.limit)
            .field("soft_limit", &self.soft_limit)
            .field("retry_after", &self.retry_after)
            .field("component", &self.component)
            .field("sink", &self.sink)
            .field("shares", &self.shares)
            .field("critical_reserve", &self.critical_reserve)
            .finish_non_exhaustive()
    }
}
