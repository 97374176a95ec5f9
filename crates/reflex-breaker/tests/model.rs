//! Property test: random sequences of calls (outcome, latency) and clock
//! steps drive the breaker and a small reference model written here; their
//! states and counts agree at every step.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use reflex_breaker::{BreakerHandle, CircuitBreakLayer};
use reflex_core::{BoxError, BreakerState, Outcome, RejectKind, Rejected};
use tower::{Layer, Service, ServiceExt, service_fn};

const SLOW: Duration = Duration::from_millis(100);
const OPEN: Duration = Duration::from_secs(10);
const CAP: Duration = Duration::from_secs(35);

#[derive(Debug, Clone, Copy)]
struct Step {
    outcome: Outcome,
    latency: Duration,
    then_wait: Duration,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![5 => Just(Outcome::Success), 4 => Just(Outcome::Failure), 1 => Just(Outcome::Ignored)],
        prop_oneof![3 => Just(0u64), 1 => 0u64..250],
        prop_oneof![3 => Just(0u64), 2 => 0u64..15_000],
    )
        .prop_map(|(outcome, latency, wait)| Step {
            outcome,
            latency: Duration::from_millis(latency),
            then_wait: Duration::from_millis(wait),
        })
}

#[derive(Debug, Clone, Copy)]
struct Config {
    consecutive: u32,
    rate: f64,
    slow_rate: f64,
    window: usize,
    minimum: u32,
    probe_successes: u32,
}

fn config() -> impl Strategy<Value = Config> {
    (
        2u32..6,
        0.2f64..1.0,
        0.2f64..1.0,
        1usize..12,
        1u32..12,
        1u32..4,
    )
        .prop_map(
            |(consecutive, rate, slow_rate, window, minimum, probe_successes)| Config {
                consecutive,
                rate,
                slow_rate,
                window,
                minimum: minimum.min(window as u32),
                probe_successes,
            },
        )
}

/// The breaker as the docs describe it, one call at a time.
struct Model {
    config: Config,
    state: BreakerState,
    consecutive: u32,
    window: VecDeque<(bool, bool)>,
    open_until: Duration,
    opens_in_row: u32,
    wins: u32,
}

impl Model {
    fn new(config: Config) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            consecutive: 0,
            window: VecDeque::new(),
            open_until: Duration::ZERO,
            opens_in_row: 0,
            wins: 0,
        }
    }

    fn open(&mut self, now: Duration) {
        self.opens_in_row += 1;
        let grown = OPEN * 2u32.saturating_pow(self.opens_in_row - 1);
        self.open_until = now + grown.min(CAP);
        self.state = BreakerState::Open;
    }

    /// Whether a call arriving at `now` is admitted.
    fn admit(&mut self, now: Duration) -> bool {
        match self.state {
            // Calls come one at a time: the one probe slot is always free.
            BreakerState::Closed | BreakerState::HalfOpen => true,
            BreakerState::Open if now >= self.open_until => {
                self.state = BreakerState::HalfOpen;
                self.wins = 0;
                true
            }
            _ => false,
        }
    }

    fn totals(&self) -> (u32, u32, u32) {
        let calls = self.window.len() as u32;
        let failures = self.window.iter().filter(|(f, _)| *f).count() as u32;
        let slow = self.window.iter().filter(|(_, s)| *s).count() as u32;
        (calls, failures, slow)
    }

    /// A call admitted earlier finished at `now`.
    fn finish(&mut self, outcome: Outcome, slow: bool, now: Duration) {
        match self.state {
            BreakerState::HalfOpen => match outcome {
                // Ignored counts for nothing, slow or not.
                Outcome::Ignored => {}
                Outcome::Failure => self.open(now),
                _ if slow => self.open(now),
                Outcome::Success => {
                    self.wins += 1;
                    if self.wins >= self.config.probe_successes {
                        self.state = BreakerState::Closed;
                        self.consecutive = 0;
                        self.window.clear();
                        self.opens_in_row = 0;
                    }
                }
            },
            BreakerState::Closed => {
                let failed = match outcome {
                    Outcome::Ignored => return,
                    Outcome::Failure => true,
                    Outcome::Success => false,
                };
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };
                self.window.push_back((failed, slow));
                let pushed_out = if self.window.len() > self.config.window {
                    self.window.pop_front()
                } else {
                    None
                };
                let changed = pushed_out != Some((failed, slow));
                // A success trips a rate only when it brings the window up to
                // its minimum number of calls.
                let reached_minimum = changed && self.window.len() as u32 == self.config.minimum;
                if !(failed || slow || reached_minimum) {
                    return;
                }
                let (calls, failures, slow_calls) = self.totals();
                let rate_trips = calls >= self.config.minimum
                    && (f64::from(failures) / f64::from(calls) >= self.config.rate
                        || f64::from(slow_calls) / f64::from(calls) >= self.config.slow_rate);
                if self.consecutive >= self.config.consecutive || rate_trips {
                    self.open(now);
                }
            }
            other => unreachable!("no call finishes in {other:?}"),
        }
    }
}

fn check(handle: &BreakerHandle, model: &Model) -> Result<(), TestCaseError> {
    let metrics = handle.metrics();
    prop_assert_eq!(metrics.state, model.state);
    if model.state == BreakerState::Closed {
        let (calls, failures, slow) = model.totals();
        prop_assert_eq!(metrics.calls, calls);
        prop_assert_eq!(metrics.failures, failures);
        prop_assert_eq!(metrics.slow_calls, slow);
        prop_assert_eq!(metrics.consecutive_failures, model.consecutive);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_breaker_agrees_with_the_reference_model(
        config in config(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let layer = CircuitBreakLayer::builder()
                .consecutive_failures(config.consecutive)
                .failure_rate(config.rate)
                .slow_calls(config.slow_rate, SLOW)
                .count_window(config.window as u32)
                .minimum_calls(config.minimum)
                .open_duration(OPEN)
                .open_backoff(2.0, CAP)
                .probe_successes(config.probe_successes)
                .classifier(|result: Result<&u32, &BoxError>| match result {
                    Ok(1) => Outcome::Ignored,
                    Ok(_) => Outcome::Success,
                    Err(_) => Outcome::Failure,
                })
                .build()
                .unwrap();
            let handle = layer.handle();
            let mut svc = layer.layer(service_fn(|(outcome, latency): (Outcome, Duration)| async move {
                tokio::time::sleep(latency).await;
                match outcome {
                    Outcome::Failure => Err::<u32, BoxError>("down".into()),
                    Outcome::Ignored => Ok(1),
                    Outcome::Success => Ok(0),
                }
            }));
            let start = tokio::time::Instant::now();
            let mut model = Model::new(config);

            for step in steps {
                let admitted = model.admit(start.elapsed());
                let result = svc.ready().await.unwrap().call((step.outcome, step.latency)).await;
                match &result {
                    Err(err) => match Rejected::find(&**err) {
                        Some(rejected) => {
                            prop_assert!(!admitted, "refused a call the model admits");
                            prop_assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
                        }
                        None => prop_assert!(admitted),
                    },
                    Ok(_) => prop_assert!(admitted, "admitted a call the model refuses"),
                }
                if admitted {
                    model.finish(step.outcome, step.latency >= SLOW, start.elapsed());
                }
                check(&handle, &model)?;
                tokio::time::advance(step.then_wait).await;
            }
            Ok(())
        })?;
    }
}
