//! The preset on a hyper 1 server (through hyper-util's tower adapter), and
//! on the client side around hyper-util's client, over loopback sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use reflex::Preset;
use reflex::core::{BoxError, ServerErrorsAsFailures};
use reflex::retry::RetryLayer;
use reflex::witness::Witness;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

/// Serves `svc` on a loopback port, one task per connection.
async fn serve<S>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preset_on_a_hyper_server_answers_and_maps_refusals_to_responses() {
    let witness = Witness::builder().build().unwrap();
    let preset = Preset::new("origin")
        .classifier(ServerErrorsAsFailures)
        .witness(&witness)
        .build()
        .unwrap();
    let handler = tower::service_fn(|request: Request<Incoming>| async move {
        let path = request.uri().path().to_owned();
        let status = if path == "/down" { 500 } else { 200 };
        Ok::<_, BoxError>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(path)))
                .unwrap(),
        )
    });
    let svc = ServiceBuilder::new()
        .map_result(|result: Result<Response<Full<Bytes>>, BoxError>| {
            // Refusals and failures become responses: nothing reaches
            // hyper as an error.
            Ok::<_, BoxError>(result.unwrap_or_else(|err| reflex::http::rejection_response(&*err)))
        })
        .layer(preset)
        .service(handler);
    let addr = serve(svc).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    for (path, status) in [("/up", 200), ("/down", 500), ("/up", 200)] {
        let uri = format!("http://{addr}{path}");
        let response = client
            .request(Request::get(uri).body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, path);
    }
    let snapshot = witness.cycle_now();
    let origin = snapshot.component("origin").unwrap();
    assert_eq!((origin.succeeded, origin.failed), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preset_around_a_hyper_client_retries_an_unavailable_origin() {
    // An origin that is unavailable twice, then answers.
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let origin = tower::service_fn(move |request: Request<Incoming>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let status = if n < 2 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    });
    let addr = serve(origin).await;

    let witness = Witness::builder().build().unwrap();
    let preset = Preset::new("origin")
        .classifier(ServerErrorsAsFailures)
        .witness(&witness)
        .retry(
            RetryLayer::builder()
                .http()
                .backoff(std::time::Duration::from_millis(5), 1.0)
                .max_attempts(3),
        )
        .build()
        .unwrap();
    let client: Client<HttpConnector, reflex::retry::http::ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let stack = ServiceBuilder::new().layer(preset).service(client);
    let request = Request::put(format!("http://{addr}/item"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let response = stack.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "payload", "the body was sent again, whole");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.component("origin").unwrap().retries, 2);
}
