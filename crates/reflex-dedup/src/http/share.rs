//! [`HttpShare`]: which `http` answers may be shared and kept, and for how
//! long; [`SharedResponse`], the form they are kept in.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, Response, StatusCode, Version};
use reflex_core::http::BufferedBody;

use super::headers;
use super::key::HttpKey;
use crate::share::{Share, Sharing};

/// An `http` response kept for sharing: its parts and its whole body.
#[derive(Debug, Clone)]
pub struct SharedResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// Shares `http` responses whose body was buffered whole and whose headers
/// allow it (no `Set-Cookie`, not `private` or `no-store`, no `Vary` on a
/// header the key does not hold: see the [module docs](super)); marks each
/// with its [`Sharing`] (in its extensions); weighs them by their body
/// length; keeps them in the cache no longer than their `Cache-Control`
/// says.
///
/// An [`HttpDedupLayer`](crate::HttpDedupLayer) shares its answers with
/// the `HttpShare` of its key. Give one to a plain
/// [`DedupBuilder`](crate::DedupBuilder) (with
/// [`share`](crate::DedupBuilder::share)) whose inner service answers with
/// [`BufferedBody`] bodies.
///
/// # Examples
///
/// ```
/// use http::header::ACCEPT_ENCODING;
/// use reflex_dedup::{HttpKey, HttpShare};
///
/// // With a key function of your own: no `Vary` is trusted but on `Host`.
/// let own_key = HttpShare::new();
/// // With an `HttpKey`: its headers too (what `HttpDedupLayer` uses).
/// let key = HttpKey::new().vary(ACCEPT_ENCODING);
/// let by_key = HttpShare::keyed_by(&key);
/// # let _ = (own_key, by_key);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpShare {
    /// The headers the key holds (besides `Host`).
    keyed: Arc<[HeaderName]>,
}

// === impl HttpShare ===

impl HttpShare {
    /// Shares responses for requests keyed by a function of your own: the
    /// layer cannot know which headers it keys by, so a response with a
    /// `Vary` on any header but `Host` is not shared.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shares responses for requests keyed by `key`: a response with a
    /// `Vary` on `Host` or on headers `key` holds may be shared.
    pub fn keyed_by(key: &HttpKey) -> Self {
        Self {
            keyed: Arc::clone(key.headers()),
        }
    }
}

impl<B> Share<Response<BufferedBody<B>>> for HttpShare {
    type Shared = SharedResponse;

    fn share(
        &self,
        response: Response<BufferedBody<B>>,
    ) -> Result<SharedResponse, Response<BufferedBody<B>>> {
        let Some(body) = response.body().bytes().cloned() else {
            return Err(response);
        };
        if !headers::shareable(response.headers(), &self.keyed) {
            return Err(response);
        }
        let trailers = response.body().trailers().cloned();
        let (parts, _) = response.into_parts();
        Ok(SharedResponse {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
            trailers,
        })
    }

    fn unshare(&self, shared: &SharedResponse) -> Response<BufferedBody<B>> {
        let mut response = Response::new(BufferedBody::buffered(
            shared.body.clone(),
            shared.trailers.clone(),
        ));
        *response.status_mut() = shared.status;
        *response.version_mut() = shared.version;
        *response.headers_mut() = shared.headers.clone();
        *response.extensions_mut() = shared.extensions.clone();
        response
    }

    fn mark(&self, response: &mut Response<BufferedBody<B>>, sharing: Sharing) {
        response.extensions_mut().insert(sharing);
    }

    fn weight(&self, shared: &SharedResponse) -> usize {
        shared.body.len()
    }

    fn max_age(&self, shared: &SharedResponse) -> Option<Duration> {
        match headers::max_age(&shared.headers) {
            Some(explicit) => Some(explicit),
            None if headers::cacheable_by_default(shared.status) => None,
            // A 429, a redirect, a 401 with nothing said: not kept.
            None => Some(Duration::ZERO),
        }
    }
}
