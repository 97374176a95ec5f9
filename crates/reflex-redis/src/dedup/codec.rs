//! [`Codec`]: how a result crosses from one replica to another, as bytes.

use std::fmt;

use bytes::Bytes;

/// Turns a response into bytes another replica can turn back into the same
/// response. A result crosses processes only as bytes a codec made; a
/// response the codec cannot (or will not) encode is not shared: the
/// requests waiting on it on other replicas call on their own.
///
/// `encode` returning `None` is a choice, not an error: decline responses
/// that must not reach another client (one carrying a session), or that
/// are too costly to copy. `decode` returning `None` (bytes it does not
/// understand, from a replica of another version) makes that request call
/// on its own.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use reflex_redis::dedup::Codec;
///
/// /// A price in cents, as 8 bytes.
/// struct Cents;
///
/// impl Codec<u64> for Cents {
///     fn encode(&self, cents: &u64) -> Option<Bytes> {
///         Some(Bytes::copy_from_slice(&cents.to_be_bytes()))
///     }
///     fn decode(&self, bytes: &[u8]) -> Option<u64> {
///         Some(u64::from_be_bytes(bytes.try_into().ok()?))
///     }
/// }
///
/// let bytes = Cents.encode(&1299).unwrap();
/// assert_eq!(Cents.decode(&bytes), Some(1299));
/// assert_eq!(Cents.decode(b"short"), None);
/// ```
pub trait Codec<Res>: Send + Sync + 'static {
    /// The bytes of `response`, or `None` to keep it to this request.
    fn encode(&self, response: &Res) -> Option<Bytes>;

    /// The response `bytes` encode, or `None` when they do not.
    fn decode(&self, bytes: &[u8]) -> Option<Res>;
}

/// A builder that was not given a codec yet: the layer it builds wraps no
/// service until it is.
///
/// # Examples
///
/// ```
/// use reflex_redis::dedup::NoCodec;
///
/// assert_eq!(format!("{:?}", NoCodec), "NoCodec");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCodec;

/// The codec of responses that are bytes already: [`Bytes`], `Vec<u8>`
/// and `String` (a `String` decodes only from UTF-8).
///
/// # Examples
///
/// ```
/// use reflex_redis::dedup::{Codec, RawCodec};
///
/// let bytes = RawCodec.encode(&"user 7".to_owned()).unwrap();
/// let back: Option<String> = RawCodec.decode(&bytes);
/// assert_eq!(back.as_deref(), Some("user 7"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec<Bytes> for RawCodec {
    fn encode(&self, response: &Bytes) -> Option<Bytes> {
        Some(response.clone())
    }

    fn decode(&self, bytes: &[u8]) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(bytes))
    }
}

impl Codec<Vec<u8>> for RawCodec {
    fn encode(&self, response: &Vec<u8>) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(response))
    }

    fn decode(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

impl Codec<String> for RawCodec {
    fn encode(&self, response: &String) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(response.as_bytes()))
    }

    fn decode(&self, bytes: &[u8]) -> Option<String> {
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }
}

/// A codec of two closures; see [`codec_fn`].
#[derive(Clone, Copy)]
pub struct FnCodec<E, D> {
    encode: E,
    decode: D,
}

/// A [`Codec`] of an `encode` and a `decode` closure.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use reflex_redis::dedup::{Codec, codec_fn};
///
/// let codec = codec_fn(
///     |n: &u32| Some(Bytes::from(n.to_string())),
///     |bytes: &[u8]| std::str::from_utf8(bytes).ok()?.parse::<u32>().ok(),
/// );
/// assert_eq!(codec.decode(&codec.encode(&42).unwrap()), Some(42));
/// ```
pub fn codec_fn<Res, E, D>(encode: E, decode: D) -> FnCodec<E, D>
where
    E: Fn(&Res) -> Option<Bytes> + Send + Sync + 'static,
    D: Fn(&[u8]) -> Option<Res> + Send + Sync + 'static,
{
    FnCodec { encode, decode }
}

impl<Res, E, D> Codec<Res> for FnCodec<E, D>
where
    E: Fn(&Res) -> Option<Bytes> + Send + Sync + 'static,
    D: Fn(&[u8]) -> Option<Res> + Send + Sync + 'static,
{
    fn encode(&self, response: &Res) -> Option<Bytes> {
        (self.encode)(response)
    }

    fn decode(&self, bytes: &[u8]) -> Option<Res> {
        (self.decode)(bytes)
    }
}

impl<E, D> fmt::Debug for FnCodec<E, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCodec").finish_non_exhaustive()
    }
}
