//! [`Policy`]: what a request does when its slot is running, and how a
//! request's own policy is chosen ([`PolicyOf`]).

/// What a request does when its slot is running.
///
/// # Examples
///
/// ```
/// use reflex_slot::{Policy, SlotAdmissionLayer};
///
/// // A newer save of a document replaces the one running.
/// let layer = SlotAdmissionLayer::builder()
///     .key(|save: &(u64, String)| Some(save.0))
///     .policy(Policy::Replace)
///     .build()?;
/// # let _ = layer;
/// assert_eq!(Policy::default(), Policy::Queue);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Wait in FIFO order behind the running request (and those already
    /// waiting); refused with `SlotQueueFull` when the slot's queue or the
    /// layer's bound on all waiting requests is full.
    #[default]
    Queue,
    /// Latest wins: the running request is cancelled (its inner future is
    /// dropped and its caller gets `Replaced`), a request already waiting at
    /// the head is replaced too, and this one starts when the cancelled one
    /// is gone.
    Replace,
    /// Refused at once with `SlotBusy`.
    DropIfRunning,
}

/// The default per-request policy function: none, the layer's policy holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerPolicy;

/// How a request's policy is chosen: by [`LayerPolicy`] (the layer's) or a
/// closure.
///
/// # Examples
///
/// ```
/// use reflex_slot::{LayerPolicy, Policy, PolicyOf};
///
/// let urgent = |req: &(u64, bool)| req.1.then_some(Policy::Replace);
/// assert_eq!(urgent.policy_of(&(7, true)), Some(Policy::Replace));
/// assert_eq!(PolicyOf::<(u64, bool)>::policy_of(&LayerPolicy, &(7, true)), None);
/// ```
pub trait PolicyOf<Request> {
    /// The request's own policy, or `None` for the layer's.
    fn policy_of(&self, request: &Request) -> Option<Policy>;

    /// `false` when this never chooses a policy (so a layer whose own policy
    /// is not Replace never replaces, and need not prepare for it).
    fn may_choose(&self) -> bool {
        true
    }
}

impl<Request> PolicyOf<Request> for LayerPolicy {
    fn policy_of(&self, _: &Request) -> Option<Policy> {
        None
    }

    fn may_choose(&self) -> bool {
        false
    }
}

impl<Request, G: Fn(&Request) -> Option<Policy>> PolicyOf<Request> for G {
    fn policy_of(&self, request: &Request) -> Option<Policy> {
        self(request)
    }
}
