//! The live page in a real browser: headless Chromium driven over
//! WebDriver (chromedriver) opens the page of a three-component stack
//! (api -> auth -> db behind reflex presets) served by axum on loopback,
//! sees the three components, then sees db's failure as a report and
//! db's breaker change colour, and takes a screenshot into
//! `target/page-screenshot.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and
//! `chromium-driver`); `CHROMEDRIVER_BIN` and `CHROME_BIN` say where they
//! are when not `chromedriver` on the path and `/usr/bin/chromium`. Run
//! with `cargo test -p reflex-telemetry --features page --test page_browser
//! -- --ignored`.
#![cfg(feature = "page")]

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use reflex::Preset;
use reflex::breaker::CircuitBreakLayer;
use reflex::core::BoxError;
use reflex::witness::{EdgeReflex, Witness};
use reflex_telemetry::page::LivePage;
use serde_json::{Value, json};

use common::{dying_with_us, free_port};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

/// A component's service: `()` in, `()` out.
type Component = BoxCloneSyncService<(), (), BoxError>;

/// Closed's colour on the page (`--closed`).
const GREEN: &str = "rgb(31, 157, 85)";

/// chromedriver, and the browser it starts (same process group), killed
/// when dropped: at the end of the test, or on its failure.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn spawn() -> Self {
        let bin = std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "chromedriver".to_owned());
        let port = free_port().port();
        let child = dying_with_us(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A session of headless Chromium, once chromedriver answers (within
    /// 20 s).
    async fn session(&self) -> Client {
        let chrome = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": &chrome,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                ],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            match bounded("a chromedriver session", builder.connect(&self.url)).await {
                Ok(client) => return client,
                // chromedriver answered, and refused: no use waiting.
                Err(err @ NewSessionError::SessionNotCreated(_)) => {
                    panic!("chromedriver could not start {chrome}: {err}")
                }
                Err(err) => assert!(
                    Instant::now() < deadline,
                    "no chromedriver session at {}: {err}",
                    self.url
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one WebDriver call may take.
const CALL: Duration = Duration::from_secs(30);

/// `call`, within [`CALL`]; a panic naming `what` otherwise.
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {CALL:?}"))
}

/// Runs `script` in the page until it returns something other than
/// `null` or `false`, within `within`; that value.
async fn wait_for(client: &Client, what: &str, within: Duration, script: &str) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let value = bounded(what, client.execute(script, vec![]))
            .await
            .expect("the script runs");
        if !value.is_null() && value != Value::Bool(false) {
            return value;
        }
        if Instant::now() >= deadline {
            let page = bounded(
                "the page's text",
                client.execute("return document.body.innerText", vec![]),
            )
            .await
            .unwrap_or_default();
            panic!(
                "not within {within:?}: {what}; the page reads:\n{}",
                page.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// api -> auth -> db, each behind a preset on `witness`; db fails while
/// `failing` is set.
fn stack(witness: &Witness, failing: Arc<AtomicBool>) -> Result<Component, BoxError> {
    let breaker = || {
        CircuitBreakLayer::builder()
            .consecutive_failures(5)
            .open_duration(Duration::from_secs(2))
    };
    let db = Preset::new("db")
        .witness(witness)
        .breaker(breaker())
        .build()?
        .service(service_fn(move |(): ()| {
            let failing = failing.load(Ordering::Relaxed);
            async move {
                if failing {
                    return Err::<(), BoxError>("db: connection refused".into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(())
            }
        }));
    let db = BoxCloneSyncService::new(db);
    let auth = Preset::new("auth")
        .witness(witness)
        .breaker(breaker())
        .build()?
        .service(service_fn(move |(): ()| db.clone().oneshot(())));
    let auth = BoxCloneSyncService::new(auth);
    let api = Preset::new("api")
        .witness(witness)
        .build()?
        .service(service_fn(move |(): ()| auth.clone().oneshot(())));
    Ok(BoxCloneSyncService::new(api))
}

/// Where the screenshot goes: the workspace's target directory.
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("page-screenshot.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver: run by .ci/run"]
async fn the_page_shows_the_stack_then_db_failing_as_a_report_and_a_red_breaker() {
    let witness = Witness::builder()
        .interval(Duration::from_millis(250))
        .reflex(EdgeReflex::default())
        .start()
        .unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let api = stack(&witness, failing.clone()).unwrap();

    let app = axum::Router::new().nest_service("/witness", LivePage::new(&witness));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // About 200 requests a second, for at most a minute.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(60);
            let mut ticks = tokio::time::interval(Duration::from_millis(5));
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                ticks.tick().await;
                tokio::spawn(api.clone().oneshot(()));
            }
        })
    };

    let driver = Driver::spawn();
    let client = driver.session().await;
    bounded("the page", client.goto(&format!("http://{addr}/witness/")))
        .await
        .expect("the page opens");
    assert_eq!(
        bounded("the title", client.title()).await.unwrap(),
        "reflex · live"
    );

    let components = wait_for(
        &client,
        "the three components, their breakers closed",
        Duration::from_secs(10),
        r#"const cards = [...document.querySelectorAll('[data-component]')];
           const closed = cards.filter((c) => c.dataset.breaker === 'closed');
           return cards.length === 3 && closed.length === 3
             ? cards.map((c) => c.dataset.component).sort() : null;"#,
    )
    .await;
    assert_eq!(components, json!(["api", "auth", "db"]));
    let colour = r#"return getComputedStyle(
        document.querySelector('[data-component="db"] .breaker')).backgroundColor;"#;
    assert_eq!(
        bounded("db's colour", client.execute(colour, vec![]))
            .await
            .unwrap(),
        GREEN
    );
    wait_for(
        &client,
        "the graph's two calls",
        Duration::from_secs(10),
        r#"return document.querySelector('#graph .edge[data-caller="api"][data-callee="auth"]')
             && document.querySelector('#graph .edge[data-caller="auth"][data-callee="db"]');"#,
    )
    .await;
    // Healthy cycles for the witness to learn db's baseline.
    let learnt = Instant::now() + Duration::from_secs(20);
    while witness.latest_snapshot().cycle < 12 {
        assert!(Instant::now() < learnt, "the witness did not cycle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    failing.store(true, Ordering::Relaxed);
    let report = wait_for(
        &client,
        "a report naming db, on the page",
        Duration::from_secs(8),
        r#"const r = document.querySelector('#reports .report[data-roots~="db"]');
           return r ? r.textContent : null;"#,
    )
    .await;
    assert!(report.as_str().unwrap().contains("db"), "{report}");
    let turned = wait_for(
        &client,
        "db's breaker no longer closed and green",
        Duration::from_secs(8),
        r#"const db = document.querySelector('[data-component="db"]');
           const colour = getComputedStyle(db.querySelector('.breaker')).backgroundColor;
           return db.dataset.breaker !== 'closed' ? [db.dataset.breaker, colour] : null;"#,
    )
    .await;
    assert!(
        ["open", "half_open", "forced_open"].contains(&turned[0].as_str().unwrap()),
        "{turned}"
    );
    assert_ne!(turned[1], GREEN, "{turned}");

    let png = bounded("a screenshot", client.screenshot())
        .await
        .expect("a screenshot");
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");

    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(CALL, client.close()).await;
    drop(driver);
    load.await.unwrap();
    server.abort();
}
