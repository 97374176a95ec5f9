//! One traffic fixture for the witness's totals and its exports: `api`
//! calls `db` through witness layers, each request asking for an outcome
//! (a success or a failure after a delay, an ignored answer, a refusal of
//! a layer below), with a breaker and a shed limit to report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reflex::witness::Witness;
use reflex_core::{
    BoxError, BreakerControl, BreakerState, Component, ConfigError, Outcome, RejectKind, Rejected,
    ShedControl,
};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

/// What a request asks its component's service for.
#[derive(Debug, Clone, Copy)]
pub enum Ask {
    /// Succeed after this many milliseconds.
    Ok(u64),
    /// Fail after this many milliseconds.
    Fail(u64),
    /// An answer the classifier ignores.
    NotFound,
    /// A refusal of a layer below the witness's.
    Refused(RejectKind),
}

/// The service under both components: does what `ask` says.
pub async fn serve(ask: Ask) -> Result<&'static str, BoxError> {
    match ask {
        Ask::Ok(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok("ok")
        }
        Ask::Fail(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Err("down".into())
        }
        Ask::NotFound => Ok("not found"),
        Ask::Refused(kind) => Err(Rejected::new(kind, Component::new("below")).into()),
    }
}

/// "not found" is ignored, other answers succeed, errors fail.
pub fn classify(result: Result<&&str, &BoxError>) -> Outcome {
    match result {
        Ok(&"not found") => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// A breaker that reports a fixed state and ignores commands.
#[derive(Debug)]
pub struct Breaker(pub BreakerState);

impl BreakerControl for Breaker {
    fn state(&self) -> BreakerState {
        self.0
    }
    fn force_open(&self) {}
    fn reset(&self) {}
    fn trip(&self) {}
    fn throttle(&self, _: Option<f64>) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A shed limit that holds whatever it is set to.
#[derive(Debug)]
pub struct Shed(pub AtomicUsize);

impl Shed {
    /// A limit of `limit`.
    pub fn new(limit: usize) -> Self {
        Self(AtomicUsize::new(limit))
    }
}

impl ShedControl for Shed {
    fn hard_limit(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    fn set_hard_limit(&self, limit: usize) -> Result<(), ConfigError> {
        self.0.store(limit, Ordering::Relaxed);
        Ok(())
    }
}

/// A component's service: [`Ask`]s in, [`serve`]'s answers out.
pub type Svc = BoxCloneSyncService<Ask, &'static str, BoxError>;

/// The two components of the fixture.
#[derive(Debug, Clone)]
pub struct Stack {
    /// [`serve`] behind `db`'s witness layer.
    pub db: Svc,
    /// `db` behind `api`'s witness layer: db's failures are api's echoes.
    pub api: Svc,
}

/// `db` and `api` on `witness`, both classified by [`classify`].
pub fn stack(witness: &Witness) -> Stack {
    let db = witness
        .layer("db")
        .classifier(classify)
        .build()
        .unwrap()
        .layer(service_fn(serve));
    let db = BoxCloneSyncService::new(db);
    let api = witness
        .layer("api")
        .classifier(classify)
        .build()
        .unwrap()
        .layer(service_fn({
            let db = db.clone();
            move |ask| db.clone().oneshot(ask)
        }));
    Stack {
        db,
        api: BoxCloneSyncService::new(api),
    }
}
