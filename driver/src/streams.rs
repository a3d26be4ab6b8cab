//! Streams on the async API: open a stream of replies, serve a topic with a
//! [`Writer`] per request, and plain request/reply built on them.
//!
//! The driver keeps, per stream, the replies received and not yet taken
//! (bounded by the stream's credit window: credit goes back to the producer
//! as the application takes replies) and, per served topic, the requests not
//! yet taken (bounded by `StreamsConfig::max_served_per_peer` per peer).

use crate::format::{Format, Postcard};
use crate::state::{Shared, State};
use crate::Error;
use bytes::Bytes;
use estafeta_core::{CloseCode, PeerInfo, Role, StreamEnd, StreamEvent, StreamId, Topic};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How a stream ended, when it did not end normally (code 1000): its code
/// and a text for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamClosed {
    /// The close code: 1001 going away, 1003 undecodable data, 1006 lost
    /// connection, 1013 over a concurrency limit, 4000 bad request (or no
    /// server), 4001 cancelled, 4008 deadline exceeded, 5000 producer failed.
    pub code: CloseCode,
    /// Why.
    pub text: String,
}

impl fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream closed: {}: {}", self.code, self.text)
    }
}

impl std::error::Error for StreamClosed {}

impl From<StreamEnd> for StreamClosed {
    fn from(e: StreamEnd) -> Self {
        StreamClosed { code: e.code, text: e.text }
    }
}

/// Why a [`Writer`] could not write. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamWriteError {
    /// The consumer cancelled the stream (it dropped it, its deadline
    /// passed, or it could not decode a reply): stop producing.
    Cancelled(StreamClosed),
    /// The stream ended otherwise: this writer closed it, the connection was
    /// lost (1006), or the node is closing (1001).
    Closed(StreamClosed),
    /// No credit now (only [`Writer::try_write`]): `write` would wait.
    Full,
    /// The message exceeds `StreamsConfig::max_message_size`.
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `write_value` could not encode the value.
    Format(String),
}

impl fmt::Display for StreamWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamWriteError::Cancelled(c) => write!(f, "cancelled by the consumer: {c}"),
            StreamWriteError::Closed(c) => write!(f, "{c}"),
            StreamWriteError::Full => write!(f, "no credit: the consumer has not taken what was sent"),
            StreamWriteError::TooLarge { size, max } => write!(f, "message of {size} bytes exceeds {max}"),
            StreamWriteError::Format(e) => write!(f, "could not encode: {e}"),
        }
    }
}

impl std::error::Error for StreamWriteError {}

/// One consumer stream's queue.
#[derive(Debug, Default)]
struct ReplyQueue {
    items: VecDeque<Bytes>,
    end: Option<StreamEnd>,
    waker: Option<Waker>,
}

/// One producer stream's state.
#[derive(Debug, Default)]
struct WriterState {
    end: Option<StreamEnd>,
    waker: Option<Waker>,
}

/// One served topic's queue of requests.
#[derive(Debug, Default)]
struct RequestQueue {
    items: VecDeque<(StreamId, PeerInfo, Topic, Bytes, Option<Duration>)>,
    waker: Option<Waker>,
}

/// The application side of the streams plane (behind the node's mutex).
#[derive(Debug, Default)]
pub(crate) struct StreamsApp {
    replies: BTreeMap<StreamId, ReplyQueue>,
    writers: BTreeMap<StreamId, WriterState>,
    servers: BTreeMap<Topic, RequestQueue>,
    /// Requests no server stream takes (it was dropped): closed with 4000
    /// by the driver after the drain.
    pub(crate) refuse: Vec<StreamId>,
}

impl StreamsApp {
    /// Delivers one event of this plane; returns true if the peer tables
    /// changed (wake those waiting for servers).
    pub(crate) fn deliver(&mut self, ev: StreamEvent) -> bool {
        match ev {
            StreamEvent::Request { stream, peer, topic, request, deadline } => match self.servers.get_mut(&topic) {
                Some(q) => {
                    q.items.push_back((stream, peer, topic, request, deadline));
                    self.writers.insert(stream, WriterState::default());
                    wake(&mut q.waker);
                }
                None => self.refuse.push(stream),
            },
            StreamEvent::Data { stream, payload } => {
                if let Some(q) = self.replies.get_mut(&stream) {
                    q.items.push_back(payload);
                    wake(&mut q.waker);
                }
            }
            StreamEvent::Closed { stream, role: Role::Consumer, end } => {
                if let Some(q) = self.replies.get_mut(&stream) {
                    q.end = Some(end);
                    wake(&mut q.waker);
                }
            }
            StreamEvent::Closed { stream, role: Role::Producer, end } => {
                if let Some(w) = self.writers.get_mut(&stream) {
                    w.end = Some(end);
                    wake(&mut w.waker);
                }
            }
            StreamEvent::Writable { stream } => {
                if let Some(w) = self.writers.get_mut(&stream) {
                    wake(&mut w.waker);
                }
            }
            StreamEvent::Serving { .. } => return true,
        }
        false
    }

    /// The driver exited: wake everyone.
    pub(crate) fn finish(&mut self) {
        for q in self.replies.values_mut() {
            wake(&mut q.waker);
        }
        for w in self.writers.values_mut() {
            wake(&mut w.waker);
        }
        for q in self.servers.values_mut() {
            wake(&mut q.waker);
        }
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// Where and how long a stream is opened ([`crate::Node::open_stream_with`]).
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Open it on this peer (by id or name) rather than round-robin among
    /// the peers serving the topic.
    pub to: Option<estafeta_core::PeerRef>,
    /// Cancel it (code 4008) if it has not ended this long after the open.
    pub deadline: Option<Duration>,
}

/// Opens a stream in the core and registers its queue.
pub(crate) fn open(shared: &Arc<Shared>, topic: &str, request: Bytes, opts: StreamOptions) -> ReplyStream {
    let mut st = shared.lock();
    if opts.deadline.is_some() {
        // The core's clock moves only with inputs: bring it to now, so that
        // the deadline counts from this call.
        st.node.handle_timeout(shared.now());
    }
    let id = st.node.streams().open(topic, request, opts.to, opts.deadline);
    st.app.streams.replies.insert(id, ReplyQueue::default());
    st.app.wake_driver();
    drop(st);
    ReplyStream { shared: shared.clone(), id, done: false, taken: VecDeque::new() }
}

/// Starts serving `topic` and registers its request queue.
pub(crate) fn serve(shared: &Arc<Shared>, topic: &str) -> Result<StreamServer, Error> {
    let mut st = shared.lock();
    let t = Topic::from(topic);
    if st.app.streams.servers.contains_key(&t) {
        return Err(Error::Command(estafeta_core::CommandError::BadTopic(format!("'{topic}' is already served"))));
    }
    st.node.streams().serve(topic)?;
    st.app.streams.servers.insert(t.clone(), RequestQueue::default());
    st.app.wake_driver();
    Ok(StreamServer { shared: shared.clone(), topic: t })
}

/// The replies of a stream this node opened: a [`Stream`] of
/// `Result<Bytes, StreamClosed>`.
///
/// A normal end (the producer closed with 1000) ends the stream; any other
/// ending yields one `Err(StreamClosed)` with its code and text, then ends
/// it. [`ReplyStream::end`] tells how it ended, 1000 included. Replies are
/// bounded by the stream's credit window: the producer sends more as they
/// are taken. Dropping it before its end cancels the stream (the producer
/// sees 4001 and its next write fails).
#[derive(Debug)]
pub struct ReplyStream {
    shared: Arc<Shared>,
    id: StreamId,
    done: bool,
    /// Replies taken from the shared queue in one batch (their credit went
    /// back when they were taken), handed out without the lock.
    taken: VecDeque<Bytes>,
}

impl ReplyStream {
    /// The stream's id on this node.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Waits for the next reply: `None` after the end.
    pub async fn recv(&mut self) -> Option<Result<Bytes, StreamClosed>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// How the stream ended, once it did (1000 included).
    pub fn end(&self) -> Option<StreamEnd> {
        self.shared.lock().app.streams.replies.get(&self.id).and_then(|q| q.end.clone())
    }

    /// Cancels the stream with `code` and `text` (as dropping it does with 4001).
    pub fn cancel(&mut self, code: CloseCode, text: &str) {
        let mut st = self.shared.lock();
        if st.node.streams().cancel(self.id, code, text) {
            st.app.wake_driver();
        }
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamClosed>>> {
        if let Some(b) = self.taken.pop_front() {
            return Poll::Ready(Some(Ok(b)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        let finished = st.app.finished;
        let Some(q) = st.app.streams.replies.get_mut(&self.id) else { return Poll::Ready(None) };
        if !q.items.is_empty() {
            std::mem::swap(&mut q.items, &mut self.taken);
            let (n, bytes) = (self.taken.len() as u64, self.taken.iter().map(|b| b.len() as u64).sum::<u64>());
            if st.node.streams().consumed(self.id, n, bytes) {
                st.app.wake_driver();
            }
            return Poll::Ready(self.taken.pop_front().map(Ok));
        }
        if let Some(end) = q.end.clone() {
            self.done = true;
            return Poll::Ready(if end.code == CloseCode::NORMAL { None } else { Some(Err(end.into())) });
        }
        if finished {
            self.done = true;
            let text = "the node is closed".to_string();
            return Poll::Ready(Some(Err(StreamClosed { code: CloseCode::GOING_AWAY, text })));
        }
        set_waker(&mut q.waker, cx);
        self.shared.wait(guard);
        Poll::Pending
    }
}

impl Stream for ReplyStream {
    type Item = Result<Bytes, StreamClosed>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.app.streams.replies.remove(&self.id);
        if st.node.streams().cancel(self.id, CloseCode::CANCELLED, "cancelled: the consumer dropped the stream") {
            st.app.wake_driver();
        }
    }
}

/// A [`ReplyStream`] whose replies are decoded as `T` with format `F`. A
/// reply that does not decode ends the stream with code 1003 at both ends:
/// the consumer yields `Err(StreamClosed { code: 1003, .. })` and cancels it.
#[derive(Debug)]
pub struct TypedReplyStream<T, F: Format = Postcard> {
    inner: ReplyStream,
    failed: bool,
    _t: PhantomData<fn() -> (T, F)>,
}

impl<T: DeserializeOwned, F: Format> TypedReplyStream<T, F> {
    pub(crate) fn new(inner: ReplyStream) -> Self {
        TypedReplyStream { inner, failed: false, _t: PhantomData }
    }

    /// Waits for the next decoded reply: `None` after the end.
    pub async fn recv(&mut self) -> Option<Result<T, StreamClosed>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The underlying stream.
    pub fn inner(&self) -> &ReplyStream {
        &self.inner
    }
}

impl<T: DeserializeOwned, F: Format> Stream for TypedReplyStream<T, F> {
    type Item = Result<T, StreamClosed>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_item(cx) {
            Poll::Ready(Some(Ok(b))) => match F::decode::<T>(&b) {
                Ok(v) => Poll::Ready(Some(Ok(v))),
                Err(e) => {
                    let text = format!("unsupported data: a reply did not decode: {e}");
                    this.inner.cancel(CloseCode::UNSUPPORTED_DATA, &text);
                    this.failed = true;
                    this.inner.done = true;
                    Poll::Ready(Some(Err(StreamClosed { code: CloseCode::UNSUPPORTED_DATA, text })))
                }
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The requests of a served topic ([`crate::Node::serve_streams`]): a
/// [`Stream`] of [`StreamRequest`]. Dropping it stops serving the topic;
/// requests that arrive meanwhile are refused with 4000. It ends when the
/// node is closed.
#[derive(Debug)]
pub struct StreamServer {
    shared: Arc<Shared>,
    topic: Topic,
}

impl StreamServer {
    /// Waits for the next request; `None` once the node is closed.
    pub async fn recv(&mut self) -> Option<StreamRequest> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for StreamServer {
    type Item = StreamRequest;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamRequest>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        let finished = st.app.finished;
        let Some(q) = st.app.streams.servers.get_mut(&this.topic) else { return Poll::Ready(None) };
        if let Some((stream, peer, topic, request, deadline)) = q.items.pop_front() {
            drop(st);
            let writer = Writer { shared: this.shared.clone(), id: stream, closed: false };
            return Poll::Ready(Some(StreamRequest { peer, topic, request, deadline, writer }));
        }
        if finished {
            return Poll::Ready(None);
        }
        set_waker(&mut q.waker, cx);
        this.shared.wait(st);
        Poll::Pending
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(q) = st.app.streams.servers.remove(&self.topic) {
            for (stream, ..) in q.items {
                st.app.streams.refuse.push(stream);
            }
        }
        st.node.streams().unserve(&self.topic);
        let State { node, app } = &mut *st;
        refuse_pending(node, app);
        app.wake_driver();
    }
}

/// Closes with 4000 the requests no server stream took.
pub(crate) fn refuse_pending(node: &mut estafeta_core::Node, app: &mut crate::state::App) {
    for id in std::mem::take(&mut app.streams.refuse) {
        app.streams.writers.remove(&id);
        node.streams().close(id, CloseCode::BAD_REQUEST, "no handler: the topic is no longer served here");
    }
}

/// One request of a served topic, with the [`Writer`] for its replies.
#[derive(Debug)]
pub struct StreamRequest {
    /// The consumer.
    pub peer: PeerInfo,
    /// The topic.
    pub topic: Topic,
    /// The request payload.
    pub request: Bytes,
    /// How long the consumer still waits, if it set a deadline.
    pub deadline: Option<Duration>,
    /// Writes the replies and ends the stream.
    pub writer: Writer,
}

impl StreamRequest {
    /// Decodes the request with postcard.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Postcard::decode(&self.request)
    }
}

/// Writes the replies of one stream and ends it.
///
/// `write` waits for credit (the consumer's window), so a slow consumer
/// slows only its own producer. Once the consumer cancelled, writes fail
/// with [`StreamWriteError::Cancelled`]. Dropping a writer without closing
/// it ends the stream with **5000** (internal error): a handler that returns
/// early with an error or panics drops its writer, and the consumer must
/// not mistake that for a normal end (1000) or a shutdown (1001, which the
/// node itself sends when it closes).
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
    id: StreamId,
    closed: bool,
}

impl Writer {
    /// The stream's id on this node.
    pub fn id(&self) -> StreamId {
        self.id
    }

    fn attempt(&self, st: &mut State, payload: &Bytes) -> Result<(), StreamWriteError> {
        match st.node.streams().write(self.id, payload.clone()) {
            Ok(()) => {
                st.app.wake_driver();
                Ok(())
            }
            Err(estafeta_core::WriteError::NoCredit) => Err(StreamWriteError::Full),
            Err(estafeta_core::WriteError::TooLarge { size, max }) => Err(StreamWriteError::TooLarge { size, max }),
            // The core ended the stream and its Closed event is still on its
            // way to this side (the drain yielded): wait for it, so the
            // error says how it ended.
            Err(_) if !st.app.finished && st.app.streams.writers.get(&self.id).is_some_and(|w| w.end.is_none()) => {
                Err(StreamWriteError::Full)
            }
            Err(_) => Err(ended(st, self.id)),
        }
    }

    /// Writes one message without waiting: [`StreamWriteError::Full`] if
    /// the stream has no credit now (or, rarely, if its end is on its way to
    /// this side: the next call reports it).
    pub fn try_write(&mut self, payload: impl Into<Bytes>) -> Result<(), StreamWriteError> {
        let payload = payload.into();
        let mut st = self.shared.lock();
        self.attempt(&mut st, &payload)
    }

    /// Writes one message, waiting for credit.
    pub async fn write(&mut self, payload: impl Into<Bytes>) -> Result<(), StreamWriteError> {
        let payload = payload.into();
        std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            match self.attempt(&mut st, &payload) {
                Err(StreamWriteError::Full) if !st.app.finished => {
                    if let Some(w) = st.app.streams.writers.get_mut(&self.id) {
                        set_waker(&mut w.waker, cx);
                    }
                    Poll::Pending
                }
                Err(StreamWriteError::Full) => Poll::Ready(Err(closed_by_node())),
                r => Poll::Ready(r),
            }
        })
        .await
    }

    /// Encodes `value` with postcard and writes it, waiting for credit.
    pub async fn write_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StreamWriteError> {
        self.write_value_with::<Postcard, T>(value).await
    }

    /// Encodes `value` with format `F` and writes it, waiting for credit.
    pub async fn write_value_with<F: Format, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), StreamWriteError> {
        let bytes = F::encode(value).map_err(|e| StreamWriteError::Format(e.to_string()))?;
        self.write(bytes).await
    }

    /// Ends the stream normally (1000) after what was written.
    pub fn close(mut self) {
        self.end(CloseCode::NORMAL, "");
    }

    /// Ends the stream with `code` and `text` (for example 5000 with the
    /// handler's error, or 4000 for a request it cannot serve).
    pub fn close_with_code(mut self, code: CloseCode, text: &str) {
        self.end(code, text);
    }

    fn end(&mut self, code: CloseCode, text: &str) {
        self.closed = true;
        let mut st = self.shared.lock();
        st.app.streams.writers.remove(&self.id);
        if st.node.streams().close(self.id, code, text) {
            st.app.wake_driver();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.closed {
            self.end(CloseCode::INTERNAL_ERROR, "internal error: the producer dropped its writer without closing");
        }
    }
}

/// The error for a write on a stream that ended.
fn ended(st: &State, id: StreamId) -> StreamWriteError {
    match st.app.streams.writers.get(&id).and_then(|w| w.end.clone()) {
        Some(end) if end.remote => StreamWriteError::Cancelled(end.into()),
        Some(end) => StreamWriteError::Closed(end.into()),
        None => StreamWriteError::Closed(StreamClosed { code: CloseCode::NORMAL, text: "already closed".into() }),
    }
}

fn closed_by_node() -> StreamWriteError {
    StreamWriteError::Closed(StreamClosed { code: CloseCode::GOING_AWAY, text: "the node is closed".into() })
}

/// Streams on the node handle.
impl<R: crate::Runtime> crate::Node<R> {
    /// Opens a stream on `topic` with `request`, to one of the peers serving
    /// it (round-robin), and returns its replies. If no connected peer
    /// serves the topic the stream yields `Err` with 4000 at once (see
    /// [`Node::wait_for_servers`](crate::Node::wait_for_servers)).
    ///
    /// ```
    /// use estafeta_driver::{Node, Runtime, Error};
    ///
    /// async fn tail<R: Runtime>(node: &Node<R>) -> Result<(), Error> {
    ///     node.wait_for_servers("logs", 1).await?;
    ///     let mut lines = node.open_stream("logs", "job-42");
    ///     while let Some(line) = lines.recv().await {
    ///         match line {
    ///             Ok(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
    ///             Err(closed) => eprintln!("{closed}"), // not a normal end
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn open_stream(&self, topic: &str, request: impl Into<Bytes>) -> ReplyStream {
        open(self.shared(), topic, request.into(), StreamOptions::default())
    }

    /// Opens a stream on `topic` to the peer `peer` (by id or name).
    pub fn open_stream_to(
        &self,
        peer: impl Into<estafeta_core::PeerRef>,
        topic: &str,
        request: impl Into<Bytes>,
    ) -> ReplyStream {
        open(self.shared(), topic, request.into(), StreamOptions { to: Some(peer.into()), deadline: None })
    }

    /// Opens a stream with options: a peer, a deadline (after which this
    /// node cancels it with 4008 and the producer learns it was cancelled).
    pub fn open_stream_with(&self, topic: &str, request: impl Into<Bytes>, opts: StreamOptions) -> ReplyStream {
        open(self.shared(), topic, request.into(), opts)
    }

    /// Opens a stream with a serde request (postcard) whose replies are
    /// decoded as `T`.
    pub fn open_stream_typed<Q: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        topic: &str,
        request: &Q,
        opts: StreamOptions,
    ) -> Result<TypedReplyStream<T>, Error> {
        let req = crate::encode::<Postcard, Q>(request)?;
        Ok(TypedReplyStream::new(open(self.shared(), topic, req, opts)))
    }

    /// Serves `topic`: peers learn of it, and their streams arrive as
    /// [`StreamRequest`]s, each with its [`Writer`].
    ///
    /// ```
    /// use estafeta_driver::{Node, Runtime, Error};
    ///
    /// async fn serve_logs<R: Runtime>(node: &Node<R>) -> Result<(), Error> {
    ///     let mut requests = node.serve_streams("logs")?;
    ///     while let Some(req) = requests.recv().await {
    ///         let mut w = req.writer;
    ///         for i in 0..3u32 {
    ///             if w.write(format!("line {i}")).await.is_err() {
    ///                 break; // cancelled: stop producing
    ///             }
    ///         }
    ///         w.close();
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn serve_streams(&self, topic: &str) -> Result<StreamServer, Error> {
        serve(self.shared(), topic)
    }

    /// Sends `payload` on `topic` and returns the first reply, waiting at
    /// most `timeout` (then `Err(Error::Stream(..))` with 4008; the producer
    /// learns it was cancelled). A stream that ends without a reply is
    /// `Err(Error::Stream(..))` with its code.
    pub async fn request(&self, topic: &str, payload: impl Into<Bytes>, timeout: Duration) -> Result<Bytes, Error> {
        let opts = StreamOptions { to: None, deadline: Some(timeout) };
        let mut s = self.open_stream_with(topic, payload, opts);
        match s.recv().await {
            Some(Ok(b)) => Ok(b),
            Some(Err(c)) => Err(Error::Stream(c)),
            None => {
                let end = s.end();
                let text = end.map_or_else(|| "ended".to_string(), |e| format!("ended without a reply: {}", e.text));
                Err(Error::Stream(StreamClosed { code: CloseCode::NORMAL, text }))
            }
        }
    }

    /// Waits until at least `n` connected peers serve `topic`.
    pub async fn wait_for_servers(&self, topic: &str, n: usize) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared().lock();
            if st.node.streams_ref().server_count(topic) >= n {
                return Poll::Ready(Ok(()));
            }
            if st.app.finished || st.node.is_closing() {
                return Poll::Ready(Err(Error::Closed));
            }
            st.app.peers_changed.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Streams open now: (this node as consumer, as producer).
    pub fn open_stream_counts(&self) -> (usize, usize) {
        self.shared().lock().node.streams_ref().open_counts()
    }
}
