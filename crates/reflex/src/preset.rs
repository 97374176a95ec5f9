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

/// A part of the preset still to build: a layer's builder, given the
/// preset's component and witness when the preset is built. `Identity`
/// (no layer) is one.
pub trait PresetPart {
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
    ) -> Result<Self::Layer, ConfigError>;
}

impl PresetPart for Identity {
    type Layer = Self;

    fn build_part(self, _: &Component, _: Option<&Witness>) -> Result<Self, ConfigError> {
        Ok(Self::new())
    }
}

#[cfg(feature = "dedup")]
impl<Req, K, KF, H> PresetPart for reflex_dedup::DedupBuilder<Req, K, KF, H>
where
    KF: reflex_dedup::KeyFn<Req, K>,
{
    type Layer = reflex_dedup::DedupLayer<Req, K, KF, H>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
    ) -> Result<Self::Layer, ConfigError> {
        let builder = self.component(component.clone());
        match witness {
            Some(witness) => builder.sink(witness.clone()).build(),
            None => builder.build(),
        }
    }
}

#[cfg(feature = "retry")]
impl<P, C> PresetPart for reflex_retry::RetryBuilder<P, C> {
    type Layer = reflex_retry::RetryLayer<P, C>;

    fn build_part(
        self,
        component: &Component,
        witness: Option<&Witness>,
    ) -> Result<Self::Layer, ConfigError> {
        let builder = self.component(component.clone());
        match witness {
            Some(witness) => builder.sink(witness.clone()).build(),
            None => builder.build(),
        }
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
impl<Req, K, F, P> PresetPart for SlotPart<Req, K, F, P>
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
    ) -> Result<Self::Layer, ConfigError> {
        let builder = self.builder.component(component.clone());
        match witness {
            Some(witness) => builder.sink(witness.clone()).build::<Req, K>(),
            None => builder.build::<Req, K>(),
        }
    }
}

#[cfg(feature = "slot")]
impl<Req, K, F, P> fmt::Debug for SlotPart<Req, K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotPart").finish_non_exhaustive()
    }
}

/// The layers a preset builds, outermost first: witness, shed, dedup,
/// slot, retry, breaker, timeout.
pub type PresetLayers<D, S, R, C = DefaultClassifier> = Stack<
    Toggle<TimeoutLayer>,
    Stack<
        Toggle<CircuitBreakLayer<C>>,
        Stack<
            R,
            Stack<
                S,
                Stack<
                    D,
                    Stack<
                        Toggle<ConcurrencyShedLayer>,
                        Stack<Toggle<ObserveWitnessLayer<C>>, Identity>,
                    >,
                >,
            >,
        >,
    >,
>;

/// What [`Preset::build`] gives: a `ServiceBuilder` of the preset's
/// layers, to wrap a service with, or to add to a router as a layer.
pub type PresetStack<D, S, R, C = DefaultClassifier> = ServiceBuilder<
    PresetLayers<<D as PresetPart>::Layer, <S as PresetPart>::Layer, <R as PresetPart>::Layer, C>,
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
pub struct Preset<D = Identity, S = Identity, R = Identity, C = DefaultClassifier> {
    common: Common,
    classifier: C,
    dedup: D,
    slot: S,
    retry: R,
}

/// The settings whose types do not change with the parts given.
struct Common {
    component: Component,
    witness: Option<Witness>,
    shed: Option<ConcurrencyShedBuilder>,
    breaker: Option<CircuitBreakBuilder>,
    timeout: Option<Duration>,
}

// === impl Preset ===

impl Preset {
    /// A preset for `component`.
    pub fn new(component: impl Into<Component>) -> Self {
        Self {
            common: Common {
                component: component.into(),
                witness: None,
                shed: Some(ConcurrencyShedLayer::builder().hard_limit(1024)),
                breaker: Some(CircuitBreakLayer::builder()),
                timeout: None,
            },
            classifier: DefaultClassifier,
            dedup: Identity::new(),
            slot: Identity::new(),
            retry: Identity::new(),
        }
    }
}

impl<D, S, R, C> Preset<D, S, R, C> {
    /// What counts as a failure, for the witness and the breaker alike
    /// (said once for the stack): a [`Classify`](reflex_core::Classify) or a
    /// closure; for http, `reflex::core::ServerErrorsAsFailures`. The
    /// breaker builder given to [`breaker`](Self::breaker) takes this
    /// classifier. Defaults to `Ok` succeeds, `Err` fails.
    pub fn classifier<C2>(self, classifier: C2) -> Preset<D, S, R, C2> {
        Preset {
            common: self.common,
            classifier,
            dedup: self.dedup,
            slot: self.slot,
            retry: self.retry,
        }
    }

    /// Records every request into `witness`, and has every layer report
    /// its signals to it. Defaults to no witness.
    pub fn witness(mut self, witness: &Witness) -> Self {
        self.common.witness = Some(witness.clone());
        self
    }

    /// The shed layer's configuration (its component and sink are the
    /// preset's). Defaults to a hard limit of 1 024.
    pub fn shed(mut self, shed: ConcurrencyShedBuilder) -> Self {
        self.common.shed = Some(shed);
        self
    }

    /// No shed layer.
    pub fn no_shed(mut self) -> Self {
        self.common.shed = None;
        self
    }

    /// The breaker's configuration. Defaults to the breaker's defaults.
    pub fn breaker(mut self, breaker: CircuitBreakBuilder) -> Self {
        self.common.breaker = Some(breaker);
        self
    }

    /// No breaker.
    pub fn no_breaker(mut self) -> Self {
        self.common.breaker = None;
        self
    }

    /// A timeout around the inner service, inside the breaker (each
    /// attempt gets its own). Defaults to none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.common.timeout = Some(timeout);
        self
    }

    /// The dedup layer (a builder with its key function).
    #[cfg(feature = "dedup")]
    pub fn dedup<Req, K, KF, H>(
        self,
        dedup: reflex_dedup::DedupBuilder<Req, K, KF, H>,
    ) -> Preset<reflex_dedup::DedupBuilder<Req, K, KF, H>, S, R, C> {
        Preset {
            common: self.common,
            classifier: self.classifier,
            dedup,
            slot: self.slot,
            retry: self.retry,
        }
    }

    /// The slot admission layer (a builder with its slot function).
    #[cfg(feature = "slot")]
    pub fn slot<Req, K, F, P>(
        self,
        slot: reflex_slot::SlotAdmissionBuilder<F, P>,
    ) -> Preset<D, SlotPart<Req, K, F, P>, R, C>
    where
        F: Fn(&Req) -> Option<K>,
    {
        Preset {
            common: self.common,
            classifier: self.classifier,
            dedup: self.dedup,
            slot: SlotPart {
                builder: slot,
                _types: PhantomData,
            },
            retry: self.retry,
        }
    }

    /// The retry layer (a builder: for http, `RetryLayer::builder().http()`).
    #[cfg(feature = "retry")]
    pub fn retry<P, RC>(
        self,
        retry: reflex_retry::RetryBuilder<P, RC>,
    ) -> Preset<D, S, reflex_retry::RetryBuilder<P, RC>, C> {
        Preset {
            common: self.common,
            classifier: self.classifier,
            dedup: self.dedup,
            slot: self.slot,
            retry,
        }
    }
}

impl<D, S, R, C> Preset<D, S, R, C>
where
    D: PresetPart,
    S: PresetPart,
    R: PresetPart,
    C: Clone,
{
    /// Builds every layer and composes them, outermost first: witness,
    /// shed, dedup, slot, retry, breaker, timeout.
    ///
    /// # Errors
    ///
    /// The first layer builder's [`ConfigError`]; or one when the timeout
    /// is zero, or the witness follows as many components as it can.
    pub fn build(self) -> Result<PresetStack<D, S, R, C>, ConfigError> {
        let common = self.common;
        let component = &common.component;
        let witness = common.witness.as_ref();
        if common.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "preset",
                "timeout",
                ConfigErrorKind::Zero,
                "must be above zero",
            ));
        }
        // The parts that may fail first: nothing is registered with the
        // witness (a component, the controls) unless the whole stack builds.
        let dedup = self.dedup.build_part(component, witness)?;
        let slot = self.slot.build_part(component, witness)?;
        let retry = self.retry.build_part(component, witness)?;
        let observe = witness
            .map(|w| w.layer(component.clone()))
            .transpose()?
            .map(|layer| layer.classifier(self.classifier.clone()));
        let shed = common
            .shed
            .map(|shed| {
                let shed = shed.component(component.clone());
                match witness {
                    Some(w) => shed.sink(w.clone()).build(),
                    None => shed.build(),
                }
            })
            .transpose()?;
        let breaker = common
            .breaker
            .map(|breaker| {
                let breaker = breaker
                    .component(component.clone())
                    .classifier(self.classifier.clone());
                match witness {
                    Some(w) => breaker.sink(w.clone()).build(),
                    None => breaker.build(),
                }
            })
            .transpose()?;
        if let Some(w) = witness {
            if let Some(shed) = &shed {
                w.control_shed(component.clone(), shed.handle());
            }
            if let Some(breaker) = &breaker {
                w.control_breaker(component.clone(), breaker.handle());
            }
        }
        Ok(ServiceBuilder::new()
            .layer(Toggle::new(observe))
            .layer(Toggle::new(shed))
            .layer(dedup)
            .layer(slot)
            .layer(retry)
            .layer(Toggle::new(breaker))
            .layer(Toggle::new(common.timeout.map(TimeoutLayer::new))))
    }
}

impl<D, S, R, C> fmt::Debug for Preset<D, S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let common = &self.common;
        f.debug_struct("Preset")
            .field("component", &common.component)
            .field("witness", &common.witness.is_some())
            .field("shed", &common.shed.is_some())
            .field("breaker", &common.breaker.is_some())
            .field("timeout", &common.timeout)
            .finish_non_exhaustive()
    }
}
