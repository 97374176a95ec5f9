//! The [`SlotAdmission`] service.

use std::fmt;
use std::hash::Hash;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, KeyFn, Rejected};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::policy::{Policy, PolicyOf};
use crate::table::{Admission, Table};

/// Runs at most one request per slot in the inner service: the slot is the
/// request's key, from the key function `KF`. Built by
/// [`SlotAdmissionLayer`](crate::SlotAdmissionLayer).
///
/// # Clone
///
/// Clones share the slot table. A waiting request takes the ready inner
/// service with it (and leaves a fresh clone, to be polled ready, in its
/// place), so the inner service must be `Clone`.
///
/// # Examples
///
/// ```
/// use reflex_slot::{SlotAdmission, SlotAdmissionLayer};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = SlotAdmissionLayer::builder().key(|n: &u32| Some(*n % 4)).build()?;
/// let mut svc: SlotAdmission<_, u32, _, _> =
///     layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct SlotAdmission<S, K: Hash + Eq + Clone, KF, P> {
    inner: S,
    table: Arc<Table<K>>,
    key: KF,
    policy_of: P,
    policy: Policy,
}

// === impl SlotAdmission ===

impl<S, K: Hash + Eq + Clone, KF, P> SlotAdmission<S, K, KF, P> {
    pub(crate) fn new(
        inner: S,
        table: Arc<Table<K>>,
        key: KF,
        policy_of: P,
        policy: Policy,
    ) -> Self {
        Self {
            inner,
            table,
            key,
            policy_of,
            policy,
        }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, K, KF, P, Request> Service<Request> for SlotAdmission<S, K, KF, P>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    KF: KeyFn<Request, K>,
    P: PolicyOf<Request>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request, K>;

    /// Ready when the inner service is: a request whose slot is busy waits
    /// in its future, not here.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some(slot) = self.key.key(&request) else {
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let policy = self.policy_of.policy_of(&request).unwrap_or(self.policy);
        match self.table.admit(slot, policy) {
            // The guard is held before the inner call: a panic in `call`
            // drops it and frees the slot.
            Admission::Start(guard, cancel) => {
                ResponseFuture::running(self.inner.call(request), guard, cancel)
            }
            Admission::Wait(grant, waiter) => {
                // Take the ready service along; leave a clone to be polled.
                let clone = self.inner.clone();
                let ready = mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(grant, waiter, ready, request)
            }
            Admission::Refused(kind) => {
                ResponseFuture::refused(Rejected::new(kind, self.table.component.clone()).into())
            }
        }
    }
}

impl<S: Clone, K: Hash + Eq + Clone, KF: Clone, P: Clone> Clone for SlotAdmission<S, K, KF, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            table: Arc::clone(&self.table),
            key: self.key.clone(),
            policy_of: self.policy_of.clone(),
            policy: self.policy,
        }
    }
}

impl<S: fmt::Debug, K: Hash + Eq + Clone, KF, P> fmt::Debug for SlotAdmission<S, K, KF, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotAdmission")
            .field("inner", &self.inner)
            .field("component", &self.table.component)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
