//! The error-to-response mapping, kind by kind, and in an axum router.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http::{Request, StatusCode};
use reflex::core::{BoxError, Component, RejectKind, Rejected};
use reflex::http::{rejection_response, status_of};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn rejected(kind: RejectKind) -> Rejected {
    Rejected::new(kind, Component::new("db"))
}

#[test]
fn every_rejection_kind_has_its_status_and_a_refusal_says_when_to_come_back() {
    // None of these rejections says how long to wait: a 503 or a 429 still
    // tells the client, with the default; a 409 is not "come back later".
    for (kind, status, retry_after) in [
        (RejectKind::Shed, 503, Some("1")),
        (RejectKind::CircuitOpen, 503, Some("1")),
        (RejectKind::Throttled, 503, Some("1")),
        (RejectKind::SlotQueueFull, 503, Some("1")),
        (RejectKind::DedupAborted, 503, Some("1")),
        (RejectKind::DedupFull, 503, Some("1")),
        (RejectKind::SlotBusy, 429, Some("1")),
        (RejectKind::Replaced, 409, None),
        (RejectKind::InProgress, 409, None),
    ] {
        let response = rejection_response::<String>(&rejected(kind));
        assert_eq!(response.status(), status, "{kind:?}");
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            retry_after,
            "{kind:?}"
        );
        assert_eq!(
            response.extensions().get::<Rejected>().map(Rejected::kind),
            Some(kind)
        );
    }
}

#[test]
fn retry_after_comes_from_the_rejection_in_whole_seconds() {
    let open = rejected(RejectKind::CircuitOpen).with_retry_after(Duration::from_millis(2_300));
    let response = rejection_response::<String>(&open);
    assert_eq!(response.headers()["retry-after"], "3");
}

#[test]
fn an_extreme_retry_after_saturates_instead_of_panicking() {
    for (after, header) in [
        (Duration::MAX, u64::MAX.to_string()),
        (Duration::from_secs(u64::MAX), u64::MAX.to_string()),
        (Duration::ZERO, "1".to_owned()),
        (Duration::from_nanos(1), "1".to_owned()),
    ] {
        let shed = rejected(RejectKind::Shed).with_retry_after(after);
        let response = rejection_response::<String>(&shed);
        assert_eq!(
            response.headers()["retry-after"],
            header.as_str(),
            "{after:?}"
        );
    }
}

#[derive(Debug)]
struct Wrapping(BoxError);

impl std::fmt::Display for Wrapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped")
    }
}

impl std::error::Error for Wrapping {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[test]
fn a_rejection_is_found_through_wrapping_errors() {
    let wrapped = Wrapping(rejected(RejectKind::SlotBusy).into());
    assert_eq!(status_of(&wrapped).0, StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn an_inner_error_is_a_500_that_says_nothing() {
    let inner = std::io::Error::other("password=hunter2 at 10.0.0.3");
    let response = rejection_response::<String>(&inner);
    assert_eq!(response.status(), 500);
    assert!(response.body().is_empty());
    assert!(response.headers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_timeout_of_the_stack_is_a_504() {
    let hang = service_fn(|_: ()| std::future::pending::<Result<(), BoxError>>());
    // tower's timeout.
    let err = tower::timeout::TimeoutLayer::new(Duration::from_secs(1))
        .layer(hang)
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(status_of(&*err).0, StatusCode::GATEWAY_TIMEOUT);
    // The retry layer's deadline.
    let err = reflex::retry::RetryLayer::builder()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(hang)
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(status_of(&*err).0, StatusCode::GATEWAY_TIMEOUT);
    // A dedup waiter that gave up.
    let err: BoxError = reflex::dedup::WaitTimedOut.into();
    assert_eq!(status_of(&*err).0, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn in_an_axum_router_a_shed_request_gets_503_with_retry_after() {
    let shed = reflex::shed::ConcurrencyShedLayer::builder()
        .component("api")
        .hard_limit(1)
        .retry_after(Duration::from_secs(2))
        .build()
        .unwrap();
    let (entered, release) = (
        std::sync::Arc::new(tokio::sync::Notify::new()),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    let (e, r) = (entered.clone(), release.clone());
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let (e, r) = (e.clone(), r.clone());
                async move {
                    e.notify_one();
                    r.notified().await;
                    "done"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    rejection_response::<Body>(&*err)
                }))
                .layer(shed),
        );
    let mut svc = app.into_service::<Body>();
    let first = tokio::spawn(
        svc.clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap()),
    );
    entered.notified().await;
    let second = ServiceExt::<Request<Body>>::ready(&mut svc)
        .await
        .unwrap()
        .call(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "2");
    release.notify_one();
    let first: Result<_, Infallible> = first.await.unwrap();
    assert_eq!(first.unwrap().status(), 200);
}
