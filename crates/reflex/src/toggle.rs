//! [`Toggle`]: a layer that is there or not, decided when the stack is
//! built, with one error type either way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use reflex_core::{
    BoxError, Classified, Component, ConfigError, Control, Handled, LayerBuilder, Sink,
};
use tower::{Layer, Service};

/// `Some(layer)` wraps the service in it; `None` leaves it as it is. Either
/// way the service's error is a [`BoxError`], so optional layers stack
/// (tower's `Either` wants both sides to have one error type).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex::Toggle;
/// use tower::{ServiceBuilder, ServiceExt, service_fn, timeout::TimeoutLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let timeout: Option<Duration> = None;
/// let svc = ServiceBuilder::new()
///     .layer(Toggle::new(timeout.map(TimeoutLayer::new)))
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(svc.oneshot(7).await?, 7);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Toggle<L>(Option<L>);

impl<L> Toggle<L> {
    /// The layer if `Some`, nothing if `None`.
    pub fn new(layer: Option<L>) -> Self {
        Self(layer)
    }

    /// The layer, if there is one.
    pub fn as_ref(&self) -> Option<&L> {
        self.0.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for Toggle<L> {
    type Service = ToggleService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => ToggleService::On(layer.layer(inner)),
            None => ToggleService::Off(inner),
        }
    }
}

/// The service of [`Toggle`]: the wrapped service, or the inner one.
#[derive(Debug, Clone)]
pub enum ToggleService<A, B> {
    /// The layer is there.
    On(A),
    /// It is not.
    Off(B),
}

impl<A, B, Request> Service<Request> for ToggleService<A, B>
where
    A: Service<Request>,
    A::Error: Into<BoxError>,
    B: Service<Request, Response = A::Response>,
    B::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = BoxError;
    type Future = ToggleFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(a) => a.poll_ready(cx).map_err(Into::into),
            Self::Off(b) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        match self {
            Self::On(a) => ToggleFuture {
                kind: Kind::On {
                    future: a.call(request),
                },
            },
            Self::Off(b) => ToggleFuture {
                kind: Kind::Off {
                    future: b.call(request),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`ToggleService`].
    pub struct ToggleFuture<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<A, B> {
        On {
            #[pin]
            future: A,
        },
        Off {
            #[pin]
            future: B,
        },
    }
}

impl<A, B, T, EA, EB> Future for ToggleFuture<A, B>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { future } => future.poll(cx).map_err(Into::into),
            KindProj::Off { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

impl<A, B> fmt::Debug for ToggleFuture<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::On { .. } => "ToggleFuture::On",
            Kind::Off { .. } => "ToggleFuture::Off",
        })
    }
}

/// A part decided at run time: the builder when `Some`, no layer when
/// `None`. It costs a branch and a larger response future on every call,
/// which a part chosen in the code does not.
impl<B: LayerBuilder> LayerBuilder for Toggle<B> {
    type Layer = Toggle<B::Layer>;

    fn component(self, component: Component) -> Self {
        Self(self.0.map(|b| b.component(component)))
    }

    fn sink(self, sink: Sink) -> Self {
        Self(self.0.map(|b| b.sink(sink)))
    }

    fn build(self) -> Result<Self::Layer, ConfigError> {
        Ok(Toggle(self.0.map(B::build).transpose()?))
    }
}

impl<C, B: Classified<C>> Classified<C> for Toggle<B> {
    type Builder = Toggle<B::Builder>;

    fn classified_by(self, classifier: C) -> Self::Builder {
        Toggle(self.0.map(|b| b.classified_by(classifier)))
    }
}

/// The layer's handle when it is there.
impl<L: Handled> Handled for Toggle<L> {
    type Handle = Option<L::Handle>;

    fn handle(&self) -> Self::Handle {
        self.0.as_ref().map(L::handle)
    }

    fn control(&self) -> Option<Control> {
        self.0.as_ref().and_then(L::control)
    }
}
