//! Frames from a peer: opens, data, closes, cancels, credit, heartbeats.
//! Everything a peer claims is checked; a frame for a stream that already
//! ended here is late and ignored (counted); a frame for a stream that never
//! existed is a protocol violation.

use super::{cost, deadline_of, Opened, Served, StreamEvent, StreamsState};
use crate::event::{Event, Events, PeerInfo, ProtocolError};
use crate::id::{ConnId, NodeId, Topic};
use crate::time::Timestamp;
use crate::wire::{CloseCode, StreamFrame, MAX_OPEN_PER_SESSION};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

fn violation(what: impl Into<String>) -> ProtocolError {
    ProtocolError::Limit(what.into())
}

impl StreamsState {
    /// A frame of this plane from `peer` (it passed the session gate).
    /// Returns the connection to wake if something is now due on it.
    pub(crate) fn on_frame(
        &mut self,
        peer: &PeerInfo,
        frame: StreamFrame<'_>,
        payload: Bytes,
        now: Timestamp,
        closing: bool,
        events: &mut Events,
    ) -> Result<Option<ConnId>, ProtocolError> {
        let id = peer.id;
        let Some(p) = self.peers.get_mut(&id) else { return Ok(None) };
        let conn = p.conn;
        let mine = |wid: u64, bit: u64| wid & 1 == bit;
        match frame {
            StreamFrame::Serve { topic } | StreamFrame::Unserve { topic } => {
                let on = matches!(frame, StreamFrame::Serve { .. });
                self.check_topic(topic).map_err(violation)?;
                let p = self.peers.get_mut(&id).expect("present above");
                let changed = if on {
                    if !p.serves.contains(topic) && p.serves.len() >= self.cfg.max_served_topics_per_peer {
                        return Err(violation(format!(
                            "more than {} served topics",
                            self.cfg.max_served_topics_per_peer
                        )));
                    }
                    p.serves.insert(Topic::from(topic))
                } else {
                    p.serves.remove(topic)
                };
                if changed {
                    let ev = StreamEvent::Serving { peer: peer.clone(), topic: Topic::from(topic), serving: on };
                    events.push(Event::Stream(ev));
                }
                Ok(None)
            }
            StreamFrame::Open { id: wid, topic, window, deadline_ms } => {
                if mine(wid, p.bit) {
                    return Err(violation("open of a stream id of the receiver's parity"));
                }
                if wid <= p.highest_remote {
                    return Err(violation(format!("stream id {wid} opened again")));
                }
                p.highest_remote = wid;
                let refusal = if closing || p.closing {
                    Some((CloseCode::GOING_AWAY, "going away: the node is closing".to_string()))
                } else if !self.local.contains(topic) {
                    Some((CloseCode::BAD_REQUEST, format!("no handler: this node does not serve topic '{topic}'")))
                } else if payload.len() > self.cfg.max_request_size {
                    let max = self.cfg.max_request_size;
                    Some((CloseCode::BAD_REQUEST, format!("request of {} bytes exceeds {max}", payload.len())))
                } else if p.churn.throttled(now, &self.cfg) {
                    self.stats.churn_refused += 1;
                    Some((CloseCode::TRY_AGAIN_LATER, super::churn::refusal_text(&self.cfg)))
                } else if p.served.len() >= self.cfg.max_served_per_peer {
                    let max = self.cfg.max_served_per_peer;
                    Some((CloseCode::TRY_AGAIN_LATER, format!("too many concurrent streams (limit {max})")))
                } else {
                    None
                };
                if let Some((code, text)) = refusal {
                    // A consumer has at most MAX_OPEN_PER_SESSION streams
                    // open with us (answered or not): beyond is a flood.
                    if p.served.len() + p.refusals.len() >= MAX_OPEN_PER_SESSION {
                        return Err(violation(format!("more than {MAX_OPEN_PER_SESSION} streams open")));
                    }
                    p.refusals.push_back((wid, code, text));
                    self.stats.refused += 1;
                    return Ok(Some(conn));
                }
                let local = self.new_local();
                let p = self.peers.get_mut(&id).expect("present above");
                p.served.insert(
                    wid,
                    Served {
                        local,
                        granted: window,
                        used: 0,
                        queue: VecDeque::new(),
                        offset: 0,
                        close: None,
                        ended: false,
                        in_ring: false,
                        want_writable: false,
                    },
                );
                self.locals.insert(local, (id, wid));
                self.stats.accepted += 1;
                self.touch(id, now);
                let topic = self.intern(topic);
                let deadline = deadline_of(deadline_ms);
                let ev = StreamEvent::Request { stream: local, peer: peer.clone(), topic, request: payload, deadline };
                events.push(Event::Stream(ev));
                Ok(None)
            }
            StreamFrame::Data { id: wid, more } => {
                if !mine(wid, p.bit) {
                    return Err(violation("data on a stream id of the sender's parity"));
                }
                let max = self.cfg.max_message_size;
                let Some(s) = p.opened.get_mut(&wid) else {
                    return self.late(id, wid, "data");
                };
                on_data(s, wid, more, payload, max, events, &mut self.stats.messages_received)?;
                Ok(None)
            }
            StreamFrame::Close { id: wid, code, text } => {
                if !mine(wid, p.bit) {
                    return Err(violation("close of a stream id of the sender's parity"));
                }
                if !p.opened.contains_key(&wid) {
                    return self.late(id, wid, "close");
                }
                Ok(self.end_opened(id, wid, CloseCode(code), text, true, false, events))
            }
            StreamFrame::Cancel { id: wid, code, text } => {
                if mine(wid, p.bit) {
                    return Err(violation("cancel of a stream id of the receiver's parity"));
                }
                let Some(s) = p.served.get(&wid) else {
                    return self.late(id, wid, "cancel");
                };
                // Churn is a stream cancelled before its producer wrote a
                // reply (its handler's work thrown away); a consumer that
                // stops reading after a reply (`request`) is not churning.
                if s.used == 0 && !s.ended {
                    p.churn.on_cancel(now, &self.cfg);
                }
                self.drop_served(id, wid, CloseCode(code), text, true, events);
                Ok(None)
            }
            StreamFrame::Credit { id: wid, bytes } => {
                if mine(wid, p.bit) {
                    return Err(violation("credit on a stream id of the receiver's parity"));
                }
                let Some(s) = p.served.get_mut(&wid) else {
                    return self.late(id, wid, "credit");
                };
                s.granted = s.granted.checked_add(bytes).ok_or_else(|| violation("stream credit overflows"))?;
                if s.want_writable && s.used < s.granted {
                    s.want_writable = false;
                    events.push(Event::Stream(StreamEvent::Writable { stream: s.local }));
                }
                Ok(None)
            }
            StreamFrame::Heartbeat { reply, seen, mut held } => {
                held.sort_unstable();
                // Streams the peer holds and we no longer do: answer with
                // our list so it closes them.
                let unknown = held.iter().any(|w| {
                    if mine(*w, p.bit) {
                        *w <= p.sent_open_max && !p.opened.contains_key(w)
                    } else {
                        *w <= p.highest_remote && !p.served.contains_key(w)
                    }
                });
                let mut wake = None;
                if unknown && !reply && !p.hb_due {
                    p.hb_due = true;
                    p.hb_reply = true;
                    wake = Some(conn);
                }
                let gone_opened: Vec<u64> = p
                    .opened
                    .iter()
                    .filter(|(w, s)| s.sent_open && **w <= seen && held.binary_search(w).is_err())
                    .map(|(w, _)| *w)
                    .collect();
                let gone_served: Vec<u64> =
                    p.served.keys().filter(|w| held.binary_search(w).is_err()).copied().collect();
                let text = "abnormal: the peer no longer holds the stream";
                self.stats.orphans_closed += (gone_opened.len() + gone_served.len()) as u64;
                for w in gone_opened {
                    wake = self.end_opened(id, w, CloseCode::ABNORMAL, text, false, false, events).or(wake);
                }
                for w in gone_served {
                    self.drop_served(id, w, CloseCode::ABNORMAL, text, false, events);
                }
                Ok(wake)
            }
        }
    }

    /// A frame for stream `wid` this node does not hold: late if the id was
    /// used (ignored, counted), a violation if it never was.
    fn late(&mut self, peer: NodeId, wid: u64, what: &str) -> Result<Option<ConnId>, ProtocolError> {
        let Some(p) = self.peers.get(&peer) else { return Ok(None) };
        let used = if wid & 1 == p.bit { wid <= p.sent_open_max } else { wid <= p.highest_remote };
        if used {
            self.stats.late_frames += 1;
            Ok(None)
        } else {
            Err(violation(format!("{what} for stream {wid}, which was never opened")))
        }
    }

    /// A shared copy of `topic` if this node serves it.
    fn intern(&self, topic: &str) -> Topic {
        self.local.get(topic).cloned().unwrap_or_else(|| Topic::from(topic))
    }
}

/// A Data frame on consumer stream `s`: checks credit and size, reassembles
/// fragments, hands whole messages to the application.
fn on_data(
    s: &mut Opened,
    wid: u64,
    more: bool,
    payload: Bytes,
    max: usize,
    events: &mut Events,
    received: &mut u64,
) -> Result<(), ProtocolError> {
    if !s.sent_open {
        return Err(violation(format!("data for stream {wid} before its open")));
    }
    let first = s.partial.is_none();
    if first {
        // A message may start only within credit (it may overshoot).
        if s.received >= s.granted {
            return Err(ProtocolError::CreditExceeded(format!(
                "stream {wid}: received {} of {} granted",
                s.received, s.granted
            )));
        }
        s.received += cost(payload.len());
    } else {
        s.received += payload.len() as u64;
    }
    let whole = match (s.partial.take(), more) {
        (None, false) => payload,
        (prev, _) => {
            let mut buf = prev.unwrap_or_else(BytesMut::new);
            if buf.len() + payload.len() > max {
                return Err(violation(format!("stream {wid}: message exceeds {max} bytes")));
            }
            buf.extend_from_slice(&payload);
            if more {
                s.partial = Some(buf);
                return Ok(());
            }
            buf.freeze()
        }
    };
    if whole.len() > max {
        return Err(violation(format!("stream {wid}: message exceeds {max} bytes")));
    }
    *received += 1;
    events.push(Event::Stream(StreamEvent::Data { stream: s.local, payload: whole }));
    Ok(())
}
