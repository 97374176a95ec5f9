//! The slot queue depth a witness reports, heard from a real
//! `SlotAdmissionLayer`: the requests waiting in every slot of the
//! component, equal at each step to what the slot handle counts, back to
//! zero once the queues drain, whatever the waiters did (ran, were
//! replaced, were dropped).

use std::time::Duration;

use proptest::prelude::*;
use reflex_slot::Policy;
use reflex_tests::slot_rig::{SlotRig, op};
use reflex_witness::{Clock, Witness};

/// The shared slot rig, reporting to a witness.
struct Rig {
    witness: Witness,
    inner: SlotRig,
}

impl Rig {
    fn new(witness: Witness, queue_limit: usize, global_queue_limit: usize) -> Self {
        let inner = SlotRig::new(queue_limit, global_queue_limit, witness.clone());
        Self { witness, inner }
    }

    /// The witness's depth for "jobs", read by a cycle now.
    fn depth(&self) -> usize {
        self.witness
            .cycle_now()
            .component("jobs")
            .map_or(0, |state| state.slot_queue_depth)
    }
}

#[tokio::test(start_paused = true)]
async fn the_slot_queue_depth_follows_drops_and_replacements_back_to_zero() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .interval(Duration::from_secs(1))
        .start()
        .unwrap();
    let mut rig = Rig::new(witness.clone(), 16, 1024);
    let step = |rig: &mut Rig, what: &str| {
        assert_eq!(
            rig.depth(),
            rig.inner.slots.metrics().waiting,
            "after {what}"
        );
        rig.inner.slots.metrics().waiting
    };

    // Two slots busy, five waiting among them.
    rig.inner.send(0, Policy::Queue);
    rig.inner.send(1, Policy::Queue);
    let a: Vec<u32> = (0..3).map(|_| rig.inner.send(0, Policy::Queue)).collect();
    let b: Vec<u32> = (0..2).map(|_| rig.inner.send(1, Policy::Queue)).collect();
    assert_eq!(step(&mut rig, "queueing"), 5, "all slots together");

    // Callers that give up leave their queue.
    rig.inner.drop_id(a[1]);
    rig.inner.drop_id(b[0]);
    assert_eq!(step(&mut rig, "drops"), 3);

    // A newcomer replaces slot 0's runner and its head waiter, and takes
    // the slot when the runner is gone.
    rig.inner.send(0, Policy::Replace);
    assert_eq!(step(&mut rig, "a replacement"), 2);
    // Two replacements on slot 1: the first replaces its runner and its
    // head waiter, the second the first once it runs.
    rig.inner.send(1, Policy::Replace);
    rig.inner.send(1, Policy::Replace);
    assert_eq!(step(&mut rig, "two replacements"), 1);

    rig.inner.finish_all();
    assert_eq!(step(&mut rig, "the queues drained"), 0);

    // The runtime's own snapshot says the same.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let latest = witness.latest_snapshot();
    assert!(latest.cycle > 0);
    assert_eq!(latest.component("jobs").unwrap().slot_queue_depth, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_witness_depth_equals_the_slots_waiting_at_every_step(
        queue_limit in 1usize..4,
        global_queue_limit in 1usize..8,
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
        let mut rig = Rig::new(witness, queue_limit, global_queue_limit);
        for op in ops {
            rig.inner.apply(&op);
            prop_assert_eq!(rig.depth(), rig.inner.slots.metrics().waiting, "after {:?}", op);
        }
        rig.inner.finish_all();
        prop_assert_eq!((rig.depth(), rig.inner.slots.metrics().waiting), (0, 0));
    }
}
