//! The receiving side: one `Incoming` per (sender, transfer id), writing
//! `<name>.part` with at most one file request outstanding, syncing and
//! storing its sidecar every quarter window, verifying, then renaming.

use super::name::{sanitize_name, Escaped, META, PART, SUFFIX_ROOM};
use super::{Control, Due, FileError, FileErrorKind, FileOp, FileReply, Owner, TimerKey, TransferEvent, TransferState};
use crate::config::TransferConfig;
use crate::event::{Events, PeerInfo, ProtocolError};
use crate::id::{NodeId, Topic};
use crate::transfer::event::{Direction, Offered, Received};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// An offer as decoded from the wire.
pub(super) struct OfferIn<'a> {
    pub(super) id: u64,
    pub(super) topic: &'a str,
    pub(super) name: &'a str,
    pub(super) size: u64,
    pub(super) hash: [u8; 32],
    pub(super) chunk: u32,
    pub(super) meta: Vec<(&'a str, &'a str)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InPhase {
    /// Waiting for the application to accept or reject.
    Asking,
    /// Reading the sidecar, preparing the partial file.
    Loading,
    /// Accept sent; waiting for Start.
    Accepted,
    Receiving,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Load,
    /// Is a file already under the final name? A one-byte read at the
    /// offer's size: `NotFound` no, `UnexpectedEof` at most that long.
    Probe,
    /// Hash the file under the final name (as long as the offer's size or
    /// shorter): the same content means it was received before.
    Verify,
    /// The file was received before: remove a stale partial file.
    Tidy,
    Truncate(u64),
    Hash(u64),
    Write(u64),
    /// Sync the partial file: the bytes written before it was issued, of
    /// an epoch (a restart from 0 starts a new one).
    Sync(u64, u32),
    Store(u64, u32),
    Commit,
    /// Remove the sidecar; `true` after a commit.
    RemoveMeta(bool),
    RemovePart,
}

/// What the sidecar `<name>.part.meta` holds. An unreadable or
/// different sidecar means "start from 0".
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Sidecar {
    magic: u32,
    hash: [u8; 32],
    size: u64,
    offset: u64,
}

const SIDECAR_MAGIC: u32 = 0x4553_5431;

/// Received bytes gathered into one write (unless the credit or the file
/// ends first): fewer, larger requests to the driver's blocking pool.
const WRITE_BATCH: u64 = 1 << 20;

#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) peer: PeerInfo,
    topic: Topic,
    name: String,
    path: PathBuf,
    part: PathBuf,
    meta_path: PathBuf,
    pub(crate) size: u64,
    hash: [u8; 32],
    chunk: u32,
    meta: Vec<(String, String)>,
    pub(crate) phase: InPhase,
    hasher: blake3::Hasher,
    received: u64,
    written: u64,
    durable: u64,
    pending: Vec<Bytes>,
    pending_bytes: u64,
    op: Option<Op>,
    /// The received offset last announced in a Credit.
    acked: u64,
    /// The durability lane's outstanding request (sync, then sidecar).
    sync_op: Option<Op>,
    /// Bumped when the content starts over from 0.
    epoch: u32,
    /// A truncation owed before the next write (the sender restarted from 0).
    truncate: Option<u64>,
    until: u64,
    restarted: bool,
    verified: Option<bool>,
    reason: Option<String>,
    /// A file of the offer's size is under the final name, offered as a
    /// prefix of the whole size: the sender's `Start` says whether it is
    /// the same content (`Start` at the size) or not (`Start` at 0).
    existing: bool,
}

/// An offer's hash is known (not all zero: the sender sends it in a `Digest`).
fn known(hash: &[u8; 32]) -> bool {
    *hash != [0; 32]
}

/// Two hashes that may each be unknown agree.
fn agree(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a == b || !known(a) || !known(b)
}

impl Incoming {
    pub(crate) fn is_live(&self) -> bool {
        self.phase != InPhase::Failed
    }

    pub(crate) fn chunk_size(&self) -> u32 {
        self.chunk
    }

    /// Bytes this transfer holds in memory.
    pub(crate) fn held(&self) -> u64 {
        self.pending_bytes
    }

    fn window(&self, cfg: &TransferConfig) -> u64 {
        cfg.window_chunks as u64 * self.chunk as u64
    }

    fn set_paths(&mut self, dir: &Path, name: String) {
        self.path = dir.join(&name);
        self.part = dir.join(format!("{name}{PART}"));
        self.meta_path = dir.join(format!("{name}{META}"));
        self.name = name;
    }

    /// The control frame `what`, from state.
    pub(super) fn control(&self, id: u64, what: Due, _cfg: &TransferConfig) -> Option<Control> {
        match what {
            Due::Accept if self.phase == InPhase::Accepted => Some(Control::Accept {
                id,
                offset: self.received,
                prefix: *self.hasher.clone().finalize().as_bytes(),
                until: self.until,
            }),
            Due::Credit if self.is_live() => {
                Some(Control::Credit { id, synced: self.durable, until: self.until, received: self.received })
            }
            Due::AbortIn if self.phase == InPhase::Failed => {
                Some(Control::Abort(id, false, self.reason.clone().unwrap_or_default()))
            }
            _ => None,
        }
    }
}

impl TransferState {
    fn reject(&mut self, peer: &PeerInfo, id: u64, reason: String, events: &mut Events) -> Result<(), ProtocolError> {
        let max = self.cfg.max_pending_rejects;
        let Some(link) = self.links.get_mut(&peer.id) else { return Ok(()) };
        if link.rejects.len() >= max {
            return Err(ProtocolError::Limit(format!("more than {max} refused transfer offers pending")));
        }
        link.rejects.insert(id, reason.clone());
        self.wake.push(link.conn);
        self.stats.rejected += 1;
        let ev = TransferEvent::Failed { peer: peer.clone(), id, direction: Direction::Incoming, reason };
        Self::push_event(events, ev);
        Ok(())
    }

    pub(super) fn on_offer(
        &mut self,
        peer: &PeerInfo,
        o: OfferIn<'_>,
        events: &mut Events,
    ) -> Result<(), ProtocolError> {
        self.stats.offers_received += 1;
        let key = (peer.id, o.id);
        if let Some(s) = self.inc.get(&key) {
            if !agree(&s.hash, &o.hash) || s.size != o.size {
                return self.reject(peer, o.id, "transfer id reused for other content".into(), events);
            }
            if known(&o.hash) {
                self.on_digest(peer.id, o.id, o.hash, events);
            }
            self.in_reoffer(key);
            return Ok(());
        }
        if let Some((_, outcome)) = self.done.get(&key).filter(|(h, _)| agree(h, &o.hash)) {
            let d = if outcome.is_none() { Due::Complete } else { Due::AbortIn };
            self.due(peer.id, o.id, d);
            return Ok(());
        }
        let cfg = &self.cfg;
        let meta_bytes: usize = o.meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        let name = sanitize_name(o.name, cfg.max_name_len.min(255 - SUFFIX_ROOM), cfg.allow_subdirs);
        let per_peer = self.inc.range((peer.id, 0)..=(peer.id, u64::MAX)).count();
        let refusal = if meta_bytes > cfg.max_metadata_bytes {
            Some(format!("metadata of {meta_bytes} bytes exceeds {}", cfg.max_metadata_bytes))
        } else if !self.dirs.contains_key(o.topic) {
            Some(format!("not receiving files on topic {:?}", Escaped(o.topic).to_string()))
        } else if o.size > cfg.max_file_size {
            Some(format!("file of {} bytes exceeds max_file_size {}", o.size, cfg.max_file_size))
        } else if o.chunk == 0 || o.chunk > cfg.max_chunk_size {
            Some(format!("chunk size {} outside 1..={}", o.chunk, cfg.max_chunk_size))
        } else if let Err(e) = &name {
            Some(format!("refused name \"{}\": {e}", Escaped(o.name)))
        } else if per_peer >= cfg.max_per_peer || self.inc.len() >= cfg.max_total {
            Some("too many transfers at once".to_string())
        } else {
            None
        };
        if let Some(reason) = refusal {
            return self.reject(peer, o.id, reason, events);
        }
        let name = name.unwrap_or_default();
        let dir = self.dirs.get(o.topic).cloned().unwrap_or_default();
        let mut s = Incoming {
            peer: peer.clone(),
            topic: Topic::from(o.topic),
            name: String::new(),
            path: PathBuf::new(),
            part: PathBuf::new(),
            meta_path: PathBuf::new(),
            size: o.size,
            hash: o.hash,
            chunk: o.chunk,
            meta: o.meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            phase: if self.cfg.auto_accept { InPhase::Loading } else { InPhase::Asking },
            hasher: blake3::Hasher::new(),
            received: 0,
            written: 0,
            durable: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            op: None,
            acked: 0,
            sync_op: None,
            epoch: 0,
            truncate: None,
            until: 0,
            restarted: false,
            verified: None,
            reason: None,
            existing: false,
        };
        s.set_paths(&dir, name);
        // The same name already being written: the same content from a
        // restarted or other sender takes the state over; anything else waits.
        if let Some(&other) = self.names.get(&s.path) {
            let same = self.inc.get(&other).is_some_and(|x| x.is_live() && agree(&x.hash, &o.hash) && x.size == o.size);
            if !same {
                let reason = format!("\"{}\" is being received from another transfer", Escaped(&s.name));
                return self.reject(peer, o.id, reason, events);
            }
            self.take_over(other, key, peer, o.hash);
            self.in_reoffer(key);
            return Ok(());
        }
        let ev = Offered {
            peer: peer.clone(),
            id: o.id,
            topic: s.topic.clone(),
            name: s.name.clone(),
            size: s.size,
            hash: s.hash,
            meta: s.meta.clone(),
            needs_answer: s.phase == InPhase::Asking,
        };
        self.names.insert(s.path.clone(), key);
        self.inc.insert(key, s);
        Self::push_event(events, TransferEvent::Offered(Box::new(ev)));
        self.in_pump(key, events);
        Ok(())
    }

    /// Moves the state of `old` to `new` (a newer offer of the same content).
    /// The new offer's hash replaces the old one (the new sender's prefix
    /// check decides what of the bytes held is kept).
    fn take_over(&mut self, old: (NodeId, u64), new: (NodeId, u64), peer: &PeerInfo, hash: [u8; 32]) {
        let Some(mut s) = self.inc.remove(&old) else { return };
        let old_hash = s.hash;
        s.peer = peer.clone();
        if s.hash != hash {
            s.hash = hash;
            s.verified = None;
        }
        self.names.insert(s.path.clone(), new);
        for owner in self.ops.values_mut() {
            if let Owner::In { peer, id, sync } = *owner {
                if (peer, id) == old {
                    *owner = Owner::In { peer: new.0, id: new.1, sync };
                }
            }
        }
        self.timers.cancel(TimerKey::In(old.0, old.1));
        self.inc.insert(new, s);
        self.remember(old, old_hash, Some("superseded by a newer offer of the same file".into()));
        self.due(old.0, old.1, Due::AbortIn);
    }

    /// The sender offered again (a new session): answer from where we are.
    fn in_reoffer(&mut self, key: (NodeId, u64)) {
        self.timers.cancel(TimerKey::In(key.0, key.1));
        let Some(s) = self.inc.get_mut(&key) else { return };
        match s.phase {
            InPhase::Accepted | InPhase::Receiving => {
                s.phase = InPhase::Accepted;
                self.due(key.0, key.1, Due::Accept);
            }
            InPhase::Failed => self.due(key.0, key.1, Due::AbortIn),
            InPhase::Asking | InPhase::Loading => {}
        }
    }

    /// The application accepts an offer it was asked about, maybe renamed.
    pub(super) fn in_accept(
        &mut self,
        key: (NodeId, u64),
        rename: Option<&str>,
        events: &mut Events,
    ) -> Result<(), String> {
        let cfg = &self.cfg;
        let max = cfg.max_name_len.min(255 - SUFFIX_ROOM);
        let subdirs = cfg.allow_subdirs;
        let dirs = &self.dirs;
        let s = self.inc.get_mut(&key).ok_or("no such offer")?;
        if s.phase != InPhase::Asking {
            return Err("the offer was already answered".into());
        }
        if let Some(n) = rename {
            let n = sanitize_name(n, max, subdirs).map_err(|e| e.to_string())?;
            let dir = dirs.get(s.topic.as_str()).cloned().unwrap_or_default();
            let old = s.path.clone();
            s.set_paths(&dir, n);
            if self.names.contains_key(&s.path) && s.path != old {
                let new = s.path.clone();
                s.set_paths(&dir, old.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
                return Err(format!("\"{}\" is being received already", Escaped(&new.to_string_lossy())));
            }
            self.names.remove(&old);
            self.names.insert(s.path.clone(), key);
        }
        if let Some(s) = self.inc.get_mut(&key) {
            s.phase = InPhase::Loading;
        }
        self.in_pump(key, events);
        Ok(())
    }

    pub(super) fn on_start(
        &mut self,
        peer: &PeerInfo,
        id: u64,
        offset: u64,
        events: &mut Events,
    ) -> Result<(), ProtocolError> {
        let key = (peer.id, id);
        let Some(s) = self.inc.get_mut(&key) else { return Ok(()) };
        match s.phase {
            InPhase::Accepted | InPhase::Receiving => {}
            InPhase::Asking | InPhase::Loading => {
                return Err(ProtocolError::UnexpectedFrame("transfer start before accept"));
            }
            InPhase::Failed => return Ok(()),
        }
        if s.existing {
            // The file under the final name was offered as a prefix of the
            // whole size: the sender's answer says whether it is this content.
            s.existing = false;
            if offset == s.size && offset == s.received {
                s.hash = *s.hasher.clone().finalize().as_bytes();
                self.stats.already_received += 1;
                let path = s.part.clone();
                self.in_op(key, Op::Tidy, FileOp::Remove { path });
            } else {
                let r = format!("a file named \"{}\" already exists", Escaped(&s.name));
                self.in_fail(key, r, true, events);
            }
            return Ok(());
        }
        if offset != s.received {
            if offset != 0 {
                return Err(ProtocolError::UnexpectedFrame("transfer start at an offset not accepted"));
            }
            // The prefix did not match: everything again from 0.
            s.hasher = blake3::Hasher::new();
            s.received = 0;
            s.acked = 0;
            s.written = 0;
            s.durable = 0;
            s.pending.clear();
            s.pending_bytes = 0;
            s.truncate = Some(0);
            s.verified = None;
            s.epoch += 1;
        }
        s.phase = InPhase::Receiving;
        if s.received == s.size && s.verified.is_none() && known(&s.hash) {
            s.verified = Some(s.hasher.clone().finalize().as_bytes() == &s.hash);
        }
        let ev = TransferEvent::Started { peer: peer.clone(), id, direction: Direction::Incoming, offset };
        Self::push_event(events, ev);
        self.in_pump(key, events);
        Ok(())
    }

    pub(super) fn on_chunk(
        &mut self,
        peer: &PeerInfo,
        id: u64,
        offset: u64,
        data: Bytes,
        events: &mut Events,
    ) -> Result<(), ProtocolError> {
        let key = (peer.id, id);
        let Some(s) = self.inc.get_mut(&key) else { return Ok(()) };
        match s.phase {
            InPhase::Receiving => {}
            InPhase::Failed => return Ok(()),
            _ => return Err(ProtocolError::UnexpectedFrame("transfer chunk before start")),
        }
        let end = offset + data.len() as u64;
        if offset != s.received {
            return Err(ProtocolError::UnexpectedFrame("transfer chunk out of order"));
        }
        if end > s.size {
            return Err(ProtocolError::Limit(format!("chunk ends at {end}, past the file size {}", s.size)));
        }
        if end > s.until {
            return Err(ProtocolError::CreditExceeded(format!("transfer chunk ends at {end}, credit {}", s.until)));
        }
        self.stats.bytes_received += data.len() as u64;
        s.hasher.update(&data);
        s.received = end;
        // Say what arrived every eighth of the bytes the sender may have
        // in flight (at most once a chunk), so it keeps the wire busy but
        // not full, and measures the round trip finely enough to pace.
        let ack_every = (self.cfg.max_in_flight / 8).max(1);
        let ack = end >= s.acked + ack_every || end == s.size;
        if ack {
            s.acked = end;
        }
        s.pending_bytes += data.len() as u64;
        s.pending.push(data);
        if s.received == s.size && known(&s.hash) {
            let ok = s.hasher.clone().finalize().as_bytes() == &s.hash;
            s.verified = Some(ok);
            if !ok {
                s.pending.clear();
                s.pending_bytes = 0;
            }
        }
        if ack {
            self.due(key.0, key.1, Due::Credit);
        }
        self.in_pump(key, events);
        Ok(())
    }

    /// Starts the next file request of an incoming transfer, if any is due.
    /// Starts the next file requests of an incoming transfer, if any are
    /// due: one on the data lane (load, truncate, hash, write, commit,
    /// remove) and one on the durability lane (sync, then the sidecar),
    /// which runs beside writes so the disk keeps busy while it syncs.
    fn in_pump(&mut self, key: (NodeId, u64), events: &mut Events) {
        let _ = events;
        let Some(s) = self.inc.get_mut(&key) else { return };
        // A quarter window, so the sender has three quarters to go on with
        // while a sync runs (every half window, it waited on the disk).
        let every = (s.window(&self.cfg) / 4).max(1);
        let receiving = matches!(s.phase, InPhase::Accepted | InPhase::Receiving);
        if receiving
            && s.sync_op.is_none()
            && s.truncate.is_none()
            && s.verified != Some(false)
            && s.written > s.durable
            && (s.written - s.durable >= every || s.written == s.size)
        {
            let op = Op::Sync(s.written, s.epoch);
            s.sync_op = Some(op);
            let path = s.part.clone();
            self.request(Owner::In { peer: key.0, id: key.1, sync: true }, FileOp::Sync { path });
        }
        let Some(s) = self.inc.get_mut(&key) else { return };
        if s.op.is_some() {
            return;
        }
        let quiet = s.sync_op.is_none();
        let (op, file_op) = match s.phase {
            InPhase::Asking => return,
            InPhase::Failed => {
                if quiet {
                    self.in_remove(key);
                }
                return;
            }
            InPhase::Loading => (Op::Load, FileOp::Load { path: s.meta_path.clone(), max: 1024 }),
            InPhase::Accepted | InPhase::Receiving => {
                if s.truncate.is_some() || s.verified == Some(false) {
                    if !quiet {
                        return;
                    }
                    match s.truncate.take() {
                        Some(len) => (Op::Truncate(len), FileOp::Truncate { path: s.part.clone(), len }),
                        None => (Op::RemovePart, FileOp::Remove { path: s.part.clone() }),
                    }
                } else if !s.pending.is_empty()
                    && (s.pending_bytes >= WRITE_BATCH
                        || s.received == s.size
                        || s.received + s.chunk as u64 > s.until
                        || s.phase == InPhase::Accepted)
                {
                    let data = std::mem::take(&mut s.pending);
                    let n = std::mem::take(&mut s.pending_bytes);
                    (Op::Write(n), FileOp::Write { path: s.part.clone(), offset: s.written, data })
                } else if quiet && s.written == s.size && s.durable == s.size && s.verified == Some(true) {
                    (Op::Commit, FileOp::Commit { from: s.part.clone(), to: s.path.clone() })
                } else {
                    return;
                }
            }
        };
        s.op = Some(op);
        self.request(Owner::In { peer: key.0, id: key.1, sync: false }, file_op);
    }

    pub(super) fn in_file_done(
        &mut self,
        key: (NodeId, u64),
        sync: bool,
        result: Result<FileReply, FileError>,
        events: &mut Events,
    ) {
        let window = {
            let Some(s) = self.inc.get(&key) else { return };
            s.window(&self.cfg)
        };
        let plant = self.cfg.plant_credit_bug;
        let restart_ok = self.cfg.restart_on_mismatch;
        let Some(s) = self.inc.get_mut(&key) else { return };
        let op = if sync { s.sync_op.take() } else { s.op.take() };
        if s.phase == InPhase::Failed {
            if s.op.is_none() && s.sync_op.is_none() {
                self.in_remove(key);
            }
            return;
        }
        let Some(op) = op else { return };
        match (op, result) {
            (Op::Load, loaded) => {
                // The sidecar's offset, kept in `durable` while the final
                // name is probed: a file received before (its completion
                // lost with a crash or a connection) is not received again.
                let side: Option<Sidecar> = match loaded {
                    Ok(FileReply::Data(b)) => postcard::from_bytes(&b).ok(),
                    _ => None,
                };
                // A hash unknown on either side (offered without it): the
                // sender's check of the prefix decides.
                s.durable = side
                    .filter(|c| {
                        c.magic == SIDECAR_MAGIC && agree(&c.hash, &s.hash) && c.size == s.size && c.offset <= s.size
                    })
                    .map_or(0, |c| c.offset);
                let (path, offset) = (s.path.clone(), s.size);
                self.in_op(key, Op::Probe, FileOp::Read { path, offset, len: 1 });
            }
            (Op::Probe, Err(e)) if e.kind == FileErrorKind::NotFound => {
                let (path, resume) = (s.part.clone(), s.durable);
                self.in_op(key, Op::Truncate(resume), FileOp::Truncate { path, len: resume });
            }
            (Op::Probe, Err(e)) if e.kind == FileErrorKind::UnexpectedEof => {
                let (path, len) = (s.path.clone(), s.size);
                self.in_op(key, Op::Verify, FileOp::Hash { path, len });
            }
            (Op::Verify, Ok(FileReply::Hashed(h))) if !known(&s.hash) => {
                // No hash to compare with yet: offer the file as the whole
                // prefix; the sender checks it (see `on_start`).
                accept_at(s, s.size, *h, window, plant);
                // No credit: a sender whose content differs sends nothing.
                s.until = 0;
                s.existing = true;
                self.due(key.0, key.1, Due::Accept);
            }
            (Op::Verify, Ok(FileReply::Hashed(h))) if h.finalize().as_bytes() == &s.hash => {
                self.stats.already_received += 1;
                let path = s.part.clone();
                self.in_op(key, Op::Tidy, FileOp::Remove { path });
            }
            (Op::Probe | Op::Verify, _) => {
                let r = format!("a file named \"{}\" already exists", Escaped(&s.name));
                self.in_fail(key, r, true, events);
            }
            (Op::Tidy, Ok(_)) => {
                let path = s.meta_path.clone();
                self.in_op(key, Op::RemoveMeta(true), FileOp::Remove { path });
            }
            (Op::Truncate(len), Ok(_)) if s.phase == InPhase::Loading => {
                if len > 0 {
                    let path = s.part.clone();
                    self.in_op(key, Op::Hash(len), FileOp::Hash { path, len });
                } else {
                    accept_at(s, 0, blake3::Hasher::new(), window, plant);
                    self.due(key.0, key.1, Due::Accept);
                }
            }
            (Op::Hash(len), Ok(FileReply::Hashed(h))) => {
                accept_at(s, len, *h, window, plant);
                self.due(key.0, key.1, Due::Accept);
            }
            (Op::Hash(_), Err(_)) => {
                // The partial file is shorter than its sidecar says: start over.
                s.durable = 0;
                let path = s.part.clone();
                self.in_op(key, Op::Truncate(0), FileOp::Truncate { path, len: 0 });
            }
            (Op::Truncate(_), Ok(_)) => self.in_pump(key, events),
            (Op::Write(n), Ok(_)) => {
                s.written += n;
                self.in_pump(key, events);
            }
            (Op::Sync(_, ep) | Op::Store(_, ep), _) if ep != s.epoch => {
                // The content started over meanwhile: this says nothing about it.
                self.in_pump(key, events);
            }
            (Op::Sync(at, ep), Ok(_)) => {
                if at == s.size {
                    s.durable = at;
                    self.in_pump(key, events);
                } else {
                    let side = Sidecar { magic: SIDECAR_MAGIC, hash: s.hash, size: s.size, offset: at };
                    let data = Bytes::from(postcard::to_allocvec(&side).unwrap_or_default());
                    s.sync_op = Some(Op::Store(at, ep));
                    let path = s.meta_path.clone();
                    self.request(Owner::In { peer: key.0, id: key.1, sync: true }, FileOp::Store { path, data });
                }
            }
            (Op::Store(at, _), Ok(_)) => {
                s.durable = at;
                if !plant {
                    s.until = (at + window).min(s.size).max(s.until);
                }
                let ev = TransferEvent::Progress {
                    peer: s.peer.clone(),
                    id: key.1,
                    direction: Direction::Incoming,
                    bytes: at,
                    total: s.size,
                };
                Self::push_event(events, ev);
                self.due(key.0, key.1, Due::Credit);
                self.in_pump(key, events);
            }
            (Op::Commit, Ok(_)) => {
                let path = s.meta_path.clone();
                self.in_op(key, Op::RemoveMeta(true), FileOp::Remove { path });
            }
            (Op::Commit, Err(e)) if e.kind == FileErrorKind::AlreadyExists => {
                let r = format!("a file named \"{}\" already exists", Escaped(&s.name));
                self.in_fail(key, r, true, events);
            }
            (Op::RemoveMeta(true), _) => self.in_done(key, events),
            (Op::RemovePart, _) => {
                let path = s.meta_path.clone();
                self.in_op(key, Op::RemoveMeta(false), FileOp::Remove { path });
            }
            (Op::RemoveMeta(false), _) => {
                if restart_ok && !s.restarted {
                    self.stats.hash_mismatches += 1;
                    let s = self.inc.get_mut(&key).expect("present above");
                    s.restarted = true;
                    s.verified = None;
                    s.epoch += 1;
                    accept_at(s, 0, blake3::Hasher::new(), window, plant);
                    s.truncate = Some(0);
                    self.due(key.0, key.1, Due::Accept);
                    self.in_pump(key, events);
                } else {
                    self.stats.hash_mismatches += 1;
                    self.in_fail(key, "the received content does not match its hash".into(), true, events);
                }
            }
            (_, Err(e)) => self.in_fail(key, format!("disk error: {e}"), true, events),
            (_, Ok(_)) => self.in_fail(key, "unexpected file reply".into(), true, events),
        }
    }

    fn in_op(&mut self, key: (NodeId, u64), op: Op, file_op: FileOp) {
        if let Some(s) = self.inc.get_mut(&key) {
            s.op = Some(op);
            self.request(Owner::In { peer: key.0, id: key.1, sync: false }, file_op);
        }
    }

    /// The file is in place.
    fn in_done(&mut self, key: (NodeId, u64), events: &mut Events) {
        let Some(s) = self.inc.remove(&key) else { return };
        self.names.remove(&s.path);
        self.timers.cancel(TimerKey::In(key.0, key.1));
        self.stats.received += 1;
        self.remember(key, s.hash, None);
        self.due(key.0, key.1, Due::Complete);
        let ev = Received {
            peer: s.peer,
            id: key.1,
            topic: s.topic,
            name: s.name,
            path: s.path,
            size: s.size,
            hash: s.hash,
            meta: s.meta,
        };
        Self::push_event(events, TransferEvent::Received(Box::new(ev)));
    }

    /// Ends an incoming transfer with `reason`; `tell`: send Abort. The
    /// partial file and its sidecar stay for a later resume.
    pub(super) fn in_fail(&mut self, key: (NodeId, u64), reason: String, tell: bool, events: &mut Events) {
        let Some(s) = self.inc.get_mut(&key) else { return };
        if !s.is_live() {
            return;
        }
        s.phase = InPhase::Failed;
        s.reason = Some(reason.clone());
        s.pending.clear();
        s.pending_bytes = 0;
        let peer = s.peer.clone();
        self.stats.failed += 1;
        self.timers.cancel(TimerKey::In(key.0, key.1));
        let hash = s.hash;
        self.remember(key, hash, Some(reason.clone()));
        if tell {
            self.due(key.0, key.1, Due::AbortIn);
        }
        Self::push_event(events, TransferEvent::Failed { peer, id: key.1, direction: Direction::Incoming, reason });
        if self.inc.get(&key).is_some_and(|s| s.op.is_none() && s.sync_op.is_none()) {
            self.in_remove(key);
        }
    }

    /// Forgets a failed incoming transfer once no request is outstanding.
    fn in_remove(&mut self, key: (NodeId, u64)) {
        if let Some(s) = self.inc.remove(&key) {
            if self.names.get(&s.path) == Some(&key) {
                self.names.remove(&s.path);
            }
        }
    }

    /// The application refuses an offer it was asked about.
    pub(super) fn in_reject(&mut self, key: (NodeId, u64), reason: &str, events: &mut Events) -> Result<(), String> {
        let s = self.inc.get(&key).ok_or("no such offer")?;
        if s.phase != InPhase::Asking {
            return Err("the offer was already answered".into());
        }
        let peer = s.peer.clone();
        self.in_remove(key);
        self.reject(&peer, key.1, reason.to_string(), events).map_err(|e| e.to_string())
    }
}

impl TransferState {
    /// The sender sent the whole content's hash (a `Digest`, or a later
    /// offer that carries it).
    pub(super) fn on_digest(&mut self, peer: NodeId, id: u64, hash: [u8; 32], events: &mut Events) {
        let key = (peer, id);
        let Some(s) = self.inc.get_mut(&key).filter(|s| s.is_live()) else { return };
        if !known(&hash) || s.hash == hash {
            return;
        }
        if known(&s.hash) {
            self.in_fail(key, "the sender's digest differs from its offer".into(), true, events);
            return;
        }
        s.hash = hash;
        if s.phase == InPhase::Receiving && s.received == s.size && s.verified.is_none() {
            let ok = s.hasher.clone().finalize().as_bytes() == &s.hash;
            s.verified = Some(ok);
            if !ok {
                s.pending.clear();
                s.pending_bytes = 0;
            }
        }
        self.in_pump(key, events);
    }
}

/// Ready to answer Accept from `offset` with the prefix `hasher`.
fn accept_at(s: &mut Incoming, offset: u64, hasher: blake3::Hasher, window: u64, plant_bug: bool) {
    s.hasher = hasher;
    s.acked = offset;
    s.received = offset;
    s.written = offset;
    s.durable = offset;
    s.until = (offset + window).min(s.size);
    if plant_bug {
        // The planted bug: the whole file is granted at once, not synced + window.
        s.until = s.size;
    }
    s.phase = InPhase::Accepted;
}
