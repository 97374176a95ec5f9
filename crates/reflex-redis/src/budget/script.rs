//! The lease script: one round trip that purges expired replicas, grants
//! this one what the cap and fairness allow, and records what it holds.
//!
//! A component's budget lives in three keys under its hash tag:
//!
//! - `grants`, a hash replica → permits it may hold (the larger of what it
//!   was granted and what it still had in flight: those cannot be revoked);
//! - `expiry`, a sorted set replica → when its lease lapses (Redis `TIME`,
//!   in ms: the replicas' clocks play no part);
//! - `wants`, a hash replica → permits it asked for (fairness reads them).
//!
//! The script runs atomically: no two replicas are granted the same
//! permit. Every key's own TTL is at least three of the longest lease
//! renewed through it (a replica with a short TTL never shortens it), so a
//! component whose replicas are all gone leaves nothing behind. Each
//! renewal reads every live replica's entry: its cost grows with the
//! replicas of the component.

use std::sync::LazyLock;

use redis::Script;

use crate::link::{Link, LinkError};

const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local want = tonumber(ARGV[2])
local floor = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local block = tonumber(ARGV[6])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, r in ipairs(dead) do
  redis.call('HDEL', KEYS[1], r)
  redis.call('HDEL', KEYS[3], r)
  redis.call('ZREM', KEYS[2], r)
end
local others, others_want = 0, 0
local held = redis.call('HGETALL', KEYS[1])
for i = 1, #held, 2 do
  if held[i] ~= me then others = others + tonumber(held[i + 1]) end
end
local wants = redis.call('HGETALL', KEYS[3])
for i = 1, #wants, 2 do
  if wants[i] ~= me then others_want = others_want + tonumber(wants[i + 1]) end
end
local grant = math.min(want, math.max(0, cap - others))
local sum = others_want + want
if sum > cap then
  local fair = math.floor(cap * want / sum)
  fair = math.max(fair, math.min(want, block))
  grant = math.min(grant, fair)
end
local stored = math.max(grant, floor)
redis.call('HSET', KEYS[1], me, stored)
redis.call('HSET', KEYS[3], me, want)
redis.call('ZADD', KEYS[2], now + ttl, me)
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl * 3 then redis.call('PEXPIRE', KEYS[i], ttl * 3) end
end
return {grant, stored, others + stored, redis.call('HLEN', KEYS[1])}
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEASE));

/// A component's budget keys.
#[derive(Debug, Clone)]
pub(super) struct BudgetKeys {
    grants: String,
    expiry: String,
    wants: String,
}

impl BudgetKeys {
    pub(super) fn new(link: &Link, component: &str) -> Self {
        let key = |part| link.keys.key("budget", component, part);
        Self {
            grants: key("grants"),
            expiry: key("expiry"),
            wants: key("wants"),
        }
    }
}

/// What one renewal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ask {
    /// Permits wanted.
    pub(super) want: usize,
    /// Permits this replica may have in flight whatever it is granted:
    /// recorded as held until it renews again.
    pub(super) floor: usize,
    pub(super) ttl_ms: u64,
    pub(super) cap: usize,
    pub(super) block: usize,
}

/// What Redis answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lease {
    /// Permits this replica may admit against.
    pub(super) grant: usize,
    /// Permits recorded as this replica's.
    pub(super) stored: usize,
    /// Permits recorded across the fleet, this replica's included.
    pub(super) total: usize,
    /// Replicas holding a live lease.
    pub(super) replicas: usize,
}

/// Runs the lease script for `replica`, within the link's background
/// deadline.
pub(super) async fn lease(
    link: &Link,
    keys: &BudgetKeys,
    replica: &str,
    ask: Ask,
) -> Result<Lease, LinkError> {
    let mut invocation = SCRIPT.prepare_invoke();
    invocation
        .key(&keys.grants)
        .key(&keys.expiry)
        .key(&keys.wants)
        .arg(replica)
        .arg(ask.want)
        .arg(ask.floor)
        .arg(ask.ttl_ms)
        .arg(ask.cap)
        .arg(ask.block);
    let reply: Vec<i64> = link
        .run_background(|mut conn| async move { invocation.invoke_async(&mut conn).await })
        .await?;
    let number = |i: usize| reply.get(i).map_or(0, |n| usize::try_from(*n).unwrap_or(0));
    Ok(Lease {
        grant: number(0),
        stored: number(1),
        total: number(2),
        replicas: number(3),
    })
}
