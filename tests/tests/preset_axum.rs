//! The preset on an axum router, over a real socket on loopback: every
//! request is witnessed, and what the stack refuses is an http response.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use reflex::Preset;
use reflex::core::BoxError;
use reflex::witness::{Clock, Witness};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

async fn get_status(addr: SocketAddr) -> (u16, Option<String>) {
    let (status, retry_after, _) = common::get(addr).await;
    (status.as_u16(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preset_on_an_axum_router_witnesses_requests_and_answers_refusals() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let preset = Preset::new("api")
        .witness(&witness)
        .shed(
            reflex::shed::ConcurrencyShedLayer::builder()
                .hard_limit(1)
                .retry_after(Duration::from_secs(3)),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let held = held.clone();
                async move {
                    held.acquire().await.unwrap().forget();
                    "ok"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    reflex::http::rejection_response::<axum::body::Body>(&*err)
                }))
                .layer(preset),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // One request holds the only place; the next is shed, with a hint.
    let first = tokio::spawn(get_status(addr));
    while witness.cycle_now().component("api").unwrap().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(get_status(addr).await, (503, Some("3".to_owned())));
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), (200, None));
    gate.add_permits(1);
    assert_eq!(get_status(addr).await, (200, None));

    let snapshot = witness.cycle_now();
    let api = snapshot.component("api").unwrap();
    assert_eq!(
        api.succeeded, 2,
        "the first and the third ended since the last cycle"
    );
    assert!(witness.history().iter().any(|s| {
        s.component("api")
            .is_some_and(|c| c.rejected == vec![("shed".to_owned(), 1)])
    }));
}
