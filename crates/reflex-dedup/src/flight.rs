//! A [`Flight`]: one inner call shared by every request that waits on it.
//!
//! Any waiter may drive the call: whichever polls takes the call's lock
//! (without blocking: a waiter that finds it taken waits to be woken) and
//! polls the inner future with a waker that wakes every waiter. So the call
//! lives as long as one waiter does, whoever started it, and no task is
//! spawned. When the last waiter leaves before the end, the call is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

use reflex_core::BoxError;

/// The id of the waiter that started the call (its request went in).
pub(crate) const LEADER: usize = 0;

/// How a call ended, as the flight keeps it for its waiters.
enum Outcome<Res, V> {
    /// The inner call answered: its shareable answer, or its error.
    Done(Result<V, Arc<BoxError>>),
    /// The answer could not be shared (an http body over the limit, or
    /// one that sets a cookie): the
    /// leader takes it, if it still waits; every other waiter makes its
    /// own call.
    ForLeader(Option<Res>),
    /// The only waiter took the answer whole.
    Delivered,
    /// The call ended without an answer: it panicked.
    Aborted,
    /// Every waiter left before the end, and the call was dropped.
    Abandoned,
}

/// What one waiter receives.
pub(crate) enum Received<Res, V> {
    /// The answer itself: nobody else waited on the call, or it could not
    /// be shared and this is the leader.
    Owned(Result<Res, BoxError>),
    /// A copy of the answer of a call others waited on too.
    Shared(Result<V, Arc<BoxError>>),
    /// The answer could not be shared: make your own call.
    FallBack,
    /// The call ended without an answer.
    Aborted,
}

impl<Res, V: Clone> Outcome<Res, V> {
    /// What waiter `id` receives, once the call has ended.
    fn receive(&mut self, id: usize) -> Received<Res, V> {
        match self {
            Self::Done(Ok(answer)) => Received::Shared(Ok(answer.clone())),
            Self::Done(Err(err)) => Received::Shared(Err(Arc::clone(err))),
            Self::ForLeader(answer) if id == LEADER => match answer.take() {
                Some(answer) => Received::Owned(Ok(answer)),
                None => Received::FallBack,
            },
            Self::ForLeader(_) => Received::FallBack,
            // `Delivered` has no waiter left to read it.
            Self::Delivered | Self::Aborted | Self::Abandoned => Received::Aborted,
        }
    }
}

enum Call<Fut> {
    /// The leader is calling the inner service.
    Starting,
    /// The call's future, boxed by the leader (so `Unpin`).
    Running(Fut),
    /// Ended; the outcome is set (before the call's lock is released, so
    /// a waiter that sees `Over` finds the outcome).
    Over,
}

struct State<Res, V> {
    outcome: Option<Outcome<Res, V>>,
    /// One slot per waiter id; `None` once it left or before it polled.
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    /// Waiters now.
    waiters: usize,
    /// The leader has not left.
    leader_waits: bool,
}

/// One inner call and the requests waiting on it. `Res` is what the call
/// answers, `V` the shareable form of it.
pub(crate) struct Flight<Fut, Res, V> {
    call: Mutex<Call<Fut>>,
    state: Mutex<State<Res, V>>,
}

/// What a waiter got from polling.
pub(crate) struct Delivery<Res, V> {
    pub(crate) received: Received<Res, V>,
    /// This poll ended the call (its waiter keeps a shared answer in the
    /// cache).
    pub(crate) ended_here: bool,
}

// === impl Flight ===

impl<Fut, Res, V> Flight<Fut, Res, V>
where
    Fut: Future<Output = Result<Res, BoxError>> + Unpin + Send + 'static,
    Res: Send + 'static,
    V: Clone + Send + 'static,
{
    /// A flight whose leader is about to start the call, with the leader as
    /// its first waiter.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            call: Mutex::new(Call::Starting),
            state: Mutex::new(State {
                outcome: None,
                wakers: vec![None],
                free: Vec::new(),
                waiters: 1,
                leader_waits: true,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State<Res, V>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The leader hands over the inner call's future, and wakes whoever
    /// joined meanwhile.
    pub(crate) fn start(self: &Arc<Self>, future: Fut) {
        *self.call.lock().unwrap_or_else(PoisonError::into_inner) = Call::Running(future);
        self.wake_by_ref();
    }

    /// `true` when the call panicked.
    pub(crate) fn panicked(&self) -> bool {
        matches!(self.state().outcome, Some(Outcome::Aborted))
    }

    /// `true` while the call has not ended.
    pub(crate) fn is_live(&self) -> bool {
        self.state().outcome.is_none()
    }

    /// Joins as a waiter: its id, and the number of waiters now; `None`
    /// when the call has ended (a new flight is needed).
    pub(crate) fn join(&self) -> Option<(usize, usize)> {
        let mut state = self.state();
        if state.outcome.is_some() {
            return None;
        }
        let id = match state.free.pop() {
            Some(id) => id,
            None => {
                state.wakers.push(None);
                state.wakers.len() - 1
            }
        };
        state.waiters += 1;
        Some((id, state.waiters))
    }

    /// Waiter `id` leaves. Returns `true` when the flight is finished for
    /// the table: it ended, or this was its last waiter (then the inner
    /// call is dropped here, and the flight abandoned).
    pub(crate) fn leave(&self, id: usize) -> bool {
        let unclaimed;
        {
            let mut state = self.state();
            if let Some(slot) = state.wakers.get_mut(id) {
                *slot = None;
            }
            if id == LEADER {
                state.leader_waits = false;
            } else {
                // The leader's id is never reused: it marks the leader.
                state.free.push(id);
            }
            state.waiters -= 1;
            if let Some(outcome) = &mut state.outcome {
                // An answer kept for a leader that left goes with it.
                unclaimed = match outcome {
                    Outcome::ForLeader(answer) if id == LEADER => answer.take(),
                    _ => None,
                };
            } else if state.waiters > 0 {
                // The others wait on: wake them, so one of them drives the
                // call (this one may have been driving it, and taken the
                // wake-up meant for the next poll).
                let wakers: Vec<Waker> = state.wakers.iter().flatten().cloned().collect();
                drop(state);
                let starting = id == LEADER
                    && matches!(
                        *self.call.lock().unwrap_or_else(PoisonError::into_inner),
                        Call::Starting
                    );
                if starting {
                    // The leader left before handing over its call: its
                    // `call` panicked. Nobody will start it now.
                    self.abort();
                } else {
                    for waker in wakers {
                        waker.wake();
                    }
                }
                return false;
            } else {
                state.outcome = Some(Outcome::Abandoned);
                drop(state);
                // Nobody waits: drop the inner call, outside every lock.
                let call = std::mem::replace(
                    &mut *self.call.lock().unwrap_or_else(PoisonError::into_inner),
                    Call::Over,
                );
                drop(call);
                return true;
            }
        }
        drop(unclaimed);
        true
    }

    /// Polls for waiter `id`: what it receives once the call has ended,
    /// driving the call when no other waiter is. `share` turns an answer
    /// into its shareable form, or gives it back when it cannot be shared.
    pub(crate) fn poll(
        self: &Arc<Self>,
        id: usize,
        cx: &mut Context<'_>,
        share: impl FnOnce(Res) -> Result<V, Res>,
    ) -> Poll<Delivery<Res, V>> {
        loop {
            {
                let mut state = self.state();
                if let Some(outcome) = &mut state.outcome {
                    return Poll::Ready(Delivery {
                        received: outcome.receive(id),
                        ended_here: false,
                    });
                }
                // Registered before the call is polled, so no wake-up is
                // lost between this check and the poll.
                match state.wakers.get_mut(id) {
                    Some(Some(waker)) if waker.will_wake(cx.waker()) => {}
                    Some(slot) => *slot = Some(cx.waker().clone()),
                    None => {}
                }
            }
            let mut call = match self.call.try_lock() {
                Ok(call) => call,
                // Another waiter is polling the call: it wakes everyone.
                Err(TryLockError::WouldBlock) => return Poll::Pending,
                // The call panicked in another waiter's poll.
                Err(TryLockError::Poisoned(_)) => {
                    self.abort();
                    continue;
                }
            };
            let future = match &mut *call {
                Call::Starting => return Poll::Pending,
                Call::Over => continue,
                Call::Running(future) => future,
            };
            let waker = Waker::from(Arc::clone(self));
            let mut inner_cx = Context::from_waker(&waker);
            let mut unwinding = AbortOnUnwind {
                flight: self,
                armed: true,
            };
            let result = Pin::new(future).poll(&mut inner_cx);
            unwinding.armed = false;
            let Poll::Ready(result) = result else {
                return Poll::Pending;
            };
            let ended = std::mem::replace(&mut *call, Call::Over);
            // The outcome is recorded before the call's lock is released:
            // a waiter that finds the call `Over` finds its outcome too,
            // and never spins waiting for it.
            let (received, wakers) = self.settle(id, result, share);
            drop(call);
            drop(ended);
            // Every other waiter, even one of this same task (its waker
            // may be this one's: `join!` polls several with one).
            for (other, waker) in wakers.into_iter().enumerate() {
                if other != id {
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
            }
            return Poll::Ready(Delivery {
                received,
                ended_here: true,
            });
        }
    }

    /// Records the call's `result` as its outcome; what the waiter `id`
    /// that ended it receives, and the wakers of the others.
    fn settle(
        &self,
        id: usize,
        result: Result<Res, BoxError>,
        share: impl FnOnce(Res) -> Result<V, Res>,
    ) -> (Received<Res, V>, Vec<Option<Waker>>) {
        let mut state = self.state();
        if state.waiters == 1 {
            // Nobody else to share with: the answer, untouched.
            state.outcome = Some(Outcome::Delivered);
            return (Received::Owned(result), Vec::new());
        }
        let (outcome, received) = match result {
            Err(err) => {
                let err = Arc::new(err);
                (
                    Outcome::Done(Err(Arc::clone(&err))),
                    Received::Shared(Err(err)),
                )
            }
            Ok(answer) => match share(answer) {
                Ok(shareable) => (
                    Outcome::Done(Ok(shareable.clone())),
                    Received::Shared(Ok(shareable)),
                ),
                Err(answer) if id == LEADER => {
                    (Outcome::ForLeader(None), Received::Owned(Ok(answer)))
                }
                Err(answer) => {
                    let kept = state.leader_waits.then_some(answer);
                    (Outcome::ForLeader(kept), Received::FallBack)
                }
            },
        };
        state.outcome = Some(outcome);
        (received, std::mem::take(&mut state.wakers))
    }

    /// Marks the flight aborted (if it has no outcome yet) and wakes every
    /// waiter.
    fn abort(&self) {
        let wakers = {
            let mut state = self.state();
            if state.outcome.is_none() {
                state.outcome = Some(Outcome::Aborted);
            }
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl<Fut, Res, V> Wake for Flight<Fut, Res, V>
where
    Fut: Send + 'static,
    Res: Send + 'static,
    V: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers: Vec<Waker> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.wakers.iter().flatten().cloned().collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Aborts the flight if the inner call panics while a waiter polls it: the
/// other waiters get `DedupAborted` instead of waiting on a call that will
/// never end.
struct AbortOnUnwind<'a, Fut, Res, V>
where
    Fut: Future<Output = Result<Res, BoxError>> + Unpin + Send + 'static,
    Res: Send + 'static,
    V: Clone + Send + 'static,
{
    flight: &'a Flight<Fut, Res, V>,
    armed: bool,
}

impl<Fut, Res, V> Drop for AbortOnUnwind<'_, Fut, Res, V>
where
    Fut: Future<Output = Result<Res, BoxError>> + Unpin + Send + 'static,
    Res: Send + 'static,
    V: Clone + Send + 'static,
{
    fn drop(&mut self) {
        if self.armed {
            self.flight.abort();
        }
    }
}
