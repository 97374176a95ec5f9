//! [`Policy`]: which failed attempts are retried, and how a request is
//! copied for another attempt.

use std::time::Duration;

use reflex_core::BoxError;

/// What a [`Policy`] says of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Do not retry: the caller gets this attempt's result.
    Stop,
    /// Retry after the layer's backoff delay.
    Backoff,
    /// Retry after this delay, as the response asked (`Retry-After`). The
    /// layer takes it when it is within its delay cap, and falls back to
    /// its backoff when it is not.
    After(Duration),
}

/// Decides which failed attempts are retried, and copies requests for it.
///
/// The layer asks the policy only about attempts its classifier called a
/// [`Failure`](reflex_core::Outcome::Failure); errors from other reflex
/// layers ([`Rejected`](reflex_core::Rejected)) are never handed to it: the
/// layer never retries them, but for a breaker's `CircuitOpen` when it was
/// asked to wait for one
/// ([`wait_for_open_breaker`](crate::RetryBuilder::wait_for_open_breaker)).
///
/// # Examples
///
/// A policy that retries only requests marked safe, and never an error
/// whose text says "fatal":
///
/// ```
/// use reflex_core::BoxError;
/// use reflex_retry::{Decision, Policy};
///
/// #[derive(Clone)]
/// struct Job { id: u64, safe: bool }
///
/// struct SafeJobs;
///
/// impl Policy<Job, String> for SafeJobs {
///     fn clone_request(&self, job: &Job) -> Option<Job> {
///         job.safe.then(|| job.clone())
///     }
///     fn retry(&self, _job: &Job, result: Result<&String, &BoxError>) -> Decision {
///         match result {
///             Err(err) if err.to_string().contains("fatal") => Decision::Stop,
///             _ => Decision::Backoff,
///         }
///     }
/// }
///
/// let job = Job { id: 7, safe: true };
/// assert_eq!(SafeJobs.clone_request(&job).map(|j| j.id), Some(7));
/// let fatal: BoxError = "fatal: disk gone".into();
/// assert_eq!(SafeJobs.retry(&job, Err(&fatal)), Decision::Stop);
/// ```
pub trait Policy<Req, Res> {
    /// A copy of `request` for another attempt, or `None` when it cannot be
    /// retried at all (the request is then sent once, and nothing is kept).
    /// Called once before the first attempt, and before each retry but the
    /// last.
    fn clone_request(&self, request: &Req) -> Option<Req>;

    /// Whether the failed attempt of `request`, which ended in `result`,
    /// is retried, and when.
    fn retry(&self, request: &Req, result: Result<&Res, &BoxError>) -> Decision;

    /// `false` when `request`, the copy kept for a retry, can no longer be
    /// sent (nor copied): a retry would only fail. Asked before that copy
    /// is sent itself (on the last attempt, or when
    /// [`clone_request`](Self::clone_request) gave none); the layer then
    /// gives up with the last attempt's result, and makes no attempt.
    /// `true` by default.
    fn can_send(&self, request: &Req) -> bool {
        let _ = request;
        true
    }
}

/// The default policy: requests are `Clone`, and every failure the
/// classifier reports is retried after the backoff.
///
/// # Examples
///
/// ```
/// use reflex_core::BoxError;
/// use reflex_retry::{Decision, DefaultPolicy, Policy};
///
/// let failed: BoxError = "refused".into();
/// assert_eq!(Policy::<u32, u32>::clone_request(&DefaultPolicy, &7), Some(7));
/// assert_eq!(Policy::<u32, u32>::retry(&DefaultPolicy, &7, Err(&failed)), Decision::Backoff);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultPolicy;

impl<Req: Clone, Res> Policy<Req, Res> for DefaultPolicy {
    fn clone_request(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }

    fn retry(&self, _request: &Req, _result: Result<&Res, &BoxError>) -> Decision {
        Decision::Backoff
    }
}
