//! The pub/sub plane's part of sessions that outlive connections (see
//! [`crate::resume`]): the send log per peer, sequence numbers of received
//! messages, cumulative acks as control state, the resume point, absolute
//! credit, and what a session's end reports.

use super::log_marks::Marks;
use super::queue::SendQ;
use super::{DropReason, Payload, PubSubEvent, PubSubState};
use crate::discovery::RelayTag;
use crate::event::{Event, Events, PeerInfo, ProtocolError};
use crate::id::{ConnId, NodeId, Topic};
use crate::resume::SendLog;
use crate::resume::{ACK_EVERY_BYTES, ACK_EVERY_MESSAGES};
use crate::time::Timestamp;
use crate::timer::Timers;
use crate::wire::{encode_frame, DiscoveryFrame, Header, SessionFrame, StreamFrame};
use std::collections::BTreeSet;
use std::ops::Range;

/// What an entry of the send log is when it is not a message, marked
/// beside the log at its sequence number (like a message's topic). The log
/// itself holds payloads only: a message, nearly every entry, is its
/// payload and nothing more, so writing one moves 40 bytes laid out as
/// they were built (a tag before the payload made every move straddle two
/// stores, and the CPU stalled on it for each message).
#[derive(Debug)]
pub(crate) enum Kind {
    /// A marker for this many messages a full queue overwrote on the topic
    /// (its payload empty). Boxed, as it is rare: a mark is then 24 bytes,
    /// and a stream's reply, which takes one each, moves no more.
    Overwritten(Box<(Topic, u64)>),
    /// Reply bytes of the streams plane (the payload shared, never copied),
    /// with `more` of their message to come or not.
    StreamData { id: u64, more: bool },
    /// Another frame of the streams plane, as written (the payload).
    StreamFrame,
}

const _: () = assert!(std::mem::size_of::<(u64, Kind)>() == 24);

/// Writes a logged entry's frame again (a re-send after a resume): `kind`
/// as marked (`None`: a message), a message on `topic` (`None`: never
/// marked, a bug; nothing is written), a relayed copy with `tag`.
pub(crate) fn encode_logged(
    buf: &mut Vec<u8>,
    payload: &Payload,
    kind: Option<&Kind>,
    topic: Option<&Topic>,
    tag: Option<&RelayTag>,
) {
    match kind {
        None => {
            debug_assert!(topic.is_some(), "every logged message has its topic marked");
            if let Some(topic) = topic {
                encode_data(buf, topic, payload, tag)
            }
        }
        Some(Kind::Overwritten(o)) => encode_overwritten(buf, &o.0, o.1),
        Some(&Kind::StreamData { id, more }) => {
            encode_frame(buf, &Header::Stream(StreamFrame::Data { id, more }), payload);
        }
        Some(Kind::StreamFrame) => buf.extend_from_slice(payload),
    }
}

/// Writes a marker for `count` messages overwritten on `topic`.
pub(crate) fn encode_overwritten(buf: &mut Vec<u8>, topic: &Topic, count: u64) {
    encode_frame(buf, &Header::Overwritten { topic: topic.as_str(), count }, &[]);
}

/// Writes one message frame (a plain Publish, or a relayed copy).
pub(crate) fn encode_data(buf: &mut Vec<u8>, topic: &Topic, payload: &Payload, tag: Option<&RelayTag>) {
    match tag {
        None => crate::wire::encode_publish(buf, topic.as_str(), payload),
        Some(t) => {
            let f = DiscoveryFrame::Relay {
                topic: topic.as_str(),
                origin: t.origin,
                epoch: t.epoch,
                seq: t.seq,
                hops: t.hops,
            };
            encode_frame(buf, &Header::Discovery(f), payload)
        }
    };
}

/// Where the streams plane's frames to a peer stand in its session (when
/// streams resume with it: [`Capabilities::STREAM_RESUME`](crate::Capabilities::STREAM_RESUME)).
pub(crate) enum StreamLog<'a> {
    /// Re-sends must leave first (or the session has no connection now):
    /// nothing that takes a sequence number may be written.
    Hold,
    /// Write, and log each frame that takes a sequence number.
    On(SessionLog<'a>),
}

/// A session's send log as the streams plane writes into it: its frames
/// are bounded by the plane (outside the log's bound), each marked with
/// its kind.
pub(crate) struct SessionLog<'a> {
    log: &'a mut SendLog<Payload>,
    kinds: &'a mut Marks<Kind>,
}

impl SessionLog<'_> {
    /// Logs a frame of `kind` (its payload, or the frame itself for
    /// [`Kind::StreamFrame`]) costing `cost` of the plane's own bound.
    #[inline]
    pub(crate) fn push(&mut self, kind: Kind, payload: Payload, cost: usize) {
        let seq = self.log.push_unbounded(payload, cost);
        self.kinds.push(seq, kind);
    }

    /// Bytes of the plane's frames written and not acknowledged.
    pub(crate) fn outside_bytes(&self) -> usize {
        self.log.outside_bytes()
    }

    /// The plane stopped at its limit: the next ack that frees room wakes it.
    pub(crate) fn wait_outside(&mut self) {
        self.log.wait_outside();
    }
}

/// What the peer sent, by sequence number.
#[derive(Debug)]
pub(crate) struct RxSeq {
    /// Messages of the peer's this node took this session: the next
    /// sequence number it expects.
    pub(crate) next: u64,
    /// The sequence number of the next message frame on the current
    /// connection; `None` after a resume until the peer's Resume frame.
    cursor: Option<u64>,
    /// What the last ack said.
    acked: u64,
    /// Payload bytes taken since the last ack.
    since_bytes: u64,
    /// An ack must leave with the next pull.
    due: bool,
    /// This peer's ack timer is armed: a note kept beside the timer so that
    /// taking a message does not look it up (21 instructions per 64 B
    /// message on the receiving side, `benches/hotpath.rs` under
    /// callgrind). Set where the timer is armed, cleared where it fires and
    /// in [`cancel_ack_timer`], the only way it is disarmed.
    timer: bool,
}

impl Default for RxSeq {
    fn default() -> Self {
        RxSeq { next: 0, cursor: Some(0), acked: 0, since_bytes: 0, due: false, timer: false }
    }
}

impl RxSeq {
    /// Takes a frame that carries the next implicit sequence number,
    /// `len` payload bytes: says whether it is new and what the ack needs.
    #[inline(always)]
    pub(crate) fn take(&mut self, len: usize) -> Result<Took, ProtocolError> {
        let Some(seq) = self.cursor else {
            return Err(ProtocolError::UnexpectedFrame("a message before the Resume frame of a resumed session"));
        };
        self.cursor = Some(seq + 1);
        if seq < self.next {
            return Ok(Took::Duplicate);
        }
        if seq > self.next {
            return Err(ProtocolError::Sequence(format!(
                "message {seq} arrived but {} was expected next: the peer skipped messages",
                self.next
            )));
        }
        Ok(self.took(1, len as u64))
    }

    /// True if the next message frame is the next new one (no re-sent
    /// duplicates come first): a run may then take its numbers at once.
    pub(crate) fn in_order(&self) -> bool {
        self.cursor == Some(self.next)
    }

    /// Takes `n` new frames of `len` payload bytes in all (after
    /// [`RxSeq::in_order`]): what the ack needs, as for one.
    pub(crate) fn take_run(&mut self, n: u64, len: u64) -> Took {
        debug_assert!(self.in_order());
        self.cursor = Some(self.next + n);
        self.took(n, len)
    }

    /// `n` new frames of `len` bytes were taken: the ack's bookkeeping.
    #[inline(always)]
    fn took(&mut self, n: u64, len: u64) -> Took {
        self.next += n;
        self.since_bytes += len;
        if self.next - self.acked >= ACK_EVERY_MESSAGES || self.since_bytes >= ACK_EVERY_BYTES {
            if !self.due {
                self.due = true;
                return Took::AckDue;
            }
        } else if !self.due && !self.timer {
            self.timer = true;
            return Took::TimeAck;
        }
        Took::New
    }
}

/// What taking a sequenced frame found ([`RxSeq::take`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Took {
    /// Taken already (re-sent after a resume): drop it.
    Duplicate,
    /// New; the ack is in hand.
    New,
    /// New, and an ack is due now: wake the peer's connection.
    AckDue,
    /// New, and the first unacknowledged: arm the ack timer.
    TimeAck,
}

/// The parts of the plane that taking a sequenced frame touches besides
/// the peer (borrowed beside it).
pub(crate) struct AckSide<'a> {
    stats: &'a mut super::PubSubStats,
    wake: &'a mut Vec<ConnId>,
    timers: &'a mut Timers<NodeId>,
}

impl<'a> AckSide<'a> {
    #[inline(always)]
    pub(crate) fn of(
        stats: &'a mut super::PubSubStats,
        wake: &'a mut Vec<ConnId>,
        timers: &'a mut Timers<NodeId>,
    ) -> Self {
        AckSide { stats, wake, timers }
    }

    /// Does what `took` asks for `peer`, whose session's primary is `conn`.
    #[inline(always)]
    pub(crate) fn apply(
        self,
        took: Took,
        peer: NodeId,
        conn: ConnId,
        now: Timestamp,
        delay: std::time::Duration,
    ) -> Seq {
        match took {
            Took::Duplicate => {
                self.stats.duplicates += 1;
                return Seq::Duplicate;
            }
            Took::New => {}
            Took::AckDue => self.wake.push(conn),
            Took::TimeAck => self.timers.set(peer, now + delay),
        }
        Seq::Take
    }
}

/// Disarms `peer`'s ack timer, and `rx`'s note of it.
fn cancel_ack_timer(rx: &mut RxSeq, peer: NodeId, timers: &mut Timers<NodeId>) {
    rx.timer = false;
    timers.cancel(peer);
}

/// Writes the ack of everything taken from `peer`, if anything is
/// unacknowledged (counted in `acks`); none is due, nor timed, after it.
fn write_ack(rx: &mut RxSeq, peer: NodeId, timers: &mut Timers<NodeId>, acks: &mut u64, buf: &mut Vec<u8>) {
    rx.due = false;
    cancel_ack_timer(rx, peer, timers);
    if rx.next > rx.acked {
        encode_frame(buf, &Header::Session(SessionFrame::Ack { next: rx.next }), &[]);
        rx.acked = rx.next;
        rx.since_bytes = 0;
        *acks += 1;
    }
}

/// What a message frame's sequence number says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seq {
    /// New: process it.
    Take,
    /// Taken already (re-sent after a resume): drop it.
    Duplicate,
}

/// What a session's end found, for [`crate::resume::SessionEvent::Ended`].
#[derive(Debug, Default)]
pub(crate) struct EndReport {
    pub(crate) unacked: Range<u64>,
    pub(crate) unsent: u64,
    pub(crate) received: u64,
}

impl PubSubState {
    /// A frame that takes a sequence number (a message, a marker, or a
    /// frame of a stream) from `peer`, through the session gate, in a
    /// resumable session: its sequence number decides. Payload length
    /// counts toward the next ack. (A message takes its number where its
    /// credit is spent, in [`PubSubState::receive`], with one look-up of
    /// the peer for both.)
    #[inline(always)]
    pub(crate) fn take_seq(&mut self, peer: NodeId, len: usize, now: Timestamp) -> Result<Seq, ProtocolError> {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.resumable) else { return Ok(Seq::Take) };
        let took = p.rx.take(len)?;
        Ok(AckSide::of(&mut self.stats, &mut self.wake, &mut self.ack_timers).apply(
            took,
            peer,
            p.conn,
            now,
            self.ack_delay,
        ))
    }

    /// The send log of `peer`'s session for stream frames on `conn`.
    pub(crate) fn stream_log(&mut self, peer: NodeId, conn: ConnId) -> StreamLog<'_> {
        match self.peers.get_mut(&peer) {
            Some(p) if p.conn == conn && p.resumable && !p.suspended && p.log.pending_resend() == 0 => {
                StreamLog::On(SessionLog { log: &mut p.log, kinds: &mut p.kinds })
            }
            _ => StreamLog::Hold,
        }
    }

    /// Ack timers due at `now`: their acks leave with the next pull.
    pub(crate) fn ack_timeout(&mut self, now: Timestamp) {
        while let Some(peer) = self.ack_timers.pop_due(now) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.rx.timer = false;
            }
            self.ack_now(peer);
        }
    }

    /// The soonest ack deadline.
    pub(crate) fn ack_timer(&self) -> Option<Timestamp> {
        self.ack_timers.next().map(|(t, _)| t)
    }

    /// An ack to `peer` leaves with the next pull if anything is unacknowledged
    /// (a heartbeat, a goodbye, the ack delay).
    pub(crate) fn ack_now(&mut self, peer: NodeId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.resumable && p.rx.next > p.rx.acked && !p.rx.due {
                p.rx.due = true;
                self.wake.push(p.conn);
            }
        }
    }

    /// The session's control for `conn`: the resume point first, then an ack.
    pub(super) fn write_session_control(&mut self, conn: ConnId, peer: NodeId, buf: &mut Vec<u8>) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.conn == conn && p.resumable && !p.suspended) else {
            return;
        };
        if let Some(from) = p.resume_from.take() {
            encode_frame(buf, &Header::Session(SessionFrame::Resume { from }), &[]);
        }
        if p.rx.due {
            write_ack(&mut p.rx, peer, &mut self.ack_timers, &mut self.stats.acks, buf);
        }
    }

    /// After the rest of a pull on `conn` (`wrote`: it carried something
    /// else). An ack that is not due yet rides along with other bytes, so a
    /// reply and the ack of the request leave in one write. And a node
    /// whose progress waits for the peer's ack (a refused publish, a
    /// graceful close, stream data at its cap) asks for it with a
    /// heartbeat, once until an ack comes: a receiver acks only at its
    /// thresholds, at its ack delay, when asked and with its heartbeats.
    pub(crate) fn write_session_tail(&mut self, conn: ConnId, peer: NodeId, wrote: bool, buf: &mut Vec<u8>) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.conn == conn && p.resumable && !p.suspended) else {
            return;
        };
        if wrote && p.rx.next > p.rx.acked {
            write_ack(&mut p.rx, peer, &mut self.ack_timers, &mut self.stats.acks, buf);
        }
        let waits = p.want_writable || p.closing || p.log.outside_waiting();
        if waits && p.may_ask_for_ack() {
            p.ack_asked = true;
            encode_frame(buf, &Header::Heartbeat, &[]);
        }
    }

    /// True if the session owes `conn` a resume point or an ack.
    pub(super) fn has_session_control(&self, conn: ConnId, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.conn == conn && p.resumable && !p.suspended && (p.resume_from.is_some() || p.rx.due))
    }

    /// The last ack for `peer`, if one is owed: sent with a goodbye after
    /// the session ended.
    pub(crate) fn final_ack(&self, peer: NodeId) -> Option<u64> {
        let p = self.peers.get(&peer)?;
        (p.resumable && p.rx.next > p.rx.acked).then_some(p.rx.next)
    }

    /// True if the resumable session with `peer` moved on while `conn`
    /// carried it: the peer acknowledged messages or sent new ones. The
    /// dialer counts such a connection as a success, however short it was.
    pub(crate) fn progressed_on(&self, peer: NodeId, conn: ConnId) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            p.conn == conn && p.resumable && (p.log.acked() > p.progress_mark.0 || p.rx.next > p.progress_mark.1)
        })
    }

    /// An Ack from `peer`: the log lets go of what it covers (sent now).
    pub(crate) fn on_ack(&mut self, peer: NodeId, next: u64, events: &mut Events) -> Result<(), ProtocolError> {
        let Some(p) = self.peers.get_mut(&peer) else { return Ok(()) };
        // Re-sends after a resume carry implicit sequence numbers: an ack
        // for messages not re-sent yet skips them, so the peer must hear
        // where the next message frame stands (a new Resume frame, which
        // leaves before any more data).
        let resent = p.log.unacked() - p.log.pending_resend();
        let resending = p.log.pending_resend() > 0;
        let (n, messages) = p.release(next).map_err(|e| ProtocolError::Sequence(format!("ack: {e}")))?;
        p.ack_asked = false;
        if resending && n > resent {
            p.resume_from = Some(p.log.acked());
            self.wake.push(p.conn);
        }
        if p.closing && p.log.is_empty() || p.log.take_outside_wait() {
            // A graceful close waited for this ack (the goodbye may leave),
            // or stream data did (its room in the log is bounded).
            self.wake.push(p.conn);
        }
        self.stats.sent += messages;
        self.after_release(peer, events);
        Ok(())
    }

    /// Room was freed in `peer`'s bound: whoever waits for it hears.
    fn after_release(&mut self, peer: NodeId, events: &mut Events) {
        let cfg = &self.cfg;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.report_writable(cfg, events);
        }
    }

    /// A Resume frame from `peer`: its next message frame has sequence `from`.
    pub(crate) fn on_resume_frame(&mut self, peer: NodeId, from: u64) -> Result<(), ProtocolError> {
        let Some(p) = self.peers.get_mut(&peer) else { return Ok(()) };
        if from > p.rx.next {
            return Err(ProtocolError::Sequence(format!(
                "resume from {from}, but only {} messages were taken",
                p.rx.next
            )));
        }
        p.rx.cursor = Some(from);
        Ok(())
    }

    /// Absolute credit from `peer` on `topic`: the increase over what it
    /// granted before counts (grants are idempotent).
    pub(crate) fn on_absolute_credit(
        &mut self,
        peer: NodeId,
        topic: &str,
        msgs: u64,
        bytes: u64,
        events: &mut Events,
    ) -> Option<ConnId> {
        let (had_m, had_b) = self.granted_totals(peer, topic);
        let more_m = msgs.saturating_sub(had_m);
        let more_b = bytes.saturating_sub(had_b);
        if more_m == 0 && more_b == 0 {
            return None;
        }
        self.on_credit(peer, topic, more_m, more_b, events)
    }

    /// The connection carrying the session with `peer` was lost: keep
    /// everything, send nothing, and let round-robin skip it.
    pub(crate) fn suspend(&mut self, peer: NodeId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.suspended = true;
            p.ack_asked = false;
            p.log.disconnect();
            p.rx.due = false;
            // Acks sent on the lost connection may never have arrived: the
            // resume acks everything received again, or the peer keeps those
            // messages in its log until the next message makes an ack due.
            p.rx.acked = 0;
            p.resume_from = None;
            cancel_ack_timer(&mut p.rx, peer, &mut self.ack_timers);
        } else {
            self.ack_timers.cancel(peer);
        }
    }

    /// The session with `peer` resumes on `conn`, where the peer expects
    /// message `their_next` next. Returns how many messages are re-sent.
    pub(crate) fn resume(
        &mut self,
        info: &PeerInfo,
        conn: ConnId,
        their_next: u64,
        events: &mut Events,
    ) -> Result<u64, ProtocolError> {
        let Some(p) = self.peers.get_mut(&info.id) else { return Ok(0) };
        let their_next = their_next.max(p.log.acked());
        let (_, acked) = p.release(their_next).map_err(|e| ProtocolError::Sequence(e.to_string()))?;
        // The planted bug (tests only): re-send from one past the point
        // (the entry skipped leaves the log as if acknowledged).
        let from = if self.planted_resend_bug { their_next + 1 } else { their_next }.min(p.log.next_seq());
        p.release(from).map_err(|e| ProtocolError::Sequence(e.to_string()))?;
        let resent = p.log.resume(from, |_, _| {}).unwrap_or(0) as u64;
        p.conn = conn;
        p.suspended = false;
        p.resume_from = Some(from);
        p.progress_mark = (p.log.acked(), p.rx.next);
        p.rx.cursor = None;
        p.rx.due = p.rx.next > p.rx.acked;
        // Absolute grants again: any lost with the connection are made good.
        for r in p.recv.values_mut() {
            r.reannounce();
        }
        let topics: BTreeSet<Topic> = p.recv.keys().cloned().collect();
        p.grants.extend(topics);
        self.stats.sent += acked;
        self.reindex(info, conn, events);
        self.after_release(info.id, events);
        Ok(resent)
    }

    /// After a resume the index takes the new connection's picture of the
    /// peer's subscriptions (it may have changed while it was away).
    fn reindex(&mut self, info: &PeerInfo, conn: ConnId, events: &mut Events) {
        let now: BTreeSet<Topic> = self.links.get(&conn).map(|l| l.peer_subs.clone()).unwrap_or_default();
        let Some(p) = self.peers.get_mut(&info.id) else { return };
        let gone: Vec<Topic> = p.subs.difference(&now).cloned().collect();
        let new: Vec<Topic> = now.difference(&p.subs).cloned().collect();
        p.subs = now;
        for t in new {
            self.index.entry(t.clone()).or_default().peers.insert(info.id);
            events.push(Event::PubSub(PubSubEvent::Subscribed { peer: info.clone(), topic: t }));
        }
        for t in gone {
            if let Some(s) = self.index.get_mut(&t) {
                s.peers.remove(&info.id);
                if s.peers.is_empty() {
                    self.index.remove(&t);
                }
            }
            let p = self.peers.get_mut(&info.id).expect("present above");
            let (dropped, overwritten) = p.out.get_mut(&t).map_or(((0, 0), 0), |q| (q.clear(), q.take_overwritten()));
            p.log.unadmit(dropped.0, dropped.1);
            let dropped = (dropped.0 + overwritten as usize, dropped.1);
            events.push(Event::PubSub(PubSubEvent::Unsubscribed { peer: info.clone(), topic: t }));
            // Queued while the peer was away, for a subscription it dropped
            // meanwhile: counted like messages lost with their connection.
            self.report_drop(events, Some(info.clone()), dropped.0 as u64, DropReason::Disconnected);
        }
    }

    /// The session with `peer` ends: what it did not acknowledge is lost
    /// (counted as dropped, reported with its range), and so is what never
    /// left. Call before [`PubSubState::on_peer_down`].
    pub(crate) fn end_session(&mut self, peer: NodeId, events: &mut Events) -> EndReport {
        let Some(p) = self.peers.get_mut(&peer) else {
            self.ack_timers.cancel(peer);
            return EndReport::default();
        };
        cancel_ack_timer(&mut p.rx, peer, &mut self.ack_timers);
        if !p.resumable {
            return EndReport { unacked: 0..0, unsent: p.log.unsent() as u64, received: 0 };
        }
        // The unsent messages stay in their queues: `on_peer_down` drops
        // them (and releases relayed copies' upstream credit); they are
        // counted here, with the unacknowledged ones. Relayed copies in the
        // log released their upstream's credit when written.
        let unsent = p.log.unsent() as u64 + p.out.values_mut().map(SendQ::take_overwritten).sum::<u64>();
        // The range numbers markers too; only messages count as lost.
        let (range, lost) = p.expire_log();
        let info = p.info.clone();
        let received = p.rx.next;
        self.stats.unacked_lost += lost;
        self.report_drop(events, Some(info), lost + unsent, DropReason::Disconnected);
        EndReport { unacked: range, unsent, received }
    }

    /// True if the session with `peer` is resumable (both ends announced `RESUME`).
    pub(crate) fn is_resumable(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.resumable)
    }

    /// Where the peer's messages stand, for this node's Hello.
    pub(crate) fn next_expected(&self, peer: NodeId) -> u64 {
        self.peers.get(&peer).map_or(0, |p| p.rx.next)
    }

    /// A marker from `from`: its full queue overwrote `count` of its
    /// messages on `topic` (taken by sequence number already, if the
    /// session resumes: the marker's number is the last one taken).
    pub(crate) fn on_overwritten(&mut self, from: &PeerInfo, topic: &str, count: u64, events: &mut Events) {
        let seq = self.peers.get(&from.id).filter(|p| p.resumable).map(|p| p.rx.next.saturating_sub(1));
        let topic = self.intern(topic);
        self.stats.skipped_by_peer += count;
        events.push(Event::PubSub(PubSubEvent::Skipped { peer: from.clone(), topic, count, seq }));
    }

    /// True if the session with `peer` carried a numbered frame either way
    /// (a message, or a frame of a stream).
    pub(crate) fn carried_messages(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.rx.next > 0 || p.log.next_seq() > 0)
    }

    /// What `peer`'s log holds: (unsent, unacknowledged), for tests and the simulator.
    pub(crate) fn log_len(&self, peer: NodeId) -> Option<(usize, usize)> {
        self.peers.get(&peer).map(|p| (p.log.unsent(), p.log.unacked()))
    }
}
