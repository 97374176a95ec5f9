//! [`Rejected`]: the one error for "the stack did not run your request".

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::Component;

/// Why a layer refused a request.
///
/// New kinds arrive with new layers, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectKind {
    /// The concurrency shed layer was at its hard limit.
    Shed,
    /// The circuit breaker was open (or half-open with every probe taken).
    CircuitOpen,
    /// The circuit breaker's adaptive throttling refused the call: its
    /// dependency has been failing a share of its calls lately, and the
    /// breaker lets through only as many as that share warrants. Unlike
    /// [`CircuitOpen`](Self::CircuitOpen), the next call may well be
    /// admitted; retrying it at once only adds to the load.
    Throttled,
    /// The request's slot was running and the policy was `DropIfRunning`.
    SlotBusy,
    /// The slot's queue, or the layer's queue bound, was full.
    SlotQueueFull,
    /// A newer request for the same slot replaced this one.
    Replaced,
    /// The shared call this request waited on ended without an answer for it.
    DedupAborted,
    /// An identical request was in progress and the dedup mode refuses
    /// duplicates instead of waiting.
    InProgress,
    /// The dedup layer had as many distinct requests in flight as it
    /// allows, and this one was a new one.
    DedupFull,
}

// === impl RejectKind ===

impl RejectKind {
    /// A short, stable, lowercase name, fit for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(reflex_core::RejectKind::CircuitOpen.as_str(), "circuit_open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shed => "shed",
            Self::CircuitOpen => "circuit_open",
            Self::Throttled => "throttled",
            Self::SlotBusy => "slot_busy",
            Self::SlotQueueFull => "slot_queue_full",
            Self::Replaced => "replaced",
            Self::DedupAborted => "dedup_aborted",
            Self::InProgress => "in_progress",
            Self::DedupFull => "dedup_full",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Shed => "request shed",
            Self::CircuitOpen => "circuit open",
            Self::Throttled => "throttled",
            Self::SlotBusy => "slot busy",
            Self::SlotQueueFull => "slot queue full",
            Self::Replaced => "replaced by a newer request",
            Self::DedupAborted => "shared call aborted",
            Self::InProgress => "identical request in progress",
            Self::DedupFull => "too many distinct requests in flight",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The stack did not run the request: a layer refused it.
///
/// Every reflex layer has `Service::Error = tower::BoxError` and refuses with
/// a boxed `Rejected`, while errors of the inner service pass through as they
/// are. Callers tell the two apart by downcasting, or with
/// [`Rejected::find`], which also looks through wrapping errors.
///
/// The `Display` text is short, lowercase and names only the component and
/// the kind; it never carries an inner error's text, so it is safe to show.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_core::{Component, RejectKind, Rejected};
///
/// let err: Box<dyn std::error::Error + Send + Sync> =
///     Rejected::new(RejectKind::Shed, Component::new("payments"))
///         .with_retry_after(Duration::from_secs(2))
///         .into();
///
/// let rejected = Rejected::find(&*err).expect("a rejection");
/// assert_eq!(rejected.kind(), RejectKind::Shed);
/// assert_eq!(rejected.component().as_str(), "payments");
/// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(err.to_string(), "payments: request shed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{component}: {kind}")]
pub struct Rejected {
    kind: RejectKind,
    component: Component,
    retry_after: Option<Duration>,
}

// === impl Rejected ===

impl Rejected {
    /// A rejection of `kind` by the stack guarding `component`.
    pub fn new(kind: RejectKind, component: Component) -> Self {
        Self {
            kind,
            component,
            retry_after: None,
        }
    }

    /// Tells the caller when trying again may succeed.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Why the request was refused.
    pub fn kind(&self) -> RejectKind {
        self.kind
    }

    /// The component whose stack refused the request.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// When trying again may succeed, if the layer knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Finds a `Rejected` in `err` or in its chain of `source()`s.
    ///
    /// Returns `None` when no layer refused the request, that is when the
    /// error came from the inner service.
    pub fn find<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a Self> {
        find_source(err)
    }
}

/// `err` and every error under it, following `source()`.
///
/// ```
/// let err = std::io::Error::other("disk full");
/// assert_eq!(reflex_core::sources(&err).count(), 1);
/// ```
pub fn sources<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&err| err.source())
}

/// The first `T` in `err`'s `source()` chain, `err` included: how a
/// [`Rejected`], a timeout or a gRPC status is found under any wrapping.
///
/// ```
/// use reflex_core::{Component, RejectKind, Rejected, find_source};
///
/// let shed = Rejected::new(RejectKind::Shed, Component::new("db"));
/// let boxed: reflex_core::BoxError = Box::new(shed.clone());
/// assert_eq!(find_source::<Rejected>(&*boxed), Some(&shed));
/// ```
pub fn find_source<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    sources(err).find_map(|err| err.downcast_ref::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Rejected);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn find_looks_through_wrapping_errors() {
        let inner = Rejected::new(RejectKind::CircuitOpen, Component::new("db"));
        let err = Wrapper(inner.clone());
        assert_eq!(Rejected::find(&err), Some(&inner));
    }

    #[test]
    fn find_returns_none_for_inner_errors() {
        let err = std::io::Error::other("boom");
        assert_eq!(Rejected::find(&err), None);
    }

    #[test]
    fn display_names_component_and_kind_only() {
        let r = Rejected::new(RejectKind::SlotQueueFull, Component::new("jobs"));
        assert_eq!(r.to_string(), "jobs: slot queue full");
        assert_eq!(r.retry_after(), None);
        assert!(r.source().is_none(), "a rejection wraps no error");
    }
}
