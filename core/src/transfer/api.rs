//! The transfer plane's commands, through a borrowed accessor:
//! `node.transfer().send(..)`.

use super::name::NameError;
use super::send::{Hashing, OutPeer, Outgoing, Src};
use super::{FileError, FileReply, FileReqId, TransferState};
use crate::event::Events;
use crate::id::{NodeId, Topic};
use crate::pubsub::PubSubRef;
use crate::session::Session;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What an outgoing transfer sends.
#[derive(Clone, Debug)]
pub enum TransferSource {
    /// A file the driver reads on request. `size` and `hash` (BLAKE3 of the
    /// whole file) are computed by the caller, off the event loop; a file
    /// that changes meanwhile fails the receivers' verification.
    Path {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// BLAKE3 of its content.
        hash: [u8; 32],
    },
    /// Bytes in memory (hashed here).
    Bytes(Bytes),
    /// A file the driver reads on request, not hashed yet: the offer goes
    /// out at once with an all-zero hash, the bytes read for sending are
    /// hashed as they come back, and the hash follows in a `Digest` frame
    /// (so the file is read once, not twice before its first byte). The
    /// file must not change while it is sent: the digest is that of the
    /// bytes read, and only a part read again (a resume) would show a change.
    File {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// Options of [`Transfer::send`].
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Payload bytes per chunk; default `TransferConfig::chunk_size`.
    pub chunk_size: Option<u32>,
    /// Send to this peer only (it need not subscribe to the topic).
    pub to: Option<NodeId>,
    /// Small metadata for the receiver (bounded by the receiver's
    /// `max_metadata_bytes`).
    pub meta: Vec<(String, String)>,
}

/// Why a send or receive command was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// No connected peer running transfers subscribes to the topic.
    #[error("no connected receiver for topic {0:?}")]
    NoReceivers(Topic),
    /// The peer is not connected or does not run transfers.
    #[error("peer {0} is not connected or does not receive files")]
    UnknownPeer(NodeId),
    /// The topic name is empty or too long.
    #[error("bad topic: {0}")]
    BadTopic(String),
    /// The name would be refused by receivers.
    #[error("bad name: {0}")]
    BadName(NameError),
    /// Too many transfers at once, or too many receiving topics.
    #[error("too many transfers at once")]
    TooMany,
    /// A chunk size of 0 or one that does not fit in a frame.
    #[error("chunk size {0} is invalid")]
    BadChunkSize(u32),
    /// No such transfer or offer.
    #[error("no such transfer: {0}")]
    Unknown(String),
    /// The node is closing or closed.
    #[error("node is closed")]
    Closed,
}

/// Commands of the transfer plane, borrowed from a [`Node`](crate::Node)
/// with [`Node::transfer`](crate::Node::transfer).
///
/// ```
/// use estafeta_core::transfer::{SendOptions, TransferError, TransferSource};
/// use estafeta_core::{Bytes, Config, Node};
/// let mut node = Node::new(Config::plaintext(), "alice").unwrap();
/// node.transfer().receive("models", "/var/lib/app/incoming").unwrap();
/// let src = TransferSource::Bytes(Bytes::from_static(b"weights"));
/// let r = node.transfer().send("models", "w.bin", src, SendOptions::default());
/// assert!(matches!(r, Err(TransferError::NoReceivers(_))), "no peer yet");
/// ```
#[derive(Debug)]
pub struct Transfer<'a> {
    pub(crate) state: &'a mut TransferState,
    pub(crate) session: &'a mut Session,
    pub(crate) pubsub: PubSubRef<'a>,
    pub(crate) events: &'a mut Events,
    pub(crate) closing: bool,
}

impl Transfer<'_> {
    fn wake(&mut self) {
        for c in self.state.wake.drain(..) {
            self.session.ready.insert(c);
        }
    }

    /// Offers `source` under `name` to every connected subscriber of `topic`
    /// (or to `opts.to` only). Returns the transfer id; per-receiver
    /// outcomes follow as [`TransferEvent`](super::TransferEvent)s.
    pub fn send(
        &mut self,
        topic: &str,
        name: &str,
        source: TransferSource,
        opts: SendOptions,
    ) -> Result<u64, TransferError> {
        if self.closing {
            return Err(TransferError::Closed);
        }
        if topic.is_empty() || topic.len() > 256 {
            return Err(TransferError::BadTopic(format!("topic of {} bytes", topic.len())));
        }
        let cfg = &self.state.cfg;
        // The receivers check names; refusing here only what no receiver
        // could take keeps their checks testable from a real sender.
        if name.is_empty() {
            return Err(TransferError::BadName(NameError::Empty));
        }
        let chunk = opts.chunk_size.unwrap_or(cfg.chunk_size);
        if chunk == 0 || chunk as usize + 64 > self.session.cfg.max_frame_size {
            return Err(TransferError::BadChunkSize(chunk));
        }
        let live = self.state.out.values().filter(|o| o.to.values().any(OutPeer::is_live)).count();
        if live >= cfg.max_total {
            return Err(TransferError::TooMany);
        }
        let receivers: Vec<NodeId> = match opts.to {
            Some(p) if self.state.links.contains_key(&p) => vec![p],
            Some(p) => return Err(TransferError::UnknownPeer(p)),
            None => self.pubsub.subscribers(topic).filter(|p| self.state.links.contains_key(p)).collect(),
        };
        if receivers.is_empty() {
            return Err(TransferError::NoReceivers(Topic::from(topic)));
        }
        let (src, size, hash, hashing) = match source {
            TransferSource::Path { path, size, hash } => (Src::Path(path), size, hash, None),
            TransferSource::Bytes(b) => {
                let h = *blake3::hash(&b).as_bytes();
                (Src::Mem(b.clone()), b.len() as u64, h, None)
            }
            TransferSource::File { path, size: 0 } => (Src::Path(path), 0, *blake3::hash(&[]).as_bytes(), None),
            TransferSource::File { path, size } => (Src::Path(path), size, [0; 32], Some(Hashing::new())),
        };
        let mut id = self.state.rng.next_u64();
        while id == 0 || self.state.out.contains_key(&id) {
            id = self.state.rng.next_u64();
        }
        let to: BTreeMap<NodeId, OutPeer> = receivers
            .into_iter()
            .filter_map(|p| self.state.peers.get(&p).map(|info| (p, OutPeer::new(info.clone()))))
            .collect();
        let topic = Topic::from(topic);
        let o = Outgoing { src, topic, name: name.to_string(), size, hash, chunk, meta: opts.meta, to, hashing };
        self.state.add_outgoing(id, o);
        self.wake();
        Ok(id)
    }

    /// Receives files offered on `topic` into `dir` (a directory the
    /// application chose; it must exist). Receiving is opt-in per topic:
    /// offers on other topics are refused. Calling it again changes the
    /// directory for new offers.
    pub fn receive(&mut self, topic: &str, dir: impl Into<PathBuf>) -> Result<(), TransferError> {
        if topic.is_empty() || topic.len() > 256 {
            return Err(TransferError::BadTopic(format!("topic of {} bytes", topic.len())));
        }
        if !self.state.dirs.contains_key(topic) && self.state.dirs.len() >= self.state.cfg.max_receive_topics {
            return Err(TransferError::TooMany);
        }
        self.state.dirs.insert(Topic::from(topic), dir.into());
        Ok(())
    }

    /// Stops receiving on `topic` (transfers under way continue). Returns
    /// false if it was not receiving.
    pub fn stop_receiving(&mut self, topic: &str) -> bool {
        self.state.dirs.remove(topic).is_some()
    }

    /// Accepts an offer the application was asked about
    /// (`TransferConfig::auto_accept` off), optionally under another name
    /// (sanitised like the sender's).
    pub fn accept(&mut self, peer: NodeId, id: u64, rename: Option<&str>) -> Result<(), TransferError> {
        let r = self.state.in_accept((peer, id), rename, self.events).map_err(TransferError::Unknown);
        self.wake();
        r
    }

    /// Refuses an offer the application was asked about.
    pub fn reject(&mut self, peer: NodeId, id: u64, reason: &str) -> Result<(), TransferError> {
        let r = self.state.in_reject((peer, id), reason, self.events).map_err(TransferError::Unknown);
        self.wake();
        r
    }

    /// Cancels an outgoing transfer for every receiver still in progress.
    pub fn cancel(&mut self, id: u64) -> Result<(), TransferError> {
        let peers: Vec<NodeId> = match self.state.out.get(&id) {
            Some(o) => o.to.iter().filter(|(_, p)| p.is_live()).map(|(k, _)| *k).collect(),
            None => return Err(TransferError::Unknown(format!("{id}"))),
        };
        for p in peers {
            self.state.out_fail(id, p, "cancelled by the sender".into(), true, self.events);
        }
        self.wake();
        Ok(())
    }
}

/// Read-only queries of the transfer plane
/// ([`Node::transfer_ref`](crate::Node::transfer_ref)).
#[derive(Debug, Clone, Copy)]
pub struct TransferRef<'a> {
    pub(crate) state: &'a TransferState,
}

impl TransferRef<'_> {
    /// Outgoing transfers still in progress for some receiver.
    pub fn outgoing(&self) -> usize {
        self.state.out.values().filter(|o| o.to.values().any(OutPeer::is_live)).count()
    }

    /// Incoming transfers in progress.
    pub fn incoming(&self) -> usize {
        self.state.inc.values().filter(|s| s.is_live()).count()
    }

    /// The largest number of file bytes one transfer holds in memory now
    /// (chunks read and not yet sent, or received and not yet written),
    /// and that transfer's window in bytes (the first never exceeds the second).
    pub fn max_held(&self) -> (u64, u64) {
        let w = self.state.cfg.window_chunks as u64;
        let out = self.state.out.values().flat_map(|o| o.to.values().map(move |p| (p.held() as u64, o.chunk as u64)));
        let inc = self.state.inc.values().map(|s| (s.held(), s.chunk_size() as u64));
        out.chain(inc).map(|(h, c)| (h, w * c)).max_by_key(|(h, _)| *h).unwrap_or((0, 0))
    }

    /// The receivers outgoing transfer `id` was offered to.
    pub fn receivers(&self, id: u64) -> Vec<crate::event::PeerInfo> {
        self.state.out.get(&id).map(|o| o.to.values().map(|p| p.info.clone()).collect()).unwrap_or_default()
    }

    /// True if `topic` is a receiving topic.
    pub fn is_receiving(&self, topic: &str) -> bool {
        self.state.dirs.contains_key(topic)
    }
}

impl TransferState {
    /// Feeds a completion (see [`Node::handle_file`](crate::Node::handle_file)).
    pub(crate) fn complete(&mut self, id: FileReqId, result: Result<FileReply, FileError>, events: &mut Events) {
        self.handle_file(id, result, events);
    }
}
