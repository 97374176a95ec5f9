//! The preset on a tonic server, over a real socket on loopback: every call
//! is witnessed, the stack's refusals reach the client as gRPC statuses, and
//! the handler's own error statuses count as failures for the breaker.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use reflex::Preset;
use reflex::core::{BoxError, Component, GrpcErrorsAsFailures, RejectKind, Rejected};
use reflex::witness::{Clock, Witness};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder};

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const SAY_HELLO: &str = "/reflex.test.Greeter/SayHello";

/// What code generation would write for a one-method service: its name,
/// and the route from the method's path to the handler.
#[derive(Clone)]
struct Greeter {
    gate: Arc<Semaphore>,
    handled: Arc<AtomicUsize>,
}

impl NamedService for Greeter {
    const NAME: &'static str = "reflex.test.Greeter";
}

impl Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != SAY_HELLO {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let this = self.clone();
        let handler = tower::service_fn(move |request: tonic::Request<HelloRequest>| {
            let this = this.clone();
            async move {
                this.handled.fetch_add(1, Ordering::SeqCst);
                let name = request.into_inner().name;
                match name.as_str() {
                    "wait" => this.gate.acquire().await.unwrap().forget(),
                    "fail" => return Err(Status::unavailable("db is down")),
                    "missing" => return Err(Status::not_found("no such name")),
                    _ => {}
                }
                Ok(tonic::Response::new(HelloReply {
                    message: format!("hello {name}"),
                }))
            }
        });
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}

async fn say_hello(channel: &Channel, name: &str) -> Result<String, Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client
        .ready()
        .await
        .map_err(|err| Status::unknown(err.to_string()))?;
    let request = tonic::Request::new(HelloRequest { name: name.into() });
    let reply: tonic::Response<HelloReply> = client
        .unary(
            request,
            PathAndQuery::from_static(SAY_HELLO),
            ProstCodec::default(),
        )
        .await?;
    Ok(reply.into_inner().message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preset_on_a_tonic_server_witnesses_calls_and_answers_refusals_as_statuses() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let greeter = Greeter {
        gate: Arc::new(Semaphore::new(0)),
        handled: Arc::new(AtomicUsize::new(0)),
    };
    let preset = Preset::new("greeter")
        .classifier(GrpcErrorsAsFailures::new())
        .witness(&witness)
        .shed(
            reflex::shed::ConcurrencyShedLayer::builder()
                .hard_limit(1)
                .retry_after(Duration::from_millis(1_500)),
        )
        .breaker(
            reflex::breaker::CircuitBreakLayer::builder()
                .consecutive_failures(2)
                .open_duration(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let layers = ServiceBuilder::new()
        .map_result(|result: Result<http::Response<Body>, BoxError>| {
            Ok::<_, BoxError>(
                result.unwrap_or_else(|err| reflex::http::grpc::rejection_response(&*err)),
            )
        })
        .layer(preset);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder().layer(layers).add_service(greeter.clone());
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    assert_eq!(say_hello(&channel, "ada").await.unwrap(), "hello ada");

    // One call holds the only place; the next is shed, as UNAVAILABLE with
    // the pushback the shed layer advised, and never reaches the handler.
    let first = tokio::spawn({
        let channel = channel.clone();
        async move { say_hello(&channel, "wait").await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while greeter.handled.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the first call reaches the handler");
    let shed = say_hello(&channel, "bob").await.unwrap_err();
    assert_eq!(shed.code(), Code::Unavailable);
    assert_eq!(
        shed.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1500"
    );
    assert_eq!(shed.message(), refusal(RejectKind::Shed));
    assert_eq!(greeter.handled.load(Ordering::SeqCst), 2);
    greeter.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), "hello wait");

    // A caller's mistake is a success to the breaker; two UNAVAILABLEs from
    // the handler in a row open it, and the next call is refused by the
    // stack without reaching the handler.
    assert_eq!(
        say_hello(&channel, "missing").await.unwrap_err().code(),
        Code::NotFound
    );
    for _ in 0..2 {
        let failed = say_hello(&channel, "fail").await.unwrap_err();
        assert_eq!(
            (failed.code(), failed.message()),
            (Code::Unavailable, "db is down")
        );
    }
    let handled = greeter.handled.load(Ordering::SeqCst);
    let open = say_hello(&channel, "ada").await.unwrap_err();
    assert_eq!(open.code(), Code::Unavailable);
    assert_eq!(open.message(), refusal(RejectKind::CircuitOpen));
    assert!(open.metadata().get("grpc-retry-pushback-ms").is_some());
    assert_eq!(
        greeter.handled.load(Ordering::SeqCst),
        handled,
        "refused before the handler"
    );

    let seen = witness.cycle_now();
    let greeter = seen.component("greeter").unwrap();
    assert_eq!(
        (greeter.succeeded, greeter.failed),
        (3, 2),
        "ada, wait, missing; two fails"
    );
    assert_eq!(
        greeter.rejected,
        vec![("shed".to_owned(), 1), ("circuit_open".to_owned(), 1)]
    );
}

/// The text of the stack's refusal of kind `kind`.
fn refusal(kind: RejectKind) -> String {
    Rejected::new(kind, Component::new("greeter")).to_string()
}
