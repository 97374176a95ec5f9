//! One keyed request through the fleet: take the key's lease and call, or
//! wait for the leader's result; fall back to a call of its own whenever
//! the fleet cannot help.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::BoxError;
use tokio::sync::broadcast::{self, error::RecvError};
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
    pub(crate) names: Names,
    pub(crate) stats: Arc<Stats>,
    pub(crate) settings: Settings,
    lease_ms: u64,
    result_ms: u64,
    /// How long a waiting request goes without looking at the key when no
    /// message comes.
    poll: Duration,
    /// How often a leader renews its lease.
    renew: Duration,
}

impl<Co> Core<Co> {
    pub(crate) fn new(fleet: Fleet, codec: Co, settings: Settings, stats: Arc<Stats>) -> Self {
        let names = Names::new(fleet.keys(), settings.component.as_str());
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
        self.names.target(key)
    }
}

/// Makes each lease holder's token unique within the replica.
static NONCE: AtomicU64 = AtomicU64::new(0);

/// What a keyed request does, once the fleet was asked.
enum Turn<Res> {
    /// It holds the key's lease: it calls for the fleet.
    Lead,
    /// Another request's stored answer.
    Answer(Res),
    /// It calls on its own: the fleet cannot help.
    Alone,
}

/// Serves a keyed request: `svc` is ready (its `poll_ready` answered).
pub(crate) async fn run<S, Req, Co>(
    core: Arc<Core<Co>>,
    mut svc: S,
    req: Req,
    target: Target,
) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Co: Codec<S::Response>,
{
    let owner = format!(
        "{}:{}",
        core.fleet.link.replica,
        NONCE.fetch_add(1, Ordering::Relaxed)
    );
    match turn(&core, &target, &owner).await {
        Turn::Answer(response) => Ok(response),
        Turn::Alone => svc.call(req).await.map_err(Into::into),
        Turn::Lead => {
            // Let go on every way out: a result, an error, a drop, a panic
            // (of `call` too: the lease exists before it runs).
            let lease = Lease {
                core: &core,
                held: Some((target, owner)),
            };
            let result = lease.renewing(svc.call(req)).await;
            lease.settle(result.as_ref().ok());
            result.map_err(Into::into)
        }
    }
}

/// Takes the key's lease, or waits for its leader's answer.
async fn turn<Res, Co: Codec<Res>>(core: &Core<Co>, target: &Target, owner: &str) -> Turn<Res> {
    // Listen before looking: a release between the look and the wait is
    // heard. (Dropped when the turn is known, before any call.)
    let messages = core.fleet.messages();
    match store::acquire(&core.fleet.link, target, owner, core.lease_ms, false).await {
        Ok(Found::Leader) => {
            tracing::debug!(component = %core.settings.component, "fleet dedup: leading");
            core.stats.count(Counted::LeaderCall);
            Turn::Lead
        }
        Ok(Found::Held | Found::Result(_)) => follow(core, target, owner, messages).await,
        Err(error) => {
            tracing::debug!(component = %core.settings.component, %error, "fleet dedup: redis unavailable");
            alone(core, Counted::LocalFallback)
        }
    }
}

/// Counts why a request calls on its own.
fn alone<Res, Co>(core: &Core<Co>, why: Counted) -> Turn<Res> {
    core.stats.count(why);
    tracing::debug!(component = %core.settings.component, why = ?why, "fleet dedup: calling locally");
    Turn::Alone
}

/// Waits for the leader's answer (looking at the key on its message, or
/// after `poll` without one), takes over a lease its leader let go, or
/// gives up: past `max_wait`, when Redis fails, when the answer cannot be
/// shared or does not decode.
async fn follow<Res, Co: Codec<Res>>(
    core: &Core<Co>,
    target: &Target,
    owner: &str,
    mut messages: broadcast::Receiver<Message>,
) -> Turn<Res> {
    let _waiting = Waiting::new(&core.stats);
    let mut health = core.fleet.health();
    let deadline = tokio::time::sleep(core.settings.max_wait);
    let poll = tokio::time::sleep(core.poll);
    tokio::pin!(deadline, poll);
    loop {
        let gave_up = tokio::select! {
            biased;
            () = &mut deadline => Some(Counted::WaitTimedOut),
            message = messages.recv() => match message {
                Ok(message) => match release_of(&core.names, target, &message) {
                    None => continue,
                    Some(Release::Unshared) => Some(Counted::LocalFallback),
                    Some(Release::Done | Release::Abandoned) => None,
                },
                Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => Some(Counted::LocalFallback),
            },
            () = &mut poll => None,
            changed = health.changed() => {
                if changed.is_ok() && health.borrow_and_update().up {
                    continue;
                }
                Some(Counted::LocalFallback)
            }
        };
        if let Some(why) = gave_up {
            return alone(core, why);
        }
        match store::acquire(&core.fleet.link, target, owner, core.lease_ms, true).await {
            Ok(Found::Held) => poll.as_mut().reset(Instant::now() + core.poll),
            Ok(Found::Result(stored)) => {
                let response = store::unframe(target.key(), &stored)
                    .and_then(|bytes| core.codec.decode(bytes));
                let Some(response) = response else {
                    return alone(core, Counted::LocalFallback);
                };
                core.stats.count(Counted::FollowerHit);
                return Turn::Answer(response);
            }
            Ok(Found::Leader) => {
                tracing::debug!(component = %core.settings.component, "fleet dedup: taking over");
                core.stats.count(Counted::Takeover);
                return Turn::Lead;
            }
            Err(error) => {
                tracing::debug!(component = %core.settings.component, %error, "fleet dedup: redis failed while waiting");
                return alone(core, Counted::LocalFallback);
            }
        }
    }
}

/// The release `message` tells of `target`, if it is about it.
fn release_of(names: &Names, target: &Target, message: &Message) -> Option<Release> {
    if *message.scope != *names.scope {
        return None;
    }
    let (tag, part) = message.body.split_once(':')?;
    (part == target.part())
        .then(|| Release::from_tag(tag))
        .flatten()
}

/// A lease this request holds: let go (with a message) when settled or
/// dropped.
struct Lease<'a, Co: Send + Sync + 'static> {
    core: &'a Arc<Core<Co>>,
    held: Option<(Target, String)>,
}

impl<Co: Send + Sync + 'static> Lease<'_, Co> {
    /// Runs `call`, renewing the lease every third of its TTL meanwhile.
    async fn renewing<F: Future>(&self, call: F) -> F::Output {
        let renewal = async {
            if let Some((target, owner)) = &self.held {
                self.renew(target, owner).await;
            }
            std::future::pending::<Infallible>().await
        };
        tokio::select! {
            biased;
            output = call => output,
            never = renewal => match never {},
        }
    }

    /// Renews the lease until it is found lost (renewals that fail leave
    /// it to its TTL, and are tried again).
    async fn renew(&self, target: &Target, owner: &str) {
        let core = self.core;
        loop {
            tokio::time::sleep(core.renew).await;
            if let Ok(false) = store::renew(&core.fleet.link, target, owner, core.lease_ms).await {
                tracing::debug!(component = %core.settings.component, "fleet dedup: lease lost while calling");
                return;
            }
        }
    }

    /// Stores `response` (when it can be shared) and lets the lease go; no
    /// response (an error): the lease goes with no result.
    fn settle<Res>(mut self, response: Option<&Res>)
    where
        Co: Codec<Res>,
    {
        let core = self.core;
        let Some((target, _)) = &self.held else {
            return;
        };
        let (release, stored) = match response {
            None => (Release::Abandoned, None),
            Some(response) => {
                let key = target.key();
                let stored = core
                    .codec
                    .encode(response)
                    .filter(|bytes| {
                        bytes.len().saturating_add(4 + key.len()) <= core.settings.max_result_bytes
                    })
                    .map(|bytes| store::frame(key, &bytes));
                let release = match stored {
                    Some(_) => Release::Done,
                    None => Release::Unshared,
                };
                (release, stored)
            }
        };
        if release != Release::Done {
            core.stats.count(Counted::Unshared);
        }
        self.release(release, stored);
    }

    /// Stores `result` (if any) and lets the lease go, in the background:
    /// the response does not wait on Redis.
    fn release(&mut self, release: Release, result: Option<Vec<u8>>) {
        let Some((target, owner)) = self.held.take() else {
            return;
        };
        let core = Arc::clone(self.core);
        self.core.fleet.runtime().spawn(async move {
            let result = result.as_deref().map(|bytes| (bytes, core.result_ms));
            let link = &core.fleet.link;
            if let Err(error) =
                store::release(link, &core.names, &target, &owner, release, result).await
            {
                tracing::debug!(%error, "fleet dedup: lease not released (it expires)");
            }
        });
    }
}

impl<Co: Send + Sync + 'static> Drop for Lease<'_, Co> {
    fn drop(&mut self) {
        // Cancelled or panicked: a waiter takes over at once.
        self.release(Release::Abandoned, None);
    }
}
