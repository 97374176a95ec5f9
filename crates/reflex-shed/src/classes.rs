//! The request classes a shed layer tells apart: critical requests, and
//! partitions with their shares. Both are read by key functions, as every
//! keyed reflex layer reads its keys ([`KeyFn`]).

use std::fmt;

use reflex_core::KeyFn;

/// Marks a request as critical: it keeps the layer's critical reserve and
/// is shed last. A key function returns it
/// ([`ConcurrencyShedBuilder::critical`](crate::ConcurrencyShedBuilder::critical)),
/// or it rides in an `http::Request`'s extensions (with
/// [`CriticalExtension`], feature `http`).
///
/// # Examples
///
/// ```
/// use reflex_shed::{ConcurrencyShedLayer, Critical};
///
/// struct Req { health_check: bool }
///
/// let layer = ConcurrencyShedLayer::builder()
///     .hard_limit(100)
///     .critical(|req: &Req| req.health_check.then_some(Critical))
///     .critical_reserve(0.05)
///     .build()?;
/// # let _ = layer;
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Critical;

/// The critical key of a layer that has none: no request is critical.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCritical;

/// The critical key of a layer: a [`KeyFn`] returning [`Critical`].
#[derive(Clone)]
pub struct CriticalBy<F> {
    key: F,
}

/// Marks as critical an `http::Request` whose extensions hold [`Critical`]
/// (`request.extensions_mut().insert(Critical)`, by a layer above, or the
/// caller).
///
/// # Examples
///
/// ```
/// use reflex_shed::{ConcurrencyShedLayer, Critical, CriticalExtension};
///
/// let layer = ConcurrencyShedLayer::builder()
///     .hard_limit(100)
///     .critical_with(CriticalExtension)
///     .build()?;
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Critical);
/// # let _ = (layer, request);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CriticalExtension;

/// The partitions of a layer that has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpartitioned;

/// The partitions of a layer: a key function, and the keys given a share,
/// in the order of [`share`](crate::ConcurrencyShedBuilder::share) calls.
#[derive(Clone)]
pub struct Partitions<K, F> {
    key: F,
    keys: Vec<K>,
}

/// Which requests of type `Req` are critical: implemented by
/// [`NoCritical`] and [`CriticalBy`]; not for implementing elsewhere.
pub trait CriticalKey<Req>: sealed::Sealed {
    /// Whether any request can be critical at all.
    #[doc(hidden)]
    const MARKS: bool;

    /// Whether `req` is critical.
    #[doc(hidden)]
    fn is_critical(&self, req: &Req) -> bool;
}

/// Which partition a request of type `Req` is in: implemented by
/// [`Unpartitioned`] and [`Partitions`]; not for implementing elsewhere.
pub trait PartitionKey<Req>: sealed::Sealed {
    /// Whether requests are partitioned at all.
    #[doc(hidden)]
    const PARTITIONED: bool;

    /// The index of `req`'s partition: a key's place in the shares, or
    /// their count for a request with no key or a key given no share.
    #[doc(hidden)]
    fn partition(&self, req: &Req) -> usize;
}

/// The key functions of a layer, shared by its services.
#[derive(Debug)]
pub(crate) struct KeyFns<P, Cr> {
    pub(crate) partitions: P,
    pub(crate) critical: Cr,
}

mod sealed {
    pub trait Sealed {}
}

// === impl CriticalBy ===

impl<F> CriticalBy<F> {
    pub(crate) fn new(key: F) -> Self {
        Self { key }
    }
}

impl<F> fmt::Debug for CriticalBy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalBy").finish_non_exhaustive()
    }
}

impl sealed::Sealed for NoCritical {}
impl<F> sealed::Sealed for CriticalBy<F> {}

impl<Req> CriticalKey<Req> for NoCritical {
    const MARKS: bool = false;

    #[inline]
    fn is_critical(&self, _: &Req) -> bool {
        false
    }
}

impl<Req, F: KeyFn<Req, Critical>> CriticalKey<Req> for CriticalBy<F> {
    const MARKS: bool = true;

    #[inline]
    fn is_critical(&self, req: &Req) -> bool {
        self.key.key(req).is_some()
    }
}

#[cfg(feature = "http")]
impl<B> KeyFn<http::Request<B>, Critical> for CriticalExtension {
    fn key(&self, req: &http::Request<B>) -> Option<Critical> {
        req.extensions().get::<Critical>().copied()
    }
}

// === impl Partitions ===

impl<K, F> Partitions<K, F> {
    pub(crate) fn new(key: F) -> Self {
        Self {
            key,
            keys: Vec::new(),
        }
    }

    /// Gives `key` the next share; the index of its partition, or of the
    /// one it had already.
    pub(crate) fn push(&mut self, key: K) -> usize
    where
        K: PartialEq,
    {
        match self.keys.iter().position(|k| *k == key) {
            Some(index) => index,
            None => {
                self.keys.push(key);
                self.keys.len() - 1
            }
        }
    }
}

impl<K: fmt::Debug, F> fmt::Debug for Partitions<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partitions")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl sealed::Sealed for Unpartitioned {}
impl<K, F> sealed::Sealed for Partitions<K, F> {}

impl<Req> PartitionKey<Req> for Unpartitioned {
    const PARTITIONED: bool = false;

    #[inline]
    fn partition(&self, _: &Req) -> usize {
        0
    }
}

impl<Req, K: PartialEq, F: KeyFn<Req, K>> PartitionKey<Req> for Partitions<K, F> {
    const PARTITIONED: bool = true;

    #[inline]
    fn partition(&self, req: &Req) -> usize {
        let rest = self.keys.len();
        self.key
            .key(req)
            .and_then(|key| self.keys.iter().position(|k| *k == key))
            .unwrap_or(rest)
    }
}
