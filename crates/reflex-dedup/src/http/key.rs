//! [`HttpKey`] and the [`RequestKey`] it makes.

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderName, HeaderValue, Method, Request, Uri};

use reflex_core::KeyFn;

/// The key of an `http` request: its method, its authority, its URI, and
/// the values of the headers its [`HttpKey`] names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    method: Method,
    /// The URI, its authority with it when it has one (absolute form, as a
    /// client or proxy sees it).
    uri: Uri,
    /// The `Host` header when the URI has no authority (origin form, as a
    /// server sees it): the URI alone would not tell two hosts apart.
    host: Option<HeaderValue>,
    vary: Box<[Option<HeaderValue>]>,
}

/// Keys `http` requests by method, authority and URI, plus the values of
/// the headers it varies on: two requests that differ in one of them are
/// not the same request. The authority is the URI's when it has one, else
/// the `Host` header (a server sees `GET /` with a `Host`): two virtual
/// hosts never share an answer. It varies on `Authorization` and `Cookie`
/// by default, so one user's answer is never shared with (or cached for)
/// another, and on `Range`, `If-Range`, `If-None-Match`,
/// `If-Modified-Since`, `If-Match` and `If-Unmodified-Since`, so a plain
/// GET never gets another request's partial content or `304`; name more with [`vary`](Self::vary) (`Accept`,
/// `Accept-Encoding`, `Accept-Language`, …): an answer with a `Vary` on a
/// header the key does not hold is not shared (see the
/// [`http` module docs](crate::http)). Only GET and HEAD are keyed by default; other
/// methods pass through.
///
/// To share answers across credentials (the resource is the same for
/// everyone, whoever asks), opt out with [`ignore`](Self::ignore).
///
/// # Under a router that strips a prefix
///
/// The URI keyed is the one the wrapped service sees. Under a router that
/// strips a prefix before the layer (`axum`'s `nest`, with the layer put
/// on the nested router), `/v1/items` and `/v2/items` both reach it as
/// `/items`, and one layer value (or its clones) put on both nested
/// routers would hand one the other's answer. Put the layer on the outer
/// router, after `nest`, where the URI is whole; or key by the whole URI
/// the router kept in the request's extensions with
/// [`original_uri`](Self::original_uri).
///
/// # Examples
///
/// ```
/// use http::{Request, header};
/// use reflex_dedup::{HttpKey, KeyFn};
///
/// let key = HttpKey::new();
/// let alice = Request::get("/me").header("authorization", "alice").body(()).unwrap();
/// let bob = Request::get("/me").header("authorization", "bob").body(()).unwrap();
/// let post = Request::post("/me").body(()).unwrap();
/// let other_host = Request::get("/me").header("host", "b.example").header("authorization", "alice").body(()).unwrap();
/// assert_ne!(key.key(&alice), key.key(&bob));
/// assert_ne!(key.key(&alice), key.key(&other_host));
/// assert_eq!(key.key(&alice), key.key(&alice.clone()));
/// assert_eq!(key.key(&post), None);
///
/// // A public resource: anyone's answer will do.
/// let public = HttpKey::new().ignore(&header::AUTHORIZATION).ignore(&header::COOKIE);
/// assert_eq!(public.key(&alice), public.key(&bob));
/// ```
#[derive(Clone)]
pub struct HttpKey {
    methods: Arc<[Method]>,
    vary: Arc<[HeaderName]>,
    original: Option<FindUri>,
}

/// Finds a request's whole URI in its extensions.
type FindUri = Arc<dyn Fn(&Extensions) -> Option<Uri> + Send + Sync>;

// === impl HttpKey ===

impl HttpKey {
    /// GET and HEAD requests, by method, authority, URI, `Authorization`,
    /// `Cookie`, `Range` and the conditional headers (`If-Range`,
    /// `If-None-Match`, `If-Modified-Since`, `If-Match`,
    /// `If-Unmodified-Since`).
    pub fn new() -> Self {
        Self {
            methods: Arc::new([Method::GET, Method::HEAD]),
            vary: Arc::new([
                http::header::AUTHORIZATION,
                http::header::COOKIE,
                http::header::RANGE,
                http::header::IF_RANGE,
                http::header::IF_NONE_MATCH,
                http::header::IF_MODIFIED_SINCE,
                http::header::IF_MATCH,
                http::header::IF_UNMODIFIED_SINCE,
            ]),
            original: None,
        }
    }

    /// Keys by the URI `find` finds in a request's extensions, when it
    /// finds one, instead of the URI the wrapped service sees: the whole
    /// URI a router kept before it stripped a prefix. With `axum`, whose
    /// `nest` strips the prefix and keeps the whole URI as `OriginalUri`
    /// (its `original-uri` feature, on by default):
    /// `.original_uri(|ext| ext.get::<OriginalUri>().map(|u| u.0.clone()))`.
    /// Without one, the request's URI is keyed.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{Request, Uri};
    /// use reflex_dedup::{HttpKey, KeyFn};
    ///
    /// #[derive(Clone)]
    /// struct Whole(Uri); // kept by the router that stripped `/v1`, `/v2`
    ///
    /// let key = HttpKey::new().original_uri(|ext| ext.get::<Whole>().map(|w| w.0.clone()));
    /// let nested = |whole: &str| {
    ///     let mut req = Request::get("/items").body(()).unwrap();
    ///     req.extensions_mut().insert(Whole(whole.parse().unwrap()));
    ///     req
    /// };
    /// assert_ne!(key.key(&nested("/v1/items")), key.key(&nested("/v2/items")));
    /// assert_eq!(key.key(&nested("/v1/items")), key.key(&Request::get("/v1/items").body(()).unwrap()));
    /// ```
    #[must_use]
    pub fn original_uri(
        self,
        find: impl Fn(&Extensions) -> Option<Uri> + Send + Sync + 'static,
    ) -> Self {
        Self {
            original: Some(Arc::new(find)),
            ..self
        }
    }

    /// Also keys by the value of `header` (absent is a value too). Naming
    /// one already keyed by changes nothing.
    #[must_use]
    pub fn vary(self, header: HeaderName) -> Self {
        if self.vary.contains(&header) {
            return self;
        }
        let mut vary = self.vary.to_vec();
        vary.push(header);
        Self {
            vary: vary.into(),
            ..self
        }
    }

    /// No longer keys by `header`: requests that differ only in it share
    /// one call (and one cached answer). For `Authorization` and `Cookie`,
    /// only when the answer is the same whoever asks. The authority (URI
    /// or `Host`) is always keyed.
    #[must_use]
    pub fn ignore(self, header: &HeaderName) -> Self {
        Self {
            vary: self.vary.iter().filter(|h| *h != header).cloned().collect(),
            ..self
        }
    }

    /// `true` when requests of `method` are keyed.
    fn keys(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// The headers it keys by (besides the authority).
    pub(super) fn headers(&self) -> &Arc<[HeaderName]> {
        &self.vary
    }

    /// Keys requests of these methods, instead of GET and HEAD. Name only
    /// methods whose requests are safe to answer with another's response.
    #[must_use]
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        Self {
            methods: methods.into_iter().collect(),
            ..self
        }
    }
}

impl fmt::Debug for HttpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKey")
            .field("methods", &self.methods)
            .field("vary", &self.vary)
            .field("original_uri", &self.original.is_some())
            .finish()
    }
}

impl Default for HttpKey {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> KeyFn<Request<B>, RequestKey> for HttpKey {
    fn key(&self, request: &Request<B>) -> Option<RequestKey> {
        if !self.keys(request.method()) {
            return None;
        }
        let headers = request.headers();
        let uri = self
            .original
            .as_ref()
            .and_then(|find| find(request.extensions()))
            .unwrap_or_else(|| request.uri().clone());
        let host = match uri.authority() {
            Some(_) => None,
            None => headers.get(http::header::HOST).cloned(),
        };
        Some(RequestKey {
            method: request.method().clone(),
            uri,
            host,
            vary: self
                .vary
                .iter()
                .map(|name| headers.get(name).cloned())
                .collect(),
        })
    }
}
