//! The [`SlotAdmission`] service.

use std::fmt;
use std::hash::Hash;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Rejected};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::{Policy, PolicyOf};
use crate::table::{Admission, Table};

/// Runs at most one request per slot in the inner service. Built by
/// [`SlotAdmissionLayer`](crate::SlotAdmissionLayer).
///
/// # Clone
///
/// Clones share the slot table. A waiting request takes the ready inner
/// service with it (and leaves a fresh clone, to be polled ready, in its
/// place), so the inner service must be `Clone`.
pub struct SlotAdmission<S, K: Hash + Eq + Clone, F, P> {
    inner: S,
    table: Arc<Table<K>>,
    slot_of: F,
    policy_of: P,
    policy: Policy,
}

// === impl SlotAdmission ===

impl<S, K: Hash + Eq + Clone, F, P> SlotAdmission<S, K, F, P> {
    pub(crate) fn new(
        inner: S,
        table: Arc<Table<K>>,
        slot_of: F,
        policy_of: P,
        policy: Policy,
    ) -> Self {
        Self {
            inner,
            table,
            slot_of,
            policy_of,
            policy,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, P, Request> Service<Request> for SlotAdmission<S, K, F, P>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Request) -> Option<K>,
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
        let Some(slot) = (self.slot_of)(&request) else {
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

impl<S: Clone, K: Hash + Eq + Clone, F: Clone, P: Clone> Clone for SlotAdmission<S, K, F, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            table: Arc::clone(&self.table),
            slot_of: self.slot_of.clone(),
            policy_of: self.policy_of.clone(),
            policy: self.policy,
        }
    }
}

impl<S: fmt::Debug, K: Hash + Eq + Clone, F, P> fmt::Debug for SlotAdmission<S, K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotAdmission")
            .field("inner", &self.inner)
            .field("component", &self.table.component)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
