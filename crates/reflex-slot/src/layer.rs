//! [`SlotAdmissionLayer`], its builder and [`Policy`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use reflex_core::{Component, ConfigError, ConfigErrorKind, SignalSink, Sink};
use tower_layer::Layer;

use crate::handle::SlotHandle;
use crate::service::SlotAdmission;
use crate::table::Table;

const LAYER: &str = "slot";

/// What a request does when its slot is running.
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

/// Admits at most one running request per slot. See the [crate docs](crate).
///
/// # Clone
///
/// Clones share the slot table: a slot is one slot for every clone and
/// every service the layer wraps.
pub struct SlotAdmissionLayer<K: Hash + Eq + Clone, F, P> {
    table: Arc<Table<K>>,
    slot_of: F,
    policy_of: P,
    policy: Policy,
}

/// Configures a [`SlotAdmissionLayer`]; from [`SlotAdmissionLayer::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct SlotAdmissionBuilder<F, P> {
    slot_of: F,
    policy_of: P,
    policy: Policy,
    queue_limit: usize,
    global_queue_limit: usize,
    component: Component,
    sink: Sink,
}

/// The default per-request policy function: none, the layer's policy holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerPolicy;

// === impl SlotAdmissionLayer ===

impl SlotAdmissionLayer<(), (), ()> {
    /// Starts configuring a layer whose slot for a request is what `slot_of`
    /// returns (`None`: the request passes through with no admission).
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_slot::{Policy, SlotAdmissionLayer};
    ///
    /// // One running save per document; a newer save replaces an older one.
    /// let layer = SlotAdmissionLayer::builder(|save: &(u64, String)| Some(save.0))
    ///     .policy(Policy::Replace)
    ///     .build()?;
    /// assert_eq!(layer.handle().busy_slots(), 0);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn builder<F>(slot_of: F) -> SlotAdmissionBuilder<F, LayerPolicy> {
        SlotAdmissionBuilder {
            slot_of,
            policy_of: LayerPolicy,
            policy: Policy::Queue,
            queue_limit: 16,
            global_queue_limit: 1024,
            component: Component::default(),
            sink: Sink::none(),
        }
    }
}

impl<K: Hash + Eq + Clone, F, P> SlotAdmissionLayer<K, F, P> {
    /// A handle to read busy slots, queue depths and totals.
    pub fn handle(&self) -> SlotHandle<K> {
        SlotHandle::new(Arc::clone(&self.table))
    }
}

impl<K: Hash + Eq + Clone, F: Clone, P: Clone> Clone for SlotAdmissionLayer<K, F, P> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
            slot_of: self.slot_of.clone(),
            policy_of: self.policy_of.clone(),
            policy: self.policy,
        }
    }
}

impl<S, K: Hash + Eq + Clone, F: Clone, P: Clone> Layer<S> for SlotAdmissionLayer<K, F, P> {
    type Service = SlotAdmission<S, K, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        SlotAdmission::new(
            inner,
            Arc::clone(&self.table),
            self.slot_of.clone(),
            self.policy_of.clone(),
            self.policy,
        )
    }
}

impl<K: Hash + Eq + Clone, F, P> fmt::Debug for SlotAdmissionLayer<K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotAdmissionLayer")
            .field("component", &self.table.component)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

// === impl SlotAdmissionBuilder ===

impl<F, P> SlotAdmissionBuilder<F, P> {
    /// What a request does when its slot is running. Defaults to
    /// [`Policy::Queue`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Overrides the policy per request: `policy_of` returns the request's
    /// own policy, or `None` for the layer's. For `http` requests, a policy
    /// carried in an extension is `|req| req.extensions().get::<Policy>().copied()`.
    /// Defaults to none.
    pub fn policy_by<P2>(self, policy_of: P2) -> SlotAdmissionBuilder<F, P2> {
        SlotAdmissionBuilder {
            slot_of: self.slot_of,
            policy_of,
            policy: self.policy,
            queue_limit: self.queue_limit,
            global_queue_limit: self.global_queue_limit,
            component: self.component,
            sink: self.sink,
        }
    }

    /// The most requests waiting in one slot's queue (at least 1). Defaults
    /// to 16.
    pub fn queue_limit(mut self, limit: usize) -> Self {
        self.queue_limit = limit;
        self
    }

    /// The most requests waiting in all queues together (at least 1).
    /// Defaults to 1024.
    pub fn global_queue_limit(mut self, limit: usize) -> Self {
        self.global_queue_limit = limit;
        self
    }

    /// The component this layer guards, named in rejections, signals and
    /// logs. Defaults to [`Component::default`].
    pub fn component(mut self, component: impl Into<Component>) -> Self {
        self.component = component.into();
        self
    }

    /// Where admission decisions are reported. Defaults to nowhere.
    pub fn sink(mut self, sink: impl SignalSink) -> Self {
        self.sink = Sink::new(sink);
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a queue limit is zero.
    pub fn build<Request, K>(self) -> Result<SlotAdmissionLayer<K, F, P>, ConfigError>
    where
        F: Fn(&Request) -> Option<K>,
        K: Hash + Eq + Clone,
        P: PolicyOf<Request>,
    {
        for (setting, limit) in [
            ("queue_limit", self.queue_limit),
            ("global_queue_limit", self.global_queue_limit),
        ] {
            if limit == 0 {
                return Err(ConfigError::new(
                    LAYER,
                    setting,
                    ConfigErrorKind::Zero,
                    "must be at least 1 (use Policy::DropIfRunning to never wait)",
                ));
            }
        }
        Ok(SlotAdmissionLayer {
            table: Arc::new(Table::new(
                self.queue_limit,
                self.global_queue_limit,
                self.policy == Policy::Replace || self.policy_of.may_choose(),
                self.component,
                self.sink,
            )),
            slot_of: self.slot_of,
            policy_of: self.policy_of,
            policy: self.policy,
        })
    }
}

impl<F, P> fmt::Debug for SlotAdmissionBuilder<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotAdmissionBuilder")
            .field("policy", &self.policy)
            .field("queue_limit", &self.queue_limit)
            .field("global_queue_limit", &self.global_queue_limit)
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

/// How a request's policy is chosen: by [`LayerPolicy`] (the layer's) or a
/// closure.
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
