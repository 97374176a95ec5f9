//! A [`Flight`]: one inner call shared by every request that waits on it.
//!
//! Any waiter may drive the call: whichever polls takes the call's lock
//! (without blocking: a waiter that finds it taken waits to be woken) and
//! polls the inner future with a waker that wakes every waiter. So the call
//! lives as long as one waiter does, whoever started it, and no task is
//! spawned. When the last waiter leaves before the end, the call is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

use reflex_core::BoxError;

/// How a shared call ended, as the flight keeps it for its waiters.
#[derive(Debug)]
enum Outcome<Res> {
    /// The inner call answered: its response, or its error (shared).
    Done(Result<Res, Arc<BoxError>>),
    /// The inner call answered and its only waiter took the answer whole.
    Delivered,
    /// The call ended without an answer: it panicked.
    Aborted,
    /// Every waiter left before the end, and the call was dropped.
    Abandoned,
}

/// What one waiter receives.
#[derive(Debug)]
pub(crate) enum Received<Res> {
    /// The answer itself: nobody else waited on the call.
    Owned(Result<Res, BoxError>),
    /// A copy of the answer of a call others waited on too.
    Shared(Result<Res, Arc<BoxError>>),
    /// The call ended without an answer.
    Aborted,
}

impl<Res: Clone> Outcome<Res> {
    fn copy(&self) -> Received<Res> {
        match self {
            Self::Done(Ok(response)) => Received::Shared(Ok(response.clone())),
            Self::Done(Err(err)) => Received::Shared(Err(Arc::clone(err))),
            // `Delivered` has no waiter left to read it.
            Self::Delivered | Self::Aborted | Self::Abandoned => Received::Aborted,
        }
    }
}

enum Call<Fut> {
    /// The leader is calling the inner service.
    Starting,
    Running(Pin<Box<Fut>>),
    /// Ended; the outcome is set.
    Over,
}

struct State<Res> {
    outcome: Option<Outcome<Res>>,
    /// One slot per waiter id; `None` once it left or before it polled.
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    /// Waiters now.
    waiters: usize,
    /// Waiters ever: more than one means the answer was shared.
    joined: usize,
}

/// One inner call and the requests waiting on it.
pub(crate) struct Flight<Fut, Res> {
    call: Mutex<Call<Fut>>,
    state: Mutex<State<Res>>,
}

/// What a waiter got from polling.
pub(crate) struct Delivery<Res> {
    pub(crate) received: Received<Res>,
    /// More than one request waited on the call.
    pub(crate) shared: bool,
    /// This poll ended the call (the caller removes it from the table).
    pub(crate) ended_here: bool,
}

// === impl Flight ===

impl<Fut, Res> Flight<Fut, Res>
where
    Fut: Future<Output = Result<Res, BoxError>> + Send + 'static,
    Res: Clone + Send + 'static,
{
    /// A flight whose leader is about to start the call, with the leader as
    /// its first waiter (id 0).
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            call: Mutex::new(Call::Starting),
            state: Mutex::new(State {
                outcome: None,
                wakers: vec![None],
                free: Vec::new(),
                waiters: 1,
                joined: 1,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<Res>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The leader hands over the inner call's future, and wakes whoever
    /// joined meanwhile.
    pub(crate) fn start(self: &Arc<Self>, future: Fut) {
        *self.call.lock().unwrap_or_else(PoisonError::into_inner) = Call::Running(Box::pin(future));
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
        state.joined += 1;
        Some((id, state.waiters))
    }

    /// Waiter `id` leaves. Returns `true` when the flight is finished for
    /// the table: it ended, or this was its last waiter (then the inner
    /// call is dropped here, and the flight aborted).
    pub(crate) fn leave(&self, id: usize) -> bool {
        let abandoned = {
            let mut state = self.state();
            if let Some(slot) = state.wakers.get_mut(id) {
                *slot = None;
            }
            state.free.push(id);
            state.waiters -= 1;
            if state.outcome.is_some() {
                return true;
            }
            if state.waiters > 0 {
                return false;
            }
            state.outcome = Some(Outcome::Abandoned);
            true
        };
        if abandoned {
            // Nobody waits: drop the inner call, outside every lock.
            let call = std::mem::replace(
                &mut *self.call.lock().unwrap_or_else(PoisonError::into_inner),
                Call::Over,
            );
            drop(call);
        }
        true
    }

    /// Polls for waiter `id`: the outcome once the call has ended, driving
    /// the call when no other waiter is.
    pub(crate) fn poll(self: &Arc<Self>, id: usize, cx: &mut Context<'_>) -> Poll<Delivery<Res>> {
        loop {
            {
                let mut state = self.state();
                if let Some(outcome) = &state.outcome {
                    return Poll::Ready(Delivery {
                        received: outcome.copy(),
                        shared: state.joined > 1,
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
            let result = future.as_mut().poll(&mut inner_cx);
            unwinding.armed = false;
            let Poll::Ready(result) = result else {
                return Poll::Pending;
            };
            let ended = std::mem::replace(&mut *call, Call::Over);
            drop(call);
            let (received, wakers, shared) = {
                let mut state = self.state();
                let shared = state.joined > 1;
                if state.waiters == 1 {
                    // Nobody else to share with: the answer, untouched.
                    state.outcome = Some(Outcome::Delivered);
                    (Received::Owned(result), Vec::new(), shared)
                } else {
                    let outcome = Outcome::Done(result.map_err(Arc::new));
                    let mine = outcome.copy();
                    state.outcome = Some(outcome);
                    (mine, std::mem::take(&mut state.wakers), shared)
                }
            };
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
                shared,
                ended_here: true,
            });
        }
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

impl<Fut, Res> Wake for Flight<Fut, Res>
where
    Fut: Send + 'static,
    Res: Send + 'static,
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
struct AbortOnUnwind<'a, Fut, Res>
where
    Fut: Future<Output = Result<Res, BoxError>> + Send + 'static,
    Res: Clone + Send + 'static,
{
    flight: &'a Flight<Fut, Res>,
    armed: bool,
}

impl<Fut, Res> Drop for AbortOnUnwind<'_, Fut, Res>
where
    Fut: Future<Output = Result<Res, BoxError>> + Send + 'static,
    Res: Clone + Send + 'static,
{
    fn drop(&mut self) {
        if self.armed {
            self.flight.abort();
        }
    }
}
