//! A keyed request waiting on a shared call: its [`Waiter`] (its place
//! among the call's waiters, left when dropped) and its [`Waiting`] (the
//! wait, with its timeout), which hands over what the call came to. The
//! waiter whose poll ends the call keeps the answer in the cache, or takes
//! the answer kept before out of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use reflex_core::{BoxError, Classify};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::cache::Cache;
use crate::error::{SharedError, WaitTimedOut};
use crate::flight::{Delivery, Flight, LEADER, Received};
use crate::logs::Logs;
use crate::share::{Share, Sharing};
use crate::shared::Shared;
use crate::{Call, Key};

/// A request waiting on a shared call. Dropped (answered, timed out, or
/// its future dropped), it leaves the call, which ends with its last
/// waiter, and the key leaves the table with the call.
pub(crate) struct Waiter<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    flight: Arc<Flight<Fut, Res, H::Shared>>,
    id: usize,
    key: K,
    shared: Arc<Shared<K, KF, H, C, Fut, Res>>,
    /// It left because its wait timed out (which is logged as such).
    timed_out: bool,
}

/// What a wait came to.
pub(crate) enum Waited<Res, Sh> {
    /// The caller's answer, marked, or its error.
    Answer(Result<Res, BoxError>),
    /// The answer could not be shared: this follower makes its own call
    /// (with `Sh`, the state it shares, to mark it).
    FallBack(Sh),
}

/// What the wait of a [`Waiter`] comes to.
type WaitedOf<K, KF, H, C, Fut, Res> = Waited<Res, Arc<Shared<K, KF, H, C, Fut, Res>>>;

// === impl Waiter ===

impl<K, KF, H, C, Fut, Res> Waiter<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    /// Waiter `id` of `flight`, for `key`.
    pub(crate) fn new(
        flight: Arc<Flight<Fut, Res, H::Shared>>,
        id: usize,
        key: K,
        shared: Arc<Shared<K, KF, H, C, Fut, Res>>,
    ) -> Self {
        Self {
            flight,
            id,
            key,
            shared,
            timed_out: false,
        }
    }

    /// The leader hands its inner call over to the flight.
    pub(crate) fn start(&self, call: Fut) {
        self.flight.start(call);
    }

    /// What waiter `self` hands its caller, from what it received. The
    /// waiter that ended the call also keeps the answer in the cache when
    /// it is shareable and `success` (its classifier said so; for an
    /// answer nobody else waited on, it is asked here), and otherwise
    /// takes out the answer kept before: after a call for a key ends, the
    /// cache holds that call's answer or nothing.
    fn deliver(
        &self,
        delivery: Delivery<Res, H::Shared>,
        success: bool,
    ) -> WaitedOf<K, KF, H, C, Fut, Res>
    where
        C: Classify<Res, BoxError>,
    {
        let shared = &self.shared;
        let cache = shared.cache.as_ref().filter(|_| delivery.ended_here);
        let (mut response, sharing) = match delivery.received {
            // Nobody else got this answer (alone on the call, or the answer
            // was not shareable and this is the leader).
            Received::Owned(Ok(response)) => match cache {
                Some(cache) if shared.classifier.classify(Ok(&response)).is_success() => {
                    match shared.share.share(response) {
                        Ok(answer) => {
                            let response = shared.share.unshare(&answer);
                            self.keep(cache, answer);
                            (response, Sharing::Own)
                        }
                        Err(response) => {
                            self.forget(Some(cache));
                            (response, Sharing::Own)
                        }
                    }
                }
                _ => {
                    self.forget(cache);
                    (response, Sharing::Own)
                }
            },
            Received::Owned(Err(err)) => {
                self.forget(cache);
                return Waited::Answer(Err(err));
            }
            Received::Shared(Ok(answer)) => {
                let response = shared.share.unshare(&answer);
                match cache {
                    Some(cache) if success => self.keep(cache, answer),
                    _ => self.forget(cache),
                }
                (response, Sharing::Shared)
            }
            Received::Shared(Err(err)) => {
                self.forget(cache);
                return Waited::Answer(Err(SharedError::new(err).into()));
            }
            Received::FallBack => {
                self.forget(cache);
                if self.id == LEADER {
                    // The leader's request went into the call it no longer
                    // has.
                    return Waited::Answer(Err(shared.aborted()));
                }
                Logs::own_call(&shared.stats.component);
                return Waited::FallBack(Arc::clone(shared));
            }
            Received::Aborted => return Waited::Answer(Err(shared.aborted())),
        };
        shared.share.mark(&mut response, sharing);
        Waited::Answer(Ok(response))
    }

    /// Keeps `answer` in `cache` under this waiter's key, for as long as
    /// the answer allows ([`Share::max_age`]) within the cache's TTL.
    fn keep(&self, cache: &Cache<K, H::Shared>, answer: H::Shared) {
        let share = &self.shared.share;
        let weight = share.weight(&answer);
        let max_age = share.max_age(&answer);
        cache.insert(
            self.key.clone(),
            answer,
            weight,
            max_age,
            &self.shared.stats,
        );
    }

    /// Takes the answer kept for this waiter's key out of `cache`: the
    /// call that ended here may not be kept.
    fn forget(&self, cache: Option<&Cache<K, H::Shared>>) {
        if let Some(cache) = cache {
            cache.remove(&self.key, &self.shared.stats);
        }
    }
}

impl<K, KF, H, C, Fut, Res> Drop for Waiter<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    fn drop(&mut self) {
        if self.flight.leave(self.id) {
            self.shared
                .table
                .remove(&self.key, &self.flight, &self.shared.stats);
        } else if self.id == LEADER && !self.timed_out && !std::thread::panicking() {
            // The call goes on for the others. (A leader whose `call`
            // panicked leaves while unwinding: its call never started.)
            Logs::leader_left(&self.shared.stats.component);
        }
    }
}

pin_project! {
    /// A waiter's wait, ended by what the call came to or by the waiter's
    /// timeout.
    pub(crate) struct Waiting<K, KF, H, C, Fut, Res>
    where
        K: Key,
        H: Share<Res>,
        Fut: Call<Res>,
        Res: Send,
        Res: 'static,
    {
        // `None` once the wait is over: the waiter has left.
        waiter: Option<Waiter<K, KF, H, C, Fut, Res>>,
        #[pin]
        timer: Option<Sleep>,
    }
}

// === impl Waiting ===

impl<K, KF, H, C, Fut, Res> Waiting<K, KF, H, C, Fut, Res>
where
    K: Key,
    H: Share<Res>,
    Fut: Call<Res>,
    Res: Send + 'static,
{
    /// Waits as `waiter`, until `until` at the latest.
    pub(crate) fn new(waiter: Waiter<K, KF, H, C, Fut, Res>, until: Option<Instant>) -> Self {
        Self {
            waiter: Some(waiter),
            timer: until.map(sleep_until),
        }
    }

    /// `true` once the wait is over.
    pub(crate) fn is_over(&self) -> bool {
        self.waiter.is_none()
    }

    /// Polls the wait: drives the shared call when no other waiter does,
    /// and hands over what it came to.
    ///
    /// # Panics
    ///
    /// When polled again once over.
    pub(crate) fn poll_wait(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<WaitedOf<K, KF, H, C, Fut, Res>>
    where
        C: Classify<Res, BoxError>,
    {
        let this = self.project();
        let Some(w) = this.waiter.as_ref() else {
            panic!("a dedup future polled after completion")
        };
        let shared = &w.shared;
        // Whether the answer may be cached, decided by the waiter that
        // ends the call, before the answer is shared.
        let mut success = false;
        let polled = w.flight.poll(w.id, cx, |answer| {
            success =
                shared.cache.is_some() && shared.classifier.classify(Ok(&answer)).is_success();
            shared.share.share(answer)
        });
        match polled {
            Poll::Ready(delivery) => {
                let waiter = this.waiter.take().expect("checked above");
                // Delivered before the waiter leaves: the flight stays in
                // the table until the cache holds its answer (or nothing).
                let waited = waiter.deliver(delivery, success);
                drop(waiter);
                Poll::Ready(waited)
            }
            Poll::Pending => match this.timer.as_pin_mut().map(|t| t.poll(cx)) {
                Some(Poll::Ready(())) => {
                    // Leaves the call; the others wait on.
                    let mut waiter = this.waiter.take().expect("checked above");
                    waiter.timed_out = true;
                    let shared = &waiter.shared;
                    shared.stats.logs.wait_timed_out(
                        &shared.stats.component,
                        shared.wait_timeout.unwrap_or_default(),
                        waiter.id == LEADER,
                    );
                    drop(waiter);
                    Poll::Ready(Waited::Answer(Err(WaitTimedOut.into())))
                }
                _ => Poll::Pending,
            },
        }
    }
}
