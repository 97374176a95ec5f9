//! `ReplayBody`: recorded as it is read, never read ahead, sent again
//! whole, given up past its limit or after a failure, and copies waiting
//! for the body are woken.
#![cfg(feature = "http")]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use reflex_core::BoxError;
use reflex_retry::NotReplayable;
use reflex_retry::http::ReplayBody;
use reflex_tests::support::ChannelBody;
use tokio::sync::mpsc;
use tokio_test::task;
use tokio_test::{assert_pending, assert_ready};

/// A body of set frames, of unknown length, that counts its polls and may
/// end in an error or a panic.
struct Script {
    frames: VecDeque<Step>,
    polls: Arc<AtomicUsize>,
}

enum Step {
    Data(&'static str),
    Trailers(HeaderMap),
    Fail,
    Panic,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> (Self, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let script = Self {
            frames: steps.into_iter().collect(),
            polls: polls.clone(),
        };
        (script, polls)
    }
}

impl Body for Script {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(match self.frames.pop_front() {
            None => None,
            Some(Step::Data(chunk)) => Some(Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))),
            Some(Step::Trailers(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Some(Step::Fail) => Some(Err("the client went away".into())),
            Some(Step::Panic) => panic!("the body panicked"),
        })
    }
}

fn trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", HeaderValue::from_static("abc"));
    trailers
}

/// Reads a body whole: its data and its trailers.
async fn read<B>(body: B) -> Result<(Bytes, Option<HeaderMap>), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

#[tokio::test]
async fn a_copy_sends_the_same_data_and_trailers_and_the_body_is_read_once() {
    let (script, polls) = Script::new([
        Step::Data("put "),
        Step::Data("this "),
        Step::Data("back"),
        Step::Trailers(trailers()),
    ]);
    let body = ReplayBody::new(script, 64);
    let copy = body.try_clone().unwrap();
    let again = body.try_clone().unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 0, "nothing read ahead");
    let first = read(body).await.unwrap();
    assert_eq!(first, (Bytes::from("put this back"), Some(trailers())));
    let read_once = polls.load(Ordering::SeqCst);
    assert_eq!(read(copy).await.unwrap(), first);
    assert_eq!(read(again).await.unwrap(), first);
    assert_eq!(
        polls.load(Ordering::SeqCst),
        read_once,
        "copies read the record"
    );
}

#[tokio::test]
async fn a_copy_after_a_partial_read_sends_the_record_then_reads_on() {
    let (script, polls) = Script::new([Step::Data("a"), Step::Data("b"), Step::Data("c")]);
    let mut body = ReplayBody::new(script, 64);
    let copy = body.try_clone().unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "a");
    drop(body);
    assert_eq!(read(copy).await.unwrap().0, "abc");
    // "a" once, "b", "c", and the end: the copy did not read "a" again.
    assert_eq!(polls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn past_the_limit_the_reader_gets_it_all_and_copies_cannot_be_sent() {
    let (script, _) = Script::new([Step::Data("0123456789"), Step::Data("abcdefghij")]);
    let body = ReplayBody::new(script, 16);
    let early_copy = body.try_clone().unwrap();
    assert!(body.is_replayable());
    let (data, _) = read(body).await.unwrap();
    assert_eq!(data, "0123456789abcdefghij", "nothing truncated");
    assert!(!early_copy.is_replayable());
    assert!(early_copy.try_clone().is_none());
    let err = read(early_copy).await.unwrap_err();
    assert!(err.is::<NotReplayable>(), "{err}");
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_replayed() {
    let body = ReplayBody::new(Full::new(Bytes::from(vec![b'y'; 16])), 16);
    let copy = body.try_clone().unwrap();
    assert_eq!(read(body).await.unwrap().0.len(), 16);
    assert!(copy.is_replayable());
    assert_eq!(read(copy).await.unwrap().0.len(), 16);
}

#[tokio::test]
async fn a_body_known_to_be_over_the_limit_is_sent_once_as_it_is() {
    let body = ReplayBody::new(Full::new(Bytes::from(vec![b'x'; 17])), 16);
    assert!(!body.is_replayable());
    assert!(body.try_clone().is_none());
    assert_eq!(body.size_hint().exact(), Some(17));
    assert_eq!(read(body).await.unwrap().0.len(), 17);
}

#[tokio::test]
async fn an_empty_body_is_replayable_as_often_as_asked() {
    let body = ReplayBody::new(Empty::<Bytes>::new(), 16);
    assert!(body.is_end_stream());
    let copy = body.try_clone().unwrap();
    assert_eq!(read(copy).await.unwrap(), (Bytes::new(), None));
    assert_eq!(read(body).await.unwrap(), (Bytes::new(), None));
}

#[tokio::test]
async fn a_body_that_fails_gives_its_reader_the_error_and_copies_cannot_be_sent() {
    let (script, _) = Script::new([Step::Data("part"), Step::Fail]);
    let body = ReplayBody::new(script, 64);
    let copy = body.try_clone().unwrap();
    let err = read(body).await.unwrap_err();
    assert_eq!(err.to_string(), "the client went away");
    assert!(!copy.is_replayable());
    let err = read(copy).await.unwrap_err();
    assert!(err.is::<NotReplayable>(), "{err}");
}

#[tokio::test]
async fn a_body_that_panicked_cannot_be_sent_again() {
    let (script, _) = Script::new([Step::Data("part"), Step::Panic]);
    let body = ReplayBody::new(script, 64);
    let copy = body.try_clone().unwrap();
    let reading = tokio::spawn(read(body));
    assert!(reading.await.unwrap_err().is_panic());
    assert!(!copy.is_replayable());
    assert!(read(copy).await.unwrap_err().is::<NotReplayable>());
}

#[test]
fn a_copy_knows_the_size_and_the_end_of_what_it_sends() {
    let body = ReplayBody::new(Full::new(Bytes::from("abc")), 16);
    let mut copy = task::spawn(body.try_clone().unwrap());
    assert_eq!(copy.size_hint().exact(), Some(3));
    assert!(!copy.is_end_stream());
    let frame = assert_ready!(copy.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "abc");
    assert_eq!(copy.size_hint().exact(), Some(0));
    assert!(
        copy.is_end_stream(),
        "the body ended while the copy read it"
    );
    assert!(assert_ready!(copy.enter(|cx, body| body.poll_frame(cx))).is_none());
    let again = body.try_clone().unwrap();
    assert_eq!(again.size_hint().exact(), Some(3), "a new copy starts over");
    assert!(!again.is_end_stream());
}

#[test]
fn copies_waiting_for_the_body_are_woken_when_it_moves_on_or_the_reader_goes() {
    let (tx, rx) = mpsc::unbounded_channel();
    let body = ReplayBody::new(ChannelBody(rx), 64);
    let mut first = task::spawn(body.try_clone().unwrap());
    let mut second = task::spawn(body.try_clone().unwrap());
    drop(body);
    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    // The second copy polled the body last.
    assert_pending!(second.enter(|cx, body| body.poll_frame(cx)));
    tx.send(Bytes::from("chunk")).unwrap();
    assert!(second.is_woken());
    let frame = assert_ready!(second.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "chunk");
    assert!(first.is_woken(), "the copies waiting are woken");
    let frame = assert_ready!(first.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "chunk");

    // Both wait again; the one the body would wake goes away.
    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    assert_pending!(second.enter(|cx, body| body.poll_frame(cx)));
    drop(second);
    assert!(first.is_woken(), "a copy that goes wakes those waiting");
    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    drop(tx);
    assert!(first.is_woken());
    assert!(assert_ready!(first.enter(|cx, body| body.poll_frame(cx))).is_none());
}

#[test]
fn every_copy_waiting_is_woken_when_the_body_moves_on_whichever_polled_it_last() {
    let (tx, rx) = mpsc::unbounded_channel();
    let body = ReplayBody::new(ChannelBody(rx), 64);
    let mut first = task::spawn(body.try_clone().unwrap());
    let mut second = task::spawn(body.try_clone().unwrap());
    assert_pending!(second.enter(|cx, body| body.poll_frame(cx)));
    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    tx.send(Bytes::from("x")).unwrap();
    assert!(first.is_woken());
    // The first copy's owner is woken but does not poll it (backpressure,
    // a `select!` on something else): the second reads on regardless.
    assert!(second.is_woken(), "no copy waits on another's poll");
    let frame = assert_ready!(second.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "x");
    let frame = assert_ready!(first.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "x");
}

#[test]
fn a_copy_that_waited_alone_is_woken_when_a_later_copy_reads_on() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut first = task::spawn(ReplayBody::new(ChannelBody(rx), 64));
    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    let mut second = task::spawn(first.try_clone().unwrap());
    assert_pending!(second.enter(|cx, body| body.poll_frame(cx)));
    tx.send(Bytes::from("x")).unwrap();
    assert!(second.is_woken());
    assert!(
        first.is_woken(),
        "the copy that waited before the second came"
    );
}

#[tokio::test]
async fn empty_data_frames_are_forwarded_but_not_recorded() {
    let (script, _) = Script::new(
        std::iter::repeat_with(|| Step::Data(""))
            .take(1000)
            .chain([Step::Data("ab"), Step::Data("")]),
    );
    let body = ReplayBody::new(script, 4);
    let copy = body.try_clone().unwrap();
    let (data, _) = read(body).await.unwrap();
    assert_eq!(data, "ab");
    let mut copy = copy;
    let mut frames = Vec::new();
    while let Some(frame) = copy.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(frames, ["ab"], "the copy sends the one chunk recorded");
}
