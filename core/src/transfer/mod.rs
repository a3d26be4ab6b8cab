//! The transfer plane: chunked, resumable, verified file transfer to the
//! subscribers of a topic or to one peer.
//!
//! **Keys.** Outgoing state is keyed by transfer id then receiver, incoming
//! state by (sender, transfer id): never by connection, so a transfer
//! survives reconnects. On every new session the sender offers again (same
//! id) and the receiver answers with the offset it holds.
//!
//! **Flow.** `Offer` → `Accept { offset, prefix, until }` or `Reject`; the
//! sender checks the receiver's prefix hash (a request to its driver to
//! hash its own file's first `offset` bytes) and answers `Start { offset }`
//! with that offset or 0. `Chunk`s are read from the file with at most one
//! read outstanding per receiver and produced when the scheduler pulls
//! them; the receiver grants credit as an absolute offset `until` = bytes
//! synced + window, so a slow receiver holds back only itself, memory per
//! transfer stays within a window on both ends, and a crash costs at most
//! one window of bytes sent again. Within credit, the bytes on the wire
//! follow the round trip (`send.rs`, `Pace`), so messages on the same
//! connection wait behind about a millisecond of file data. An offer may
//! carry an all-zero hash (`TransferSource::File`): the sender hashes what
//! it reads and sends the hash in a `Digest`.
//!
//! **Receiving.** Names are sanitised ([`sanitize_name`]); bytes go to
//! `<name>.part` in the directory the application chose for the topic,
//! hashed as they arrive; every quarter window the partial file is synced and
//! a sidecar `<name>.part.meta` (hash, size, synced offset) is stored. A
//! later offer of the same content (same hash and size, any transfer id)
//! resumes from the sidecar's offset. At the end the whole-file hash is
//! checked against the offer's, the file is synced and renamed into place
//! without replacing anything; a mismatch never produces the final name.

mod api;
mod event;
mod io;
mod memfs;
mod name;
mod recv;
mod send;

pub use api::{SendOptions, Transfer, TransferError, TransferRef, TransferSource};
pub use event::{Direction, Offered, Received, TransferEvent};
pub use io::{FileError, FileErrorKind, FileOp, FileReply, FileReqId, FileRequest};
pub use memfs::MemFs;
pub use name::{sanitize_name, Escaped, NameError};

use crate::config::TransferConfig;
use crate::event::{Event, Events, PeerInfo, ProtocolError};
use crate::id::{ConnId, NodeId, Topic};
use crate::rng::Rng;
use crate::stats::TransferStats;
use crate::time::Timestamp;
use crate::timer::Timers;
use crate::wire::transfer::TransferFrame;
use crate::wire::{encode_frame, Header};
use bytes::Bytes;
use recv::Incoming;
use send::Outgoing;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

/// A control frame owed to a peer, encoded from state when bytes are pulled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Offer,
    Start,
    Digest,
    AbortOut,
    Accept,
    Credit,
    Complete,
    AbortIn,
}

/// A control frame's content, owned (encoded when bytes are pulled).
#[derive(Debug)]
enum Control {
    Offer {
        id: u64,
        topic: Topic,
        name: String,
        size: u64,
        hash: [u8; 32],
        chunk: u32,
        meta: Vec<(String, String)>,
    },
    Start(u64, u64),
    /// The whole content's hash, after an offer without it.
    Digest(u64, [u8; 32]),
    Accept {
        id: u64,
        offset: u64,
        prefix: [u8; 32],
        until: u64,
    },
    Credit {
        id: u64,
        synced: u64,
        until: u64,
        received: u64,
    },
    Complete(u64),
    /// An abort: id, sent by the transfer's sender, reason.
    Abort(u64, bool, String),
}

impl Control {
    fn encode(&self, buf: &mut Vec<u8>) {
        let f = match self {
            Control::Offer { id, topic, name, size, hash, chunk, meta } => TransferFrame::Offer {
                id: *id,
                topic: topic.as_str(),
                name,
                size: *size,
                hash: *hash,
                chunk: *chunk,
                meta: meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            },
            Control::Start(id, offset) => TransferFrame::Start { id: *id, offset: *offset },
            Control::Digest(id, hash) => TransferFrame::Digest { id: *id, hash: *hash },
            Control::Accept { id, offset, prefix, until } => {
                TransferFrame::Accept { id: *id, offset: *offset, prefix: *prefix, until: *until }
            }
            Control::Credit { id, synced, until, received } => {
                TransferFrame::Credit { id: *id, synced: *synced, until: *until, received: *received }
            }
            Control::Complete(id) => TransferFrame::Complete { id: *id },
            Control::Abort(id, by_sender, reason) => TransferFrame::Abort { id: *id, by_sender: *by_sender, reason },
        };
        encode_frame(buf, &Header::Transfer(f), &[]);
    }
}

/// A peer in session that runs the plane.
#[derive(Debug)]
struct Link {
    conn: ConnId,
    due: BTreeSet<(u64, Due)>,
    /// Answers to offers refused before any state existed.
    rejects: BTreeMap<u64, String>,
    /// Outgoing transfer served last (round-robin over transfers).
    cursor: u64,
}

/// Who a file request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Out {
        id: u64,
        peer: NodeId,
        gen: u64,
    },
    /// `sync`: the durability lane (sync, then sidecar), which may run
    /// beside a write of the same file.
    In {
        peer: NodeId,
        id: u64,
        sync: bool,
    },
    /// Hashing a whole file to send its digest (see `send.rs`).
    Digest {
        id: u64,
    },
}

/// Timer keys: a transfer waiting for its peer to come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Out(u64, NodeId),
    In(NodeId, u64),
}

/// Final answers to recently finished incoming transfers, for re-offers
/// that cross the answer: `None` complete, `Some(reason)` failed.
const DONE_CACHE: usize = 1024;

#[derive(Debug)]
pub(crate) struct TransferState {
    cfg: TransferConfig,
    links: BTreeMap<NodeId, Link>,
    peers: BTreeMap<NodeId, PeerInfo>,
    out: BTreeMap<u64, Outgoing>,
    inc: BTreeMap<(NodeId, u64), Incoming>,
    /// Receiving topics and their directories.
    dirs: BTreeMap<Topic, PathBuf>,
    /// Final paths being written, and by whom.
    names: BTreeMap<PathBuf, (NodeId, u64)>,
    done: BTreeMap<(NodeId, u64), ([u8; 32], Option<String>)>,
    done_order: VecDeque<(NodeId, u64)>,
    ops: BTreeMap<FileReqId, Owner>,
    requests: VecDeque<FileRequest>,
    next_req: u64,
    pub(crate) timers: Timers<TimerKey>,
    rng: Rng,
    /// Connections with something new to send.
    pub(crate) wake: Vec<ConnId>,
    pub(crate) stats: TransferStats,
}

impl TransferState {
    pub(crate) fn new(mut cfg: TransferConfig, max_frame: usize, seed: u64) -> Self {
        // Chunks travel whole in one frame with a header of at most ~30 bytes.
        let fit = max_frame.saturating_sub(64).clamp(1, u32::MAX as usize) as u32;
        cfg.chunk_size = cfg.chunk_size.min(fit);
        cfg.max_chunk_size = cfg.max_chunk_size.min(fit);
        TransferState {
            cfg,
            links: BTreeMap::new(),
            peers: BTreeMap::new(),
            out: BTreeMap::new(),
            inc: BTreeMap::new(),
            dirs: BTreeMap::new(),
            names: BTreeMap::new(),
            done: BTreeMap::new(),
            done_order: VecDeque::new(),
            ops: BTreeMap::new(),
            requests: VecDeque::new(),
            next_req: 1,
            timers: Timers::default(),
            rng: Rng::new(seed ^ 0x7A45_F11E_5EED_0001),
            wake: Vec::new(),
            stats: TransferStats::default(),
        }
    }

    /// Issues a file request for `owner`.
    fn request(&mut self, owner: Owner, op: FileOp) {
        let id = FileReqId(self.next_req);
        self.next_req += 1;
        self.ops.insert(id, owner);
        self.requests.push_back(FileRequest { id, op });
    }

    pub(crate) fn poll_request(&mut self) -> Option<FileRequest> {
        self.requests.pop_front()
    }

    /// Marks a control frame due for `peer` (if it is in session).
    fn due(&mut self, peer: NodeId, id: u64, what: Due) {
        if let Some(l) = self.links.get_mut(&peer) {
            l.due.insert((id, what));
            self.wake.push(l.conn);
        }
    }

    fn wake_peer(&mut self, peer: NodeId) {
        if let Some(l) = self.links.get(&peer) {
            self.wake.push(l.conn);
        }
    }

    // ----- session hooks --------------------------------------------------

    /// A session with `info` starts on `conn`; `enabled`: both ends run the plane.
    pub(crate) fn on_peer_up(&mut self, info: &PeerInfo, conn: ConnId, enabled: bool) {
        if !enabled {
            return;
        }
        self.links.insert(info.id, Link { conn, due: BTreeSet::new(), rejects: BTreeMap::new(), cursor: 0 });
        self.peers.insert(info.id, info.clone());
        let ids: Vec<u64> = self.out.iter().filter(|(_, o)| o.to.contains_key(&info.id)).map(|(id, _)| *id).collect();
        for id in ids {
            self.out_peer_up(id, info);
        }
    }

    /// The session with `peer` ended.
    pub(crate) fn on_peer_down(&mut self, peer: NodeId, now: Timestamp) {
        if self.links.remove(&peer).is_none() {
            return;
        }
        let wait = now + self.cfg.peer_timeout;
        let ids: Vec<u64> = self.out.iter().filter(|(_, o)| o.to.contains_key(&peer)).map(|(id, _)| *id).collect();
        for id in ids {
            if self.out_peer_down(id, peer) {
                self.timers.set(TimerKey::Out(id, peer), wait);
            }
        }
        let keys: Vec<(NodeId, u64)> = self.inc.range((peer, 0)..=(peer, u64::MAX)).map(|(k, _)| *k).collect();
        for k in keys {
            if self.inc.get(&k).is_some_and(|s| s.is_live()) {
                self.timers.set(TimerKey::In(k.0, k.1), wait);
            }
        }
    }

    /// Fires due timers. A timer armed when the peer went away is
    /// cancelled when the transfer picks up again (the receiver re-offered
    /// to, or the sender offering again); one still armed means the peer
    /// did not come back for it, even if it reconnected as a new process.
    pub(crate) fn handle_timeout(&mut self, now: Timestamp, events: &mut Events) {
        let t = self.cfg.peer_timeout;
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Out(id, peer) => {
                    self.out_fail(id, peer, format!("receiver unreachable for {t:?}"), false, events);
                }
                TimerKey::In(peer, id) => {
                    let tell = self.links.contains_key(&peer);
                    self.in_fail((peer, id), format!("sender did not resume within {t:?}"), tell, events);
                }
            }
        }
    }

    // ----- frames -------------------------------------------------------

    /// A frame of this plane from `peer` (past the session gate).
    pub(crate) fn on_frame(
        &mut self,
        peer: &PeerInfo,
        frame: TransferFrame<'_>,
        payload: Bytes,
        now: Timestamp,
        events: &mut Events,
    ) -> Result<(), ProtocolError> {
        if !matches!(frame, TransferFrame::Chunk { .. }) && !payload.is_empty() {
            return Err(ProtocolError::UnexpectedFrame("transfer control frame with a payload"));
        }
        match frame {
            TransferFrame::Offer { id, topic, name, size, hash, chunk, meta } => {
                self.on_offer(peer, recv::OfferIn { id, topic, name, size, hash, chunk, meta }, events)
            }
            TransferFrame::Start { id, offset } => self.on_start(peer, id, offset, events),
            TransferFrame::Digest { id, hash } => {
                self.on_digest(peer.id, id, hash, events);
                Ok(())
            }
            TransferFrame::Chunk { id, offset } => self.on_chunk(peer, id, offset, payload, events),
            TransferFrame::Abort { id, by_sender: true, reason } => {
                let r = format!("sender aborted: {}", Escaped(reason));
                self.in_fail((peer.id, id), r, false, events);
                Ok(())
            }
            TransferFrame::Accept { id, offset, prefix, until } => {
                self.on_accept(peer.id, id, offset, prefix, until, events);
                Ok(())
            }
            TransferFrame::Credit { id, synced, until, received } => {
                self.on_credit(peer.id, id, (synced, until, received), now, events);
                Ok(())
            }
            TransferFrame::Complete { id } => {
                self.on_complete(peer.id, id, events);
                Ok(())
            }
            TransferFrame::Reject { id, reason } => {
                let r = format!("refused: {}", Escaped(reason));
                self.out_fail(id, peer.id, r, false, events);
                Ok(())
            }
            TransferFrame::Abort { id, by_sender: false, reason } => {
                let r = format!("receiver aborted: {}", Escaped(reason));
                self.out_fail(id, peer.id, r, false, events);
                Ok(())
            }
        }
    }

    // ----- file completions ------------------------------------------

    /// A file request completed.
    pub(crate) fn handle_file(&mut self, id: FileReqId, result: Result<FileReply, FileError>, events: &mut Events) {
        let Some(owner) = self.ops.remove(&id) else { return };
        match owner {
            Owner::Out { id, peer, gen } => self.out_file_done(id, peer, gen, result, events),
            Owner::In { peer, id, sync } => self.in_file_done((peer, id), sync, result, events),
            Owner::Digest { id } => self.out_digest_done(id, result, events),
        }
    }

    // ----- output ------------------------------------------------------

    /// Control frames owed to the peer whose primary is `conn`.
    pub(crate) fn write_control(&mut self, conn: ConnId, peer: Option<NodeId>, buf: &mut Vec<u8>) {
        let Some(peer) = peer else { return };
        let Some(link) = self.links.get_mut(&peer).filter(|l| l.conn == conn) else { return };
        if link.due.is_empty() && link.rejects.is_empty() {
            // Runs on every pull of bytes: nothing to take, nothing to drop.
            return;
        }
        let due = std::mem::take(&mut link.due);
        let rejects = std::mem::take(&mut link.rejects);
        for (id, reason) in &rejects {
            let f = TransferFrame::Reject { id: *id, reason };
            encode_frame(buf, &Header::Transfer(f), &[]);
        }
        for (id, what) in due {
            let frame_owned;
            let f = match what {
                Due::Offer | Due::Start | Due::Digest | Due::AbortOut => {
                    let Some(o) = self.out.get(&id) else { continue };
                    match o.control(id, peer, what) {
                        Some(f) => {
                            frame_owned = f;
                            &frame_owned
                        }
                        None => continue,
                    }
                }
                Due::Accept | Due::Credit | Due::Complete | Due::AbortIn => {
                    let key = (peer, id);
                    let cached = self.done.get(&key).map(|(_, o)| o);
                    match (self.inc.get(&key), cached, what) {
                        (Some(s), _, _) => match s.control(id, what, &self.cfg) {
                            Some(f) => {
                                frame_owned = f;
                                &frame_owned
                            }
                            None => continue,
                        },
                        (None, Some(None), Due::Complete) => {
                            frame_owned = Control::Complete(id);
                            &frame_owned
                        }
                        (None, Some(Some(r)), Due::AbortIn) => {
                            frame_owned = Control::Abort(id, false, r.clone());
                            &frame_owned
                        }
                        _ => continue,
                    }
                }
            };
            f.encode(buf);
            if let Control::Offer { .. } = f {
                self.stats.offers_sent += 1;
            }
        }
    }

    /// True if the peer whose primary is `conn` is owed control frames.
    pub(crate) fn has_control(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        peer.and_then(|p| self.links.get(&p))
            .is_some_and(|l| l.conn == conn && (!l.due.is_empty() || !l.rejects.is_empty()))
    }

    /// Marks a final answer for a finished incoming transfer.
    fn remember(&mut self, key: (NodeId, u64), hash: [u8; 32], outcome: Option<String>) {
        if self.done.insert(key, (hash, outcome)).is_none() {
            self.done_order.push_back(key);
            if self.done_order.len() > DONE_CACHE {
                if let Some(old) = self.done_order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
    }

    fn push_event(events: &mut Events, ev: TransferEvent) {
        events.push(Event::Transfer(ev));
    }
}
