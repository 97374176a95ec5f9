//! [`Measure`]s: what a reflex did to a layer, why, and until when, in
//! words an operator reads.

use std::fmt;

use serde::Serialize;

/// What was done to a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeasureKind {
    /// Opened the breaker now; its own half-open probes decide recovery.
    TripBreaker,
    /// Throttled calls adaptively (client-side adaptive throttling: a call
    /// is refused with probability `max(0, (requests - k × accepts) /
    /// (requests + 1))` over the breaker's recent calls).
    Throttle {
        /// The multiplier `k`.
        k: f64,
    },
    /// Undid a [`Throttle`](Self::Throttle).
    StopThrottling,
    /// Something a reflex of your own did.
    Custom(String),
}

/// Why it was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The episode's root fails almost all its calls.
    Blackout {
        /// The episode.
        episode: u64,
        /// The root's own error rate in the cycle.
        error_rate: f64,
    },
    /// The episode's root fails a fraction of its calls.
    Brownout {
        /// The episode.
        episode: u64,
        /// The root's own error rate in the cycle.
        error_rate: f64,
    },
    /// The episode closed: what was done for it is undone.
    EpisodeClosed {
        /// The episode.
        episode: u64,
    },
    /// A reason of a reflex of your own.
    Custom(String),
}

impl Reason {
    /// The episode it is about, if any.
    pub fn episode(&self) -> Option<u64> {
        match self {
            Self::Blackout { episode, .. }
            | Self::Brownout { episode, .. }
            | Self::EpisodeClosed { episode } => Some(*episode),
            Self::Custom(_) => None,
        }
    }
}

/// Until when it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Until {
    /// Until the breaker's own half-open probes succeed.
    ProbesSucceed,
    /// Until the episode closes.
    EpisodeCloses {
        /// The episode.
        episode: u64,
    },
    /// Done at once: an undoing.
    Done,
}

/// What a reflex did: what, on which component, why, until when.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Measure {
    /// What was done.
    pub what: MeasureKind,
    /// To which component's layer.
    pub component: String,
    /// Why.
    pub why: Reason,
    /// Until when.
    pub until: Until,
}

impl Measure {
    /// A measure on `component`.
    pub fn new(what: MeasureKind, component: impl Into<String>, why: Reason, until: Until) -> Self {
        Self {
            what,
            component: component.into(),
            why,
            until,
        }
    }
}

impl fmt::Display for Measure {
    /// One line an operator reads: what, on whom, why, until when.
    ///
    /// ```
    /// use reflex_witness::{Measure, MeasureKind, Reason, Until};
    ///
    /// let trip = Measure::new(
    ///     MeasureKind::TripBreaker,
    ///     "db",
    ///     Reason::Blackout { episode: 3, error_rate: 0.98 },
    ///     Until::ProbesSucceed,
    /// );
    /// assert_eq!(
    ///     trip.to_string(),
    ///     "tripped db's breaker: blackout of episode 3 (98.0% own errors), until its probes succeed"
    /// );
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = &self.component;
        match &self.what {
            MeasureKind::TripBreaker => write!(f, "tripped {who}'s breaker")?,
            MeasureKind::Throttle { k } => write!(f, "throttled calls to {who} (k = {k})")?,
            MeasureKind::StopThrottling => write!(f, "stopped throttling calls to {who}")?,
            MeasureKind::Custom(what) => write!(f, "{what} ({who})")?,
        }
        match &self.why {
            Reason::Blackout {
                episode,
                error_rate,
            } => write!(
                f,
                ": blackout of episode {episode} ({:.1}% own errors)",
                error_rate * 100.0
            )?,
            Reason::Brownout {
                episode,
                error_rate,
            } => write!(
                f,
                ": brownout of episode {episode} ({:.1}% own errors)",
                error_rate * 100.0
            )?,
            Reason::EpisodeClosed { episode } => write!(f, ": episode {episode} closed")?,
            Reason::Custom(why) => write!(f, ": {why}")?,
        }
        match &self.until {
            Until::ProbesSucceed => f.write_str(", until its probes succeed"),
            Until::EpisodeCloses { episode } => write!(f, ", until episode {episode} closes"),
            Until::Done => Ok(()),
        }
    }
}
