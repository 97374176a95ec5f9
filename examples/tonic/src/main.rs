//! The reflex preset on a tonic server, with the stack's refusals mapped to
//! gRPC statuses and the handler's statuses classified for the breaker. It
//! serves on loopback, calls itself until the breaker opens, prints what it
//! got and what the witness saw, and ends (`-- --serve` keeps serving).
//!
//! The service is written out by hand (what `tonic-build` would generate
//! for a one-method `Greeter`), so the example needs no `protoc`.
//!
//! ```sh
//! cargo run -p example-tonic
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use reflex::Preset;
use reflex::core::{BoxError, GrpcErrorsAsFailures};
use reflex::witness::Witness;
use tonic::body::Body;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};
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

const SAY_HELLO: &str = "/example.Greeter/SayHello";

/// The handler: greets everyone but "db", whose store is down.
async fn say_hello(request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
    match request.into_inner().name.as_str() {
        "db" => Err(Status::unavailable("the store is down")),
        name => Ok(Response::new(HelloReply {
            message: format!("hello {name}"),
        })),
    }
}

/// The server side of `example.Greeter`, as code generation writes it.
#[derive(Clone)]
struct GreeterServer;

impl tonic::server::NamedService for GreeterServer {
    const NAME: &'static str = "example.Greeter";
}

impl Service<http::Request<Body>> for GreeterServer {
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
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
            Ok(grpc.unary(tower::service_fn(say_hello), request).await)
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let witness = Witness::builder().start()?;
    let preset = Preset::new("greeter")
        .classifier(GrpcErrorsAsFailures::new())
        .witness(&witness)
        .shed(reflex::shed::ConcurrencyShedLayer::builder().hard_limit(128))
        .breaker(
            reflex::breaker::CircuitBreakLayer::builder()
                .consecutive_failures(3)
                .open_duration(Duration::from_secs(10)),
        )
        .timeout(Duration::from_secs(5))
        .build()?;
    // tonic resets the stream on an error it does not know: answer the
    // stack's refusals with their gRPC status instead.
    let layers = ServiceBuilder::new()
        .map_result(|result: Result<http::Response<Body>, BoxError>| {
            Ok::<_, BoxError>(
                result.unwrap_or_else(|err| reflex::http::grpc::rejection_response(&*err)),
            )
        })
        .layer(preset);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder().layer(layers).add_service(GreeterServer);
    tokio::spawn(server.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    println!("serving gRPC on http://{addr}");

    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for name in ["ada", "db", "db", "db", "ada"] {
        client.ready().await?;
        let request = Request::new(HelloRequest { name: name.into() });
        let reply: Result<Response<HelloReply>, Status> = client
            .unary(
                request,
                PathAndQuery::from_static(SAY_HELLO),
                ProstCodec::default(),
            )
            .await;
        match reply {
            Ok(reply) => println!("{name}: {}", reply.into_inner().message),
            Err(status) => {
                let pushback = status.metadata().get(reflex::http::grpc::RETRY_PUSHBACK);
                println!(
                    "{name}: {:?} \"{}\"{}",
                    status.code(),
                    status.message(),
                    pushback
                        .and_then(|ms| ms.to_str().ok())
                        .map(|ms| format!(", retry in {ms} ms"))
                        .unwrap_or_default()
                );
            }
        }
    }

    let snapshot = witness.cycle_now();
    if let Some(greeter) = snapshot.component("greeter") {
        println!(
            "the witness saw {} calls: {} succeeded, {} failed, refused {:?}, breaker {:?}",
            greeter.requests, greeter.succeeded, greeter.failed, greeter.rejected, greeter.breaker
        );
    }
    if std::env::args().any(|a| a == "--serve") {
        std::future::pending::<()>().await;
    }
    Ok(())
}
