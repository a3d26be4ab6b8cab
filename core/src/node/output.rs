//! Outputs: the per-connection outbound scheduler, actions and events.
//!
//! A pull of bytes for one connection writes, in this order: the preamble
//! and Hello, the session's control (a heartbeat or the goodbye), each
//! plane's control (announcements, credit grants: encoded from state, so
//! bounded by construction), then data sources round-robin, each with its
//! own byte quantum and produced on pull. Today the pub/sub plane is the
//! only source (itself round-robin across topics); streams and transfers
//! join as further sources.

use super::Node;
use crate::event::{Action, Event};
use crate::id::{ConnId, NodeId};
use crate::session::{handshake, Closing};
use crate::time::Timestamp;
use crate::wire::{encode_frame, write_preamble_mode, Header};

/// A data source of a connection: a plane whose bulk is produced on pull.
/// Streams and transfers add a variant each (every `match` on it must then
/// handle them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Messages, round-robin across topics.
    PubSub,
    /// Stream replies, round-robin across streams.
    Streams,
    /// File chunks, round-robin across transfers.
    Transfer,
}

impl Source {
    /// Every source, in the order a round visits them.
    const ALL: [Source; 3] = [Source::PubSub, Source::Streams, Source::Transfer];
}

impl Node {
    /// The first connection after `after` (in id order) that may have bytes
    /// to write. [`Node::poll_transmit`] may then find nothing.
    pub fn next_transmit(&self, after: Option<ConnId>) -> Option<ConnId> {
        let start = after.map_or(0, |c| c.0 + 1);
        self.session.ready.range(ConnId(start)..).next().copied()
    }

    /// Appends bytes to write on `conn` to `buf` (about
    /// `SessionConfig::transmit_chunk` at most: one quantum) and returns how
    /// many. The driver must write them, in order, before asking for more.
    /// Returns 0 when `conn` has nothing to send now.
    pub fn poll_transmit(&mut self, now: Timestamp, conn: ConnId, buf: &mut Vec<u8>) -> usize {
        self.advance(now);
        let secure = match self.session.conns.get(&conn) {
            Some(c) if !c.is_dialing() && !c.in_close_wait() => c.secure.is_some(),
            // Gone, not connected yet, or half-closed after its goodbye
            // (the close wait): nothing to send.
            _ => {
                self.session.ready.remove(&conn);
                return 0;
            }
        };
        if secure {
            self.poll_secure(conn, buf)
        } else {
            self.poll_plain(conn, buf, None)
        }
    }

    /// The frame stream of connected `conn` (checked by [`Node::poll_transmit`];
    /// sealed by the caller on a secure connection, which passes
    /// `Some(initiator)`: the channel is out of the connection meanwhile).
    pub(super) fn poll_plain(&mut self, conn: ConnId, buf: &mut Vec<u8>, secure: Option<bool>) -> usize {
        let quantum = self.cfg.session.source_quantum;
        let start = buf.len();
        let Some(c) = self.session.conns.get_mut(&conn) else { return 0 };
        // On a secure connection, a quantum of small frames fits one record.
        let limit = match secure {
            Some(_) => self.cfg.session.transmit_chunk.min(crate::secure::channel::RECORD_QUANTUM),
            None => self.cfg.session.transmit_chunk,
        };
        let peer = c.peer().map(|p| p.id);
        let refused = c.refused();
        // The preamble, then our Hello (announcing our subscriptions as they are now).
        if c.control.preamble {
            c.control.preamble = false;
            write_preamble_mode(buf, self.cfg.security.mode.wire_byte());
        }
        // A secure responder sends its Hello only once it accepted the
        // peer's: a peer whose Hello claims an id its handshake did not prove
        // learns nothing (not our name, subscriptions or session).
        let hold = secure == Some(false) && !c.is_open();
        if c.control.hello && hold && c.closing.is_some() {
            c.control.hello = false;
        }
        if c.control.hello && !hold {
            c.control.hello = false;
            let session = self.hello_session(conn);
            handshake::encode_hello(buf, &self.me, self.pubsub.hello_subs(conn), session);
        }
        let c = self.session.conns.get_mut(&conn).expect("present above");
        // A graceful close says goodbye once every source is empty.
        if let Some(Closing::Flushing(r)) = &c.closing {
            let owed = peer.is_some_and(|p| self.membership.has_control(p));
            let control = self.pubsub.has_control(conn, peer) || self.discovery.has_control(conn);
            // In a resumable session the goodbye also waits for the peer's
            // acks, until `close_by` (the close's one budget).
            let acked =
                c.acks_overdue || peer.is_none_or(|p| self.pubsub.unacked_range(p).is_none_or(|r| r.is_empty()));
            let written = self.pubsub.data_is_empty(conn, peer);
            if written && acked && !control && self.streams.is_flushed(conn, peer) && !owed {
                c.closing = Some(Closing::Goodbye(r.clone()));
                c.control.goodbye = true;
            }
        }
        if c.control.heartbeat {
            c.control.heartbeat = false;
            encode_frame(buf, &Header::Heartbeat, &[]);
        }
        let opened = c.is_open();
        let first_source = c.next_source;
        if !refused && opened {
            self.pubsub.write_control(conn, peer, buf);
            let log = peer.filter(|p| self.streams.is_logged(*p)).map(|p| self.pubsub.stream_log(p, conn));
            self.streams.write_control(conn, peer, buf, self.now, log);
            if let Some(p) = peer.filter(|_| self.session.is_primary(conn)) {
                self.membership.write_control(p, self.now, buf);
            }
            self.discovery.write_control(conn, peer, buf);
            self.transfer.write_control(conn, peer, buf);
            self.write_refusals(conn, buf);
            if let Some(id) = peer {
                self.write_sources(conn, id, first_source, buf, start + limit, quantum);
                // An ack owed goes out with other bytes, and before a goodbye.
                let goodbye = self.session.conns.get(&conn).is_some_and(|c| c.control.goodbye);
                self.pubsub.write_session_tail(conn, id, goodbye || buf.len() > start, buf);
                self.wake_pubsub_conns();
            }
            self.transfer_wake();
        }
        let c = self.session.conns.get_mut(&conn).expect("present above");
        if let Some(next) = c.final_ack.take() {
            encode_frame(buf, &Header::Session(crate::wire::SessionFrame::Ack { next }), &[]);
        }
        if c.control.goodbye {
            c.control.goodbye = false;
            let r = c.closing.as_ref().map(|k| k.reason().clone()).expect("a goodbye has a reason");
            encode_frame(buf, &Header::Goodbye { code: r.code().0, reason: &r.to_string() }, &[]);
        }
        let n = buf.len() - start;
        let done = matches!(c.closing, Some(Closing::Goodbye(_))) && c.control.is_empty();
        if n > 0 {
            c.last_send = self.now;
            self.session_stats.bytes_out += n as u64;
        } else {
            self.session.ready.remove(&conn);
        }
        // The goodbye is out (in `buf`, which the driver writes before it
        // half-closes the socket): the close wait begins.
        if done {
            let r = c.closing.as_ref().map(|k| k.reason().clone()).expect("closing");
            self.goodbye_sent(conn, r);
        }
        n
    }

    /// Data sources, round-robin from `first`, each turn at most `quantum`
    /// bytes, until `buf` reaches `end` or no source has anything. Where the
    /// next pull starts is kept on the connection.
    fn write_sources(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        first: usize,
        buf: &mut Vec<u8>,
        end: usize,
        quantum: usize,
    ) {
        let mut idle = 0;
        let mut i = first;
        while buf.len() < end && idle < Source::ALL.len() {
            let room = (end - buf.len()).min(quantum);
            let wrote = match Source::ALL[i % Source::ALL.len()] {
                Source::PubSub => self.pubsub.produce(conn, peer, buf, room, quantum, &mut self.events).0,
                Source::Streams => {
                    let log = self.streams.is_logged(peer).then(|| self.pubsub.stream_log(peer, conn));
                    self.streams.produce(conn, peer, buf, room, log)
                }
                Source::Transfer => self.transfer.produce(conn, peer, buf, room, self.now),
            };
            idle = if wrote == 0 { idle + 1 } else { 0 };
            i += 1;
        }
        if let Some(c) = self.session.conns.get_mut(&conn) {
            c.next_source = i % Source::ALL.len();
        }
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application. Taking events makes room for more
    /// received input to be processed; with
    /// [`CreditMode::OnPoll`](crate::CreditMode::OnPoll) a message handed out
    /// here counts as consumed (reported to its plane once per run of events
    /// from one source, before anything else the node does).
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.input_stalled && self.events.len() <= self.cfg.session.max_pending_events / 2 {
            self.resume_input();
        }
        // Counted where it lies, before it moves out: moving an event to
        // the stack and reading it there at once stalls on every message.
        let Some(front) = self.events.front() else {
            self.report_consumed();
            return None;
        };
        if let Some(run) = super::consumed::count(&mut self.unreported, &self.cfg, front) {
            self.report_consumed();
            self.unreported = run;
        }
        let ev = self.events.pop();
        if self.events.len() == 0 {
            self.report_consumed();
        }
        ev
    }
}
