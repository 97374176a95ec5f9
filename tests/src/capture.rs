//! A `tracing` subscriber for the layers' log tests: installed once for the whole test
//! binary, it keeps each thread's events, with their fields, and lets each
//! thread choose the levels it hears. The layers' events are emitted on the
//! thread that polls them, and these tests run on current-thread runtimes.
//!
//! (Installed globally and asked about every event, not cached per call
//! site: a scoped subscriber can miss events when another test thread
//! registers a call site at the same moment.)

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Once;

use reflex_core::log_limit::SUMMARY_INTERVAL;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its other fields, by name, as `Debug` printed them.
    pub fields: BTreeMap<&'static str, String>,
}

thread_local! {
    static EVENTS: RefCell<Vec<Captured>> = const { RefCell::new(Vec::new()) };
    static LEVEL: Cell<LevelFilter> = const { Cell::new(LevelFilter::TRACE) };
}

/// Starts capturing this thread's events up to `level`, forgetting those
/// captured before.
pub fn start(level: LevelFilter) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Capture).unwrap());
    set_level(level);
    take();
}

/// From now on, this thread hears events up to `level`.
pub fn set_level(level: LevelFilter) {
    LEVEL.with(|l| l.set(level));
}

/// The events captured on this thread since the last `take`.
pub fn take() -> Vec<Captured> {
    EVENTS.with(|events| std::mem::take(&mut *events.borrow_mut()))
}

/// The one event of `message` among `events`.
pub fn only<'a>(events: &'a [Captured], message: &str) -> &'a Captured {
    let mut found = events.iter().filter(|e| e.message == message);
    let event = found
        .next()
        .unwrap_or_else(|| panic!("no {message:?} in {events:#?}"));
    assert!(found.next().is_none(), "more than one {message:?}");
    event
}

/// The events of `events` at `level`.
pub fn at(events: &[Captured], level: Level) -> Vec<&Captured> {
    events.iter().filter(|e| e.level == level).collect()
}

/// The events of `events` louder than `DEBUG`: the lines an operator sees.
pub fn loud(events: &[Captured]) -> Vec<&Captured> {
    events.iter().filter(|e| e.level < Level::DEBUG).collect()
}

/// Asserts that no field of any of `events` contains `secret` (a key: request
/// data).
#[track_caller]
pub fn assert_none_contains<'a>(events: impl IntoIterator<Item = &'a Captured>, secret: &str) {
    for event in events {
        assert!(
            event.fields.values().all(|v| !v.contains(secret)),
            "{secret:?} in {event:#?}"
        );
    }
}

/// Asserts that a burst of `n` refusals (`refuse` makes one) writes a
/// `DEBUG` event each and `loud` lines above `DEBUG` (its first summary, and
/// whatever else the test expects there), and that one more refusal a
/// [`SUMMARY_INTERVAL`] later writes the summary `message` at `level`, with
/// `count` = `n`. Returns the burst's first `DEBUG` event and that summary,
/// for their other fields.
pub async fn assert_burst_summarised(
    n: usize,
    loud_lines: usize,
    message: &str,
    level: Level,
    mut refuse: impl AsyncFnMut(),
) -> (Captured, Captured) {
    for _ in 0..n {
        refuse().await;
    }
    let events = take();
    let refused = at(&events, Level::DEBUG);
    assert_eq!(refused.len(), n);
    let first = refused[0].clone();
    let louder = loud(&events);
    assert_eq!(louder.len(), loud_lines, "{louder:#?}");

    tokio::time::advance(SUMMARY_INTERVAL).await;
    refuse().await;
    let events = take();
    let summary = only(&events, message);
    summary.assert(level, &[("count", Some(&n.to_string()))]);
    (first, summary.clone())
}

/// Asserts that while the summary's `level` is off (this thread hears less
/// than it), a burst of refusals (`refuse` makes one) writes nothing and is
/// not counted: once `level` is on, the next refusal's summary `message`
/// says `count` 1.
pub async fn assert_uncounted_while_off(
    message: &str,
    level: Level,
    mut refuse: impl AsyncFnMut(),
) {
    assert!(LEVEL.with(Cell::get) < level, "{level} is on");
    for _ in 0..10_000 {
        refuse().await;
    }
    let events = take();
    assert!(events.is_empty(), "{events:#?}");

    set_level(LevelFilter::from_level(level));
    refuse().await;
    only(&take(), message).assert(level, &[("count", Some("1"))]);
}

impl Captured {
    /// The field `name`, as text (`None` when the event does not have it).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Asserts the event's level and fields: `(name, Some(value))` present
    /// with that value, `(name, None)` absent.
    #[track_caller]
    pub fn assert(&self, level: Level, fields: &[(&str, Option<&str>)]) {
        assert_eq!(self.level, level, "{self:#?}");
        for (name, value) in fields {
            assert_eq!(self.field(name), *value, "field {name} of {self:#?}");
        }
    }
}

struct Capture;

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        LEVEL.with(|level| *metadata.level() <= level.get())
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let captured = Captured {
            level: *event.metadata().level(),
            message: fields.0.remove("message").unwrap_or_default(),
            fields: fields.0,
        };
        EVENTS.with(|events| events.borrow_mut().push(captured));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct Fields(BTreeMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}
