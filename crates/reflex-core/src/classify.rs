//! How a finished call counts: [`Outcome`] and the [`Classify`] trait.
//!
//! The breaker, the retry layer and the witness all take a classifier, so
//! "what is a failure" is said once per stack and means the same thing to
//! every layer in it.

/// How a finished call counts.
///
/// # Examples
///
/// ```
/// use reflex_core::{Classify, DefaultClassifier, Outcome};
///
/// let ok: Result<&u8, &&str> = Ok(&1);
/// assert_eq!(DefaultClassifier.classify(ok), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did what was asked.
    Success,
    /// The call failed in a way that says something about the dependency's
    /// health (a 5xx, a timeout, a refused connection).
    Failure,
    /// The call counts for nothing: neither success nor failure (a request
    /// the caller got wrong, a cancellation, a rejection by another layer).
    Ignored,
}

// === impl Outcome ===

impl Outcome {
    /// `true` for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }

    /// `true` for [`Outcome::Failure`].
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failure)
    }
}

/// Turns the result of a call into an [`Outcome`].
///
/// Implemented for [`DefaultClassifier`], for
/// [`ServerErrorsAsFailures`](crate::ServerErrorsAsFailures) and
/// [`GrpcErrorsAsFailures`](crate::GrpcErrorsAsFailures) (feature `http`),
/// and for every `Fn(Result<&Res, &Err>) -> Outcome`, so a closure is a
/// classifier.
///
/// A classifier runs on the request path of every call: keep it cheap and
/// free of locks and allocations.
///
/// # Examples
///
/// A closure that calls "not found" a success and ignores cancellations:
///
/// ```
/// use reflex_core::{Classify, Outcome};
///
/// #[derive(Debug)]
/// enum DbError { NotFound, Cancelled, Down }
///
/// let classify = |result: Result<&String, &DbError>| match result {
///     Ok(_) | Err(DbError::NotFound) => Outcome::Success,
///     Err(DbError::Cancelled) => Outcome::Ignored,
///     Err(DbError::Down) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(Err(&DbError::Down)), Outcome::Failure);
/// assert_eq!(classify.classify(Err(&DbError::NotFound)), Outcome::Success);
/// assert_eq!(classify.classify(Err(&DbError::Cancelled)), Outcome::Ignored);
/// ```
pub trait Classify<Res, Err> {
    /// Classifies one finished call.
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome;
}

impl<F, Res, Err> Classify<Res, Err> for F
where
    F: Fn(Result<&Res, &Err>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        self(result)
    }
}

/// The default classifier: `Ok` is a success, `Err` is a failure.
///
/// # Examples
///
/// ```
/// use reflex_core::{Classify, DefaultClassifier, Outcome};
///
/// let err: Result<&(), &std::io::Error> = Err(&std::io::ErrorKind::TimedOut.into());
/// assert_eq!(DefaultClassifier.classify(err), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<Res, Err> Classify<Res, Err> for DefaultClassifier {
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classifier_counts_ok_as_success_and_err_as_failure() {
        let ok: Result<&(), &()> = Ok(&());
        let err: Result<&(), &()> = Err(&());
        assert_eq!(DefaultClassifier.classify(ok), Outcome::Success);
        assert_eq!(DefaultClassifier.classify(err), Outcome::Failure);
    }

    #[test]
    fn a_closure_is_a_classifier() {
        let ignore_all = |_: Result<&u8, &u8>| Outcome::Ignored;
        assert_eq!(ignore_all.classify(Ok(&1)), Outcome::Ignored);
        assert!(!Outcome::Ignored.is_failure());
        assert!(!Outcome::Ignored.is_success());
    }
}
