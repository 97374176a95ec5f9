//! The settings every dedup builder shares (plain and `http`), and their
//! checks.

use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, Sink};

/// The layer's name in a [`ConfigError`].
pub(crate) const LAYER: &str = "dedup";

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
