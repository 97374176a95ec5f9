//! [`Preset`]: the six layers composed in the documented order, all
//! reporting to one witness under one component name.
//!
//! The preset is one generic composition over the contract every reflex
//! builder follows ([`reflex_core::layer`]): each part is a
//! [`Classified`] builder, given the preset's classifier, component and
//! sink, then built; the layers it builds are [`Handled`], and their
//! handles come back in [`PresetHandles`]. Any builder that follows the
//! contract fits any position; the setters only say where it goes.

mod layer;
mod timeout;

use std::fmt;
use std::time::Duration;

use reflex_breaker::{CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::{
    Classified, Component, ConfigError, DefaultClassifier, Handled, LayerBuilder, Sink,
};
use reflex_shed::{ConcurrencyShedBuilder, ConcurrencyShedLayer};
use reflex_witness::{ObserveWitnessBuilder, ObserveWitnessLayer, Witness};
use tower::ServiceBuilder;
use tower::layer::util::Identity;

pub use layer::{Built, HandleOf, PresetHandles, PresetLayer, PresetLayers, PresetStack};
pub use timeout::Timeout;

use crate::Toggle;

/// What every part of one preset shares.
struct Common<C> {
    component: Component,
    classifier: C,
    sink: Sink,
    witness: Option<Witness>,
    reflexes: bool,
}

/// The six layers composed in the order of the design, for one component:
/// witness, shed, dedup, slot, retry, breaker, and a timeout around the
/// inner service.
///
/// Every part is named after the component, takes the preset's classifier
/// (what counts as a failure is said once for the stack) and reports to the
/// preset's witness. When there is a witness, its reflexes may steer the
/// breaker and the shed limit (see [`no_reflexes`](Self::no_reflexes)).
/// [`build`](Self::build) gives a [`PresetLayer`]: the composed layers and
/// the handles of each ([`PresetHandles`]).
///
/// On by default: the shed layer (1 024 requests in flight) and the breaker
/// (its defaults). Off until given: the witness, dedup and slot (they need a
/// key), retry (its policy must know which requests are safe to send twice),
/// and the timeout.
///
/// A part that is off is not in the stack at all: each setter changes the
/// preset's type (a part is `Identity` when off), so a request pays for the
/// layers it goes through and nothing else. A part decided at run time is a
/// [`Toggle`] of a builder, or [`maybe_timeout`](Self::maybe_timeout). The
/// stack's error is a `BoxError` as soon as one layer is on.
///
/// # http
///
/// Give the http builders (`DedupLayer::builder().http()`,
/// `RetryLayer::builder().http()`) for an http service: the dedup layer then
/// shares response bodies, and the retry layer replays request bodies,
/// reading a body only as the service below reads it. Both sit below the
/// shed layer, so a request the shed layer refuses costs no buffering.
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
/// let retry = stack.handles().retry.clone();
/// let svc = stack.service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
/// assert_eq!(svc.oneshot(41).await?, 42);
/// assert_eq!(retry.metrics().retries, 0);
/// assert_eq!(witness.cycle_now().component("db").map(|c| c.succeeded), Some(1));
/// # Ok(())
/// # }
/// ```
#[must_use = "a preset does nothing until `build` is called"]
pub struct Preset<
    C = DefaultClassifier,
    W = Identity,
    Sh = ConcurrencyShedBuilder,
    D = Identity,
    S = Identity,
    R = Identity,
    B = CircuitBreakBuilder,
    T = Identity,
> {
    common: Common<C>,
    parts: (W, Sh, D, S, R, B, T),
}

// === impl Preset ===

impl Preset {
    /// A preset for `component`.
    pub fn new(component: impl Into<Component>) -> Self {
        Self {
            common: Common {
                component: component.into(),
                classifier: DefaultClassifier,
                sink: Sink::none(),
                witness: None,
                reflexes: true,
            },
            parts: (
                Identity::new(),
                ConcurrencyShedLayer::builder().hard_limit(1024),
                Identity::new(),
                Identity::new(),
                Identity::new(),
                CircuitBreakLayer::builder(),
                Identity::new(),
            ),
        }
    }
}

// Each setter names the preset it gives back, eight parameters long.
#[allow(clippy::type_complexity)]
impl<C, W, Sh, D, S, R, B, T> Preset<C, W, Sh, D, S, R, B, T> {
    /// What counts as a failure, for every part that judges outcomes (the
    /// witness, the breaker, the dedup cache, retry): a
    /// [`Classify`](reflex_core::Classify) or a closure; for http,
    /// `reflex::core::ServerErrorsAsFailures`. It replaces the classifier
    /// of each builder given. Defaults to `Ok` succeeds, `Err` fails.
    pub fn classifier<C2>(self, classifier: C2) -> Preset<C2, W, Sh, D, S, R, B, T> {
        let Common {
            component,
            sink,
            witness,
            reflexes,
            ..
        } = self.common;
        Preset {
            common: Common {
                component,
                classifier,
                sink,
                witness,
                reflexes,
            },
            parts: self.parts,
        }
    }

    /// Records every request into `witness`, and has every layer report its
    /// signals to it. Defaults to no witness.
    pub fn witness(self, witness: &Witness) -> Preset<C, ObserveWitnessBuilder, Sh, D, S, R, B, T> {
        let (_, sh, d, s, r, b, t) = self.parts;
        Preset {
            common: Common {
                sink: Sink::new(witness.sink()),
                witness: Some(witness.clone()),
                ..self.common
            },
            parts: (ObserveWitnessLayer::builder(witness), sh, d, s, r, b, t),
        }
    }

    /// Keeps this component's layers out of the witness's reflexes: the
    /// witness still records and reports, but never trips, throttles or
    /// lowers a limit here (an entry point whose refusals would reach every
    /// user, say). Reflexes are on by default when there is a witness.
    pub fn no_reflexes(mut self) -> Self {
        self.common.reflexes = false;
        self
    }

    /// The shed layer: a `ConcurrencyShedBuilder`, or any builder of the
    /// contract. Defaults to a hard limit of 1 024.
    pub fn shed<Sh2>(self, shed: Sh2) -> Preset<C, W, Sh2, D, S, R, B, T> {
        let (w, _, d, s, r, b, t) = self.parts;
        Preset {
            common: self.common,
            parts: (w, shed, d, s, r, b, t),
        }
    }

    /// No shed layer.
    pub fn no_shed(self) -> Preset<C, W, Identity, D, S, R, B, T> {
        self.shed(Identity::new())
    }

    /// The dedup layer: `DedupLayer::builder().key(..)`, or
    /// `DedupLayer::builder().http()` to share http responses. Only answers
    /// the preset's classifier calls a success are cached. Defaults to none.
    pub fn dedup<D2>(self, dedup: D2) -> Preset<C, W, Sh, D2, S, R, B, T> {
        let (w, sh, _, s, r, b, t) = self.parts;
        Preset {
            common: self.common,
            parts: (w, sh, dedup, s, r, b, t),
        }
    }

    /// The slot admission layer: `SlotAdmissionLayer::builder().key(..)`.
    /// Defaults to none.
    pub fn slot<S2>(self, slot: S2) -> Preset<C, W, Sh, D, S2, R, B, T> {
        let (w, sh, d, _, r, b, t) = self.parts;
        Preset {
            common: self.common,
            parts: (w, sh, d, slot, r, b, t),
        }
    }

    /// The retry layer: `RetryLayer::builder()` with a policy, or
    /// `RetryLayer::builder().http()` for http requests (bodies replayed).
    /// Defaults to none.
    pub fn retry<R2>(self, retry: R2) -> Preset<C, W, Sh, D, S, R2, B, T> {
        let (w, sh, d, s, _, b, t) = self.parts;
        Preset {
            common: self.common,
            parts: (w, sh, d, s, retry, b, t),
        }
    }

    /// The breaker: a `CircuitBreakBuilder`, keyed or not. Defaults to the
    /// breaker's defaults.
    pub fn breaker<B2>(self, breaker: B2) -> Preset<C, W, Sh, D, S, R, B2, T> {
        let (w, sh, d, s, r, _, t) = self.parts;
        Preset {
            common: self.common,
            parts: (w, sh, d, s, r, breaker, t),
        }
    }

    /// No breaker.
    pub fn no_breaker(self) -> Preset<C, W, Sh, D, S, R, Identity, T> {
        self.breaker(Identity::new())
    }

    /// A timeout around the inner service, inside the breaker (each attempt
    /// gets its own). Zero is refused by [`build`](Self::build). Defaults
    /// to none.
    pub fn timeout(self, timeout: Duration) -> Preset<C, W, Sh, D, S, R, B, Timeout> {
        self.set_timeout(Timeout::new(timeout))
    }

    /// [`timeout`](Self::timeout) when `Some`, none when `None`: for a
    /// timeout read from configuration.
    pub fn maybe_timeout(
        self,
        timeout: Option<Duration>,
    ) -> Preset<C, W, Sh, D, S, R, B, Toggle<Timeout>> {
        self.set_timeout(Toggle::new(timeout.map(Timeout::new)))
    }

    fn set_timeout<T2>(self, timeout: T2) -> Preset<C, W, Sh, D, S, R, B, T2> {
        let (w, sh, d, s, r, b, _) = self.parts;
        Preset {
            common: self.common,
            parts: (w, sh, d, s, r, b, timeout),
        }
    }
}

impl<C, W, Sh, D, S, R, B, T> Preset<C, W, Sh, D, S, R, B, T>
where
    C: Clone,
    W: Classified<C>,
    Sh: Classified<C>,
    D: Classified<C>,
    S: Classified<C>,
    R: Classified<C>,
    B: Classified<C>,
    T: Classified<C>,
    Built<W, C>: Handled,
    Built<Sh, C>: Handled,
    Built<D, C>: Handled,
    Built<S, C>: Handled,
    Built<R, C>: Handled,
    Built<B, C>: Handled,
    Built<T, C>: Handled,
{
    /// Builds every part and composes them, outermost first: witness, shed,
    /// dedup, slot, retry, breaker, timeout; then, when there is a witness
    /// and reflexes are on, hands it what its reflexes may steer.
    ///
    /// # Errors
    ///
    /// The first part's [`ConfigError`] (a zero timeout is one), or the
    /// witness's when it follows as many components as it can. Nothing is
    /// registered with the witness unless the whole stack builds.
    #[allow(clippy::type_complexity)] // the stack of eight parts it builds
    pub fn build(self) -> Result<PresetStack<C, W, Sh, D, S, R, B, T>, ConfigError> {
        let (w, sh, d, s, r, b, t) = self.parts;
        let common = &self.common;
        // The witness last: building its layer registers the component.
        let timeout = build_part(t, common)?;
        let breaker = build_part(b, common)?;
        let retry = build_part(r, common)?;
        let slot = build_part(s, common)?;
        let dedup = build_part(d, common)?;
        let shed = build_part(sh, common)?;
        let observe = build_part(w, common)?;
        if let (Some(witness), true) = (&common.witness, common.reflexes) {
            let controls = [
                shed.control(),
                dedup.control(),
                slot.control(),
                retry.control(),
                breaker.control(),
                timeout.control(),
            ];
            for control in controls.into_iter().flatten() {
                witness.control(common.component.clone(), control);
            }
        }
        let handles = PresetHandles {
            witness: observe.handle(),
            shed: shed.handle(),
            dedup: dedup.handle(),
            slot: slot.handle(),
            retry: retry.handle(),
            breaker: breaker.handle(),
        };
        let layers = ServiceBuilder::new()
            .layer(observe)
            .layer(shed)
            .layer(dedup)
            .layer(slot)
            .layer(retry)
            .layer(breaker)
            .layer(timeout);
        Ok(PresetLayer::new(layers, handles))
    }
}

/// `part` given the stack's classifier, component and (with a witness)
/// sink, then built.
fn build_part<P: Classified<C>, C: Clone>(
    part: P,
    common: &Common<C>,
) -> Result<Built<P, C>, ConfigError> {
    let builder = part
        .classified_by(common.classifier.clone())
        .component(common.component.clone());
    // A builder's own sink stays unless the preset reports to a witness.
    match common.sink.is_active() {
        true => builder.sink(common.sink.clone()).build(),
        false => builder.build(),
    }
}

impl<C, W, Sh, D, S, R, B, T> fmt::Debug for Preset<C, W, Sh, D, S, R, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preset")
            .field("component", &self.common.component)
            .field("witness", &self.common.witness.is_some())
            .field("reflexes", &self.common.reflexes)
            .finish_non_exhaustive()
    }
}
