//! [`Fleet`]: one replica's link to the state its fleet shares in Redis,
//! and the [`FleetBuilder`] that configures it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, SignalSink, Sink};
use tokio::sync::{broadcast, watch};

use crate::error::FleetError;
use crate::keys::Keys;
use crate::link::{Link, Message};

/// One replica's link to the state its fleet shares in Redis (or Valkey).
///
/// Cheap to clone: every backend made from it ([`breaker`](crate::breaker),
/// [`budget`](crate::budget), [`dedup`](crate::dedup)) shares one
/// multiplexed connection, one pub/sub connection and one background task
/// that keeps both alive. The task ends when the last clone and the last
/// backend are dropped.
///
/// Every Redis call has a deadline ([`FleetBuilder::op_timeout`], a few
/// milliseconds by default). A call that misses it, or a connection that
/// breaks, marks the link down: every backend then decides from what this
/// replica sees alone, each component reports
/// [`Signal::FleetLink`](reflex_core::Signal::FleetLink)`{ up: false }` to the sink, and the task
/// reconnects in the background. When Redis answers again the link is up,
/// the backends resync and report `up: true`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use reflex_redis::Fleet;
///
/// # async fn run() -> Result<(), reflex_redis::FleetError> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379")
///     .namespace("checkout")
///     .op_timeout(Duration::from_millis(5))
///     .build()?;
/// assert_eq!(fleet.namespace(), "checkout");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Fleet {
    pub(crate) link: Arc<Link>,
}

/// Configures a [`Fleet`]; see [`Fleet::builder`].
#[must_use]
pub struct FleetBuilder {
    url: String,
    namespace: String,
    replica: Option<String>,
    op_timeout: Duration,
    connect_timeout: Duration,
    reconnect_max: Duration,
    sink: Sink,
}

// === impl Fleet ===

impl Fleet {
    /// A builder for a link to the Redis at `url` (`redis://host:port/db`,
    /// `rediss://` is not compiled in).
    pub fn builder(url: impl Into<String>) -> FleetBuilder {
        FleetBuilder {
            url: url.into(),
            namespace: "reflex".to_owned(),
            replica: None,
            op_timeout: Duration::from_millis(5),
            connect_timeout: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(1),
            sink: Sink::none(),
        }
    }

    /// The namespace every key and channel of this fleet lives under.
    pub fn namespace(&self) -> &str {
        self.link.keys.namespace()
    }

    /// This replica's name in the fleet: given to
    /// [`FleetBuilder::replica_id`], or made unique at build.
    pub fn replica_id(&self) -> &str {
        &self.link.replica
    }

    /// `true` while Redis answers within the deadline: the backends share
    /// state. `false`: each decides alone.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Waits until the link is up, or `timeout` passes; returns whether it
    /// is up. Useful at start-up, and in tests.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut health = self.link.health();
        let up = tokio::time::timeout(timeout, health.wait_for(|h| h.up)).await;
        matches!(up, Ok(Ok(_)))
    }

    /// Times the link went down since it was built.
    pub fn downs(&self) -> u64 {
        self.link.downs()
    }

    /// The runtime the fleet was built on: backends spawn their tasks
    /// there.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.link.runtime
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.link.keys
    }

    /// Messages published to this fleet's channel, from every replica
    /// (this one included).
    pub(crate) fn messages(&self) -> broadcast::Receiver<Message> {
        self.link.messages()
    }

    /// Up/down changes, each with the count of times the link came up.
    pub(crate) fn health(&self) -> watch::Receiver<crate::link::Health> {
        self.link.health()
    }

    /// Registers `component` to hear [`Signal::FleetLink`](reflex_core::Signal::FleetLink) changes.
    pub(crate) fn attach(&self, component: &Component) {
        self.link.attach(component);
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("namespace", &self.namespace())
            .field("replica", &self.replica_id())
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

// === impl FleetBuilder ===

impl FleetBuilder {
    /// The namespace keys and channels live under: one per fleet (an
    /// application), so that fleets can share a Redis. Default `reflex`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// This replica's name: unique within the fleet (a pod name). Default:
    /// made from the host, the process id and a random part.
    pub fn replica_id(mut self, replica: impl Into<String>) -> Self {
        self.replica = Some(replica.into());
        self
    }

    /// The deadline of every Redis call: past it the call counts as failed
    /// and the link goes down. No request ever waits on Redis longer.
    /// Default 5 ms.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The deadline of one connection attempt. Default 250 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest wait between two reconnection attempts (they back off
    /// from 10 ms). Default 1 s.
    pub fn reconnect_max(mut self, wait: Duration) -> Self {
        self.reconnect_max = wait;
        self
    }

    /// Where [`Signal::FleetLink`](reflex_core::Signal::FleetLink) changes go, under each component whose
    /// backend uses this fleet: a `Witness`, typically.
    pub fn sink(mut self, sink: impl SignalSink) -> Self {
        self.sink = Sink::new(sink);
        self
    }

    /// Checks the configuration and starts the link's background task on
    /// the current tokio runtime. The link starts down and comes up when
    /// Redis answers: see [`Fleet::wait_up`].
    ///
    /// # Errors
    ///
    /// A [`FleetError`] when the URL does not parse, the namespace or the
    /// replica id is empty or holds `{`, `}` or `|`, a timeout is zero or
    /// above an hour, or there is no tokio runtime.
    pub fn build(self) -> Result<Fleet, FleetError> {
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| FleetError::Url(e.to_string()))?;
        check_name("namespace", &self.namespace)?;
        let replica = match self.replica {
            Some(replica) => replica,
            None => default_replica_id(),
        };
        check_name("replica_id", &replica)?;
        for (name, value) in [
            ("op_timeout", self.op_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_max", self.reconnect_max),
        ] {
            if value.is_zero() || value > Duration::from_secs(3600) {
                return Err(FleetError::Timeout { name, value });
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| FleetError::NoRuntime)?;
        let link = Link::start(
            &runtime,
            client,
            Keys::new(self.namespace),
            replica,
            crate::link::Timing {
                op: self.op_timeout,
                connect: self.connect_timeout,
                reconnect_max: self.reconnect_max,
            },
            self.sink,
        );
        Ok(Fleet { link })
    }
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("namespace", &self.namespace)
            .field("replica", &self.replica)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

fn check_name(name: &'static str, value: &str) -> Result<(), FleetError> {
    if value.is_empty() || value.len() > 128 || value.contains(['{', '}', '|']) {
        return Err(FleetError::Name {
            name,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

fn default_replica_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{}-{:08x}", std::process::id(), random as u32)
}
