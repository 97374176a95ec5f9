//! [`FleetDedupBuilder`]: how a [`FleetDedupLayer`] is configured, checked
//! and built.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use reflex_core::{ConfigError, KeyFn, LayerBuilder, NoKey};

use super::codec::NoCodec;
use super::layer::FleetDedupLayer;
use super::settings::Settings;
use crate::Fleet;

/// Configures a [`FleetDedupLayer`]; from [`FleetDedupLayer::builder`].
/// A key function and a codec are required: `build` exists once
/// [`key`](Self::key) was given, and the layer wraps a service once
/// [`codec`](Self::codec) was.
///
/// By default: leases of 2 s (renewed while the leader's call runs),
/// results kept 2 s, results up to 64 KiB, followers waiting at most 5 s.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use reflex_core::ConfigErrorKind;
/// use reflex_redis::Fleet;
/// use reflex_redis::dedup::{FleetDedupLayer, RawCodec};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
/// let err = FleetDedupLayer::builder(&fleet)
///     .key(|id: &u64| Some(id.to_string()))
///     .codec(RawCodec)
///     .lease_ttl(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!((err.setting(), err.kind()), ("lease_ttl", ConfigErrorKind::Zero));
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct FleetDedupBuilder<Req = (), K = (), KF = NoKey, Co = NoCodec> {
    fleet: Fleet,
    key: KF,
    codec: Co,
    settings: Settings,
    _request: PhantomData<fn(&Req) -> K>,
}

// === impl FleetDedupLayer (builder) ===

impl FleetDedupLayer<(), (), NoKey, NoCodec> {
    /// Starts configuring a fleet dedup layer on `fleet`'s link.
    pub fn builder(fleet: &Fleet) -> FleetDedupBuilder {
        FleetDedupBuilder {
            fleet: fleet.clone(),
            key: NoKey,
            codec: NoCodec,
            settings: Settings::default(),
            _request: PhantomData,
        }
    }
}

// === impl FleetDedupBuilder ===

impl<Req, K, KF, Co> FleetDedupBuilder<Req, K, KF, Co> {
    /// How a request maps to its key: requests with equal keys in flight
    /// at once, on any replica, share one inner call; `None` passes the
    /// request through untouched. The key is text (`String`, `&str`, …):
    /// two requests may receive one answer only if their keys are equal,
    /// so a key must hold everything that makes an answer differ (the
    /// tenant, the user when answers are per user). Required (this, or
    /// [`key_with`](Self::key_with)).
    pub fn key<Req2, K2, F>(self, key: F) -> FleetDedupBuilder<Req2, K2, F, Co>
    where
        F: Fn(&Req2) -> Option<K2>,
    {
        self.key_with(key)
    }

    /// As [`key`](Self::key), with a [`KeyFn`] of your own type.
    pub fn key_with<Req2, K2, KF2>(self, key: KF2) -> FleetDedupBuilder<Req2, K2, KF2, Co>
    where
        KF2: KeyFn<Req2, K2>,
    {
        FleetDedupBuilder {
            fleet: self.fleet,
            key,
            codec: self.codec,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// How a response becomes bytes in Redis and back: a
    /// [`Codec`](super::Codec). Required.
    pub fn codec<Co2>(self, codec: Co2) -> FleetDedupBuilder<Req, K, KF, Co2> {
        FleetDedupBuilder {
            fleet: self.fleet,
            key: self.key,
            codec,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// How long a leader's lease lasts without renewal (1 ms to an hour):
    /// the leader renews it every third of it while its call runs, so this
    /// is how long a dead leader's key stays taken before a waiter takes
    /// over. Defaults to 2 s.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// How long a result stays in Redis for the requests waiting on it (1
    /// ms to an hour). A new call for the key deletes it sooner. Defaults
    /// to 2 s.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.settings.result_ttl = ttl;
        self
    }

    /// The largest result stored (1 byte to 512 MiB): the codec's bytes
    /// plus the key and 4 bytes. A larger one is not shared: its waiters
    /// call on their own. Defaults to 64 KiB.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_result_bytes = bytes;
        self
    }

    /// How long a request waits on another's call (above zero, at most an
    /// hour) before it calls on its own. Defaults to 5 s.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.settings.max_wait = wait;
        self
    }

    reflex_core::component_and_sink!(settings);
}

impl<Req, K, KF, Co> FleetDedupBuilder<Req, K, KF, Co>
where
    KF: KeyFn<Req, K>,
    K: AsRef<str>,
{
    /// Checks the configuration and builds the layer. The layer's
    /// component then hears the fleet's
    /// [`Signal::FleetLink`](reflex_core::Signal::FleetLink) changes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a duration is zero, below a millisecond (the
    /// TTLs) or above an hour, or `max_result_bytes` is zero or above
    /// 512 MiB.
    pub fn build(self) -> Result<FleetDedupLayer<Req, K, KF, Co>, ConfigError> {
        self.settings.check()?;
        self.fleet.attach(&self.settings.component);
        Ok(FleetDedupLayer::new(
            self.fleet,
            self.key,
            self.codec,
            self.settings,
        ))
    }
}

impl<Req, K, KF, Co> LayerBuilder for FleetDedupBuilder<Req, K, KF, Co>
where
    KF: KeyFn<Req, K>,
    K: AsRef<str>,
{
    type Layer = FleetDedupLayer<Req, K, KF, Co>;

    reflex_core::layer_builder_methods!(settings);
}

impl<Req, K, KF, Co> fmt::Debug for FleetDedupBuilder<Req, K, KF, Co> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetDedupBuilder")
            .field("fleet", &self.fleet)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
