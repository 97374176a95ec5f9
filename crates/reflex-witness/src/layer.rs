//! [`ObserveWitnessLayer`] and its [`ObserveWitnessBuilder`].

use std::fmt;

use reflex_core::{
    Classified, Component, ConfigError, ConfigErrorKind, DefaultClassifier, Handled, LayerBuilder,
    Sink,
};
use tower_layer::Layer;

use crate::limits::LAYER;
use crate::record::Recorder;
use crate::service::ObserveWitness;
use crate::witness::Witness;

/// Records each request of a component's stack into a [`Witness`]: start,
/// end, latency, outcome, and rejections by kind. From
/// [`ObserveWitnessLayer::builder`], or its shortcut [`Witness::layer`].
///
/// Its [`handle`](Handled::handle) is its witness.
///
/// # Clone
///
/// Clones record into the same component of the same witness.
///
/// # Examples
///
/// ```
/// use reflex_witness::Witness;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let witness = Witness::builder().build()?;
/// let svc = witness
///     .layer("db")
///     .build()?
///     .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// svc.oneshot(7).await?;
/// let snapshot = witness.cycle_now();
/// assert_eq!(snapshot.component("db").map(|c| c.succeeded), Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ObserveWitnessLayer<C = DefaultClassifier> {
    recorder: Recorder<C>,
}

/// Configures an [`ObserveWitnessLayer`]; from
/// [`ObserveWitnessLayer::builder`] or [`Witness::layer`].
///
/// It has no sink of its own: the layer records into its witness. Given
/// one through [`LayerBuilder::sink`] (as generic code such as a preset
/// does for every layer), it ignores it.
///
/// # Examples
///
/// ```
/// use reflex_core::{ConfigErrorKind, Outcome};
/// use reflex_witness::{ObserveWitnessLayer, Witness};
///
/// let witness = Witness::builder().max_components(1).build()?;
/// let _db = ObserveWitnessLayer::builder(&witness)
///     .component("db")
///     .classifier(|r: Result<&u32, &reflex_core::BoxError>| match r {
///         Ok(404) => Outcome::Ignored,
///         Ok(_) => Outcome::Success,
///         Err(_) => Outcome::Failure,
///     })
///     .build()?;
/// // The witness follows one component at most: no room for another.
/// let err = witness.layer("auth").build().unwrap_err();
/// assert_eq!((err.setting(), err.kind()), ("max_components", ConfigErrorKind::OutOfRange));
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ObserveWitnessBuilder<C = DefaultClassifier> {
    witness: Witness,
    component: Component,
    classifier: C,
}

// === impl ObserveWitnessLayer ===

impl ObserveWitnessLayer {
    /// Starts configuring a layer that records into `witness`.
    pub fn builder(witness: &Witness) -> ObserveWitnessBuilder {
        ObserveWitnessBuilder {
            witness: witness.clone(),
            component: Component::default(),
            classifier: DefaultClassifier,
        }
    }
}

impl<C> ObserveWitnessLayer<C> {
    /// The witness it records into.
    pub fn witness(&self) -> &Witness {
        &self.recorder.witness
    }
}

impl<S, C: Clone> Layer<S> for ObserveWitnessLayer<C> {
    type Service = ObserveWitness<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveWitness::new(inner, self.recorder.clone())
    }
}

/// The handle is the witness the layer records into. The witness steers
/// nothing in this layer: [`control`](Handled::control) is `None`.
impl<C> Handled for ObserveWitnessLayer<C> {
    type Handle = Witness;

    fn handle(&self) -> Witness {
        self.recorder.witness.clone()
    }
}

impl<C> fmt::Debug for ObserveWitnessLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = self.recorder.witness.cell(self.recorder.index);
        f.debug_struct("ObserveWitnessLayer")
            .field("component", &cell.name.get())
            .finish_non_exhaustive()
    }
}

// === impl ObserveWitnessBuilder ===

impl<C> ObserveWitnessBuilder<C> {
    /// The component whose requests the layer records: its counters,
    /// baselines and reports carry this name. Layers built for the same
    /// component record into the same counters. Defaults to
    /// [`Component::default`].
    pub fn component(mut self, component: impl Into<Component>) -> Self {
        self.component = component.into();
        self
    }

    /// What counts as a failure: a [`Classify`](reflex_core::Classify)
    /// over `Result<&Response, &BoxError>`, or a closure. A
    /// [`Rejected`](reflex_core::Rejected) error counts as a rejection of
    /// its kind, whatever it says. Defaults to [`DefaultClassifier`].
    pub fn classifier<C2>(self, classifier: C2) -> ObserveWitnessBuilder<C2> {
        ObserveWitnessBuilder {
            witness: self.witness,
            component: self.component,
            classifier,
        }
    }

    /// Registers the component with the witness (once: a component it
    /// follows already keeps its place) and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (setting `max_components`) when the component is
    /// new and the witness already follows as many components as its bound
    /// allows.
    pub fn build(self) -> Result<ObserveWitnessLayer<C>, ConfigError> {
        let registry = &self.witness.inner.registry;
        let index = registry.register(&self.component).ok_or_else(|| {
            ConfigError::new(
                LAYER,
                "max_components",
                ConfigErrorKind::OutOfRange,
                format!(
                    "the witness follows {} components already",
                    registry.capacity()
                ),
            )
        })?;
        Ok(ObserveWitnessLayer {
            recorder: Recorder {
                witness: self.witness,
                index,
                classifier: self.classifier,
            },
        })
    }
}

/// The component as [`component`](ObserveWitnessBuilder::component); the
/// sink is ignored (the layer records into its witness); `build` as
/// [`build`](ObserveWitnessBuilder::build).
impl<C> LayerBuilder for ObserveWitnessBuilder<C> {
    type Layer = ObserveWitnessLayer<C>;

    fn component(self, component: Component) -> Self {
        Self::component(self, component)
    }

    fn sink(self, _: Sink) -> Self {
        self
    }

    fn build(self) -> Result<ObserveWitnessLayer<C>, ConfigError> {
        Self::build(self)
    }
}

/// The stack's classifier is the layer's
/// ([`classifier`](ObserveWitnessBuilder::classifier)).
impl<C, C2> Classified<C2> for ObserveWitnessBuilder<C> {
    type Builder = ObserveWitnessBuilder<C2>;

    fn classified_by(self, classifier: C2) -> ObserveWitnessBuilder<C2> {
        self.classifier(classifier)
    }
}

impl<C> fmt::Debug for ObserveWitnessBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveWitnessBuilder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// Starts configuring a layer that records the requests of
    /// `component`'s stack into this witness: a shortcut for
    /// [`ObserveWitnessLayer::builder`] with its
    /// [`component`](ObserveWitnessBuilder::component).
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// let db = witness.layer("db").build()?;
    /// assert!(witness.cycle_now().component("db").is_some());
    /// # let _ = db;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn layer(&self, component: impl Into<Component>) -> ObserveWitnessBuilder {
        ObserveWitnessLayer::builder(self).component(component)
    }
}
