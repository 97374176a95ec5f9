//! One keyed request through the fleet: take the key's lease and call, or
//! wait for the leader's result; fall back to a call of its own whenever
//! the fleet cannot help.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::BoxError;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tower_service::Service;

use super::codec::Codec;
use super::handle::{Counted, Stats, Waiting};
use super::settings::Settings;
use super::store::{self, Found, Names, Release, Target};
use crate::Fleet;
use crate::link::Message;

/// What every request of a layer needs, shared by its services.
pub(crate) struct Core<Co> {
    pub(crate) fleet: Fleet,
    pub(crate) codec: Co,
    pub(crate) names: Arc<Names>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) settings: Settings,
    lease_ms: u64,
    result_ms: u64,
    /// How often a waiting request looks at the key when no message comes.
    poll: Duration,
    /// How often a leader renews its lease.
    renew: Duration,
}

impl<Co> Core<Co> {
    pub(crate) fn new(fleet: Fleet, codec: Co, settings: Settings, stats: Arc<Stats>) -> Self {
        let names = Arc::new(Names::new(settings.component.as_str()));
        let poll = (settings.lease_ttl / 4)
            .min(settings.result_ttl / 2)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        Self {
            lease_ms: Settings::millis(settings.lease_ttl),
            result_ms: Settings::millis(settings.result_ttl),
            renew: (settings.lease_ttl / 3).max(Duration::from_millis(1)),
            poll,
            fleet,
            codec,
            names,
            stats,
            settings,
        }
    }

    /// The names of `key` in Redis.
    pub(crate) fn target(&self, key: &str) -> Target {
        self.names.target(&self.fleet, key)
    }
}

/// Makes each lease holder's token unique within the replica.
static NONCE: AtomicU64 = AtomicU64::new(0);

/// Serves a keyed request: `svc` is ready (its `poll_ready` answered).
pub(crate) async fn run<S, Req, Co>(
    core: Arc<Core<Co>>,
    svc: S,
    req: Req,
    target: Target,
) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Co: Codec<S::Response>,
{
    let link = &core.fleet.link;
    // Listen before looking: a release between the look and the wait is
    // heard.
    let messages = core.fleet.messages();
    let owner = format!("{}:{}", link.replica, NONCE.fetch_add(1, Ordering::Relaxed));
    match store::acquire(link, &target, &owner, core.lease_ms, false).await {
        Ok(Found::Leader) => {
            tracing::debug!(component = %core.settings.component, "fleet dedup: leading");
            core.stats.count(Counted::LeaderCall);
            lead(&core, svc, req, target, owner).await
        }
        Ok(Found::Held | Found::Result(_)) => {
            follow(&core, svc, req, target, owner, messages).await
        }
        Err(error) => {
            tracing::debug!(component = %core.settings.component, %error, "fleet dedup: redis unavailable, calling locally");
            core.stats.count(Counted::LocalFallback);
            local(svc, req).await
        }
    }
}

async fn local<S, Req>(mut svc: S, req: Req) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    svc.call(req).await.map_err(Into::into)
}

/// Calls for the fleet while holding the lease (renewing it), then stores
/// the result and lets the lease go.
async fn lead<S, Req, Co>(
    core: &Core<Co>,
    mut svc: S,
    req: Req,
    target: Target,
    owner: String,
) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Co: Codec<S::Response>,
{
    let link = &core.fleet.link;
    let (target, owner) = (Arc::new(target), Arc::<str>::from(owner));
    // Released on every way out: a result, an error, a drop, a panic.
    let guard = LeaseGuard {
        fleet: core.fleet.clone(),
        names: Arc::clone(&core.names),
        result_ms: core.result_ms,
        held: Some((Arc::clone(&target), Arc::clone(&owner))),
    };
    let renewal = async {
        loop {
            tokio::time::sleep(core.renew).await;
            match store::renew(link, &target, &owner, core.lease_ms).await {
                Ok(true) | Err(_) => {}
                Ok(false) => {
                    tracing::debug!(component = %core.settings.component, "fleet dedup: lease lost while calling");
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let call = svc.call(req);
    let result = tokio::select! {
        biased;
        result = call => result,
        _ = renewal => unreachable!("the renewal never ends"),
    };
    match result {
        Ok(response) => {
            let max = core.settings.max_result_bytes;
            let key = &target.key;
            let stored = core
                .codec
                .encode(&response)
                .filter(|bytes| bytes.len().saturating_add(4 + key.len()) <= max)
                .map(|bytes| store::frame(key, &bytes));
            match stored {
                Some(bytes) => guard.release(Release::Done, Some(bytes)),
                None => {
                    core.stats.count(Counted::Unshared);
                    guard.release(Release::Unshared, None);
                }
            }
            Ok(response)
        }
        Err(error) => {
            core.stats.count(Counted::Unshared);
            guard.release(Release::Abandoned, None);
            Err(error.into())
        }
    }
}

/// Waits for the leader's result, takes over a lease its leader let go,
/// or calls on its own: past `max_wait`, when Redis fails, when the result
/// cannot be shared or does not decode.
async fn follow<S, Req, Co>(
    core: &Core<Co>,
    svc: S,
    req: Req,
    target: Target,
    owner: String,
    mut messages: tokio::sync::broadcast::Receiver<Message>,
) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Co: Codec<S::Response>,
{
    let link = &core.fleet.link;
    let waiting = Waiting::new(&core.stats);
    let mut health = core.fleet.health();
    let deadline = tokio::time::sleep_until(Instant::now() + core.settings.max_wait);
    tokio::pin!(deadline);
    let mut poll = tokio::time::interval_at(Instant::now() + core.poll, core.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fallback = |what: Counted| {
        core.stats.count(what);
        tracing::debug!(component = %core.settings.component, why = ?what, "fleet dedup: calling locally");
    };
    loop {
        tokio::select! {
            biased;
            () = &mut deadline => {
                fallback(Counted::WaitTimedOut);
                break;
            }
            message = messages.recv() => match message {
                Ok(message) => match release_of(&core.names, &target, &message) {
                    None => continue,
                    Some(Release::Unshared) => {
                        fallback(Counted::LocalFallback);
                        break;
                    }
                    Some(Release::Done | Release::Abandoned) => {}
                },
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    fallback(Counted::LocalFallback);
                    break;
                }
            },
            _ = poll.tick() => {}
            changed = health.changed() => {
                if changed.is_err() || !health.borrow_and_update().up {
                    fallback(Counted::LocalFallback);
                    break;
                }
                continue;
            }
        }
        match store::acquire(link, &target, &owner, core.lease_ms, true).await {
            Ok(Found::Held) => {}
            Ok(Found::Result(stored)) => {
                let response =
                    store::unframe(&target.key, &stored).and_then(|bytes| core.codec.decode(bytes));
                if let Some(response) = response {
                    core.stats.count(Counted::FollowerHit);
                    return Ok(response);
                }
                fallback(Counted::LocalFallback);
                break;
            }
            Ok(Found::Leader) => {
                drop(waiting);
                tracing::debug!(component = %core.settings.component, "fleet dedup: taking over");
                core.stats.count(Counted::Takeover);
                return lead(core, svc, req, target, owner).await;
            }
            Err(error) => {
                tracing::debug!(component = %core.settings.component, %error, "fleet dedup: redis failed while waiting");
                fallback(Counted::LocalFallback);
                break;
            }
        }
    }
    drop(waiting);
    local(svc, req).await
}

/// The release `message` tells of `target`, if it is about it.
fn release_of(names: &Names, target: &Target, message: &Message) -> Option<Release> {
    if *message.scope != *names.scope {
        return None;
    }
    let (tag, part) = message.body.split_once(':')?;
    (part == &*target.part)
        .then(|| Release::from_tag(tag))
        .flatten()
}

/// A held lease: let go (with a message) when released or dropped.
struct LeaseGuard {
    fleet: Fleet,
    names: Arc<Names>,
    result_ms: u64,
    held: Option<(Arc<Target>, Arc<str>)>,
}

impl LeaseGuard {
    /// Stores `result` (if any) and lets the lease go, in the background:
    /// the response does not wait on Redis.
    fn release(mut self, release: Release, result: Option<Vec<u8>>) {
        self.spawn(release, result);
    }

    fn spawn(&mut self, release: Release, result: Option<Vec<u8>>) {
        let Some((target, owner)) = self.held.take() else {
            return;
        };
        let (fleet, names, result_ms) =
            (self.fleet.clone(), Arc::clone(&self.names), self.result_ms);
        self.fleet.runtime().spawn(async move {
            let result = result.as_deref().map(|bytes| (bytes, result_ms));
            if let Err(error) =
                store::release(&fleet.link, &names, &target, &owner, release, result).await
            {
                tracing::debug!(%error, "fleet dedup: lease not released (it expires)");
            }
        });
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Cancelled or panicked: a waiter takes over at once.
        self.spawn(Release::Abandoned, None);
    }
}
