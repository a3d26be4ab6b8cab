//! File transfer on the async API: [`Node::send_file`], [`Node::send_bytes`],
//! [`Node::send_stream`] and [`Node::receive_files`]. The protocol runs in the
//! core's transfer plane; file I/O and hashing run on the runtime's blocking
//! pool ([`Runtime::spawn_blocking`]), never on the reactor.

use crate::runtime::Runtime;
use crate::state::{Shared, State, Wakers};
use crate::{Error, Node};
use bytes::Bytes;
use estafeta_core::transfer::{Direction, Offered, Received, SendOptions, TransferError, TransferSource};
use estafeta_core::{NodeId, PeerInfo, Topic, TransferEvent};
use futures_core::Stream;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Options of a file send.
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// The name receivers save it under (sanitised by them); default: the
    /// file's own name.
    pub name: Option<String>,
    /// Payload bytes per chunk; default `TransferConfig::chunk_size`.
    pub chunk_size: Option<u32>,
    /// Send to this peer only.
    pub to: Option<NodeId>,
    /// Small metadata for the receivers.
    pub meta: Vec<(String, String)>,
}

/// Where one receiver is: bytes durable on it, of the total, and the rate
/// since the transfer (re)started.
#[derive(Clone, Debug, PartialEq)]
pub struct FileProgress {
    /// The other end.
    pub peer: PeerInfo,
    /// The transfer id.
    pub id: u64,
    /// Bytes synced on the receiver.
    pub bytes: u64,
    /// The file size.
    pub total: u64,
    /// Bytes per second since the transfer (re)started.
    pub rate: f64,
}

/// What happens to files offered on a receiving topic.
#[derive(Clone, Debug, PartialEq)]
pub enum FileEvent {
    /// A peer offers a file. With `TransferConfig::auto_accept` off
    /// (`needs_answer`), answer with [`Node::accept_file`] or [`Node::reject_file`].
    Offered(Offered),
    /// Bytes durable so far (coalesced: one per sync).
    Progress(FileProgress),
    /// The file is verified and in place.
    Received(Received),
    /// The transfer failed; nothing is under the final name.
    Failed {
        /// The sender.
        peer: PeerInfo,
        /// The transfer id.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// Per-transfer rates: when and where each (re)start began.
type Starts = BTreeMap<(NodeId, u64, bool), (Instant, u64)>;

fn rate(starts: &Starts, key: (NodeId, u64, bool), bytes: u64) -> f64 {
    match starts.get(&key) {
        Some((t, from)) => {
            let secs = t.elapsed().as_secs_f64();
            if secs > 0.0 {
                bytes.saturating_sub(*from) as f64 / secs
            } else {
                0.0
            }
        }
        None => 0.0,
    }
}

#[derive(Debug, Default)]
struct Outgoing {
    /// Latest progress per receiver not yet taken.
    progress: BTreeMap<NodeId, FileProgress>,
    outcomes: BTreeMap<NodeId, Result<(), String>>,
    receivers: Vec<PeerInfo>,
    /// A spooled copy to delete once every receiver is done.
    temp: Option<PathBuf>,
    waker: Option<Waker>,
    /// The handle is gone: forget the record once every receiver is done.
    dropped: bool,
}

#[derive(Debug, Default)]
struct Incoming {
    queue: VecDeque<FileEvent>,
    waker: Option<Waker>,
}

/// The application side of transfers, behind the node's mutex.
#[derive(Debug, Default)]
pub(crate) struct TransferApp {
    out: BTreeMap<u64, Outgoing>,
    inc: BTreeMap<Topic, Incoming>,
    /// Topic of each incoming transfer, from its offer.
    topics: BTreeMap<(NodeId, u64), Topic>,
    starts: Starts,
    /// Spooled files to delete (the driver deletes them off the reactor).
    pub(crate) cleanup: Vec<PathBuf>,
    /// Receive directories held open: file operations run relative to them.
    pub(crate) anchors: std::sync::Arc<crate::anchor::Anchors>,
}

/// Events a receive stream holds before the oldest progress is dropped.
const RECV_QUEUE: usize = 1024;

impl TransferApp {
    pub(crate) fn deliver(&mut self, ev: TransferEvent, wakers: &mut Wakers) {
        let _ = wakers;
        match ev {
            TransferEvent::Offered(o) => {
                let t = o.topic.clone();
                self.topics.insert((o.peer.id, o.id), t.clone());
                self.push_in(Some(&t), FileEvent::Offered(*o));
            }
            TransferEvent::Started { peer, id, direction, offset } => {
                let out = direction == Direction::Outgoing;
                self.starts.insert((peer.id, id, out), (Instant::now(), offset));
            }
            TransferEvent::Progress { peer, id, direction, bytes, total } => {
                let out = direction == Direction::Outgoing;
                let rate = rate(&self.starts, (peer.id, id, out), bytes);
                let p = FileProgress { peer: peer.clone(), id, bytes, total, rate };
                if out {
                    if let Some(o) = self.out.get_mut(&id) {
                        o.progress.insert(peer.id, p);
                        wake(&mut o.waker);
                    }
                } else {
                    let t = self.topics.get(&(peer.id, id)).cloned();
                    self.push_in(t.as_ref(), FileEvent::Progress(p));
                }
            }
            TransferEvent::Received(r) => {
                self.topics.remove(&(r.peer.id, r.id));
                self.starts.remove(&(r.peer.id, r.id, false));
                let t = r.topic.clone();
                self.push_in(Some(&t), FileEvent::Received(*r));
            }
            TransferEvent::Delivered { peer, id } => self.outcome(id, peer, Ok(())),
            TransferEvent::Failed { peer, id, direction: Direction::Outgoing, reason } => {
                self.outcome(id, peer, Err(reason))
            }
            TransferEvent::Failed { peer, id, direction: Direction::Incoming, reason } => {
                self.starts.remove(&(peer.id, id, false));
                let t = self.topics.remove(&(peer.id, id));
                self.push_in(t.as_ref(), FileEvent::Failed { peer, id, reason });
            }
        }
    }

    fn outcome(&mut self, id: u64, peer: PeerInfo, r: Result<(), String>) {
        self.starts.remove(&(peer.id, id, true));
        let Some(o) = self.out.get_mut(&id) else { return };
        o.outcomes.insert(peer.id, r);
        if o.outcomes.len() >= o.receivers.len() {
            if let Some(t) = o.temp.take() {
                self.cleanup.push(t);
            }
            if o.dropped {
                self.out.remove(&id);
                return;
            }
        }
        wake(&mut o.waker);
    }

    /// Queues an incoming event for its topic's stream (every stream if the
    /// topic is unknown: an offer refused before it was known).
    fn push_in(&mut self, topic: Option<&Topic>, ev: FileEvent) {
        let queues: Vec<&mut Incoming> = match topic {
            Some(t) => self.inc.get_mut(t).into_iter().collect(),
            None => self.inc.values_mut().collect(),
        };
        for q in queues {
            if q.queue.len() >= RECV_QUEUE {
                if let Some(i) = q.queue.iter().position(|e| matches!(e, FileEvent::Progress(_))) {
                    q.queue.remove(i);
                } else {
                    continue;
                }
            }
            q.queue.push_back(ev.clone());
            wake(&mut q.waker);
        }
    }

    /// The node's driver finished: wake everyone so streams end.
    pub(crate) fn finish(&mut self) {
        for o in self.out.values_mut() {
            wake(&mut o.waker);
        }
        for q in self.inc.values_mut() {
            wake(&mut q.waker);
        }
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

fn terr(e: TransferError) -> Error {
    match e {
        TransferError::Closed => Error::Closed,
        e => Error::Transfer(e),
    }
}

/// A file being sent: progress per receiver and an outcome per receiver.
#[derive(Debug)]
pub struct FileTransfer<R: Runtime> {
    id: u64,
    shared: Arc<Shared>,
    receivers: Vec<PeerInfo>,
    _runtime: PhantomData<R>,
}

impl<R: Runtime> FileTransfer<R> {
    /// The transfer id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peers the file was offered to.
    pub fn receivers(&self) -> &[PeerInfo] {
        &self.receivers
    }

    /// Waits for the next progress report of any receiver (coalesced: the
    /// latest per receiver since the last call); `None` once every
    /// receiver has an outcome.
    pub async fn progress(&self) -> Option<FileProgress> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            let finished = st.app.finished;
            let Some(o) = st.app.transfers.out.get_mut(&self.id) else { return Poll::Ready(None) };
            if let Some(k) = o.progress.keys().next().copied() {
                return Poll::Ready(o.progress.remove(&k));
            }
            if finished || o.outcomes.len() >= o.receivers.len() {
                return Poll::Ready(None);
            }
            o.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Waits until every receiver has an outcome: `Ok` once it verified the
    /// file and has it under its final name, `Err(reason)` if it failed.
    pub async fn outcomes(&self) -> Vec<(PeerInfo, Result<(), String>)> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            let finished = st.app.finished;
            let Some(o) = st.app.transfers.out.get_mut(&self.id) else { return Poll::Ready(Vec::new()) };
            if o.outcomes.len() >= o.receivers.len() || finished {
                let r = o
                    .receivers
                    .iter()
                    .map(|p| (p.clone(), o.outcomes.get(&p.id).cloned().unwrap_or(Err("node closed".into()))))
                    .collect();
                return Poll::Ready(r);
            }
            o.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Waits for the outcome of one receiver.
    pub async fn outcome(&self, peer: NodeId) -> Result<(), String> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            let finished = st.app.finished;
            let Some(o) = st.app.transfers.out.get_mut(&self.id) else { return Poll::Ready(Err("unknown".into())) };
            if let Some(r) = o.outcomes.get(&peer) {
                return Poll::Ready(r.clone());
            }
            if finished || !o.receivers.iter().any(|p| p.id == peer) {
                return Poll::Ready(Err("not a receiver of this transfer, or node closed".into()));
            }
            o.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Cancels the transfer for every receiver still in progress.
    pub fn cancel(&self) {
        let mut st = self.shared.lock();
        let _ = st.node.transfer().cancel(self.id);
        st.app.wake_driver();
    }
}

impl<R: Runtime> Drop for FileTransfer<R> {
    fn drop(&mut self) {
        // Forget the handle's records once nobody can read them (the
        // transfer itself goes on).
        let mut st = self.shared.lock();
        if let Some(o) = st.app.transfers.out.get_mut(&self.id) {
            if o.outcomes.len() >= o.receivers.len() {
                st.app.transfers.out.remove(&self.id);
            } else {
                o.dropped = true;
            }
        }
    }
}

/// The stream of [`FileEvent`]s of one receiving topic
/// ([`Node::receive_files`]). Ends when the node is closed.
#[derive(Debug)]
pub struct ReceivedFiles {
    shared: Arc<Shared>,
    topic: Topic,
}

impl ReceivedFiles {
    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Waits for the next event; `None` once the node is closed.
    pub async fn recv(&mut self) -> Option<FileEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for ReceivedFiles {
    type Item = FileEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FileEvent>> {
        let mut st = self.shared.lock();
        let finished = st.app.finished;
        let Some(q) = st.app.transfers.inc.get_mut(&self.topic) else { return Poll::Ready(None) };
        if let Some(ev) = q.queue.pop_front() {
            return Poll::Ready(Some(ev));
        }
        if finished {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ReceivedFiles {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.app.transfers.inc.remove(&self.topic);
        st.node.transfer().stop_receiving(&self.topic);
    }
}

impl<R: Runtime> Node<R> {
    /// Sends the file at `path` to every connected subscriber of `topic`
    /// (or to `opts.to`). The offer goes out at once: the file is hashed
    /// (BLAKE3) as it is read for sending and the hash follows the bytes
    /// (see [`TransferSource::File`]), so it is read once, not twice before
    /// its first byte. The file must not change until every receiver is
    /// done: a change is caught only where bytes are read again (a resume).
    pub async fn send_file(
        &self,
        topic: &str,
        path: impl AsRef<Path>,
        opts: FileOptions,
    ) -> Result<FileTransfer<R>, Error> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let size = R::spawn_blocking(move || std::fs::metadata(&p).map(|m| m.len())).await?;
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        self.start_send(topic, &name, TransferSource::File { path, size }, opts, None)
    }

    /// Sends `data` under `name` to every connected subscriber of `topic`
    /// (or to `opts.to`), from memory.
    pub fn send_bytes(
        &self,
        topic: &str,
        name: &str,
        data: impl Into<Bytes>,
        opts: FileOptions,
    ) -> Result<FileTransfer<R>, Error> {
        self.start_send(topic, name, TransferSource::Bytes(data.into()), opts, None)
    }

    /// Sends what `stream` yields under `name`: it is spooled to a
    /// temporary file (hashing as it goes, on the blocking pool), then sent
    /// like [`Node::send_file`]; the copy is deleted once every receiver is done.
    pub async fn send_stream<S>(
        &self,
        topic: &str,
        name: &str,
        stream: S,
        opts: FileOptions,
    ) -> Result<FileTransfer<R>, Error>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        use std::io::Write;
        let tmp = std::env::temp_dir().join(format!(".estafeta-spool-{:016x}", crate::node::random_seed()));
        let t = tmp.clone();
        let file = R::spawn_blocking(move || std::fs::File::create(&t)).await?;
        let mut state = Some((file, estafeta_core::blake3::Hasher::new(), 0u64));
        let mut stream = std::pin::pin!(stream);
        let spooled: std::io::Result<()> = async {
            while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                let chunk = chunk?;
                let (mut f, mut h, n) = state.take().expect("state is put back");
                let (f, h, n, r) = R::spawn_blocking(move || {
                    let r = f.write_all(&chunk);
                    h.update(&chunk);
                    let n = n + chunk.len() as u64;
                    (f, h, n, r)
                })
                .await;
                r?;
                state = Some((f, h, n));
            }
            Ok(())
        }
        .await;
        let (f, h, size) = state.take().expect("state is put back");
        let synced = R::spawn_blocking(move || f.sync_all()).await;
        if let Err(e) = spooled.and(synced) {
            let t = tmp.clone();
            R::spawn_blocking(move || std::fs::remove_file(t)).await.ok();
            return Err(Error::Io(e));
        }
        let src = TransferSource::Path { path: tmp.clone(), size, hash: *h.finalize().as_bytes() };
        self.start_send(topic, name, src, opts, Some(tmp))
    }

    fn start_send(
        &self,
        topic: &str,
        name: &str,
        src: TransferSource,
        opts: FileOptions,
        temp: Option<PathBuf>,
    ) -> Result<FileTransfer<R>, Error> {
        let shared = self.shared().clone();
        let mut guard = shared.lock();
        let st: &mut State = &mut guard;
        let so = SendOptions { chunk_size: opts.chunk_size, to: opts.to, meta: opts.meta };
        let id = match st.node.transfer().send(topic, name, src, so) {
            Ok(id) => id,
            Err(e) => {
                if let Some(t) = temp {
                    st.app.transfers.cleanup.push(t);
                    st.app.wake_driver();
                }
                return Err(terr(e));
            }
        };
        let receivers: Vec<PeerInfo> = match opts.to {
            Some(p) => st.node.peers().filter(|i| i.id == p).cloned().collect(),
            None => st.node.transfer_ref().receivers(id),
        };
        let out = Outgoing { receivers: receivers.clone(), temp, ..Default::default() };
        st.app.transfers.out.insert(id, out);
        st.app.wake_driver();
        drop(guard);
        Ok(FileTransfer { id, shared, receivers, _runtime: PhantomData })
    }

    /// Receives files offered on `topic` into `dir` (created if missing):
    /// subscribes to `topic` and returns the stream of file events.
    /// Receiving is opt-in per topic; dropping the stream stops receiving
    /// (the topic stays subscribed until [`Node::unsubscribe`]).
    pub async fn receive_files(&self, topic: &str, dir: impl AsRef<Path>) -> Result<ReceivedFiles, Error> {
        let dir = dir.as_ref().to_path_buf();
        let d = dir.clone();
        // The directory is held open from here on: a rename of it, or a
        // symlink put in its place, does not redirect what is written.
        let held = R::spawn_blocking(move || {
            std::fs::create_dir_all(&d)?;
            match crate::anchor::Dir::open(&d) {
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(None),
                r => r.map(Some),
            }
        })
        .await?;
        let mut st = self.shared().lock();
        st.node.transfer().receive(topic, dir.clone()).map_err(terr)?;
        if let Some(held) = held {
            let receiving = |t: &Topic| st.node.transfer_ref().is_receiving(t);
            st.app.transfers.anchors.set(Topic::from(topic), dir, held, receiving);
        }
        st.node.pubsub().subscribe(topic)?;
        let t = Topic::from(topic);
        *st.app.topic_refs.entry(t.clone()).or_insert(0) += 1;
        st.app.transfers.inc.entry(t.clone()).or_default();
        st.app.wake_driver();
        drop(st);
        Ok(ReceivedFiles { shared: self.shared().clone(), topic: t })
    }

    /// Accepts an offer (with `TransferConfig::auto_accept` off), maybe
    /// under another name.
    pub fn accept_file(&self, peer: NodeId, id: u64, rename: Option<&str>) -> Result<(), Error> {
        let mut st = self.shared().lock();
        st.node.transfer().accept(peer, id, rename).map_err(terr)?;
        st.app.wake_driver();
        Ok(())
    }

    /// Refuses an offer (with `TransferConfig::auto_accept` off).
    pub fn reject_file(&self, peer: NodeId, id: u64, reason: &str) -> Result<(), Error> {
        let mut st = self.shared().lock();
        st.node.transfer().reject(peer, id, reason).map_err(terr)?;
        st.app.wake_driver();
        Ok(())
    }
}
