//! What a shared breaker keeps in Redis, and the calls (each one round
//! trip, off the request path) that read and write it. A component's keys
//! share one hash tag, so each script touches one Cluster slot:
//!
//! - `…:open`: present (with the open duration as its TTL) while the
//!   fleet is open; no probe lease is granted while it lives.
//! - `…:probes`: a sorted set of probe leases scored by their expiry on
//!   Redis's clock: at most K unexpired members.
//! - `…:window`: a hash of the fleet window's buckets, fields
//!   `<bucket>:c`, `<bucket>:f`, `<bucket>:s` (calls, failures, slow).

use std::sync::LazyLock;

use redis::Script;

use super::state::Inner;
use super::wire::{Event, FleetCounts};
use crate::link::LinkError;

/// Adds counts to the current bucket, drops buckets out of the window,
/// returns the window's sums. KEYS: window. ARGV: bucket ms, buckets,
/// calls, failures, slow, expiry ms.
static FLUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local width = tonumber(ARGV[1])
local buckets = tonumber(ARGV[2])
local current = math.floor(now / width)
local tag = string.format('%d', current)
local adds = { c = tonumber(ARGV[3]), f = tonumber(ARGV[4]), s = tonumber(ARGV[5]) }
for kind, n in pairs(adds) do
  if n > 0 then redis.call('HINCRBY', KEYS[1], tag .. ':' .. kind, n) end
end
if adds.c > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
local sums = { c = 0, f = 0, s = 0 }
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local field = flat[i]
  local sep = string.find(field, ':', 1, true)
  local bucket = sep and tonumber(string.sub(field, 1, sep - 1))
  local kind = sep and string.sub(field, sep + 1)
  if bucket and bucket <= current and bucket > current - buckets and sums[kind] then
    sums[kind] = sums[kind] + tonumber(flat[i + 1])
  else
    redis.call('HDEL', KEYS[1], field)
  end
end
return { sums.c, sums.f, sums.s }
",
    )
});

/// Takes one probe lease unless the fleet is open or K are out. KEYS:
/// open, probes. ARGV: K, ttl ms, member. Returns 1 (granted), 0 (all
/// out), -1 (the fleet is open).
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
",
    )
});

/// What a lease request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    Granted,
    AllOut,
    FleetOpen,
}

/// Adds `counts` to the fleet window; the fleet's counts over it.
pub(crate) async fn flush(inner: &Inner, counts: FleetCounts) -> Result<FleetCounts, LinkError> {
    let settings = &inner.settings;
    let window = settings.window;
    let sums: (u64, u64, u64) = inner
        .fleet
        .link
        .run_background(|mut conn| async move {
            FLUSH
                .key(&settings.window_key)
                .arg(window.bucket_ms)
                .arg(window.buckets)
                .arg(counts.calls)
                .arg(counts.failures)
                .arg(counts.slow)
                .arg(window.expiry_ms())
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(FleetCounts {
        calls: sums.0,
        failures: sums.1,
        slow: sums.2,
    })
}

/// Asks for one probe lease under the name `member`.
pub(crate) async fn lease(inner: &Inner, member: &str) -> Result<Lease, LinkError> {
    let settings = &inner.settings;
    let granted: i64 = inner
        .fleet
        .link
        .run_background(|mut conn| async move {
            LEASE
                .key(&settings.open_key)
                .key(&settings.probes_key)
                .arg(settings.probes)
                .arg(settings.lease_ttl_ms)
                .arg(member)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(match granted {
        1 => Lease::Granted,
        0 => Lease::AllOut,
        _ => Lease::FleetOpen,
    })
}

/// Tells every replica, and marks the fleet: open (the open key, with the
/// open duration; leases and counts of the spell before cleared) or closed
/// (all cleared). One round trip: the message first, as what the other
/// replicas wait for, then the keys.
pub(crate) async fn announce(inner: &Inner, event: Event) -> Result<(), LinkError> {
    let settings = &inner.settings;
    let fleet = &inner.fleet;
    let message = fleet.link.message(&settings.scope, event.as_str());
    let channel = fleet.keys().channel();
    fleet
        .link
        .run_background(|mut conn| async move {
            let mut pipe = redis::pipe();
            pipe.cmd("PUBLISH").arg(channel).arg(message).ignore();
            match event {
                Event::Open => {
                    pipe.cmd("SET")
                        .arg(&settings.open_key)
                        .arg(1)
                        .arg("PX")
                        .arg(settings.open_ms)
                        .ignore();
                    pipe.cmd("DEL")
                        .arg(&settings.probes_key)
                        .arg(&settings.window_key)
                        .ignore();
                }
                Event::Close => {
                    pipe.cmd("DEL")
                        .arg(&settings.open_key)
                        .arg(&settings.probes_key)
                        .arg(&settings.window_key)
                        .ignore();
                }
            }
            pipe.query_async::<()>(&mut conn).await
        })
        .await
}

/// `true` while the fleet's open key lives.
pub(crate) async fn fleet_open(inner: &Inner) -> Result<bool, LinkError> {
    let key = &inner.settings.open_key;
    inner
        .fleet
        .link
        .run_background(|mut conn| async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut conn)
                .await
        })
        .await
}
