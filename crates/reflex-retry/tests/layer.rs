//! RetryLayer's behaviour, with a paused clock: what is retried, when, how
//! often, and what the caller gets.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, Component, ConfigErrorKind, Outcome, RejectKind, Rejected, RetryReason, Signal,
};
use reflex_retry::{Decision, Jitter, Policy, RetryHandle, RetryLayer, TimedOut};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// What the scripted service does on one call.
#[derive(Debug, Clone)]
enum Step {
    Ok(u32),
    Err(&'static str),
    /// Never answers.
    Hang,
    /// Answers after a while.
    Late(Duration, Result<u32, &'static str>),
    Reject(RejectKind, Option<Duration>),
    /// The future panics.
    Panic,
}

/// An inner service that plays a script, one step per call, and records
/// when each call was made.
#[derive(Clone, Default)]
struct Script {
    steps: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Time between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

impl Service<u32> for Script {
    type Response = u32;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: u32) -> BoxFuture {
        self.calls.lock().unwrap().push(Instant::now());
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Err("the script ran out"));
        Box::pin(async move {
            match step {
                Step::Ok(n) => Ok(n),
                Step::Err(e) => Err(e.into()),
                Step::Hang => std::future::pending().await,
                Step::Late(after, result) => {
                    tokio::time::sleep(after).await;
                    result.map_err(Into::into)
                }
                Step::Panic => panic!("the inner future panics (on purpose)"),
                Step::Reject(kind, after) => {
                    let rejected = Rejected::new(kind, Component::new("below"));
                    Err(match after {
                        Some(after) => rejected.with_retry_after(after),
                        None => rejected,
                    }
                    .into())
                }
            }
        })
    }
}

async fn call<S: Service<u32, Response = u32, Error = BoxError>>(
    svc: &mut S,
) -> Result<u32, BoxError> {
    svc.ready().await?.call(1).await
}

fn no_jitter() -> reflex_retry::RetryBuilder {
    RetryLayer::builder()
        .no_budget()
        .jitter(Jitter::None)
        .backoff(100 * MS, 2.0)
}

#[tokio::test(start_paused = true)]
async fn a_success_is_returned_at_once_and_counts_nothing() {
    let script = Script::new([Step::Ok(7)]);
    let layer = RetryLayer::builder().build().unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap(), 7);
    assert_eq!(script.calls(), 1);
    let m = layer.handle().metrics();
    assert_eq!((m.retries, m.recovered, m.gave_up), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_is_retried_until_it_succeeds() {
    let script = Script::new([Step::Err("a"), Step::Err("b"), Step::Ok(3)]);
    let layer = no_jitter().max_attempts(3).build().unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap(), 3);
    assert_eq!(script.calls(), 3);
    let m = layer.handle().metrics();
    assert_eq!(
        (m.retries, m.recovered, m.gave_up, m.retrying),
        (2, 1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn when_attempts_run_out_the_caller_gets_the_last_attempts_own_error() {
    let script = Script::new([Step::Err("first"), Step::Err("second"), Step::Err("third")]);
    let layer = no_jitter().max_attempts(3).build().unwrap();
    let mut svc = layer.layer(script.clone());
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(err.to_string(), "third");
    assert_eq!(script.calls(), 3);
    assert_eq!(layer.handle().metrics().gave_up, 1);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_sends_once_and_keeps_nothing() {
    let script = Script::new([Step::Err("only")]);
    let layer = no_jitter().max_attempts(1).build().unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap_err().to_string(), "only");
    assert_eq!(script.calls(), 1);
    assert_eq!(layer.handle().metrics().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn delays_grow_exponentially_up_to_the_cap() {
    let script = Script::new(std::iter::repeat_n(Step::Err("x"), 5).chain([Step::Ok(1)]));
    let layer = no_jitter()
        .max_attempts(6)
        .max_delay(500 * MS)
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap(), 1);
    assert_eq!(
        script.gaps(),
        vec![100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_their_bounds_for_every_attempt() {
    for (jitter, low_share) in [(Jitter::Full, 0.0), (Jitter::Equal, 0.5)] {
        for _ in 0..20 {
            let script = Script::new([Step::Err("x"), Step::Err("x"), Step::Err("x"), Step::Ok(1)]);
            let layer = no_jitter().jitter(jitter).max_attempts(4).build().unwrap();
            let mut svc = layer.layer(script.clone());
            call(&mut svc).await.unwrap();
            for (retry, gap) in script.gaps().into_iter().enumerate() {
                let ceiling = 100 * MS * 2u32.pow(retry as u32);
                assert!(
                    gap <= ceiling,
                    "{jitter:?} retry {retry}: {gap:?} > {ceiling:?}"
                );
                assert!(
                    gap >= ceiling.mul_f64(low_share),
                    "{jitter:?} retry {retry}: {gap:?} below its floor"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn decorrelated_jitter_stays_between_the_base_and_the_cap() {
    let script = Script::new(std::iter::repeat_n(Step::Err("x"), 9).chain([Step::Ok(1)]));
    let layer = no_jitter()
        .jitter(Jitter::Decorrelated)
        .max_delay(800 * MS)
        .max_attempts(10)
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    call(&mut svc).await.unwrap();
    let gaps = script.gaps();
    assert_eq!(gaps.len(), 9);
    for pair in gaps.windows(2) {
        assert!(pair[1] >= 100 * MS && pair[1] <= 800 * MS, "{pair:?}");
        assert!(pair[1] <= (pair[0] * 3).max(100 * MS * 3), "{pair:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_delay_function_replaces_the_backoff_and_is_capped() {
    let script = Script::new([Step::Err("x"), Step::Err("x"), Step::Err("x"), Step::Ok(1)]);
    let layer = no_jitter()
        .max_attempts(4)
        .max_delay(2_500 * MS)
        .delay_fn(|retry, previous| previous + Duration::from_secs(u64::from(retry)))
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    call(&mut svc).await.unwrap();
    // 1 s, then 1 + 2 = 3 s capped to 2.5 s, then 2.5 + 3 capped again.
    assert_eq!(script.gaps(), vec![1_000 * MS, 2_500 * MS, 2_500 * MS]);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_returns_the_original_error_and_says_so() {
    let recorder = Arc::new(Recorder::default());
    let script = Script::new([Step::Err("down"), Step::Err("down")]);
    // No floor, no share: no retry is ever funded.
    let layer = no_jitter()
        .budget(0.0, 0, Duration::from_secs(10))
        .sink(recorder.clone())
        .component("db")
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "down",
        "the caller sees the original error"
    );
    assert!(Rejected::find(&*err).is_none());
    assert_eq!(script.calls(), 1);
    assert_eq!(layer.handle().metrics().budget_exhausted, 1);
    assert_eq!(
        recorder.signals(),
        vec![(
            Component::new("db"),
            Signal::RetryBudgetExhausted { attempt: 2 }
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_runs_out_under_an_outage_and_recovers_with_healthy_traffic() {
    let script = Script::new([]);
    // Half a retry per request over 1 s, no floor.
    let layer = no_jitter()
        .max_attempts(2)
        .backoff(MS, 1.0)
        .budget(0.5, 0, Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script.clone());
    // An outage of 20 requests: 20 deposits fund 10 retries at most.
    *script.steps.lock().unwrap() = std::iter::repeat_n(Step::Err("down"), 100).collect();
    for _ in 0..20 {
        assert!(call(&mut svc).await.is_err());
    }
    let m = handle.metrics();
    assert!(
        m.retries <= 10,
        "{} retries for 20 requests at 50%",
        m.retries
    );
    assert!(
        m.retries >= 6,
        "{} retries: the budget under-funds",
        m.retries
    );
    assert_eq!(m.retries + m.budget_exhausted, 20);
    // Once the outage's deposits and withdrawals expire, healthy traffic
    // funds retries again.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        handle.metrics().budget_remaining,
        Some(0),
        "the outage has expired"
    );
    *script.steps.lock().unwrap() = std::iter::repeat_n(Step::Ok(1), 10).collect();
    for _ in 0..10 {
        call(&mut svc).await.unwrap();
    }
    assert_eq!(handle.metrics().budget_remaining, Some(5));
    *script.steps.lock().unwrap() = [Step::Err("blip"), Step::Ok(2)].into();
    assert_eq!(call(&mut svc).await.unwrap(), 2);
}

/// A policy that asks for the delay its response carries.
#[derive(Clone, Copy)]
struct AskFor(Duration);

impl Policy<u32, u32> for AskFor {
    fn clone_request(&self, request: &u32) -> Option<u32> {
        Some(*request)
    }

    fn retry(&self, _request: &u32, _result: Result<&u32, &BoxError>) -> Decision {
        Decision::After(self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_the_response_asks_for_replaces_the_backoff_within_the_cap() {
    let recorder = Arc::new(Recorder::default());
    let script = Script::new([Step::Err("busy"), Step::Ok(1)]);
    let layer = no_jitter()
        .policy(AskFor(Duration::from_secs(7)))
        .sink(recorder.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    call(&mut svc).await.unwrap();
    assert_eq!(script.gaps(), vec![Duration::from_secs(7)]);
    assert!(matches!(
        recorder.signals()[0].1,
        Signal::RetryAttempt { attempt: 2, delay, reason: RetryReason::RetryAfter } if delay == Duration::from_secs(7)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_delay_asked_for_beyond_the_cap_is_ignored_for_the_backoff() {
    let script = Script::new([Step::Err("busy"), Step::Ok(1)]);
    let layer = no_jitter()
        .policy(AskFor(Duration::from_secs(3600)))
        .max_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    call(&mut svc).await.unwrap();
    assert_eq!(script.gaps(), vec![100 * MS]);
}

/// A policy that never retries.
struct Never;

impl Policy<u32, u32> for Never {
    fn clone_request(&self, request: &u32) -> Option<u32> {
        Some(*request)
    }

    fn retry(&self, _request: &u32, _result: Result<&u32, &BoxError>) -> Decision {
        Decision::Stop
    }
}

#[tokio::test(start_paused = true)]
async fn a_policy_that_stops_is_obeyed() {
    let script = Script::new([Step::Err("no"), Step::Ok(1)]);
    let layer = no_jitter().policy(Never).build().unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap_err().to_string(), "no");
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_what_the_classifier_calls_a_failure_is_retried() {
    // Odd responses are failures; errors are ignored (final).
    let classify = |result: Result<&u32, &BoxError>| match result {
        Ok(n) if n % 2 == 1 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Ignored,
    };
    let recorder = Arc::new(Recorder::default());
    let script = Script::new([Step::Ok(1), Step::Ok(3), Step::Ok(4)]);
    let layer = no_jitter()
        .max_attempts(5)
        .classifier(classify)
        .sink(recorder.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap(), 4);
    assert!(matches!(
        recorder.signals()[0].1,
        Signal::RetryAttempt {
            reason: RetryReason::Response,
            ..
        }
    ));
    *script.steps.lock().unwrap() = [Step::Err("ignored"), Step::Ok(2)].into();
    assert_eq!(call(&mut svc).await.unwrap_err().to_string(), "ignored");
}

#[tokio::test(start_paused = true)]
async fn rejections_of_other_layers_are_never_retried() {
    for kind in [
        RejectKind::Shed,
        RejectKind::SlotBusy,
        RejectKind::SlotQueueFull,
        RejectKind::Replaced,
        RejectKind::InProgress,
    ] {
        let script = Script::new([Step::Reject(kind, Some(MS)), Step::Ok(1)]);
        let layer = no_jitter().build().unwrap();
        let mut svc = layer.layer(script.clone());
        let err = call(&mut svc).await.unwrap_err();
        assert_eq!(Rejected::find(&*err).map(Rejected::kind), Some(kind));
        assert_eq!(script.calls(), 1, "{kind:?}");
    }
}

/// `n` seconds.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One request through `layer` over `script`, which fails: the kind and
/// `retry_after` of the rejection it fails with, if it is one, and how long
/// it took.
async fn refusal(
    layer: &RetryLayer,
    script: &Script,
) -> (Option<(RejectKind, Option<Duration>)>, Duration) {
    let mut svc = layer.layer(script.clone());
    let started = Instant::now();
    let err = call(&mut svc).await.unwrap_err();
    let rejection = Rejected::find(&*err).map(|r| (r.kind(), r.retry_after()));
    (rejection, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_ends_retrying_at_once_by_default_with_its_rejection() {
    let recorder = Arc::new(Recorder::default());
    // The breaker's probe is 2 s away: within the cap and the deadline,
    // and still not waited for.
    let script = Script::new([
        Step::Reject(RejectKind::CircuitOpen, Some(secs(2))),
        Step::Ok(1),
    ]);
    let layer = no_jitter()
        .deadline(secs(60))
        .sink(recorder.clone())
        .build()
        .unwrap();
    let (rejection, took) = refusal(&layer, &script).await;
    assert_eq!(
        rejection,
        Some((RejectKind::CircuitOpen, Some(secs(2)))),
        "the caller gets the breaker's rejection, with when it probes"
    );
    assert_eq!((script.calls(), took), (1, Duration::ZERO));
    assert_eq!(layer.handle().metrics().retrying, 0);
    assert!(recorder.signals().is_empty(), "no retry was made");
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_met_on_a_retry_ends_retrying_with_its_rejection() {
    let script = Script::new([
        Step::Err("down"),
        Step::Reject(RejectKind::CircuitOpen, Some(secs(30))),
        Step::Ok(1),
    ]);
    let layer = no_jitter().max_attempts(5).build().unwrap();
    let (rejection, took) = refusal(&layer, &script).await;
    assert_eq!(rejection, Some((RejectKind::CircuitOpen, Some(secs(30)))));
    assert_eq!(script.calls(), 2);
    assert_eq!(took, 100 * MS, "one backoff, no breaker wait");
    let m = layer.handle().metrics();
    assert_eq!((m.retries, m.gave_up, m.retrying), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_waited_out_when_asked_and_its_probe_is_within_the_wait() {
    let recorder = Arc::new(Recorder::default());
    let script = Script::new([
        Step::Reject(RejectKind::CircuitOpen, Some(secs(2))),
        Step::Ok(1),
    ]);
    let layer = no_jitter()
        .wait_for_open_breaker(secs(2))
        .deadline(secs(5))
        .sink(recorder.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap(), 1);
    assert_eq!(script.gaps(), vec![secs(2)]);
    assert!(matches!(
        recorder.signals()[0].1,
        Signal::RetryAttempt {
            reason: RetryReason::CircuitOpen,
            delay,
            ..
        } if delay == secs(2)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_whose_probe_is_beyond_the_wait_ends_retrying_at_once() {
    // Beyond the wait asked for; and with no retry_after at all (forced
    // open).
    for after in [Some(2_001 * MS), None] {
        let script = Script::new([Step::Reject(RejectKind::CircuitOpen, after), Step::Ok(1)]);
        let layer = no_jitter().wait_for_open_breaker(secs(2)).build().unwrap();
        let (rejection, took) = refusal(&layer, &script).await;
        assert_eq!(rejection, Some((RejectKind::CircuitOpen, after)));
        assert_eq!((script.calls(), took), (1, Duration::ZERO));
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_whose_probe_is_beyond_the_time_left_ends_retrying_at_once() {
    // The first attempt fails after 3 s of a 4 s deadline; the breaker it
    // then meets probes in 2 s: within the wait, beyond the 1 s left.
    let script = Script::new([
        Step::Late(secs(3), Err("slow")),
        Step::Reject(RejectKind::CircuitOpen, Some(secs(2))),
        Step::Ok(1),
    ]);
    let layer = no_jitter()
        .backoff(MS, 1.0)
        .wait_for_open_breaker(secs(10))
        .deadline(secs(4))
        .build()
        .unwrap();
    let (rejection, took) = refusal(&layer, &script).await;
    assert_eq!(rejection, Some((RejectKind::CircuitOpen, Some(secs(2)))));
    assert_eq!(script.calls(), 2);
    assert_eq!(took, secs(3) + MS, "no wait for the breaker");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_runs_out_of_time_is_dropped_and_retried() {
    let recorder = Arc::new(Recorder::default());
    let script = Script::new([Step::Hang, Step::Ok(5)]);
    let layer = no_jitter()
        .attempt_timeout(Duration::from_secs(1))
        .sink(recorder.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    let started = Instant::now();
    assert_eq!(call(&mut svc).await.unwrap(), 5);
    assert_eq!(started.elapsed(), Duration::from_secs(1) + 100 * MS);
    assert!(matches!(
        recorder.signals()[0].1,
        Signal::RetryAttempt {
            reason: RetryReason::AttemptTimeout,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_runs_out_of_time_the_caller_gets_timed_out() {
    let script = Script::new([Step::Hang, Step::Hang]);
    let layer = no_jitter()
        .max_attempts(2)
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    let err = call(&mut svc).await.unwrap_err();
    let timed_out = err.downcast_ref::<TimedOut>().expect("a TimedOut");
    assert!(!timed_out.is_deadline());
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_attempt_in_flight_and_returns_the_last_result() {
    // Each attempt fails after 1 s; the deadline passes during the third.
    let late = |r| Step::Late(Duration::from_secs(1), r);
    let script = Script::new([late(Err("one")), late(Err("two")), late(Ok(3))]);
    let layer = no_jitter()
        .max_attempts(5)
        .deadline(Duration::from_millis(2_500))
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    let started = Instant::now();
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(err.to_string(), "two");
    assert_eq!(started.elapsed(), Duration::from_millis(2_500));
    assert_eq!(script.calls(), 3);
    assert_eq!(layer.handle().metrics().retrying, 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_during_the_first_attempt_is_a_deadline_error() {
    let script = Script::new([Step::Hang]);
    let layer = no_jitter()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    let err = call(&mut svc).await.unwrap_err();
    assert!(
        err.downcast_ref::<TimedOut>()
            .is_some_and(TimedOut::is_deadline)
    );
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_that_the_deadline_would_cut() {
    // The backoff (1 s) would end after the deadline (500 ms): give up now.
    let script = Script::new([Step::Err("down"), Step::Ok(1)]);
    let layer = no_jitter()
        .backoff(Duration::from_secs(1), 1.0)
        .deadline(500 * MS)
        .build()
        .unwrap();
    let mut svc = layer.layer(script.clone());
    let started = Instant::now();
    assert_eq!(call(&mut svc).await.unwrap_err().to_string(), "down");
    assert_eq!((script.calls(), started.elapsed()), (1, Duration::ZERO));
}

/// A request whose first attempt failed, polled into its 1 s backoff
/// before the retry that would succeed: its script, the layer's handle and
/// the pending response future.
async fn waiting_out_a_backoff() -> (
    Script,
    RetryHandle,
    tokio_test::task::Spawn<impl Future<Output = Result<u32, BoxError>>>,
) {
    let script = Script::new([Step::Err("x"), Step::Ok(1)]);
    let layer = no_jitter()
        .backoff(Duration::from_secs(1), 1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script.clone());
    svc.ready().await.unwrap();
    let mut future = tokio_test::task::spawn(svc.call(1));
    assert_pending!(future.poll());
    assert_eq!(script.calls(), 1);
    assert_eq!(handle.metrics().retrying, 1, "waiting out its backoff");
    (script, handle, future)
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_during_a_backoff_stops_every_later_attempt() {
    let (script, handle, future) = waiting_out_a_backoff().await;
    drop(future);
    assert_eq!(handle.metrics().retrying, 0);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(script.calls(), 1, "no attempt after the drop");
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_during_its_backoff_counts_no_retry() {
    let (script, handle, future) = waiting_out_a_backoff().await;
    assert_eq!(handle.metrics().retries, 0, "decided, not yet made");
    drop(future);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(script.calls(), 1);
    let m = handle.metrics();
    assert_eq!((m.retries, m.recovered, m.gave_up), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_retry_attempt_releases_the_retry_cycle() {
    let script = Script::new([Step::Err("x"), Step::Panic]);
    let layer = no_jitter().build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script.clone());
    let response = svc.ready().await.unwrap().call(1);
    let outcome = tokio::spawn(response).await;
    assert!(outcome.expect_err("the retry panicked").is_panic());
    assert_eq!(script.calls(), 2);
    assert_eq!(handle.metrics().retrying, 0);
    // The layer is whole after it.
    *script.steps.lock().unwrap() = [Step::Ok(4)].into();
    assert_eq!(call(&mut svc).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_around_the_layer_during_a_retry_releases_the_retry_cycle() {
    let script = Script::new([Step::Err("x"), Step::Hang]);
    let layer = no_jitter().build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script.clone());
    let response = svc.ready().await.unwrap().call(1);
    let timed = tokio::spawn(tokio::time::timeout(Duration::from_secs(5), response));
    // Once to the first attempt's failure, once past the backoff.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(script.calls(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(script.calls(), 2);
    assert_eq!(handle.metrics().retrying, 1, "in its retry");
    assert!(timed.await.unwrap().is_err(), "the timeout fired");
    assert_eq!(handle.metrics().retrying, 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_inner_service_to_be_ready_again() {
    let layer = no_jitter().build().unwrap();
    let (mut svc, mut inner) = tower_test::mock::spawn_layer::<u32, u32, _>(layer);
    inner.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut future = tokio_test::task::spawn(svc.call(1));
    assert_pending!(future.poll());
    let (_, send) = inner.next_request().await.unwrap();
    send.send_error("flaky");
    assert_pending!(future.poll());
    tokio::time::advance(100 * MS).await;
    // The backoff is over, but the inner service has no capacity: the
    // retry waits for readiness instead of calling it cold.
    assert_pending!(future.poll());
    assert!(inner.poll_request().is_pending());
    inner.allow(1);
    assert!(future.is_woken());
    assert_pending!(future.poll());
    let (request, send) = inner.next_request().await.unwrap();
    assert_eq!(request, 1);
    send.send_response(9);
    assert_eq!(future.await.unwrap(), 9);
}

#[test]
fn invalid_configurations_are_config_errors() {
    let cases = [
        (
            RetryLayer::builder().max_attempts(0).build().unwrap_err(),
            "max_attempts",
            ConfigErrorKind::Zero,
        ),
        (
            RetryLayer::builder()
                .attempt_timeout(Duration::ZERO)
                .build()
                .unwrap_err(),
            "attempt_timeout",
            ConfigErrorKind::Zero,
        ),
        (
            RetryLayer::builder()
                .deadline(Duration::ZERO)
                .build()
                .unwrap_err(),
            "deadline",
            ConfigErrorKind::Zero,
        ),
        (
            RetryLayer::builder()
                .backoff(Duration::ZERO, 2.0)
                .build()
                .unwrap_err(),
            "backoff",
            ConfigErrorKind::Zero,
        ),
        (
            RetryLayer::builder().backoff(MS, 0.5).build().unwrap_err(),
            "backoff",
            ConfigErrorKind::OutOfRange,
        ),
        (
            RetryLayer::builder()
                .backoff(MS, f64::INFINITY)
                .build()
                .unwrap_err(),
            "backoff",
            ConfigErrorKind::OutOfRange,
        ),
        (
            RetryLayer::builder()
                .max_delay(Duration::ZERO)
                .build()
                .unwrap_err(),
            "backoff",
            ConfigErrorKind::OutOfRange,
        ),
        (
            RetryLayer::builder()
                .budget(-1.0, 0, Duration::from_secs(1))
                .build()
                .unwrap_err(),
            "budget",
            ConfigErrorKind::OutOfRange,
        ),
        (
            RetryLayer::builder()
                .budget(0.2, 0, Duration::ZERO)
                .build()
                .unwrap_err(),
            "budget",
            ConfigErrorKind::Zero,
        ),
        (
            RetryLayer::builder()
                .wait_for_open_breaker(Duration::ZERO)
                .build()
                .unwrap_err(),
            "wait_for_open_breaker",
            ConfigErrorKind::Zero,
        ),
        (
            RetryLayer::builder()
                .max_delay(Duration::from_secs(10))
                .wait_for_open_breaker(Duration::from_secs(11))
                .build()
                .unwrap_err(),
            "wait_for_open_breaker",
            ConfigErrorKind::OutOfRange,
        ),
        (
            RetryLayer::builder()
                .wait_for_open_breaker(Duration::MAX)
                .build()
                .unwrap_err(),
            "wait_for_open_breaker",
            ConfigErrorKind::OutOfRange,
        ),
    ];
    for (err, setting, kind) in cases {
        assert_eq!((err.setting(), err.kind()), (setting, kind), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_or_attempt_timeout_of_duration_max_is_no_limit() {
    for (deadline, attempt_timeout) in [
        (Some(Duration::MAX), None),
        (None, Some(Duration::MAX)),
        (Some(Duration::MAX), Some(Duration::MAX)),
    ] {
        let script = Script::new([Step::Err("flaky"), Step::Late(secs(3600), Ok(2))]);
        let mut builder = no_jitter();
        if let Some(deadline) = deadline {
            builder = builder.deadline(deadline);
        }
        if let Some(timeout) = attempt_timeout {
            builder = builder.attempt_timeout(timeout);
        }
        let layer = builder.build().unwrap();
        let mut svc = layer.layer(script.clone());
        assert_eq!(
            call(&mut svc).await.unwrap(),
            2,
            "{deadline:?} {attempt_timeout:?}"
        );
        assert_eq!(script.calls(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_beyond_a_century_ends_retrying_with_the_result_that_asked_for_it() {
    for asked in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        secs(101 * 365 * 86_400),
    ] {
        let script = Script::new([Step::Err("come back much later"), Step::Ok(1)]);
        let layer = no_jitter()
            .policy(AskFor(asked))
            .max_delay(Duration::MAX)
            .deadline(Duration::MAX)
            .attempt_timeout(Duration::MAX)
            .build()
            .unwrap();
        let mut svc = layer.layer(script.clone());
        let started = Instant::now();
        let err = call(&mut svc).await.unwrap_err();
        assert_eq!(err.to_string(), "come back much later", "{asked:?}");
        assert_eq!((script.calls(), started.elapsed()), (1, Duration::ZERO));
        assert_eq!(layer.handle().metrics().retrying, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_probing_beyond_a_century_is_not_waited_for() {
    let script = Script::new([
        Step::Reject(RejectKind::CircuitOpen, Some(Duration::MAX)),
        Step::Ok(1),
    ]);
    let layer = no_jitter()
        .max_delay(Duration::MAX)
        .wait_for_open_breaker(Duration::MAX)
        .build()
        .unwrap();
    let (rejection, _) = refusal(&layer, &script).await;
    assert_eq!(
        rejection,
        Some((RejectKind::CircuitOpen, Some(Duration::MAX)))
    );
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_builder_takes_a_stacks_classifier_and_the_layer_hands_out_its_handle() {
    use reflex_core::{Classified, Handled, LayerBuilder, LayerHandle, Outcome, Sink};

    // The stack says every answer is a success: an `Err` is final.
    let stack_classifier = |_: Result<&u32, &BoxError>| Outcome::Success;
    let builder = no_jitter().classified_by(stack_classifier);
    let builder = LayerBuilder::component(builder, Component::new("db"));
    let layer = LayerBuilder::build(LayerBuilder::sink(builder, Sink::none())).unwrap();
    let script = Script::new([Step::Err("a"), Step::Ok(1)]);
    let mut svc = layer.layer(script.clone());
    assert_eq!(call(&mut svc).await.unwrap_err().to_string(), "a");
    assert_eq!(script.calls(), 1);

    let handle = Handled::handle(&layer);
    assert!(
        Handled::control(&layer).is_none(),
        "nothing for reflexes to steer"
    );
    assert_eq!(LayerHandle::component(&handle).as_str(), "db");
    assert_eq!(LayerHandle::metrics(&handle), layer.handle().metrics());
    assert_eq!(LayerHandle::metrics(&handle).retries, 0);
}
