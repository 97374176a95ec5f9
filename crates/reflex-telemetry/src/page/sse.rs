//! The server-sent events wire format: what one event looks like, and the
//! events of a snapshot.

use bytes::{BufMut, Bytes, BytesMut};
use reflex_witness::{Report, Snapshot};
use serde::Serialize;

/// How long a browser waits before it reconnects a dropped stream, in
/// milliseconds (sent once, first).
pub(crate) const RETRY_MS: u64 = 2_000;

/// The comment line of an idle stream.
pub(crate) const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The names of the events the stream sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventName {
    /// First, once: the witness's newest cycle, so that a page that
    /// reconnects can tell a restarted witness from the one it knew.
    Hello,
    /// A snapshot.
    Snapshot,
    /// A report.
    Report,
}

impl EventName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Snapshot => "snapshot",
            Self::Report => "report",
        }
    }
}

/// What `hello` says.
#[derive(Debug, Serialize)]
pub(crate) struct Hello {
    /// The witness's newest cycle.
    pub(crate) cycle: u64,
    /// How far back the page's charts reach, in milliseconds.
    pub(crate) window_ms: u64,
    /// The witness's interval as its recent snapshots tell it, in
    /// milliseconds (`null` before it has two): how old a snapshot is
    /// stale, and what a cycle's count is per.
    pub(crate) interval_ms: Option<u64>,
    /// How many reports the page keeps: the newest.
    pub(crate) reports_shown: usize,
}

/// A chunk of the stream being written: events appended one after the
/// other.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    buf: BytesMut,
}

// === impl Chunk ===

impl Chunk {
    /// The `retry:` line a stream opens with.
    pub(crate) fn opening() -> Self {
        let mut chunk = Self::default();
        chunk
            .buf
            .extend_from_slice(format!("retry: {RETRY_MS}\n\n").as_bytes());
        chunk
    }

    /// Appends one event: `event: <name>` and its value as one line of
    /// JSON (serde_json writes no newline, and escapes those in strings).
    /// A value that does not serialize is left out.
    pub(crate) fn event(&mut self, name: EventName, value: &impl Serialize) {
        let start = self.buf.len();
        self.buf.extend_from_slice(b"event: ");
        self.buf.extend_from_slice(name.as_str().as_bytes());
        self.buf.extend_from_slice(b"\ndata: ");
        if serde_json::to_writer((&mut self.buf).writer(), value).is_err() {
            self.buf.truncate(start);
            return;
        }
        self.buf.extend_from_slice(b"\n\n");
    }

    /// Appends `snapshot`, then each of its reports.
    pub(crate) fn snapshot(&mut self, snapshot: &Snapshot) {
        self.event(EventName::Snapshot, snapshot);
        for report in &snapshot.reports {
            self.report(report);
        }
    }

    /// Appends one report.
    pub(crate) fn report(&mut self, report: &Report) {
        self.event(EventName::Report, report);
    }

    /// `true` when nothing was appended.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes to send.
    pub(crate) fn freeze(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_its_name_and_one_line_of_json() {
        let mut chunk = Chunk::default();
        chunk.event(
            EventName::Hello,
            &Hello {
                cycle: 3,
                window_ms: 1_000,
                interval_ms: Some(1_000),
                reports_shown: 64,
            },
        );
        chunk.event(EventName::Report, &"two\nlines");
        assert_eq!(
            &chunk.freeze()[..],
            b"event: hello\ndata: {\"cycle\":3,\"window_ms\":1000,\"interval_ms\":1000,\"reports_shown\":64}\n\nevent: report\ndata: \"two\\nlines\"\n\n"
        );
    }

    #[test]
    fn a_stream_opens_with_its_retry_delay() {
        assert_eq!(&Chunk::opening().freeze()[..], b"retry: 2000\n\n");
    }
}
