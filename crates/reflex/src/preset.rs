//! [`Preset`]: the six layers composed in the documented order, all
//! reporting to one witness under one component name.

use std::fmt;
#[cfg(feature = "slot")]
use std::marker::PhantomData;
use std::time::Duration;

use reflex_breaker::{CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::{Component, ConfigError, ConfigErrorKind, DefaultClassifier};
use reflex_shed::{ConcurrencyShedBuilder, ConcurrencyShedLayer};
use reflex_witness::{ObserveWitnessLayer, Witness};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::timeout::TimeoutLayer;

use crate::Toggle;

/// `$builder` named after the preset's component, reporting to its witness
/// if there is one, then built by `$build` (over `$b`).
macro_rules! build_reporting {
    ($builder:expr, $component:expr, $witness:expr, |$b:ident| $build:expr) => {{
        let $b = $builder.component($component.clone());
        match $witness {
            Some(witness) => {
                let $b = $b.sink(witness.sink());
                $build
            }
            None => $build,
        }
    }};
}

/// A part of the preset still to build: a layer's builder, given the
/// preset's component, witness and classifier when the preset is built.
/// `Identity` (no layer) is one; so is a `Duration` (tower's timeout).
pub trait PresetPart<C> {
    /// The layer it builds.
    type Layer;

    /// Builds the layer for `component`, reporting to `witness` if any.
    ///
    /// # Errors
    ///
    /// The layer builder's [`ConfigError`].
    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        classifier: &C,
    ) -> Result<Self::Layer, ConfigError>;

    /// Hands `witness` what its reflexes may steer in `layer`, once every
    /// part of the preset is built. Nothing, by default.
    fn register(_layer: &Self::Layer, _component: &Component, _witness: &Witness) {}
}

impl<C> PresetPart<C> for Identity {
    type Layer = Self;

    fn build_part(self, _: &Component, _: Option<&Witness>, _: &C) -> Result<Self, ConfigError> {
        Ok(Self::new())
    }
}

/// The timeout around the inner service: tower's `TimeoutLayer`.
impl<C> PresetPart<C> for Duration {
    type Layer = TimeoutLayer;

    fn build_part(
        self,
        _: &Component,
        _: Option<&Witness>,
        _: &C,
    ) -> Result<TimeoutLayer, ConfigError> {
        if self.is_zero() {
            return Err(ConfigError::new(
                "preset",
                "timeout",
                ConfigErrorKind::Zero,
                "must be above zero",
            ));
        }
        Ok(TimeoutLayer::new(self))
    }
}

/// A part decided at run time (from configuration, say): the layer when
/// `Some`, nothing when `None`, through a [`Toggle`]. It costs a branch and
/// a larger response future on every call, which a part chosen in the code
/// does not.
impl<C, P: PresetPart<C>> PresetPart<C> for Option<P> {
    type Layer = Toggle<P::Layer>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        classifier: &C,
    ) -> Result<Self::Layer, ConfigError> {
        let layer = self
            .map(|part| part.build_part(component, witness, classifier))
            .transpose()?;
        Ok(Toggle::new(layer))
    }

    fn register(layer: &Self::Layer, component: &Component, witness: &Witness) {
        if let Some(layer) = layer.as_ref() {
            P::register(layer, component, witness);
        }
    }
}

impl<C> PresetPart<C> for ConcurrencyShedBuilder {
    type Layer = ConcurrencyShedLayer;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        _: &C,
    ) -> Result<Self::Layer, ConfigError> {
        build_reporting!(self, component, witness, |b| b.build())
    }

    fn register(layer: &Self::Layer, component: &Component, witness: &Witness) {
        witness.control_shed(component.clone(), layer.handle());
    }
}

/// The breaker takes the preset's classifier.
impl<C: Clone> PresetPart<C> for CircuitBreakBuilder {
    type Layer = CircuitBreakLayer<C>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        classifier: &C,
    ) -> Result<Self::Layer, ConfigError> {
        let builder = self.classifier(classifier.clone());
        build_reporting!(builder, component, witness, |b| b.build())
    }

    fn register(layer: &Self::Layer, component: &Component, witness: &Witness) {
        witness.control_breaker(component.clone(), layer.handle());
    }
}

/// The dedup layer takes the preset's classifier: only answers it calls a
/// success are cached.
#[cfg(feature = "dedup")]
impl<Req, K, KF, H, C: Clone> PresetPart<C> for reflex_dedup::DedupBuilder<Req, K, KF, H>
where
    KF: reflex_dedup::KeyFn<Req, K>,
{
    type Layer = reflex_dedup::DedupLayer<Req, K, KF, H, C>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        classifier: &C,
    ) -> Result<Self::Layer, ConfigError> {
        let builder = self.classifier(classifier.clone());
        build_reporting!(builder, component, witness, |b| b.build())
    }
}

#[cfg(feature = "retry")]
impl<P, RC, C> PresetPart<C> for reflex_retry::RetryBuilder<P, RC> {
    type Layer = reflex_retry::RetryLayer<P, RC>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        _: &C,
    ) -> Result<Self::Layer, ConfigError> {
        build_reporting!(self, component, witness, |b| b.build())
    }
}

/// Where the preset's witness is: nowhere (`Identity`), or a [`Witness`],
/// which records every request through an [`ObserveWitnessLayer`] and hears
/// every other layer's signals.
pub trait PresetWitness<C> {
    /// The recording layer: `Identity`, or an [`ObserveWitnessLayer`].
    type Layer;

    /// The witness, if there is one.
    fn witness(&self) -> Option<&Witness>;

    /// The layer that records `component`'s requests, classified by
    /// `classifier`.
    ///
    /// # Errors
    ///
    /// When the witness follows as many components as it can.
    fn observe(&self, component: &Component, classifier: &C) -> Result<Self::Layer, ConfigError>;
}

impl<C> PresetWitness<C> for Identity {
    type Layer = Self;

    fn witness(&self) -> Option<&Witness> {
        None
    }

    fn observe(&self, _: &Component, _: &C) -> Result<Self, ConfigError> {
        Ok(Self::new())
    }
}

impl<C: Clone> PresetWitness<C> for Witness {
    type Layer = ObserveWitnessLayer<C>;

    fn witness(&self) -> Option<&Witness> {
        Some(self)
    }

    fn observe(&self, component: &Component, classifier: &C) -> Result<Self::Layer, ConfigError> {
        Ok(self
            .layer(component.clone())?
            .classifier(classifier.clone()))
    }
}

/// A slot admission builder with the request and key types its key
/// function takes and gives; from [`Preset::slot`].
#[cfg(feature = "slot")]
pub struct SlotPart<Req, K, F, P> {
    builder: reflex_slot::SlotAdmissionBuilder<F, P>,
    _types: PhantomData<fn(&Req) -> K>,
}

#[cfg(feature = "slot")]
impl<Req, K, F, P, C> PresetPart<C> for SlotPart<Req, K, F, P>
where
    F: Fn(&Req) -> Option<K>,
    K: std::hash::Hash + Eq + Clone,
    P: reflex_slot::PolicyOf<Req>,
{
    type Layer = reflex_slot::SlotAdmissionLayer<K, F, P>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
        _: &C,
    ) -> Result<Self::Layer, ConfigError> {
        build_reporting!(self.builder, component, witness, |b| b.build::<Req, K>())
    }
}

#[cfg(feature = "slot")]
impl<Req, K, F, P> fmt::Debug for SlotPart<Req, K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotPart").finish_non_exhaustive()
    }
}

/// The layers a preset builds, outermost first: witness, shed, dedup,
/// slot, retry, breaker, timeout (each `Identity` when off).
pub type PresetLayers<W, Sh, D, S, R, B, T> =
    Stack<T, Stack<B, Stack<R, Stack<S, Stack<D, Stack<Sh, Stack<W, Identity>>>>>>>;

/// What [`Preset::build`] gives: a `ServiceBuilder` of the preset's
/// layers, to wrap a service with, or to add to a router as a layer.
pub type PresetStack<
    D = Identity,
    S = Identity,
    R = Identity,
    C = DefaultClassifier,
    W = Identity,
    Sh = ConcurrencyShedBuilder,
    B = CircuitBreakBuilder,
    T = Identity,
> = ServiceBuilder<
    PresetLayers<
        <W as PresetWitness<C>>::Layer,
        <Sh as PresetPart<C>>::Layer,
        <D as PresetPart<C>>::Layer,
        <S as PresetPart<C>>::Layer,
        <R as PresetPart<C>>::Layer,
        <B as PresetPart<C>>::Layer,
        <T as PresetPart<C>>::Layer,
    >,
>;

/// The six layers composed in the order of the design, for one component:
/// witness, shed, dedup, slot, retry, breaker, and an optional timeout
/// around the inner service. Every layer is named after the component and
/// reports to the preset's witness, which also gets the breaker's and the
/// shed layer's handles for its reflexes.
///
/// On by default: the shed layer (1 024 requests in flight) and the
/// breaker (its defaults). Off until given: the witness, dedup and slot
/// (they need a key function), retry (its policy must know which requests
/// are safe to send twice), and the timeout.
///
/// A layer that is off is not in the stack at all: each setter that turns
/// one on or off changes the preset's type (the part is `Identity` when
/// off), so a request pays for the layers it goes through and nothing else.
/// The stack's error is a `BoxError` as soon as one layer is on.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex::Preset;
/// use reflex::retry::RetryLayer;
/// use reflex::witness::Witness;
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let witness = Witness::builder().build()?;
/// let stack = Preset::new("db")
///     .witness(&witness)
///     .retry(RetryLayer::builder().max_attempts(2))
///     .timeout(Duration::from_secs(2))
///     .build()?;
/// let svc = stack.service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
/// assert_eq!(svc.oneshot(41).await?, 42);
/// assert_eq!(witness.cycle_now().component("db").map(|c| c.succeeded), Some(1));
/// # Ok(())
/// # }
/// ```
#[must_use = "a preset does nothing until `build` is called"]
pub struct Preset<
    D = Identity,
    S = Identity,
    R = Identity,
    C = DefaultClassifier,
    W = Identity,
    Sh = ConcurrencyShedBuilder,
    B = CircuitBreakBuilder,
    T = Identity,
> {
    component: Component,
    classifier: C,
    witness: W,
    shed: Sh,
    dedup: D,
    slot: S,
    retry: R,
    breaker: B,
    timeout: T,
}

// === impl Preset ===

impl Preset {
    /// A preset for `component`.
    pub fn new(component: impl Into<Component>) -> Self {
        Self {
            component: component.into(),
            classifier: DefaultClassifier,
            witness: Identity::new(),
            shed: ConcurrencyShedLayer::builder().hard_limit(1024),
            dedup: Identity::new(),
            slot: Identity::new(),
            retry: Identity::new(),
            breaker: CircuitBreakLayer::builder(),
            timeout: Identity::new(),
        }
    }
}

// Each setter names the preset it gives back, eight parts long.
#[allow(clippy::type_complexity)]
impl<D, S, R, C, W, Sh, B, T> Preset<D, S, R, C, W, Sh, B, T> {
    /// What counts as a failure, for the witness, the breaker and the dedup
    /// cache alike (said once for the stack): a
    /// [`Classify`](reflex_core::Classify) or a closure; for http,
    /// `reflex::core::ServerErrorsAsFailures`. The breaker and dedup
    /// builders given to the preset take this classifier. Defaults to `Ok` succeeds, `Err` fails.
    pub fn classifier<C2>(self, classifier: C2) -> Preset<D, S, R, C2, W, Sh, B, T> {
        Preset {
            component: self.component,
            classifier,
            witness: self.witness,
            shed: self.shed,
            dedup: self.dedup,
            slot: self.slot,
            retry: self.retry,
            breaker: self.breaker,
            timeout: self.timeout,
        }
    }

    /// Records every request into `witness`, and has every layer report
    /// its signals to it. Defaults to no witness.
    pub fn witness(self, witness: &Witness) -> Preset<D, S, R, C, Witness, Sh, B, T> {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: witness.clone(),
            shed: self.shed,
            dedup: self.dedup,
            slot: self.slot,
            retry: self.retry,
            breaker: self.breaker,
            timeout: self.timeout,
        }
    }

    /// The shed layer's configuration (its component and sink are the
    /// preset's). Defaults to a hard limit of 1 024.
    pub fn shed(
        self,
        shed: ConcurrencyShedBuilder,
    ) -> Preset<D, S, R, C, W, ConcurrencyShedBuilder, B, T> {
        self.set_shed(shed)
    }

    /// No shed layer.
    pub fn no_shed(self) -> Preset<D, S, R, C, W, Identity, B, T> {
        self.set_shed(Identity::new())
    }

    /// The breaker's configuration. Defaults to the breaker's defaults.
    pub fn breaker(
        self,
        breaker: CircuitBreakBuilder,
    ) -> Preset<D, S, R, C, W, Sh, CircuitBreakBuilder, T> {
        self.set_breaker(breaker)
    }

    /// No breaker.
    pub fn no_breaker(self) -> Preset<D, S, R, C, W, Sh, Identity, T> {
        self.set_breaker(Identity::new())
    }

    /// A timeout around the inner service, inside the breaker (each
    /// attempt gets its own). Defaults to none.
    pub fn timeout(self, timeout: Duration) -> Preset<D, S, R, C, W, Sh, B, Duration> {
        self.set_timeout(timeout)
    }

    /// [`timeout`](Self::timeout) when `Some`, none when `None`: for a
    /// timeout read from configuration. It costs a branch and a larger
    /// response future on every call, which `timeout` does not.
    pub fn maybe_timeout(
        self,
        timeout: Option<Duration>,
    ) -> Preset<D, S, R, C, W, Sh, B, Option<Duration>> {
        self.set_timeout(timeout)
    }

    fn set_shed<Sh2>(self, shed: Sh2) -> Preset<D, S, R, C, W, Sh2, B, T> {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: self.witness,
            shed,
            dedup: self.dedup,
            slot: self.slot,
            retry: self.retry,
            breaker: self.breaker,
            timeout: self.timeout,
        }
    }

    fn set_breaker<B2>(self, breaker: B2) -> Preset<D, S, R, C, W, Sh, B2, T> {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: self.witness,
            shed: self.shed,
            dedup: self.dedup,
            slot: self.slot,
            retry: self.retry,
            breaker,
            timeout: self.timeout,
        }
    }

    fn set_timeout<T2>(self, timeout: T2) -> Preset<D, S, R, C, W, Sh, B, T2> {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: self.witness,
            shed: self.shed,
            dedup: self.dedup,
            slot: self.slot,
            retry: self.retry,
            breaker: self.breaker,
            timeout,
        }
    }

    /// The dedup layer (a builder with its key function). It takes the
    /// preset's classifier: only answers the classifier calls a success are
    /// cached.
    #[cfg(feature = "dedup")]
    pub fn dedup<Req, K, KF, H>(
        self,
        dedup: reflex_dedup::DedupBuilder<Req, K, KF, H>,
    ) -> Preset<reflex_dedup::DedupBuilder<Req, K, KF, H>, S, R, C, W, Sh, B, T> {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: self.witness,
            shed: self.shed,
            dedup,
            slot: self.slot,
            retry: self.retry,
            breaker: self.breaker,
            timeout: self.timeout,
        }
    }

    /// The slot admission layer (a builder with its slot function).
    #[cfg(feature = "slot")]
    pub fn slot<Req, K, F, P>(
        self,
        slot: reflex_slot::SlotAdmissionBuilder<F, P>,
    ) -> Preset<D, SlotPart<Req, K, F, P>, R, C, W, Sh, B, T>
    where
        F: Fn(&Req) -> Option<K>,
    {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: self.witness,
            shed: self.shed,
            dedup: self.dedup,
            slot: SlotPart {
                builder: slot,
                _types: PhantomData,
            },
            retry: self.retry,
            breaker: self.breaker,
            timeout: self.timeout,
        }
    }

    /// The retry layer (a builder: for http, `RetryLayer::builder().http()`).
    #[cfg(feature = "retry")]
    pub fn retry<P, RC>(
        self,
        retry: reflex_retry::RetryBuilder<P, RC>,
    ) -> Preset<D, S, reflex_retry::RetryBuilder<P, RC>, C, W, Sh, B, T> {
        Preset {
            component: self.component,
            classifier: self.classifier,
            witness: self.witness,
            shed: self.shed,
            dedup: self.dedup,
            slot: self.slot,
            retry,
            breaker: self.breaker,
            timeout: self.timeout,
        }
    }
}

impl<D, S, R, C, W, Sh, B, T> Preset<D, S, R, C, W, Sh, B, T>
where
    W: PresetWitness<C>,
    Sh: PresetPart<C>,
    D: PresetPart<C>,
    S: PresetPart<C>,
    R: PresetPart<C>,
    B: PresetPart<C>,
    T: PresetPart<C>,
{
    /// Builds every layer and composes them, outermost first: witness,
    /// shed, dedup, slot, retry, breaker, timeout.
    ///
    /// # Errors
    ///
    /// The first layer builder's [`ConfigError`]; or one when the timeout
    /// is zero, or the witness follows as many components as it can.
    #[allow(clippy::type_complexity)] // the stack of eight parts it builds
    pub fn build(self) -> Result<PresetStack<D, S, R, C, W, Sh, B, T>, ConfigError> {
        let component = &self.component;
        let classifier = &self.classifier;
        let witness = self.witness.witness();
        // Every part that may fail first: nothing is registered with the
        // witness (a component, the controls) unless the whole stack builds.
        let timeout = self.timeout.build_part(component, witness, classifier)?;
        let dedup = self.dedup.build_part(component, witness, classifier)?;
        let slot = self.slot.build_part(component, witness, classifier)?;
        let retry = self.retry.build_part(component, witness, classifier)?;
        let shed = self.shed.build_part(component, witness, classifier)?;
        let breaker = self.breaker.build_part(component, witness, classifier)?;
        let observe = self.witness.observe(component, classifier)?;
        if let Some(witness) = witness {
            Sh::register(&shed, component, witness);
            B::register(&breaker, component, witness);
        }
        Ok(ServiceBuilder::new()
            .layer(observe)
            .layer(shed)
            .layer(dedup)
            .layer(slot)
            .layer(retry)
            .layer(breaker)
            .layer(timeout))
    }
}

impl<D, S, R, C, W, Sh, B, T> fmt::Debug for Preset<D, S, R, C, W, Sh, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preset")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}
