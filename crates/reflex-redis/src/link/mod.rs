//! [`Link`]: the connections to Redis one replica keeps, the task that
//! keeps them alive, and the deadline on every call.
//!
//! The link is **up** while Redis answers a `PING` within the request
//! path's deadline; two missed pings in a row, or a broken connection, put
//! it **down**. While down, no call is sent: a backend decides alone. A
//! call of the request path that misses its deadline asks for a ping at
//! once, so a slow Redis is noticed within one deadline and two pings.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Client, RedisResult};
use reflex_core::{Component, Signal, Sink};
use tokio::sync::{Notify, broadcast, watch};

use crate::keys::Keys;

mod task;

/// How long the link waits for what.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// A call on the request path, and a ping.
    pub(crate) op: Duration,
    /// One connection attempt.
    pub(crate) connect: Duration,
    /// The longest wait between reconnection attempts.
    pub(crate) reconnect_max: Duration,
}

impl Timing {
    /// A call off the request path (a flush, a renewal): it may wait
    /// longer than a request would, never unboundedly.
    pub(crate) fn background(&self) -> Duration {
        (self.op * 10).clamp(Duration::from_millis(50), Duration::from_secs(2))
    }
}

/// Up or down, and how many times it came up (a backend resyncs when that
/// count moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Health {
    pub(crate) up: bool,
    pub(crate) ups: u64,
}

/// A message on the fleet's channel: `scope|origin|body`.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Whose: `kind:component` (escaped).
    pub(crate) scope: Arc<str>,
    /// The replica that published it.
    pub(crate) origin: Arc<str>,
    pub(crate) body: Arc<str>,
}

/// Why a call to Redis gave nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The link is down: nothing was sent.
    #[error("the link to redis is down")]
    Down,
    /// The deadline passed.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub(crate) struct Link {
    /// Where the link's task runs, and the backends' tasks.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) keys: Keys,
    pub(crate) replica: String,
    pub(crate) timing: Timing,
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    downs: AtomicU64,
    health: watch::Sender<Health>,
    messages: broadcast::Sender<Message>,
    components: Mutex<Vec<Component>>,
    sink: Sink,
    /// Asks the task for a ping now.
    kick: Notify,
}

impl Link {
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        client: Client,
        keys: Keys,
        replica: String,
        timing: Timing,
        sink: Sink,
    ) -> Arc<Self> {
        let link = Arc::new(Self {
            runtime: runtime.clone(),
            keys,
            replica,
            timing,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            downs: AtomicU64::new(0),
            health: watch::Sender::new(Health::default()),
            messages: broadcast::Sender::new(1024),
            components: Mutex::new(Vec::new()),
            sink,
            kick: Notify::new(),
        });
        runtime.spawn(task::keep_alive(Arc::downgrade(&link), client));
        link
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Ordering::Relaxed)
    }

    pub(crate) fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    pub(crate) fn messages(&self) -> broadcast::Receiver<Message> {
        self.messages.subscribe()
    }

    pub(crate) fn attach(&self, component: &Component) {
        let mut components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !components.contains(component) {
            components.push(component.clone());
        }
    }

    /// Runs `call` on the shared connection within the request path's
    /// deadline. Sends nothing while the link is down.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_within(self.timing.op, call).await
    }

    /// As [`run`](Self::run), with the deadline of a call off the request
    /// path.
    pub(crate) async fn run_background<T, F, Fut>(&self, call: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_within(self.timing.background(), call).await
    }

    async fn run_within<T, F, Fut>(&self, deadline: Duration, call: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(LinkError::Down);
        }
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(LinkError::Down)?;
        match tokio::time::timeout(deadline, call(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if broken(&error) {
                    self.kick.notify_one();
                }
                Err(LinkError::Redis(error))
            }
            Err(_) => {
                self.kick.notify_one();
                Err(LinkError::Timeout(deadline))
            }
        }
    }

    /// A message of this replica, as the fleet's channel carries it:
    /// `scope|origin|body` (what the task's `forward` reads back). For a script or a
    /// pipeline that publishes it with other commands.
    pub(crate) fn message(&self, scope: &str, body: impl std::fmt::Display) -> String {
        format!("{scope}|{}|{body}", self.replica)
    }

    /// Publishes `body` under `scope` to every replica (this one too).
    pub(crate) async fn publish(&self, scope: &str, body: &str) -> Result<(), LinkError> {
        let payload = self.message(scope, body);
        let channel = self.keys.channel().to_owned();
        self.run(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
    }

    fn set_up(&self, conn: Option<MultiplexedConnection>) {
        if let Some(conn) = conn {
            *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        }
        if !self.up.swap(true, Ordering::AcqRel) {
            self.health.send_modify(|health| {
                health.up = true;
                health.ups += 1;
            });
            tracing::info!(
                namespace = self.keys.namespace(),
                replica = %self.replica,
                "fleet link up: sharing state through redis"
            );
            report(&self.sink, &self.components(), true);
        }
    }

    fn set_down(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.downs.fetch_add(1, Ordering::Relaxed);
            self.health.send_modify(|health| health.up = false);
            tracing::warn!(
                namespace = self.keys.namespace(),
                replica = %self.replica,
                error = %why,
                "fleet link down: each layer decides alone until redis answers"
            );
            report(&self.sink, &self.components(), false);
        }
    }

    fn components(&self) -> Vec<Component> {
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn forget_connection(&self) {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// A connection that will not answer again (as opposed to an error reply).
fn broken(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

/// Emits `FleetLink` to `sink` under every attached component.
fn report(sink: &Sink, components: &[Component], up: bool) {
    for component in components {
        sink.emit(component, Signal::FleetLink { up });
    }
}
