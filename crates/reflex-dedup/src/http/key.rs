//! [`HttpKey`] and the [`RequestKey`] it makes.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Request, Uri};

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
#[derive(Debug, Clone)]
pub struct HttpKey {
    methods: Arc<[Method]>,
    vary: Arc<[HeaderName]>,
}

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
        let host = match request.uri().authority() {
            Some(_) => None,
            None => headers.get(http::header::HOST).cloned(),
        };
        Some(RequestKey {
            method: request.method().clone(),
            uri: request.uri().clone(),
            host,
            vary: self
                .vary
                .iter()
                .map(|name| headers.get(name).cloned())
                .collect(),
        })
    }
}
