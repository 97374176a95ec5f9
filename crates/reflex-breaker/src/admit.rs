//! [`admit`]: a call through a breaker, admitted with a guard or refused at
//! once. What the plain and the keyed service both do with a request.

use std::sync::Arc;

use reflex_core::{RejectKind, Rejected};

use crate::backend::Backend;
use crate::future::ResponseFuture;
use crate::guard::Guard;
use crate::shared::Shared;

/// Admits a call through `shared`'s breaker and makes its future: the
/// inner call's, holding a guard, or a refusal ready at once.
#[inline]
pub(crate) fn admit<F, C, B: Backend>(
    shared: &Arc<Shared<C, B>>,
    call: impl FnOnce() -> F,
) -> ResponseFuture<F, C, B> {
    match shared.backend.admit() {
        Ok(ticket) => {
            // The guard exists before the inner call: a panic in `call`
            // drops it, which gives back a probe slot.
            let guard = Guard::new(Arc::clone(shared), ticket);
            ResponseFuture::admitted(call(), guard)
        }
        Err(refusal) => {
            let kind = if refusal.is_throttled() {
                RejectKind::Throttled
            } else {
                RejectKind::CircuitOpen
            };
            let rejected = Rejected::new(kind, shared.component.clone());
            shared
                .logs
                .refused(&shared.component, kind, refusal.retry_after());
            ResponseFuture::refused(match refusal.retry_after() {
                Some(after) => rejected.with_retry_after(after),
                None => rejected,
            })
        }
    }
}
