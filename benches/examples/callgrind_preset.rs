//! The preset's happy path for callgrind, which counts instructions (the
//! same count on a busy or a quiet machine): `N` calls through the stack
//! named by the first argument, on the calling thread, with no runtime.
//!
//! ```sh
//! cargo build --release -p reflex-benches --example callgrind_preset
//! for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/callgrind_preset four $n 2>&1 | grep refs
//! done
//! ```
//!
//! The difference of the two counts over 100 000 is the cost of one call,
//! without the setup. `four`: witness, shed, retry, breaker; `six`: with
//! dedup and slot admission too, their keys always `None`.

use reflex::Preset;
use reflex::dedup::DedupLayer;
use reflex::retry::RetryLayer;
use reflex::slot::SlotAdmissionLayer;
use reflex::witness::Witness;
use reflex_benches::{Echo, call_once};
use tower::Service;

fn run<S>(mut svc: S, calls: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    for n in 0..calls {
        std::hint::black_box(call_once(&mut svc, n));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let stack = args.next().unwrap_or_else(|| "four".to_owned());
    let calls = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let witness = Witness::builder().build().expect("valid");
    let preset = Preset::new("db")
        .witness(&witness)
        .retry(RetryLayer::builder());
    match stack.as_str() {
        "four" => run(preset.build().expect("valid").service(Echo), calls),
        "six" => run(
            preset
                .dedup(DedupLayer::builder().key(|_: &u64| None::<u64>))
                .slot(SlotAdmissionLayer::builder().key(|_: &u64| None::<u64>))
                .build()
                .expect("valid")
                .service(Echo),
            calls,
        ),
        other => eprintln!("no stack named {other}: four or six"),
    }
}
