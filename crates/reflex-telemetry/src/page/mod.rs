//! The live page of the stack: a tower service that serves what the
//! witness knows to a browser.
//!
//! [`LivePage`] answers, relative to where it is mounted:
//!
//! | path | what |
//! |---|---|
//! | `/` | the page: the components as a graph of the calls the witness saw, each with its request rate, error rate and p50/p99 over the last minutes (small charts), its breaker state (closed green, half-open amber, open red, others grey) and in-flight requests, and the reports as a timeline (root, affected, actions, summary) |
//! | `/snapshot.json` | the latest [`Snapshot`](reflex_witness::Snapshot) as JSON |
//! | `/events` | server-sent events: the recent snapshots and kept reports first, then each new snapshot (`event: snapshot`) and each report (`event: report`) as the witness publishes them |
//!
//! Anything else is a 404, a method other than GET or HEAD a 405.
//!
//! The page is one HTML document with its CSS and JavaScript inline,
//! embedded in the crate (`include_str!`): no build step, no CDN, no
//! external URL of any kind, so it works offline. Its
//! `Content-Security-Policy` forbids loading anything from elsewhere.
//!
//! # Examples
//!
//! Mounted under `/live` on axum (the page is then at `/live/`):
//!
//! ```
//! use axum::Router;
//! use reflex_telemetry::page::LivePage;
//! use reflex_witness::Witness;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let witness = Witness::builder().start()?;
//! let app: Router = Router::new().nest_service("/live", LivePage::new(&witness));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # What it costs
//!
//! Nothing on the request path: it reads the witness's per-cycle state
//! (`latest_snapshot`, `history`, `reports`, `subscribe`). Each open event
//! stream holds a broadcast receiver of the witness, its backlog as
//! shared snapshots and reports (not encoded: it encodes one event at a
//! time, as the client reads), and at most one encoded snapshot; a
//! client that reads slower than the witness publishes skips the
//! snapshots it missed (it gets the latest one and the reports written
//! meanwhile) instead of making the server buffer for it. A comment line
//! every `keep_alive` lets the server see a client that went away, and
//! the stream ends with it. Streams are counted and bounded
//! ([`LivePageBuilder::max_streams`]).
//!
//! An open stream holds a handle of the witness, so the witness's
//! broadcast does not close while it is open: a stream ends when it is
//! [`LivePageBuilder::max_stream_age`] old (5 minutes by default), and
//! the browser reconnects by itself. A server shutting down gracefully
//! (axum's `with_graceful_shutdown`) waits for open streams that long at
//! most.

mod body;
mod builder;
mod events;
mod html;
mod service;
mod sse;

pub use body::PageBody;
pub use builder::LivePageBuilder;
pub use service::LivePage;
