//! [`Share`]: how answers are marked for the callers that receive them,
//! and weighed and aged for the cache.

use std::time::Duration;

/// How a caller's answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Sharing {
    /// This caller's answer was handed to nobody else: its request made
    /// the inner call and no other request got a copy. That is also the
    /// mark of an answer that could not be shared ([`Share::share`] gave
    /// it back): the request that started the call gets it whole, and
    /// every other waiter makes its own call, marked `Own` too.
    Own,
    /// A copy of this answer went to several requests that waited on the
    /// inner call that made it, this one included (the one that started
    /// it too, as Go's singleflight says `shared`).
    Shared,
    /// From the cache: no inner call was made for this request.
    Cached,
    /// From the cache, past its TTL, served while a refresh of it runs
    /// (see `DedupBuilder::serve_stale`).
    Stale,
}

// === impl Sharing ===

impl Sharing {
    /// A short, stable, lowercase name.
    ///
    /// ```
    /// assert_eq!(reflex_dedup::Sharing::Cached.as_str(), "cached");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Shared => "shared",
            Self::Cached => "cached",
            Self::Stale => "stale",
        }
    }
}

/// How answers are shared: turned into a form every waiter can get a copy
/// of, turned back for each caller, marked with their [`Sharing`], and
/// weighed for the cache's byte bound.
///
/// [`PlainResponses`] shares `Clone` responses as they are. An
/// implementation may refuse to share an answer (`share` gives it back):
/// then the request that started the call gets it, every other waiter
/// makes its own call, and the answer is not cached (this is how an http
/// body over a size limit goes, or one that sets a cookie). An answer
/// that is shared may still be kept in the cache for less than the
/// layer's TTL, or not at all: see [`max_age`](Self::max_age).
///
/// # Examples
///
/// Responses that say how they were obtained:
///
/// ```
/// use reflex_dedup::{Share, Sharing};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Page { body: String, sharing: Option<Sharing> }
///
/// struct MarkPages;
///
/// impl Share<Page> for MarkPages {
///     type Shared = Page;
///     fn share(&self, page: Page) -> Result<Page, Page> {
///         Ok(page)
///     }
///     fn unshare(&self, page: &Page) -> Page {
///         page.clone()
///     }
///     fn mark(&self, page: &mut Page, sharing: Sharing) {
///         page.sharing = Some(sharing);
///     }
///     fn weight(&self, page: &Page) -> usize {
///         page.body.len()
///     }
/// }
///
/// let mut page = MarkPages.unshare(&Page { body: "hi".into(), sharing: None });
/// MarkPages.mark(&mut page, Sharing::Cached);
/// assert_eq!(page.sharing, Some(Sharing::Cached));
/// ```
pub trait Share<Res> {
    /// The form an answer is kept in for its waiters and the cache.
    type Shared: Clone + Send + 'static;

    /// The shareable form of `response`, or `response` back when it cannot
    /// be shared.
    fn share(&self, response: Res) -> Result<Self::Shared, Res>;

    /// One caller's copy of a shared answer.
    fn unshare(&self, shared: &Self::Shared) -> Res;

    /// Marks `response`, about to be handed to its caller. Defaults to
    /// nothing.
    fn mark(&self, response: &mut Res, sharing: Sharing) {
        let _ = (response, sharing);
    }

    /// The weight of an answer against the cache's byte bound. Defaults to
    /// 0 (only the entry bound applies).
    fn weight(&self, shared: &Self::Shared) -> usize {
        let _ = shared;
        0
    }

    /// How long the cache may keep `shared` at most: it is kept for the
    /// shorter of this and the layer's TTL, and not at all when this is
    /// zero (an http `Cache-Control: max-age=0`). Defaults to `None`: the
    /// TTL alone.
    fn max_age(&self, shared: &Self::Shared) -> Option<Duration> {
        let _ = shared;
        None
    }
}

/// Shares `Clone` answers as they are: a clone for each caller, unmarked,
/// weighing nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlainResponses;

impl<Res: Clone + Send + 'static> Share<Res> for PlainResponses {
    type Shared = Res;

    fn share(&self, response: Res) -> Result<Res, Res> {
        Ok(response)
    }

    fn unshare(&self, shared: &Res) -> Res {
        shared.clone()
    }
}
