//! Extreme settings: every builder setter fed 0, 1, `usize::MAX` and
//! anything between, then requests made. Either `build()` refuses with a
//! `ConfigError` naming the setting, or each request ends exactly once,
//! and nothing panics.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use proptest::prelude::*;
use reflex_core::{BoxError, ConfigErrorKind, RejectKind, Rejected};
use reflex_slot::{Policy, SlotAdmissionLayer};
use tower::{Layer, ServiceExt, service_fn};

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(usize::MAX),
        Just(usize::MAX - 1),
        any::<usize>(),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Queue),
        Just(Policy::Replace),
        Just(Policy::DropIfRunning),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn extreme_settings_are_refused_or_each_request_ends_once(
        queue_limit in limit(),
        global_queue_limit in limit(),
        layer_policy in policy(),
        second_policy in proptest::option::of(policy()),
        component in ".{0,64}",
    ) {
        let built = SlotAdmissionLayer::builder()
.key(|_: &u32| Some(0u8))
            .policy(layer_policy)
            .policy_by(move |n: &u32| if *n == 2 { second_policy } else { None })
            .queue_limit(queue_limit)
            .global_queue_limit(global_queue_limit)
            .component(component.as_str())
            .sink(reflex_core::signal::Recorder::default())
            .build();
        let layer = match built {
            Err(err) => {
                prop_assert_eq!(err.kind(), ConfigErrorKind::Zero);
                let zero = match err.setting() {
                    "queue_limit" => queue_limit,
                    "global_queue_limit" => global_queue_limit,
                    other => return Err(TestCaseError::fail(format!("refused {other}"))),
                };
                prop_assert_eq!(zero, 0);
                return Ok(());
            }
            Ok(layer) => layer,
        };
        prop_assert!(queue_limit > 0 && global_queue_limit > 0, "a zero limit was accepted");
        let handle = layer.handle();
        let answer = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&answer);
        let svc = layer.layer(service_fn(move |n: u32| {
            let gate = Arc::clone(&gate);
            poll_fn(move |_| {
                if gate.load(Ordering::SeqCst) {
                    Poll::Ready(Ok::<_, BoxError>(n))
                } else {
                    Poll::Pending
                }
            })
        }));

        // One call on the idle slot, a second while it runs.
        let mut first = tokio_test::task::spawn(svc.clone().oneshot(1));
        prop_assert!(first.poll().is_pending(), "the first runs");
        let second = tokio_test::task::spawn(svc.oneshot(2));
        let mut calls = [Some(first), Some(second)];
        let mut outcomes = Vec::new();
        for round in 0..4 {
            if round == 1 {
                answer.store(true, Ordering::SeqCst);
            }
            for slot in &mut calls {
                if let Some(call) = slot {
                    if let Poll::Ready(result) = call.poll() {
                        outcomes.push(result);
                        *slot = None;
                    }
                }
            }
        }
        prop_assert_eq!(outcomes.len(), 2, "each call ends once");
        for outcome in outcomes {
            match outcome {
                Ok(n) => prop_assert!(n == 1 || n == 2),
                Err(err) => {
                    let kind = Rejected::find(&*err).map(Rejected::kind);
                    prop_assert!(
                        matches!(kind, Some(RejectKind::SlotBusy | RejectKind::Replaced)),
                        "{err}"
                    );
                }
            }
        }
        prop_assert_eq!((handle.metrics().busy_slots, handle.metrics().waiting), (0, 0));
    }
}
