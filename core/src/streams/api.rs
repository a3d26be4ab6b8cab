//! The streams plane's commands, through a borrowed accessor:
//! `node.streams().open(..)`.

use super::{cost, push_closed, Opened, Role, StreamId, StreamsState, WriteError};
use crate::error::CommandError;
use crate::event::Events;
use crate::id::{NodeId, PeerRef, Topic};
use crate::session::Session;
use crate::time::Timestamp;
use crate::wire::CloseCode;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::time::Duration;

/// Commands and queries of the streams plane, borrowed from a
/// [`Node`](crate::Node) with [`Node::streams`](crate::Node::streams).
///
/// ```
/// use estafeta_core::{Bytes, CloseCode, Config, Event, Node, StreamEvent};
/// let mut node = Node::new(Config::plaintext(), "alice").unwrap();
/// assert_eq!(node.streams().serve("logs"), Ok(true));
/// // No peer serves "rows": the stream closes at once with 4000.
/// let s = node.streams().open("rows", Bytes::from_static(b"select"), None, None);
/// match node.poll_event() {
///     Some(Event::Stream(StreamEvent::Closed { stream, end, .. })) => {
///         assert_eq!((stream, end.code), (s, CloseCode::BAD_REQUEST));
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
pub struct Streams<'a> {
    pub(crate) state: &'a mut StreamsState,
    pub(crate) session: &'a mut Session,
    pub(crate) events: &'a mut Events,
    pub(crate) closing: bool,
    pub(crate) now: Timestamp,
}

impl Streams<'_> {
    /// Serves `topic`: peers may open streams on it, which arrive as
    /// [`StreamEvent::Request`](crate::StreamEvent::Request). Every peer is
    /// told. Returns `false` if already served.
    pub fn serve(&mut self, topic: &str) -> Result<bool, CommandError> {
        self.state.check_topic(topic).map_err(CommandError::BadTopic)?;
        if self.closing {
            return Err(CommandError::Closed);
        }
        if self.state.local.contains(topic) {
            return Ok(false);
        }
        let t = Topic::from(topic);
        self.state.local.insert(t.clone());
        self.announce(&t, true);
        Ok(true)
    }

    /// Stops serving `topic` (streams already open go on). Returns `false`
    /// if it was not served.
    pub fn unserve(&mut self, topic: &str) -> bool {
        let Some(t) = self.state.local.take(topic) else { return false };
        self.announce(&t, false);
        true
    }

    fn announce(&mut self, t: &Topic, on: bool) {
        for p in self.state.peers.values_mut() {
            p.serve_changes.insert(t.clone(), on);
            self.session.ready.insert(p.conn);
        }
    }

    /// Opens a stream on `topic` with `request`, to the peer `to` or else to
    /// one of the peers serving `topic` (round-robin, preferring those whose
    /// connection window has room), with an optional deadline after which
    /// this node cancels it (4008).
    ///
    /// Always returns the stream; replies arrive as
    /// [`StreamEvent::Data`](crate::StreamEvent::Data) and its end as one
    /// [`StreamEvent::Closed`](crate::StreamEvent::Closed), which comes at
    /// once if the stream cannot start: 4000 if no connected peer serves the
    /// topic, the topic is bad or the request exceeds `max_request_size`;
    /// 1013 over `max_open_streams`; 1001 if the node is closing.
    pub fn open(&mut self, topic: &str, request: Bytes, to: Option<PeerRef>, deadline: Option<Duration>) -> StreamId {
        let st = &mut *self.state;
        let local = st.new_local();
        st.stats.opened += 1;
        let refuse = |code, text: String| Some((code, text));
        let refusal = if self.closing {
            refuse(CloseCode::GOING_AWAY, "going away: the node is closing".into())
        } else if let Err(e) = st.check_topic(topic) {
            refuse(CloseCode::BAD_REQUEST, e)
        } else if request.len() > st.cfg.max_request_size {
            let max = st.cfg.max_request_size;
            refuse(CloseCode::BAD_REQUEST, format!("request of {} bytes exceeds max_request_size {max}", request.len()))
        } else if st.open_count >= st.cfg.max_open_streams {
            let max = st.cfg.max_open_streams;
            refuse(CloseCode::TRY_AGAIN_LATER, format!("too many open streams (max_open_streams {max})"))
        } else {
            None
        };
        if let Some((code, text)) = refusal {
            push_closed(self.events, local, Role::Consumer, code, &text, false);
            return local;
        }
        let peer = match self.pick(topic, to) {
            Ok(p) => p,
            Err(text) => {
                push_closed(self.events, local, Role::Consumer, CloseCode::BAD_REQUEST, &text, false);
                return local;
            }
        };
        let st = &mut *self.state;
        let p = st.peers.get_mut(&peer).expect("picked among peers");
        p.next += 1;
        let wid = (p.next << 1) | p.bit;
        let deadline = deadline.map(|d| self.now + d);
        p.opened.insert(
            wid,
            Opened {
                local,
                topic: Topic::from(topic),
                request: Some(request),
                deadline,
                sent_open: false,
                granted: 0,
                received: 0,
                consumed: 0,
                partial: None,
            },
        );
        p.opens.push_back(wid);
        self.session.ready.insert(p.conn);
        st.locals.insert(local, (peer, wid));
        st.open_count += 1;
        if let Some(at) = deadline {
            st.deadlines.set((peer, wid), at);
        }
        st.touch(peer, self.now);
        local
    }

    /// The peer a new stream on `topic` goes to.
    fn pick(&mut self, topic: &str, to: Option<PeerRef>) -> Result<NodeId, String> {
        let st = &mut *self.state;
        if let Some(r) = to {
            let id = match &r {
                PeerRef::Id(id) => Some(*id),
                PeerRef::Name(n) => {
                    let mut it = st.peers.values().filter(|p| &*p.info.name == n.as_str());
                    let first = it.next().map(|p| p.info.id);
                    if it.next().is_some() {
                        return Err(format!("several connected peers are named {n:?}"));
                    }
                    first
                }
            };
            let p = id.and_then(|id| st.peers.get(&id)).filter(|p| !p.closing);
            return match p {
                None => Err(format!("no handler: peer {r} is not connected")),
                Some(p) if !p.serves.contains(topic) => Err(format!("no handler: peer {r} does not serve '{topic}'")),
                Some(p) => Ok(p.info.id),
            };
        }
        let cap = st.cfg.connection_window;
        // A suspended session's peer is picked only if no connected one
        // serves the topic: the open waits for the resume.
        let serving_with = |suspended: bool| -> Vec<(NodeId, bool)> {
            st.peers
                .values()
                .filter(|p| !p.closing && p.suspended == suspended && p.serves.contains(topic))
                .map(|p| (p.info.id, p.outstanding < cap))
                .collect()
        };
        let mut serving = serving_with(false);
        if serving.is_empty() {
            serving = serving_with(true);
        }
        if serving.is_empty() {
            return Err(format!("no handler: no connected peer serves topic '{topic}'"));
        }
        let with_room: Vec<NodeId> = serving.iter().filter(|(_, room)| *room).map(|(id, _)| *id).collect();
        let pool: Vec<NodeId> =
            if with_room.is_empty() { serving.iter().map(|(id, _)| *id).collect() } else { with_room };
        let last = st.rr.get(topic).copied();
        let next = last.and_then(|l| pool.iter().find(|id| **id > l)).or(pool.first()).copied().expect("non-empty");
        st.rr.insert(Topic::from(topic), next);
        Ok(next)
    }

    /// Queues `payload` as one message on producer stream `stream`. Accepted
    /// while the stream has credit left (the message may overshoot it);
    /// otherwise [`WriteError::NoCredit`] and
    /// [`StreamEvent::Writable`](crate::StreamEvent::Writable) follows the
    /// next grant. [`WriteError::Ended`] once the stream ended (its Closed
    /// event says how: a cancel by the consumer, a lost connection, ...).
    pub fn write(&mut self, stream: StreamId, payload: Bytes) -> Result<(), WriteError> {
        let st = &mut *self.state;
        let &(peer, wid) = st.locals.get(&stream).ok_or(WriteError::Ended)?;
        let max = st.cfg.max_message_size;
        let bug = st.cfg.planted_bug;
        let p = st.peers.get_mut(&peer).ok_or(WriteError::Ended)?;
        let s = p.served.get_mut(&wid).filter(|s| !s.ended).ok_or(WriteError::Ended)?;
        if payload.len() > max {
            return Err(WriteError::TooLarge { size: payload.len(), max });
        }
        // The planted bug (simulator only): credit is ignored for a while.
        let allowed = if bug { s.queue.len() < 64 } else { s.used < s.granted };
        if !allowed {
            s.want_writable = true;
            return Err(WriteError::NoCredit);
        }
        s.used += cost(payload.len());
        s.queue.push_back(payload);
        if !s.in_ring {
            s.in_ring = true;
            p.ring.push_back(wid);
        }
        self.session.ready.insert(p.conn);
        Ok(())
    }

    /// Credit producer stream `stream` has left now (`None` if it ended).
    pub fn send_credit(&self, stream: StreamId) -> Option<u64> {
        StreamsRef { state: self.state }.send_credit(stream)
    }

    /// Ends producer stream `stream` with `code` (1000 for a normal end)
    /// after the messages already written. Returns `false` if it had ended
    /// (the first close wins). Its [`StreamEvent::Closed`](crate::StreamEvent::Closed)
    /// follows at once.
    pub fn close(&mut self, stream: StreamId, code: CloseCode, text: &str) -> bool {
        let st = &mut *self.state;
        let Some(&(peer, wid)) = st.locals.get(&stream) else { return false };
        let Some(p) = st.peers.get_mut(&peer) else { return false };
        let Some(s) = p.served.get_mut(&wid).filter(|s| !s.ended) else { return false };
        s.ended = true;
        s.close = Some((code, text.to_string()));
        if !s.in_ring {
            s.in_ring = true;
            p.ring.push_back(wid);
        }
        self.session.ready.insert(p.conn);
        push_closed(self.events, stream, Role::Producer, code, text, false);
        true
    }

    /// Cancels consumer stream `stream` with `code` (4001 when the
    /// application drops it, 1003 when it cannot decode a reply): the
    /// producer is told, and its Closed event follows at once. Returns
    /// `false` if it had ended.
    pub fn cancel(&mut self, stream: StreamId, code: CloseCode, text: &str) -> bool {
        let Some(&(peer, wid)) = self.state.locals.get(&stream) else { return false };
        if !self.state.peers.get(&peer).is_some_and(|p| p.opened.contains_key(&wid)) {
            return false;
        }
        if let Some(c) = self.state.end_opened(peer, wid, code, text, false, true, self.events) {
            self.session.ready.insert(c);
        }
        true
    }

    /// The application consumed `messages` messages of `bytes` payload bytes
    /// on consumer stream `stream`: their credit may go back to the
    /// producer. Only with [`CreditMode::Manual`](crate::CreditMode::Manual)
    /// in `StreamsConfig::credit`. Returns true if a grant is now due.
    pub fn consumed(&mut self, stream: StreamId, messages: u64, bytes: u64) -> bool {
        match self.state.consumed(stream, messages, bytes) {
            Some(c) => {
                self.session.ready.insert(c);
                true
            }
            None => false,
        }
    }
}

/// Read-only queries of the streams plane ([`Node::streams_ref`](crate::Node::streams_ref)).
#[derive(Debug, Clone, Copy)]
pub struct StreamsRef<'a> {
    pub(crate) state: &'a StreamsState,
}

impl StreamsRef<'_> {
    /// Streams open now: (this node as consumer, as producer). A producer
    /// stream counts until its Close has left.
    pub fn open_counts(&self) -> (usize, usize) {
        self.state.open_counts()
    }

    /// How many connected peers serve `topic`.
    pub fn server_count(&self, topic: &str) -> usize {
        self.state.peers.values().filter(|p| p.serves.contains(topic)).count()
    }

    /// Topics this node serves.
    pub fn serving(&self) -> BTreeSet<Topic> {
        self.state.local.clone()
    }

    /// Credit producer stream `stream` has left now (`None` if it ended).
    pub fn send_credit(&self, stream: StreamId) -> Option<u64> {
        let &(peer, wid) = self.state.locals.get(&stream)?;
        let s = self.state.peers.get(&peer)?.served.get(&wid).filter(|s| !s.ended)?;
        Some(s.granted.saturating_sub(s.used))
    }

    /// What consumer stream `stream` allows its producer to send, by this
    /// node's count: (granted, received) in credit units.
    pub fn receive_credit(&self, stream: StreamId) -> Option<(u64, u64)> {
        let &(peer, wid) = self.state.locals.get(&stream)?;
        let s = self.state.peers.get(&peer)?.opened.get(&wid)?;
        Some((s.granted, s.received))
    }

    /// Credit outstanding over all consumer streams with `peer` (the
    /// connection window's use).
    pub fn outstanding(&self, peer: NodeId) -> Option<u64> {
        self.state.peers.get(&peer).map(|p| p.outstanding)
    }

    /// The peer and the role of `stream`, while it is open.
    pub fn stream_peer(&self, stream: StreamId) -> Option<(NodeId, Role)> {
        let &(peer, wid) = self.state.locals.get(&stream)?;
        let p = self.state.peers.get(&peer)?;
        let role = if p.opened.contains_key(&wid) { Role::Consumer } else { Role::Producer };
        Some((peer, role))
    }

    /// The wire id of `stream` (for tests and the simulator).
    #[doc(hidden)]
    pub fn wire_id(&self, stream: StreamId) -> Option<u64> {
        self.state.locals.get(&stream).map(|(_, w)| *w)
    }
}
