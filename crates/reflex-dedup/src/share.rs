//! [`Share`]: how answers are marked for the callers that receive them,
//! and weighed for the cache.

/// How a caller's answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Sharing {
    /// This caller's request made the inner call, and nobody else waited
    /// on it.
    Own,
    /// Several requests waited on the inner call that made this answer,
    /// this one included (the one that started it too, as Go's
    /// singleflight says `shared`).
    Shared,
    /// From the cache: no inner call was made for this request.
    Cached,
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
        }
    }
}

/// What the layer does with an answer before a caller gets it: mark how it
/// was obtained ([`Sharing`]), and weigh it for the cache's byte bound.
///
/// [`PlainResponses`] does neither. For `http` responses, an implementation
/// would put the `Sharing` in the response's extensions and weigh the
/// body.
///
/// # Examples
///
/// Responses that carry their own flag:
///
/// ```
/// use reflex_dedup::{Share, Sharing};
///
/// #[derive(Clone)]
/// struct Page { body: String, shared: bool }
///
/// #[derive(Clone)]
/// struct MarkPages;
///
/// impl Share<Page> for MarkPages {
///     fn mark(&self, page: &mut Page, sharing: Sharing) {
///         page.shared = sharing != Sharing::Own;
///     }
///     fn weight(&self, page: &Page) -> usize {
///         page.body.len()
///     }
/// }
///
/// let mut page = Page { body: "hi".into(), shared: false };
/// MarkPages.mark(&mut page, Sharing::Cached);
/// assert!(page.shared);
/// ```
pub trait Share<Res> {
    /// Marks `response`, about to be handed to one caller. Defaults to
    /// nothing.
    fn mark(&self, response: &mut Res, sharing: Sharing) {
        let _ = (response, sharing);
    }

    /// The weight of `response` against the cache's byte bound. Defaults
    /// to 0 (only the entry bound applies).
    fn weight(&self, response: &Res) -> usize {
        let _ = response;
        0
    }
}

/// Answers are handed over as they are, and weigh nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlainResponses;

impl<Res> Share<Res> for PlainResponses {}
