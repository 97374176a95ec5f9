//! [`SlotAdmissionLayer`] and its [`SlotAdmissionBuilder`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use reflex_core::{
    Component, ConfigError, ConfigErrorKind, Handled, KeyFn, LayerBuilder, NoKey, Sink,
};
use tower_layer::Layer;

use crate::handle::SlotHandle;
use crate::policy::{LayerPolicy, Policy, PolicyOf};
use crate::service::SlotAdmission;
use crate::table::Table;

const LAYER: &str = "slot";

/// Admits at most one running request per slot: a request's slot is its
/// key, from the key function `KF`. See the [crate docs](crate).
///
/// # Clone
///
/// Clones share the slot table: a slot is one slot for every clone and
/// every service the layer wraps.
///
/// # Examples
///
/// ```
/// use reflex_slot::{Policy, SlotAdmissionLayer};
///
/// // One running save per document; a newer save replaces an older one.
/// let layer = SlotAdmissionLayer::builder()
///     .key(|save: &(u64, String)| Some(save.0))
///     .policy(Policy::Replace)
///     .build()?;
/// assert_eq!(layer.handle().metrics().busy_slots, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct SlotAdmissionLayer<K: Hash + Eq + Clone, KF, P> {
    table: Arc<Table<K>>,
    key: KF,
    policy_of: P,
    policy: Policy,
}

/// Configures a [`SlotAdmissionLayer`]; from [`SlotAdmissionLayer::builder`].
///
/// A key function is required: [`build`](Self::build) exists once
/// [`key`](Self::key) (or [`key_with`](Self::key_with)) was given. The
/// builder is a [`LayerBuilder`] then, and
/// [`Classified`](reflex_core::Classified) with any classifier: slot
/// admission does not judge outcomes, so the stack's classifier leaves it
/// as it is.
///
/// # Examples
///
/// ```
/// use reflex_core::ConfigErrorKind;
/// use reflex_slot::SlotAdmissionLayer;
///
/// let err = SlotAdmissionLayer::builder()
///     .key(|n: &u32| Some(*n))
///     .queue_limit(0)
///     .build()
///     .unwrap_err();
/// assert_eq!((err.setting(), err.kind()), ("queue_limit", ConfigErrorKind::Zero));
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct SlotAdmissionBuilder<Req = (), K = (), KF = NoKey, P = LayerPolicy> {
    key: KF,
    policy_of: P,
    settings: Settings,
    _request: PhantomData<fn(&Req) -> K>,
}

/// What a builder holds besides its key and policy functions.
#[derive(Debug)]
struct Settings {
    policy: Policy,
    queue_limit: usize,
    global_queue_limit: usize,
    component: Component,
    sink: Sink,
}

// === impl SlotAdmissionLayer ===

impl SlotAdmissionLayer<(), NoKey, LayerPolicy> {
    /// Starts configuring a layer. A key function is required: give it
    /// with [`key`](SlotAdmissionBuilder::key).
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_slot::{Policy, SlotAdmissionLayer};
    ///
    /// let layer = SlotAdmissionLayer::builder()
    ///     .key(|job: &String| Some(job.clone()))
    ///     .policy(Policy::DropIfRunning)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn builder() -> SlotAdmissionBuilder {
        SlotAdmissionBuilder {
            key: NoKey,
            policy_of: LayerPolicy,
            settings: Settings {
                policy: Policy::Queue,
                queue_limit: 16,
                global_queue_limit: 1024,
                component: Component::default(),
                sink: Sink::none(),
            },
            _request: PhantomData,
        }
    }
}

impl<K: Hash + Eq + Clone, KF, P> SlotAdmissionLayer<K, KF, P> {
    /// A handle to read busy slots, queue depths and counts, shared by every
    /// service the layer wraps.
    pub fn handle(&self) -> SlotHandle<K> {
        SlotHandle::new(Arc::clone(&self.table))
    }
}

impl<K: Hash + Eq + Clone, KF: Clone, P: Clone> Clone for SlotAdmissionLayer<K, KF, P> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
            key: self.key.clone(),
            policy_of: self.policy_of.clone(),
            policy: self.policy,
        }
    }
}

impl<S, K: Hash + Eq + Clone, KF: Clone, P: Clone> Layer<S> for SlotAdmissionLayer<K, KF, P> {
    type Service = SlotAdmission<S, K, KF, P>;

    fn layer(&self, inner: S) -> Self::Service {
        SlotAdmission::new(
            inner,
            Arc::clone(&self.table),
            self.key.clone(),
            self.policy_of.clone(),
            self.policy,
        )
    }
}

/// The handle; nothing for a witness's reflexes to steer.
impl<K, KF, P> Handled for SlotAdmissionLayer<K, KF, P>
where
    K: Hash + Eq + Clone + Send + 'static,
{
    type Handle = SlotHandle<K>;

    fn handle(&self) -> SlotHandle<K> {
        Self::handle(self)
    }
}

impl<K: Hash + Eq + Clone, KF, P> fmt::Debug for SlotAdmissionLayer<K, KF, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotAdmissionLayer")
            .field("component", &self.table.component)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

// === impl SlotAdmissionBuilder ===

impl<Req, K, KF, P> SlotAdmissionBuilder<Req, K, KF, P> {
    /// How a request maps to its slot: its key. `None` passes the request
    /// through with no admission. Required (this, or
    /// [`key_with`](Self::key_with)); the closure's argument is typed in
    /// its signature (`|req: &Request| ...`).
    pub fn key<Req2, K2, KF2>(self, key: KF2) -> SlotAdmissionBuilder<Req2, K2, KF2, P>
    where
        KF2: Fn(&Req2) -> Option<K2>,
    {
        self.key_with(key)
    }

    /// As [`key`](Self::key), with a [`KeyFn`] of your own type (a closure
    /// is one too).
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_core::KeyFn;
    /// use reflex_slot::SlotAdmissionLayer;
    ///
    /// struct Save { document: u64 }
    ///
    /// struct ByDocument;
    ///
    /// impl KeyFn<Save, u64> for ByDocument {
    ///     fn key(&self, save: &Save) -> Option<u64> {
    ///         Some(save.document)
    ///     }
    /// }
    ///
    /// let layer = SlotAdmissionLayer::builder().key_with(ByDocument).build()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn key_with<Req2, K2, KF2>(self, key: KF2) -> SlotAdmissionBuilder<Req2, K2, KF2, P>
    where
        KF2: KeyFn<Req2, K2>,
    {
        SlotAdmissionBuilder {
            key,
            policy_of: self.policy_of,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// What a request does when its slot is running. Defaults to
    /// [`Policy::Queue`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// Overrides the policy per request: `policy_of` returns the request's
    /// own policy, or `None` for the layer's. For `http` requests, a policy
    /// carried in an extension is `|req| req.extensions().get::<Policy>().copied()`.
    /// Defaults to none ([`LayerPolicy`]).
    pub fn policy_by<P2>(self, policy_of: P2) -> SlotAdmissionBuilder<Req, K, KF, P2> {
        SlotAdmissionBuilder {
            key: self.key,
            policy_of,
            settings: self.settings,
            _request: PhantomData,
        }
    }

    /// The most requests waiting in one slot's queue (at least 1). Defaults
    /// to 16.
    pub fn queue_limit(mut self, limit: usize) -> Self {
        self.settings.queue_limit = limit;
        self
    }

    /// The most requests waiting in all queues together (at least 1).
    /// Defaults to 1024.
    pub fn global_queue_limit(mut self, limit: usize) -> Self {
        self.settings.global_queue_limit = limit;
        self
    }

    reflex_core::component_and_sink!(settings);
}

impl<Req, K, KF, P> SlotAdmissionBuilder<Req, K, KF, P>
where
    KF: KeyFn<Req, K>,
    K: Hash + Eq + Clone,
    P: PolicyOf<Req>,
{
    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a queue limit is zero.
    pub fn build(self) -> Result<SlotAdmissionLayer<K, KF, P>, ConfigError> {
        let settings = self.settings;
        for (setting, limit) in [
            ("queue_limit", settings.queue_limit),
            ("global_queue_limit", settings.global_queue_limit),
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
                settings.queue_limit,
                settings.global_queue_limit,
                settings.policy == Policy::Replace || self.policy_of.may_choose(),
                settings.component,
                settings.sink,
            )),
            key: self.key,
            policy_of: self.policy_of,
            policy: settings.policy,
        })
    }
}

impl<Req, K, KF, P> LayerBuilder for SlotAdmissionBuilder<Req, K, KF, P>
where
    KF: KeyFn<Req, K>,
    K: Hash + Eq + Clone,
    P: PolicyOf<Req>,
{
    type Layer = SlotAdmissionLayer<K, KF, P>;

    reflex_core::layer_builder_methods!(settings);
}

// Slot admission does not judge outcomes: the stack's classifier leaves it
// as it is.
reflex_core::unclassified!(SlotAdmissionBuilder<Req, K, KF, P>, Req, K, KF, P);

impl<Req, K, KF, P> fmt::Debug for SlotAdmissionBuilder<Req, K, KF, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotAdmissionBuilder")
            .field("policy", &self.settings.policy)
            .field("queue_limit", &self.settings.queue_limit)
            .field("global_queue_limit", &self.settings.global_queue_limit)
            .field("component", &self.settings.component)
            .finish_non_exhaustive()
    }
}
