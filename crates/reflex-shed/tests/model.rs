//! Property tests: the layer against a reference model, and config
//! validation against its rule.

use std::convert::Infallible;
use std::future::{Future, Pending, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use proptest::prelude::*;
use reflex_core::signal::Recorder;
use reflex_core::{Component, Signal};
use reflex_shed::ConcurrencyShedLayer;
use reflex_shed::future::ResponseFuture;
use tower::{Layer, Service, service_fn};

#[derive(Debug, Clone)]
enum Op {
    /// A new request arrives.
    Admit,
    /// The running request at this index (modulo) finishes.
    Finish(usize),
    /// An operator sets the hard limit.
    SetLimit(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Admit),
        3 => any::<usize>().prop_map(Op::Finish),
        1 => (1usize..=10).prop_map(Op::SetLimit),
    ]
}

/// What the layer should do, written the plain way.
struct Model {
    configured_hard: usize,
    configured_soft: Option<usize>,
    hard: usize,
    soft: Option<usize>,
    in_flight: usize,
    shed: u64,
    over_soft: bool,
    signals: Vec<Signal>,
}

impl Model {
    fn admit(&mut self) -> bool {
        if self.in_flight >= self.hard {
            self.shed += 1;
            return false;
        }
        self.in_flight += 1;
        if let Some(soft) = self.soft {
            if self.in_flight > soft && !self.over_soft {
                self.over_soft = true;
                self.signals.push(Signal::SoftLimitExceeded {
                    in_flight: self.in_flight,
                    soft_limit: soft,
                });
            }
        }
        true
    }

    fn finish(&mut self) {
        self.in_flight -= 1;
        if let Some(soft) = self.soft {
            if self.over_soft && self.in_flight <= soft / 2 {
                self.over_soft = false;
                self.signals.push(Signal::SoftLimitRecovered {
                    in_flight: self.in_flight,
                    soft_limit: soft,
                });
            }
        }
    }

    fn set_limit(&mut self, hard: usize) {
        let previous_soft = self.soft;
        self.soft = self
            .configured_soft
            .map(|soft| (soft * hard / self.configured_hard).min(hard - 1))
            .filter(|soft| *soft > 0);
        if let (None, Some(previous_soft), true) = (self.soft, previous_soft, self.over_soft) {
            // The soft limit was withdrawn: the excursion ends now.
            self.over_soft = false;
            self.signals.push(Signal::SoftLimitRecovered {
                in_flight: self.in_flight,
                soft_limit: previous_soft,
            });
        }
        if hard != self.hard {
            self.signals.push(Signal::HardLimitChanged {
                from: self.hard,
                to: hard,
            });
        }
        self.hard = hard;
    }
}

fn never_answers(_: u32) -> Pending<Result<(), Infallible>> {
    pending()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_layer_behaves_as_the_reference_model(
        hard in 1usize..=8,
        soft_ratio in proptest::option::of(0.0f64..1.0),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let soft = soft_ratio
            .map(|ratio| (ratio * hard as f64) as usize)
            .filter(|soft| (1..hard).contains(soft));
        let recorder = Arc::new(Recorder::with_capacity(10_000));
        let mut builder = ConcurrencyShedLayer::builder()
            .hard_limit(hard)
            .component("model")
            .sink(recorder.clone());
        if let Some(soft) = soft {
            builder = builder.soft_limit(soft);
        }
        let layer = builder.build().unwrap();
        let handle = layer.handle();
        let mut svc = layer.layer(service_fn(never_answers as fn(u32) -> _));
        let mut model = Model {
            configured_hard: hard,
            configured_soft: soft,
            hard,
            soft,
            in_flight: 0,
            shed: 0,
            over_soft: false,
            signals: Vec::new(),
        };
        let mut running: Vec<ResponseFuture<Pending<Result<(), Infallible>>>> = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());

        for op in ops {
            match op {
                Op::Admit => {
                    let expected = model.admit();
                    prop_assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
                    let mut response = Service::<u32>::call(&mut svc, 0);
                    let admitted = Pin::new(&mut response).poll(&mut cx).is_pending();
                    prop_assert_eq!(admitted, expected);
                    if admitted {
                        running.push(response);
                    }
                }
                Op::Finish(i) if !running.is_empty() => {
                    running.swap_remove(i % running.len());
                    model.finish();
                }
                Op::Finish(_) => {}
                Op::SetLimit(limit) => {
                    handle.set_hard_limit(limit).unwrap();
                    model.set_limit(limit);
                }
            }
            prop_assert_eq!(handle.metrics().in_flight, model.in_flight);
            prop_assert_eq!(handle.metrics().hard_limit, model.hard);
            prop_assert_eq!(handle.metrics().soft_limit, model.soft);
            prop_assert_eq!(handle.metrics().shed_total, model.shed);
        }
        let signals: Vec<Signal> = recorder
            .signals()
            .into_iter()
            .map(|(component, signal)| {
                assert_eq!(component, Component::new("model"));
                signal
            })
            .filter(|signal| !matches!(signal, Signal::Shed { .. }))
            .collect();
        prop_assert_eq!(signals, model.signals);
        running.clear();
        prop_assert_eq!(handle.metrics().in_flight, 0);
    }

    #[test]
    fn build_accepts_exactly_the_valid_configs(
        hard in prop_oneof![0usize..=16, Just(usize::MAX), Just((1 << 31) - 1), Just(1 << 31)],
        soft in proptest::option::of(prop_oneof![0usize..=16, Just(usize::MAX)]),
    ) {
        let mut builder = ConcurrencyShedLayer::builder().hard_limit(hard);
        if let Some(soft) = soft {
            builder = builder.soft_limit(soft);
        }
        let valid_hard = (1..=(1usize << 31) - 1).contains(&hard);
        let valid_soft = soft.is_none_or(|soft| soft >= 1 && soft < hard);
        prop_assert_eq!(builder.build().is_ok(), valid_hard && valid_soft);
    }

    #[test]
    fn extreme_values_never_panic_a_request(
        hard in prop_oneof![Just(1usize), Just(2), Just((1 << 31) - 1), Just(1 << 31), Just(usize::MAX)],
        retry_after in prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(Duration::MAX),
            any::<u64>().prop_map(Duration::from_secs),
        ],
        new_limit in prop_oneof![Just(0usize), Just(1), Just((1 << 31) - 1), Just(1 << 31), Just(usize::MAX)],
    ) {
        let built = ConcurrencyShedLayer::builder()
            .hard_limit(hard)
            .retry_after(retry_after)
            .build();
        let Ok(layer) = built else {
            prop_assert!(hard > (1 << 31) - 1, "only an out-of-range limit is refused");
            return Ok(());
        };
        let handle = layer.handle();
        let mut svc = layer.layer(service_fn(never_answers as fn(u32) -> _));
        let mut cx = Context::from_waker(Waker::noop());

        // Fill the limit when it is small, then one more: exactly one
        // outcome each, the refusal carrying the configured wait.
        let mut running = Vec::new();
        for n in 0..hard.min(2) {
            let mut future = svc.call(n as u32);
            prop_assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
            running.push(future);
        }
        let mut extra = svc.call(99);
        match Pin::new(&mut extra).poll(&mut cx) {
            std::task::Poll::Ready(Err(err)) => {
                prop_assert!(hard <= 2);
                let rejected = reflex_core::Rejected::find(&*err).unwrap();
                prop_assert_eq!(rejected.retry_after(), Some(retry_after));
            }
            std::task::Poll::Ready(Ok(_)) => prop_assert!(false, "a stuck call ended"),
            std::task::Poll::Pending => {
                prop_assert!(hard > 2);
                running.push(extra);
            }
        }

        // An extreme limit from the handle is refused or taken, never a panic.
        let valid = (1..=(1usize << 31) - 1).contains(&new_limit);
        prop_assert_eq!(handle.set_hard_limit(new_limit).is_ok(), valid);
        let mut after = svc.call(7);
        let _ = Pin::new(&mut after).poll(&mut cx);
        drop(after);
        running.clear();
        prop_assert_eq!(handle.metrics().in_flight, 0);
    }
}
