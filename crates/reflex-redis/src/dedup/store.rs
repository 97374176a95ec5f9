//! What the fleet dedup keeps in Redis, and the scripts that change it.
//!
//! Per key of a component, under the component's hash tag:
//!
//! - `…:l:<part>`, the **lease**: `<replica>:<nonce>` of the leader, with a
//!   `PX` expiry of `lease_ttl` (renewed while the leader's call runs);
//! - `…:r:<part>`, the **result**: the key, then the bytes the codec made,
//!   with a `PX` expiry of `result_ttl`.
//!
//! `<part>` is `k:<key>` for a key of at most [`MAX_KEY_BYTES`] bytes and
//! `h:<128-bit hash>` beyond. Two keys may share a hashed part (a
//! collision): the stored result carries the whole key and a reader checks
//! it, so a result never reaches a request of another key.

use std::fmt::Write as _;
use std::sync::LazyLock;

use redis::{Script, Value};

use crate::keys::Keys;
use crate::link::{Link, LinkError};

/// The longest key kept as it is in a Redis key; longer ones are hashed.
pub(crate) const MAX_KEY_BYTES: usize = 512;

/// One request's key, as named in Redis and on the channel.
#[derive(Debug)]
pub(crate) struct Target {
    /// The lease's key: `<prefix>l:<part>`.
    pub(crate) lease: String,
    /// The result's key: `<prefix>r:<part>`.
    pub(crate) result: String,
    /// Where `<part>` starts in `lease`.
    at: usize,
    /// The user's key when `<part>` is its hash (else `<part>` holds it).
    hashed: Option<Box<str>>,
}

/// The component's names: its message scope and its keys' prefix.
#[derive(Debug)]
pub(crate) struct Names {
    /// `dd:<escaped component>`: the scope of its messages.
    pub(crate) scope: Box<str>,
    /// `reflex:{namespace:dedup:<escaped component>}:`.
    prefix: Box<str>,
}

/// What a look at a key found.
#[derive(Debug)]
pub(crate) enum Found {
    /// This request holds the lease now: it calls.
    Leader,
    /// Another request holds it: wait.
    Held,
    /// A result is stored: its bytes (unchecked).
    Result(Vec<u8>),
}

/// Why the leader let its lease go, as its message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// A result is stored: read it.
    Done,
    /// No result (an error, a cancelled or panicked call): take over.
    Abandoned,
    /// A result that cannot be shared: call on your own.
    Unshared,
}

impl Release {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Self::Done => "d",
            Self::Abandoned => "a",
            Self::Unshared => "u",
        }
    }

    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "d" => Some(Self::Done),
            "a" => Some(Self::Abandoned),
            "u" => Some(Self::Unshared),
            _ => None,
        }
    }
}

// === impl Target ===

impl Target {
    /// The user's key.
    pub(crate) fn key(&self) -> &str {
        match &self.hashed {
            Some(key) => key,
            None => &self.lease[self.at + 2..],
        }
    }

    /// The key's name within the component: `k:<key>` or `h:<hash>`.
    pub(crate) fn part(&self) -> &str {
        &self.lease[self.at..]
    }
}

// === impl Names ===

impl Names {
    pub(crate) fn new(keys: &Keys, component: &str) -> Self {
        Self {
            scope: format!("dd:{}", crate::keys::escape(component)).into(),
            prefix: keys.key("dedup", component, "").into(),
        }
    }

    /// The names of `key` in Redis.
    pub(crate) fn target(&self, key: &str) -> Target {
        let hashed = (key.len() > MAX_KEY_BYTES).then(|| Box::<str>::from(key));
        let part_len = 2 + if hashed.is_some() { 32 } else { key.len() };
        let mut lease = String::with_capacity(self.prefix.len() + 2 + part_len);
        lease.push_str(&self.prefix);
        lease.push_str("l:");
        let at = lease.len();
        match hashed {
            Some(_) => {
                let _ = write!(lease, "h:{:032x}", hash128(key.as_bytes()));
            }
            None => {
                lease.push_str("k:");
                lease.push_str(key);
            }
        }
        let mut result = String::with_capacity(lease.len());
        result.push_str(&self.prefix);
        result.push_str("r:");
        result.push_str(&lease[at..]);
        Target {
            lease,
            result,
            at,
            hashed,
        }
    }

    /// The payload of the message `release` of `target`, as the link
    /// publishes it: `scope|origin|tag:part`.
    fn payload(&self, link: &Link, target: &Target, release: Release) -> String {
        link.message(
            &self.scope,
            format_args!("{}:{}", release.tag(), target.part()),
        )
    }
}

/// A 128-bit FNV-1a of `bytes` (two 64-bit passes from two offsets): the
/// same in every process and build, as a Redis key must be. Not a
/// cryptographic hash: a collision only costs a check (see the module
/// docs).
fn hash128(bytes: &[u8]) -> u128 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for &byte in bytes {
        a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
        b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
    }
    (u128::from(a) << 64) | u128::from(b)
}

/// The stored form of a result: the key's length (4 bytes, big endian),
/// the key, the codec's bytes.
pub(crate) fn frame(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + payload.len());
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The codec's bytes of a stored result, if it is `key`'s.
pub(crate) fn unframe<'a>(key: &str, stored: &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = stored.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let (stored_key, payload) = (rest.get(..len)?, rest.get(len..)?);
    (stored_key == key.as_bytes()).then_some(payload)
}

/// KEYS: lease, result. ARGV: owner, lease ttl (ms), look (0/1).
/// With `look`, a stored result is returned first; then the lease is taken
/// if free (and the result of an earlier round deleted): 1; else 0.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[3] == '1' then
  local stored = redis.call('GET', KEYS[2])
  if stored then return stored end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0",
    )
});

/// KEYS: lease. ARGV: owner, lease ttl (ms). Extends the lease if it is
/// still ours.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0",
    )
});

/// KEYS: lease, result. ARGV: owner, channel, message, result ttl (ms),
/// result (absent: none). Stores the result, lets the lease go if it is
/// ours, tells the fleet.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[5] then
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[4])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1",
    )
});

/// Takes the lease of `target` for `owner`, or finds it held, or (with
/// `look`) finds a result. Within the link's request deadline.
pub(crate) async fn acquire(
    link: &Link,
    target: &Target,
    owner: &str,
    lease_ms: u64,
    look: bool,
) -> Result<Found, LinkError> {
    let value: Value = link
        .run(|mut conn| async move {
            ACQUIRE
                .key(&target.lease)
                .key(&target.result)
                .arg(owner)
                .arg(lease_ms)
                .arg(if look { "1" } else { "0" })
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(match value {
        Value::Int(1) => Found::Leader,
        Value::BulkString(bytes) => Found::Result(bytes),
        _ => Found::Held,
    })
}

/// Extends `owner`'s lease of `target`; whether it was still its.
pub(crate) async fn renew(
    link: &Link,
    target: &Target,
    owner: &str,
    lease_ms: u64,
) -> Result<bool, LinkError> {
    let renewed: i64 = link
        .run(|mut conn| async move {
            RENEW
                .key(&target.lease)
                .arg(owner)
                .arg(lease_ms)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(renewed == 1)
}

/// Stores `result` (if any), lets `owner`'s lease go and publishes
/// `release`. Off the request path (the background deadline).
pub(crate) async fn release(
    link: &Link,
    names: &Names,
    target: &Target,
    owner: &str,
    release: Release,
    result: Option<(&[u8], u64)>,
) -> Result<(), LinkError> {
    let payload = names.payload(link, target, release);
    let channel = link.keys.channel();
    link.run_background(|mut conn| async move {
        let mut call = RELEASE.prepare_invoke();
        call.key(&target.lease)
            .key(&target.result)
            .arg(owner)
            .arg(channel)
            .arg(payload)
            .arg(result.map_or(0, |(_, ttl)| ttl));
        if let Some((bytes, _)) = result {
            call.arg(bytes);
        }
        call.invoke_async::<i64>(&mut conn).await
    })
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_result_is_read_only_for_its_own_key() {
        let stored = frame("user:7", b"seven");
        assert_eq!(unframe("user:7", &stored), Some(&b"seven"[..]));
        assert_eq!(unframe("user:8", &stored), None);
        assert_eq!(unframe("user:7", &stored[..3]), None);
        assert_eq!(unframe("user", &stored), None);
    }

    #[test]
    fn the_hash_is_stable_and_tells_near_keys_apart() {
        assert_eq!(hash128(b""), hash128(b""));
        assert_ne!(hash128(b"ab"), hash128(b"ba"));
        assert_ne!(hash128(b"a"), hash128(b"b"));
        // Pinned: replicas of different builds must agree.
        assert_eq!(
            format!("{:032x}", hash128(b"reflex")),
            "7c286f1cf09cce7f98636aec99088b4c"
        );
    }

    #[test]
    fn a_key_is_named_as_it_is_up_to_512_bytes_and_hashed_beyond() {
        let names = Names::new(&Keys::new("shop".into()), "a|b");
        let short = names.target("sku-1");
        assert_eq!(short.lease, "reflex:{shop:dedup:a%7Cb}:l:k:sku-1");
        assert_eq!(short.result, "reflex:{shop:dedup:a%7Cb}:r:k:sku-1");
        assert_eq!((short.key(), short.part()), ("sku-1", "k:sku-1"));
        let key = "x".repeat(MAX_KEY_BYTES + 1);
        let long = names.target(&key);
        let part = format!("h:{:032x}", hash128(key.as_bytes()));
        assert_eq!(long.lease, format!("reflex:{{shop:dedup:a%7Cb}}:l:{part}"));
        assert_eq!(long.result, format!("reflex:{{shop:dedup:a%7Cb}}:r:{part}"));
        assert_eq!((long.key(), long.part()), (&*key, &*part));
        let edge = "y".repeat(MAX_KEY_BYTES);
        assert_eq!(names.target(&edge).part(), format!("k:{edge}"));
    }

    #[test]
    fn a_release_tag_reads_back() {
        for release in [Release::Done, Release::Abandoned, Release::Unshared] {
            assert_eq!(Release::from_tag(release.tag()), Some(release));
        }
        assert_eq!(Release::from_tag("x"), None);
    }
}
