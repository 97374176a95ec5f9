//! The settings every dedup builder shares (plain and `http`), and their
//! checks.

use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, Sink};

/// The layer's name in a [`ConfigError`].
pub(crate) const LAYER: &str = "dedup";

/// The setters of what [`Settings`] holds, on a builder's field
/// `settings`: written once, for [`DedupBuilder`](crate::DedupBuilder) and
/// the `http` builder alike.
macro_rules! settings_setters {
    () => {
        reflex_core::component_and_sink!(settings);

        /// Refuses a request whose key is in flight with
        /// `Rejected { InProgress }` at once, instead of letting it wait
        /// (the behaviour of a deduplicator that answers "in progress").
        /// Defaults to off.
        pub fn refuse_duplicates(mut self) -> Self {
            self.settings.refuse_duplicates = true;
            self
        }

        /// The most distinct keys in flight at once (at least 1): a request
        /// with a new key beyond it is refused with `Rejected { DedupFull }`;
        /// one that joins a key in flight is not. Defaults to 65 536.
        pub fn max_keys(mut self, keys: usize) -> Self {
            self.settings.max_keys = keys;
            self
        }

        /// How long each request waits on a shared call (above zero): one
        /// that gives up gets [`WaitTimedOut`](crate::WaitTimedOut) and
        /// leaves the call to the others. Each waiting request then reads
        /// the clock once. One too long to add to the clock
        /// (`Duration::MAX`) is no timeout. Defaults to none.
        pub fn wait_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.settings.wait_timeout = Some(timeout);
            self
        }

        /// Keeps successful answers for `ttl` (above zero), at most
        /// `max_entries` of them (at least 1), the oldest evicted first: a
        /// request whose key is cached gets a copy without any call. Only
        /// answers the [`classifier`](Self::classifier) calls a success and
        /// that may be shared are kept, each for `ttl` or its
        /// [`max_age`](crate::Share::max_age) if shorter (for `http`, its
        /// `Cache-Control` age); errors never. A call whose answer may not
        /// be kept takes the answer kept before it out of the cache. A
        /// `ttl` too long to add to the clock (`Duration::MAX`) never
        /// expires. Each keyed request then reads the clock once. Defaults
        /// to no cache.
        pub fn cache(mut self, ttl: ::std::time::Duration, max_entries: usize) -> Self {
            self.settings.set_cache(ttl, max_entries);
            self
        }

        /// Serves a cached answer up to `window` (above zero) past its TTL
        /// while one request refreshes it: the first request to find it
        /// stale makes the call (and waits for it, as a leader does); every
        /// request meanwhile gets the stale copy at once, marked
        /// [`Sharing::Stale`](crate::Sharing::Stale), as is a request that
        /// finds it stale when [`max_keys`](Self::max_keys) keys are in
        /// flight (instead of `DedupFull`). Past the window, the answer is
        /// gone; a refresh whose answer may not be kept takes it out at
        /// once. Needs [`cache`](Self::cache). Defaults to off.
        pub fn serve_stale(mut self, window: ::std::time::Duration) -> Self {
            self.settings.stale = Some(window);
            self
        }

        /// Bounds the cache by weight too (bytes, for `http` bodies; see
        /// [`Share::weight`](crate::Share::weight)); an answer heavier than
        /// the bound is not kept. Needs [`cache`](Self::cache). Defaults to
        /// no bound.
        pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
            self.settings.set_cache_max_bytes(bytes);
            self
        }
    };
}

pub(crate) use settings_setters;

/// What a dedup builder was told, whatever its key and its answers.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    pub(crate) refuse_duplicates: bool,
    pub(crate) max_keys: usize,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) cache: Option<CacheSettings>,
    /// How long past its TTL a cached answer is served while it refreshes.
    pub(crate) stale: Option<Duration>,
}

/// The bounds of the cache of answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSettings {
    pub(crate) ttl: Duration,
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: usize,
}

// === impl Settings ===

impl Default for Settings {
    fn default() -> Self {
        Self {
            component: Component::default(),
            sink: Sink::none(),
            refuse_duplicates: false,
            max_keys: 65_536,
            wait_timeout: None,
            cache: None,
            stale: None,
        }
    }
}

impl Settings {
    /// Keeps answers for `ttl`, at most `max_entries` of them; a byte bound
    /// set before stays.
    pub(crate) fn set_cache(&mut self, ttl: Duration, max_entries: usize) {
        let max_bytes = self.cache.map_or(usize::MAX, |cache| cache.max_bytes);
        self.cache = Some(CacheSettings {
            ttl,
            max_entries,
            max_bytes,
        });
    }

    /// Bounds the cache by weight too.
    pub(crate) fn set_cache_max_bytes(&mut self, max_bytes: usize) {
        match &mut self.cache {
            Some(cache) => cache.max_bytes = max_bytes,
            // Remembered as a cache with no TTL, which `check` refuses.
            None => {
                self.cache = Some(CacheSettings {
                    ttl: Duration::ZERO,
                    max_entries: 0,
                    max_bytes,
                });
            }
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_keys` is zero, the wait timeout is
    /// zero, the cache has a zero TTL or entry bound (also when
    /// `cache_max_bytes` was set without `cache`), or the stale window is
    /// zero or set without a cache.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let zero = |setting: &'static str, reason: &'static str| {
            Err(ConfigError::new(
                LAYER,
                setting,
                ConfigErrorKind::Zero,
                reason,
            ))
        };
        if self.max_keys == 0 {
            return zero("max_keys", "at least one key must fit");
        }
        if self.wait_timeout.is_some_and(|t| t.is_zero()) {
            return zero("wait_timeout", "must be above zero");
        }
        match (self.stale, self.cache) {
            (Some(window), _) if window.is_zero() => {
                return zero("serve_stale", "the window must be above zero");
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    LAYER,
                    "serve_stale",
                    ConfigErrorKind::Missing,
                    "needs a cache (set it with `cache`)",
                ));
            }
            _ => {}
        }
        if let Some(cache) = self.cache {
            if cache.ttl.is_zero() {
                return zero("cache", "the TTL must be above zero (set it with `cache`)");
            }
            if cache.max_entries == 0 {
                return zero("cache", "at least one entry must fit");
            }
        }
        Ok(())
    }
}
