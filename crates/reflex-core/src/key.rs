//! [`KeyFn`]: the one way a keyed layer (dedup, slot admission, the keyed
//! breaker) learns a request's key.
//!
//! Every keyed builder has the same two methods:
//!
//! - `.key(f)` takes a closure `Fn(&Req) -> Option<K>`; the closure's
//!   argument is typed in its signature (`|req: &Request<B>| ...`), and its
//!   key type is what it returns.
//! - `.key_with(k)` takes any [`KeyFn`], such as a key type a crate ships
//!   (`reflex_dedup::HttpKey`).
//!
//! `None` means the request has no key: it goes through the layer untouched.
//! Until a key is given the builder's key is [`NoKey`], and it cannot build.
//!
//! # Examples
//!
//! ```
//! use reflex_core::key::KeyFn;
//!
//! struct ByTenant;
//!
//! impl KeyFn<(u32, &'static str), u32> for ByTenant {
//!     fn key(&self, req: &(u32, &'static str)) -> Option<u32> {
//!         Some(req.0)
//!     }
//! }
//!
//! fn key_of<Req, K>(f: &impl KeyFn<Req, K>, req: &Req) -> Option<K> {
//!     f.key(req)
//! }
//!
//! assert_eq!(key_of(&ByTenant, &(7, "GET /")), Some(7));
//! assert_eq!(key_of(&|req: &u32| (*req > 0).then_some(*req), &0), None);
//! ```

/// The key of a request, or `None` when the request has none and goes
/// through untouched.
///
/// Closures `Fn(&Req) -> Option<K>` are key functions. A key function runs
/// on every request, before anything else the layer does: keep it cheap, and
/// it must not panic.
pub trait KeyFn<Req, K> {
    /// The key of `req`.
    fn key(&self, req: &Req) -> Option<K>;
}

impl<Req, K, F> KeyFn<Req, K> for F
where
    F: Fn(&Req) -> Option<K>,
{
    #[inline]
    fn key(&self, req: &Req) -> Option<K> {
        self(req)
    }
}

/// A keyed builder that was not given a key function yet: it cannot build.
///
/// # Examples
///
/// ```
/// use reflex_core::key::NoKey;
///
/// assert_eq!(format!("{:?}", NoKey), "NoKey");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKey;
