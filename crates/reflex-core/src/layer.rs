//! The one way in: what every reflex builder, layer and handle share.
//!
//! Every layer of reflex is configured the same way, and a stack such as
//! `reflex::Preset` composes them with one generic piece of code:
//!
//! - [`LayerBuilder`]: a builder is named after its [`Component`], reports to
//!   a [`Sink`], and builds its layer or says why not with a
//!   [`ConfigError`]. It never panics on what it was given.
//! - [`Classified`]: a builder takes the stack's classifier, so that what
//!   counts as a failure is said once for the stack. A layer that does not
//!   judge outcomes keeps its builder as it is.
//! - [`Handled`]: a built layer hands out a handle on its shared state, and
//!   says what a witness's reflexes may steer in it ([`Control`]).
//! - [`LayerHandle`]: every handle names its component and reads its live
//!   numbers the same way, with `metrics()`.
//!
//! `tower_layer::Identity` (no layer at all) is a builder, a layer and a
//! handle-less part of a stack too, so a stack turns a layer off by its type.
//!
//! # Examples
//!
//! A stack that builds any part the same way:
//!
//! ```
//! use reflex_core::layer::{Classified, LayerBuilder};
//! use reflex_core::{Component, ConfigError, DefaultClassifier, Sink};
//! use tower_layer::Identity;
//!
//! fn build_part<P: Classified<DefaultClassifier>>(
//!     part: P,
//!     component: &Component,
//! ) -> Result<<P::Builder as LayerBuilder>::Layer, ConfigError> {
//!     part.classified_by(DefaultClassifier)
//!         .component(component.clone())
//!         .sink(Sink::none())
//!         .build()
//! }
//!
//! let _identity: Identity = build_part(Identity::new(), &Component::new("db"))?;
//! # Ok::<(), ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use tower_layer::Identity;

use crate::{BreakerControl, Component, ConfigError, ShedControl, Sink};

/// A reflex layer's builder: the same three steps for every layer.
///
/// Each builder also has inherent methods of the same names (`component`
/// takes anything that names a component, `sink` any
/// [`SignalSink`](crate::SignalSink)), so a user configuring one layer needs
/// no import; this trait is what generic code, such as a preset, calls.
///
/// # Examples
///
/// ```
/// use reflex_core::layer::LayerBuilder;
/// use reflex_core::{Component, Sink};
/// use tower_layer::Identity;
///
/// let layer = LayerBuilder::build(Identity::new().component(Component::new("db")).sink(Sink::none()));
/// assert!(layer.is_ok());
/// ```
pub trait LayerBuilder: Sized {
    /// The layer it builds.
    type Layer;

    /// Names the dependency the layer guards: its signals, its handle and
    /// its rejections carry this name.
    #[must_use]
    fn component(self, component: Component) -> Self;

    /// Where the layer reports its signals.
    #[must_use]
    fn sink(self, sink: Sink) -> Self;

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting that is invalid.
    fn build(self) -> Result<Self::Layer, ConfigError>;
}

/// A builder given the stack's classifier `C`: the layers that judge
/// outcomes (the breaker, the dedup cache, retry, the witness) take it, so
/// that a stack says once what a failure is; the others (shed, slot) are
/// left as they are.
///
/// # Examples
///
/// ```
/// use reflex_core::layer::Classified;
/// use reflex_core::DefaultClassifier;
/// use tower_layer::Identity;
///
/// let _same: Identity = Identity::new().classified_by(DefaultClassifier);
/// ```
pub trait Classified<C>: Sized {
    /// The builder with the classifier in place.
    type Builder: LayerBuilder;

    /// Gives the builder the stack's classifier.
    fn classified_by(self, classifier: C) -> Self::Builder;
}

/// A built layer that hands out a handle on its shared state.
///
/// # Examples
///
/// ```
/// use reflex_core::layer::Handled;
/// use tower_layer::Identity;
///
/// let () = Identity::new().handle();
/// assert!(Identity::new().control().is_none());
/// ```
pub trait Handled {
    /// The handle: a [`LayerHandle`] for a reflex layer, `()` for a layer
    /// with no state to read.
    type Handle: Clone + Send + Sync + 'static;

    /// A handle on the layer's shared state, shared by every service the
    /// layer makes.
    fn handle(&self) -> Self::Handle;

    /// What a witness's reflexes may steer in this layer: nothing by
    /// default.
    fn control(&self) -> Option<Control> {
        None
    }
}

/// Live numbers and a name: the shape every reflex layer's handle has.
///
/// # Examples
///
/// ```
/// use reflex_core::layer::LayerHandle;
/// use reflex_core::Component;
///
/// #[derive(Clone)]
/// struct Counter(Component, u64);
///
/// impl LayerHandle for Counter {
///     type Metrics = u64;
///     fn component(&self) -> &Component { &self.0 }
///     fn metrics(&self) -> u64 { self.1 }
/// }
///
/// let handle = Counter(Component::new("db"), 3);
/// assert_eq!((handle.component().as_str(), handle.metrics()), ("db", 3));
/// ```
pub trait LayerHandle: Clone + Send + Sync + 'static {
    /// The layer's live numbers at one moment: a plain struct of counters
    /// and gauges, named `<Layer>Metrics`.
    type Metrics: Clone + fmt::Debug + Send + Sync + 'static;

    /// The component the layer guards.
    fn component(&self) -> &Component;

    /// The layer's live numbers now. Counters only grow; each is read on
    /// its own (relaxed), so two may be a request apart.
    fn metrics(&self) -> Self::Metrics;
}

/// What a witness's reflexes may steer in a layer.
///
/// # Examples
///
/// ```
/// use reflex_core::layer::Control;
///
/// fn describe(control: &Control) -> &'static str {
///     match control {
///         Control::Breaker(_) => "a breaker",
///         Control::Shed(_) => "a shed limit",
///         _ => "something newer",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Control {
    /// A breaker the reflexes may trip, throttle and reset.
    Breaker(Arc<dyn BreakerControl>),
    /// A shed limit the reflexes may lower and restore.
    Shed(Arc<dyn ShedControl>),
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Breaker(control) => f.debug_tuple("Breaker").field(&control.state()).finish(),
            Self::Shed(control) => f.debug_tuple("Shed").field(&control.hard_limit()).finish(),
        }
    }
}

/// No layer: builds itself, ignores the name, the sink and the classifier.
impl LayerBuilder for Identity {
    type Layer = Self;

    crate::ignores_component_and_sink!();

    fn build(self) -> Result<Self, ConfigError> {
        Ok(self)
    }
}

crate::unclassified!(Identity);

impl Handled for Identity {
    type Handle = ();

    fn handle(&self) {}
}

/// Implements [`Classified`] for a builder whose layer does not judge
/// outcomes: the stack's classifier leaves it as it is.
#[macro_export]
#[doc(hidden)]
macro_rules! unclassified {
    ($builder:ty $(, $generic:ident)*) => {
        impl<Cls $(, $generic)*> $crate::layer::Classified<Cls> for $builder
        where
            $builder: $crate::layer::LayerBuilder,
        {
            type Builder = Self;

            fn classified_by(self, _: Cls) -> Self {
                self
            }
        }
    };
}

/// The `component` and `sink` of a [`LayerBuilder`] impl whose layer has
/// no name and reports nothing (no layer at all, a timeout): both leave
/// the builder as it is.
#[macro_export]
#[doc(hidden)]
macro_rules! ignores_component_and_sink {
    () => {
        fn component(self, _: $crate::Component) -> Self {
            self
        }

        fn sink(self, _: $crate::Sink) -> Self {
            self
        }
    };
}

/// `get_ref`, `get_mut` and `into_inner` for a service that wraps its inner
/// service in field `$field` of type `$inner`: the accessors every tower
/// middleware has, written once.
#[macro_export]
#[doc(hidden)]
macro_rules! inner_accessors {
    ($field:ident: $inner:ty) => {
        /// The inner service.
        pub fn get_ref(&self) -> &$inner {
            &self.$field
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut $inner {
            &mut self.$field
        }

        /// The inner service, consuming this one.
        pub fn into_inner(self) -> $inner {
            self.$field
        }
    };
}

/// The [`LayerHandle`] impl of a handle whose inherent `component()` and
/// `metrics()` already are the trait's (the trait's methods call them),
/// written once; with `, Debug` also the handle's `Debug`: its component
/// and its metrics now. A generic handle names its parameters after `impl`
/// (lifetime bounds there, others in a `where` clause).
#[macro_export]
#[doc(hidden)]
macro_rules! layer_handle {
    (
        $(#[$attr:meta])*
        impl<$($generic:ident $(: $bound:lifetime)?),*> $handle:ty => $metrics:ty
        $(where $($where:tt)+)?
    ) => {
        $(#[$attr])*
        impl<$($generic $(: $bound)?),*> $crate::layer::LayerHandle for $handle
        $(where $($where)+)?
        {
            type Metrics = $metrics;

            fn component(&self) -> &$crate::Component {
                Self::component(self)
            }

            fn metrics(&self) -> $metrics {
                Self::metrics(self)
            }
        }
    };
    ($(#[$attr:meta])* $handle:ident => $metrics:ty, Debug) => {
        $crate::layer_handle!($(#[$attr])* $handle => $metrics);

        impl ::std::fmt::Debug for $handle {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(::std::stringify!($handle))
                    .field("component", Self::component(self))
                    .field("metrics", &Self::metrics(self))
                    .finish()
            }
        }
    };
    ($(#[$attr:meta])* $handle:ident => $metrics:ty) => {
        $crate::layer_handle!($(#[$attr])* impl<> $handle => $metrics);
    };
}

/// The inherent `component` and `sink` setters of a builder whose
/// `Component` and `Sink` are the fields `component` and `sink` of
/// `self.$path` (or of `self` itself with `self`): the two settings every
/// builder has, written once.
#[macro_export]
#[doc(hidden)]
macro_rules! component_and_sink {
    (self) => {
        $crate::component_and_sink!(@setters [component] [sink]);
    };
    ($($path:ident).+) => {
        $crate::component_and_sink!(@setters [$($path.)+ component] [$($path.)+ sink]);
    };
    (@setters [$($component:tt)+] [$($sink:tt)+]) => {
        /// Names the dependency the layer guards: its rejections, signals,
        /// handle and logs carry this name. Defaults to
        /// [`Component::default`]($crate::Component::default).
        #[must_use]
        pub fn component(mut self, component: impl Into<$crate::Component>) -> Self {
            self.$($component)+ = component.into();
            self
        }

        /// Where the layer reports its [`Signal`]($crate::Signal)s: a
        /// witness's `sink()`, or any [`SignalSink`]($crate::SignalSink).
        /// Defaults to nowhere.
        #[must_use]
        pub fn sink(mut self, sink: impl $crate::SignalSink) -> Self {
            self.$($sink)+ = $crate::Sink::new(sink);
            self
        }
    };
}

/// The body of a builder's [`LayerBuilder`] impl, after its `type Layer`:
/// `component` and `build` call the builder's inherent methods of the same
/// names, and `sink` stores the [`Sink`] as it is in the field `sink` of
/// `self.$path` (or of `self` with `self`), beside the setters of
/// [`component_and_sink!`](crate::component_and_sink).
#[macro_export]
#[doc(hidden)]
macro_rules! layer_builder_methods {
    (self) => {
        $crate::layer_builder_methods!(@methods [sink]);
    };
    ($($path:ident).+) => {
        $crate::layer_builder_methods!(@methods [$($path.)+ sink]);
    };
    (@methods [$($sink:tt)+]) => {
        fn component(self, component: $crate::Component) -> Self {
            Self::component(self, component)
        }

        fn sink(mut self, sink: $crate::Sink) -> Self {
            self.$($sink)+ = sink;
            self
        }

        fn build(self) -> ::std::result::Result<Self::Layer, $crate::ConfigError> {
            Self::build(self)
        }
    };
}
