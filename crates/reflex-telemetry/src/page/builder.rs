//! [`LivePageBuilder`]: how far back the charts reach, how often an idle
//! stream speaks, how many streams may be open, and for how long.

use std::time::Duration;

use reflex_core::{ConfigError, ConfigErrorKind};
use reflex_witness::Witness;

use super::service::LivePage;

/// The name [`ConfigError`]s of this builder carry.
const LAYER: &str = "live page";

/// The longest chart window, keep-alive and stream age: one day.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Builds a [`LivePage`]: [`LivePage::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_telemetry::page::LivePage;
/// use reflex_witness::Witness;
///
/// let witness = Witness::builder().build()?;
/// let page = LivePage::builder(&witness)
///     .window(Duration::from_secs(120))
///     .keep_alive(Duration::from_secs(10))
///     .max_streams(16)
///     .max_stream_age(Duration::from_secs(600))
///     .build()?;
/// assert_eq!(page.open_streams(), 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LivePageBuilder {
    pub(crate) witness: Witness,
    pub(crate) window: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) max_streams: usize,
    pub(crate) max_stream_age: Duration,
}

// === impl LivePageBuilder ===

impl LivePageBuilder {
    pub(crate) fn new(witness: &Witness) -> Self {
        Self {
            witness: witness.clone(),
            window: Duration::from_secs(5 * 60),
            keep_alive: Duration::from_secs(15),
            max_streams: 64,
            max_stream_age: Duration::from_secs(5 * 60),
        }
    }

    /// How far back the page's charts reach: a page that opens gets the
    /// witness's kept snapshots of that long ago and since, and drops
    /// older points as new ones come. At least 1 s, at most a day.
    /// Defaults to 5 minutes.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long an event stream stays silent before it sends a comment
    /// line: what lets the server notice a client that went away while
    /// the witness had nothing to say, and keeps proxies from closing an
    /// idle stream. At least 1 ms, at most a day. Defaults to 15 s.
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = every;
        self
    }

    /// How many event streams may be open at once; one more is answered
    /// 503. At least 1. Defaults to 64.
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// How long an event stream lasts: then it ends, and the browser
    /// reconnects by itself after the stream's `retry:` delay (2 s),
    /// getting the window's snapshots again. A stream holds a handle of
    /// the witness, and a server shutting down gracefully waits for every
    /// open stream: this bounds that wait. At least 1 s, at most a day.
    /// Defaults to 5 minutes.
    pub fn max_stream_age(mut self, age: Duration) -> Self {
        self.max_stream_age = age;
        self
    }

    /// The page.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a setting is out of its range: a window
    /// below 1 s or above a day, a keep-alive below 1 ms or above a day,
    /// no stream, a stream age below 1 s or above a day.
    pub fn build(self) -> Result<LivePage, ConfigError> {
        if self.window < Duration::from_secs(1) || self.window > MAX_WINDOW {
            return Err(ConfigError::new(
                LAYER,
                "window",
                ConfigErrorKind::OutOfRange,
                "must be between 1 s and a day",
            ));
        }
        if self.keep_alive < Duration::from_millis(1) || self.keep_alive > MAX_WINDOW {
            return Err(ConfigError::new(
                LAYER,
                "keep_alive",
                ConfigErrorKind::OutOfRange,
                "must be between 1 ms and a day",
            ));
        }
        if self.max_streams == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_streams",
                ConfigErrorKind::Zero,
                "must be at least 1",
            ));
        }
        if self.max_stream_age < Duration::from_secs(1) || self.max_stream_age > MAX_WINDOW {
            return Err(ConfigError::new(
                LAYER,
                "max_stream_age",
                ConfigErrorKind::OutOfRange,
                "must be between 1 s and a day",
            ));
        }
        Ok(LivePage::from_builder(self))
    }
}
