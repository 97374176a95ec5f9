//! [`PresetLayer`]: what a preset builds, the composed layers and the
//! handles of the parts in them.

use std::fmt;

use reflex_core::{Classified, Handled, LayerBuilder};
use tower::layer::util::{Identity, Stack};
use tower::{Layer, ServiceBuilder};

/// The layers a preset built, composed outermost first (witness, shed,
/// dedup, slot, retry, breaker, timeout), with the handles of those that
/// have one.
///
/// It is a tower [`Layer`]: give it to `ServiceBuilder::layer`, to an axum
/// `Router::layer`, or wrap a service with [`service`](Self::service).
/// Clones share every layer's state.
///
/// # Examples
///
/// ```
/// use reflex::Preset;
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let stack = Preset::new("db").build()?;
/// let shed = stack.handles().shed.clone();
/// let svc = stack.service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(svc.oneshot(21).await?, 42);
/// assert_eq!(shed.metrics().hard_limit, 1024);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PresetLayer<L, H> {
    layers: L,
    handles: H,
}

impl<L, H> PresetLayer<L, H> {
    pub(crate) fn new(layers: L, handles: H) -> Self {
        Self { layers, handles }
    }

    /// The handles of the layers built: a [`PresetHandles`].
    pub fn handles(&self) -> &H {
        &self.handles
    }

    /// The composed layers, without the handles.
    pub fn into_layers(self) -> L {
        self.layers
    }

    /// Wraps `service` in every layer.
    pub fn service<S>(&self, service: S) -> L::Service
    where
        L: Layer<S>,
    {
        self.layers.layer(service)
    }
}

impl<S, L: Layer<S>, H> Layer<S> for PresetLayer<L, H> {
    type Service = L::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}

impl<L, H: fmt::Debug> fmt::Debug for PresetLayer<L, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresetLayer")
            .field("handles", &self.handles)
            .finish_non_exhaustive()
    }
}

/// The handles of a preset's layers, each the part's
/// [`Handled::Handle`](reflex_core::Handled::Handle): the layer's own
/// handle (`ShedHandle`, `BreakerHandle`, …, the `Witness` for the witness),
/// `()` for a part that is off, `Option` of it for a part decided at run
/// time. Read live numbers with `metrics()`, steer with the handle's setters.
///
/// # Examples
///
/// ```
/// use reflex::Preset;
/// use reflex::core::BreakerState;
///
/// # fn main() -> Result<(), reflex::core::ConfigError> {
/// let stack = Preset::new("db").no_shed().build()?;
/// let handles = stack.handles();
/// let () = handles.shed; // off
/// assert_eq!(handles.breaker.state(), BreakerState::Closed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PresetHandles<W, Sh, D, S, R, B> {
    /// The witness the stack records into.
    pub witness: W,
    /// The shed layer's.
    pub shed: Sh,
    /// The dedup layer's.
    pub dedup: D,
    /// The slot admission layer's.
    pub slot: S,
    /// The retry layer's.
    pub retry: R,
    /// The breaker's.
    pub breaker: B,
}

/// The layer part `P` builds in a stack whose classifier is `C`.
pub type Built<P, C> = <<P as Classified<C>>::Builder as LayerBuilder>::Layer;

/// The handle of the layer part `P` builds in a stack whose classifier is
/// `C`: `()` when the part is off.
pub type HandleOf<P, C> = <Built<P, C> as Handled>::Handle;

/// The layers of a preset, outermost first: witness, shed, dedup, slot,
/// retry, breaker, timeout (each `Identity` when off).
pub type PresetLayers<C, W, Sh, D, S, R, B, T> = Stack<
    Built<T, C>,
    Stack<
        Built<B, C>,
        Stack<
            Built<R, C>,
            Stack<
                Built<S, C>,
                Stack<Built<D, C>, Stack<Built<Sh, C>, Stack<Built<W, C>, Identity>>>,
            >,
        >,
    >,
>;

/// What [`Preset::build`](super::Preset::build) gives.
pub type PresetStack<C, W, Sh, D, S, R, B, T> = PresetLayer<
    ServiceBuilder<PresetLayers<C, W, Sh, D, S, R, B, T>>,
    PresetHandles<
        HandleOf<W, C>,
        HandleOf<Sh, C>,
        HandleOf<D, C>,
        HandleOf<S, C>,
        HandleOf<R, C>,
        HandleOf<B, C>,
    >,
>;
