//! What this plane writes: control encoded from state at pull time (serve
//! announcements, opens, credit grants, cancels, refusals, the heartbeat),
//! then stream data as a scheduler source, round-robin across streams.

use super::{remaining_ms, StreamsState};
use crate::id::{ConnId, NodeId};
use crate::pubsub::{LogKind, SessionLog, StreamLog};
use crate::time::Timestamp;
use crate::wire::{encode_frame, Header, StreamFrame};
use bytes::Bytes;

/// Every stream's first grant is at least this (or an eighth of the
/// window), even past the connection window, so that any number of streams
/// can each send a first message; the connection window bounds the rest.
pub(crate) const FIRST_GRANT_FLOOR: u64 = 4 << 10;

impl StreamsState {
    /// Control frames for the peer whose session's primary is `conn`.
    /// `log`: the session's log, if its streams are logged (then nothing
    /// leaves while it holds). Returns bytes written.
    pub(crate) fn write_control(
        &mut self,
        conn: ConnId,
        peer: Option<NodeId>,
        buf: &mut Vec<u8>,
        now: Timestamp,
        log: Option<StreamLog<'_>>,
    ) -> usize {
        let start = buf.len();
        let (window, cap) = (self.cfg.window, self.cfg.connection_window);
        let Some(p) = peer.and_then(|id| self.peers.get_mut(&id)).filter(|p| p.conn == conn && !p.suspended) else {
            return 0;
        };
        // Re-sends of the session go first: a heartbeat ahead of them could
        // name a stream whose Open or Close is among them.
        let Some(mut log) = open_log(log) else { return 0 };
        let mut mark = buf.len();
        let mut logged = |buf: &Vec<u8>, mark: &mut usize| {
            if let Some(l) = log.as_mut() {
                l.push(LogKind::StreamFrame, Bytes::copy_from_slice(&buf[*mark..]), buf.len() - *mark);
            }
            *mark = buf.len();
        };
        // Each part is checked before it is taken: this runs on every pull
        // of bytes, and an empty map's take-and-drain still costs.
        if !p.serve_changes.is_empty() {
            for (t, on) in std::mem::take(&mut p.serve_changes) {
                let topic = t.as_str();
                let f = if on { StreamFrame::Serve { topic } } else { StreamFrame::Unserve { topic } };
                encode_frame(buf, &Header::Stream(f), &[]);
                if on {
                    p.announced.insert(t);
                }
            }
            mark = buf.len();
        }
        while let Some(wid) = p.opens.pop_front() {
            let Some(s) = p.opened.get_mut(&wid) else { continue };
            if s.sent_open {
                continue;
            }
            // The first grant, within the connection window, but at least
            // a floor so that every stream can start.
            let floor = (window / 8).min(FIRST_GRANT_FLOOR);
            let first = window.min(cap.saturating_sub(p.outstanding)).max(floor);
            if first < window {
                p.starved.insert(wid);
            }
            s.granted = first;
            p.outstanding += first;
            s.sent_open = true;
            p.sent_open_max = p.sent_open_max.max(wid);
            let request = s.request.take().unwrap_or_default();
            let f = StreamFrame::Open {
                id: wid,
                topic: s.topic.as_str(),
                window: first,
                deadline_ms: remaining_ms(s.deadline, now),
            };
            encode_frame(buf, &Header::Stream(f), &request);
            logged(buf, &mut mark);
        }
        let grants = if p.grants.is_empty() { Default::default() } else { std::mem::take(&mut p.grants) };
        for wid in grants {
            let Some(s) = p.opened.get_mut(&wid) else { continue };
            if !s.sent_open || s.held() > window / 2 {
                continue;
            }
            let want = window - s.held();
            let give = want.min(cap.saturating_sub(p.outstanding));
            if give < want {
                p.starved.insert(wid);
            }
            if give == 0 {
                continue;
            }
            let before = s.held();
            s.granted += give;
            p.outstanding += s.held() - before;
            self.stats.credit_grants += 1;
            encode_frame(buf, &Header::Stream(StreamFrame::Credit { id: wid, bytes: give }), &[]);
            logged(buf, &mut mark);
        }
        if !p.cancels.is_empty() {
            for (wid, code, text) in p.cancels.drain(..) {
                encode_frame(buf, &Header::Stream(StreamFrame::Cancel { id: wid, code: code.0, text: &text }), &[]);
                logged(buf, &mut mark);
            }
        }
        if !p.refusals.is_empty() {
            for (wid, code, text) in p.refusals.drain(..) {
                encode_frame(buf, &Header::Stream(StreamFrame::Close { id: wid, code: code.0, text: &text }), &[]);
                logged(buf, &mut mark);
            }
        }
        if std::mem::take(&mut p.hb_due) {
            let held: Vec<u64> = p.opened.keys().chain(p.served.keys()).copied().collect();
            let reply = std::mem::take(&mut p.hb_reply);
            let f = StreamFrame::Heartbeat { reply, seen: p.highest_remote, held };
            encode_frame(buf, &Header::Stream(f), &[]);
            self.stats.heartbeats += 1;
        }
        buf.len() - start
    }

    /// Stream data for the peer whose primary is `conn`: round-robin across
    /// its producer streams, each turn at most one fragment size, until
    /// `buf` grew by `room`. A stream whose queue emptied with a close
    /// pending sends its Close and is forgotten. `log` as for
    /// [`StreamsState::write_control`]. Returns bytes written.
    pub(crate) fn produce(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        buf: &mut Vec<u8>,
        room: usize,
        log: Option<StreamLog<'_>>,
    ) -> usize {
        let start = buf.len();
        let turn_max = self.cfg.fragment_size;
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.conn == conn && !p.suspended) else { return 0 };
        let Some(mut log) = open_log(log) else { return 0 };
        // What the peer has not acknowledged stays in the session's log: at
        // most a connection window of it (an ack makes room and wakes us;
        // a producer stopped here asks the peer for it), and never less than
        // 64 KiB, so a small window does not wait for an ack after every
        // fragment.
        let floor = 64 << 10;
        let limit = usize::try_from(self.cfg.connection_window.max(floor)).unwrap_or(usize::MAX);
        let full = |log: &Option<SessionLog<'_>>| log.as_ref().is_some_and(|l| l.outside_bytes() >= limit);
        while buf.len() - start < room && !full(&log) {
            let Some(wid) = p.ring.pop_front() else { break };
            let Some(s) = p.served.get_mut(&wid) else { continue };
            s.in_ring = false;
            let turn = buf.len();
            let mut done = false;
            while buf.len() - turn < turn_max && buf.len() - start < room && !full(&log) {
                if let Some(front) = s.queue.front() {
                    let n = (front.len() - s.offset).min(turn_max);
                    let more = s.offset + n < front.len();
                    let f = StreamFrame::Data { id: wid, more };
                    encode_frame(buf, &Header::Stream(f), &front[s.offset..s.offset + n]);
                    if let Some(l) = log.as_mut() {
                        let payload = front.slice(s.offset..s.offset + n);
                        l.push(LogKind::StreamData { id: wid, more }, payload, n);
                    }
                    if more {
                        s.offset += n;
                    } else {
                        s.queue.pop_front();
                        s.offset = 0;
                        self.stats.messages_sent += 1;
                    }
                } else if let Some((code, text)) = s.close.take() {
                    let f = StreamFrame::Close { id: wid, code: code.0, text: &text };
                    let mark = buf.len();
                    encode_frame(buf, &Header::Stream(f), &[]);
                    if let Some(l) = log.as_mut() {
                        l.push(LogKind::StreamFrame, Bytes::copy_from_slice(&buf[mark..]), buf.len() - mark);
                    }
                    done = true;
                    break;
                } else {
                    break;
                }
            }
            if done {
                if let Some(s) = p.served.remove(&wid) {
                    self.locals.remove(&s.local);
                }
            } else if !s.queue.is_empty() || s.close.is_some() {
                s.in_ring = true;
                p.ring.push_back(wid);
            }
        }
        if !p.ring.is_empty() && full(&log) {
            if let Some(mut l) = log {
                l.wait_outside();
            }
        }
        buf.len() - start
    }
}

/// Where this plane's numbered frames go: `None` if nothing may be written
/// now (the session's re-sends go first), else the log to record them in
/// (`None` inside: the session does not number them).
fn open_log(log: Option<StreamLog<'_>>) -> Option<Option<SessionLog<'_>>> {
    match log {
        Some(StreamLog::Hold) => None,
        Some(StreamLog::On(l)) => Some(Some(l)),
        None => Some(None),
    }
}
