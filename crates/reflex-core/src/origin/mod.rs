//! Which request waits on which: the [`Origin`] of a failure or a delay.
//!
//! A request that a component serves may call other components while it
//! runs (api's handler awaits auth, which awaits db). A layer that follows
//! requests (the witness's) gives each one a [`Frame`] and runs its future
//! inside it with [`Scoped`]; a request started while a frame is current
//! (in the same task, while that request's future is being polled) is a
//! call *below* it. The frame keeps what its request learns about the
//! calls below it, without a lock or an allocation:
//!
//! - how long at least one of them was in flight ([`Below::waited_ns`]): the
//!   request's *self time* is its latency minus that;
//! - how many of them failed, were refused or were dropped
//!   ([`Below::failed`]): a failure of a request whose call below failed is
//!   an *echo* of that failure, not one of its own.
//!
//! Any layer under the frame's request can read [`failed_below`] (the
//! breaker does, to tell its own component's failures from echoes of a
//! dependency's).
//!
//! The frame lives in a thread-local while its request's future is polled
//! and inside that future otherwise, the way tokio's task-locals work: a
//! call is linked to the request whose future polls it. A call handed to
//! another task (`tokio::spawn`) is not linked.
//!
//! # Examples
//!
//! ```
//! use reflex_core::origin::{self, Frame, Scoped};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // api's request, and inside it a call to db that fails after 3 ms of the
//! // request's 10.
//! let api = Frame::start(0, 0);
//! let below = Scoped::new(api, async {
//!     let db = Frame::start(1, 5_000_000);
//!     assert_eq!(db.origin().depth(), 1);
//!     origin::end_below(db.origin(), 8_000_000, true);
//! })
//! .run_to_end()
//! .await;
//! assert_eq!(below.waited_ns(10_000_000), 3_000_000);
//! assert_eq!(below.failed(), 1);
//! # }
//! ```

mod below;
mod current;
mod frame;
mod scoped;

pub use below::Below;
pub use current::{current_failed_below, current_request, failed_below};
pub use frame::{Caller, Frame, Origin, end_below};
pub use scoped::Scoped;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_outside_any_frame_is_the_top_of_its_chain() {
        let frame = Frame::start(3, 0);
        assert_eq!(frame.origin().root(), frame.origin().id());
        assert_ne!(Frame::start(3, 0).origin().id(), frame.origin().id());
        assert_eq!(frame.origin().depth(), 0);
        assert_eq!(frame.origin().parent_tag(), None);
    }

    #[test]
    fn overlapping_calls_below_count_their_union_once() {
        let mut api = Frame::start(0, 0);
        api.enter(|| {
            let a = Frame::start(1, 10);
            let b = Frame::start(2, 15);
            assert_eq!(a.origin().root(), b.origin().root());
            assert_eq!(b.origin().parent_tag(), Some(0));
            end_below(a.origin(), 20, false);
            end_below(b.origin(), 30, true);
            let c = Frame::start(1, 40);
            end_below(c.origin(), 45, false);
        });
        let below = Below::of(&api);
        assert_eq!(below.waited_ns(50), 20 + 5, "10..30 and 40..45");
        assert_eq!(below.failed(), 1);
        assert_eq!(current_request(), None, "nothing left current");
    }

    #[test]
    fn a_call_that_ends_elsewhere_counts_until_its_parents_end() {
        let mut api = Frame::start(0, 0);
        let db = api.enter(|| Frame::start(1, 10));
        // db ends outside api's frame: api is not told.
        end_below(db.origin(), 20, true);
        let below = Below::of(&api);
        assert_eq!(below.waited_ns(100), 90);
        assert_eq!(below.failed(), 0);
    }

    #[test]
    fn a_frame_is_put_back_when_the_call_inside_it_panics() {
        let mut api = Frame::start(0, 0);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            api.enter(|| panic!("inner call"));
        }));
        assert!(caught.is_err());
        assert_eq!(current_request(), None);
    }
}
