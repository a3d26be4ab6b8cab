//! The pub/sub plane's commands, through a borrowed accessor:
//! `node.pubsub().publish(..)`.

use super::{Payload, PubSubState, Published, SendMode};
use crate::error::{CommandError, PublishError};
use crate::event::{Events, PeerInfo};
use crate::id::{NodeId, PeerRef, Topic};
use crate::session::Session;

/// Commands and queries of the pub/sub plane, borrowed from a
/// [`Node`](crate::Node) with [`Node::pubsub`](crate::Node::pubsub).
///
/// ```
/// use estafeta_core::{Bytes, Config, Node, PublishError, SendMode};
/// let mut node = Node::new(Config::plaintext(), "alice").unwrap();
/// assert_eq!(node.pubsub().subscribe("news"), Ok(true));
/// let r = node.pubsub().publish("news", Bytes::from_static(b"hi"), SendMode::All);
/// assert!(matches!(r, Err(PublishError::NoSubscribers(_))), "no peer yet");
/// ```
#[derive(Debug)]
pub struct PubSub<'a> {
    pub(crate) state: &'a mut PubSubState,
    pub(crate) session: &'a mut Session,
    pub(crate) events: &'a mut Events,
    pub(crate) closing: bool,
}

impl PubSub<'_> {
    /// Subscribes to `topic`, tells every connected peer and grants each
    /// its window. Returns `false` if already subscribed (nothing changed).
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, CommandError> {
        self.state.check_topic(topic).map_err(CommandError::BadTopic)?;
        if self.closing {
            return Err(CommandError::Closed);
        }
        if self.state.local.contains(topic) {
            return Ok(false);
        }
        let t = self.state.intern(topic);
        self.state.local.insert(t.clone());
        self.state.local_gen += 1;
        self.announce(&t, true);
        for conn in self.state.grant_all(&t) {
            self.session.ready.insert(conn);
        }
        Ok(true)
    }

    /// Unsubscribes from `topic` and tells every connected peer. Returns
    /// `false` if not subscribed (nothing changed). Messages the peers sent
    /// before they learned of it are dropped, counted and reported.
    pub fn unsubscribe(&mut self, topic: &str) -> Result<bool, CommandError> {
        let Some(t) = self.state.local.take(topic) else {
            return Ok(false);
        };
        self.state.local_gen += 1;
        self.announce(&t, false);
        Ok(true)
    }

    fn announce(&mut self, t: &Topic, subscribe: bool) {
        // Links whose peer's Hello has not arrived yet keep the change too;
        // it leaves once both sides are known to run pub/sub.
        for (conn, link) in self.state.links.iter_mut().filter(|(_, l)| l.announced) {
            link.changes.insert(t.clone(), subscribe);
            self.session.ready.insert(*conn);
        }
    }

    /// Queues `payload` on `topic` for the peers `mode` selects.
    ///
    /// On error nothing was queued for anyone. `Full` means wait for
    /// [`PubSubEvent::Writable`](crate::PubSubEvent::Writable) and retry.
    pub fn publish(&mut self, topic: &str, payload: Payload, mode: SendMode) -> Result<Published, PublishError> {
        if self.closing {
            return Err(PublishError::Closed);
        }
        self.state.check_topic(topic).map_err(PublishError::BadTopic)?;
        let size = crate::wire::encoded_len_hint(topic.len(), payload.len());
        let max = self.session.cfg.max_frame_size;
        if size > max {
            return Err(PublishError::TooLarge { size, max });
        }
        let wake = &mut self.session.ready;
        match mode {
            SendMode::All => self.state.publish_all(topic, payload, self.events, wake),
            SendMode::RoundRobin => self.state.publish_round_robin(topic, payload, wake),
            SendMode::To(peer) => {
                let id = self.resolve(&peer)?;
                self.state.publish_to(topic, payload, id, peer, &mut self.session.ready)
            }
        }
    }

    /// Queues the payloads of `payloads`, in order, on `topic` for every
    /// subscriber, each as [`PubSub::publish`] with [`SendMode::All`] would,
    /// until one is refused. Returns how many were queued (the first ones:
    /// each was taken out of the slice, an empty `Bytes` left in its place)
    /// and the refusal, if any (the refused payload and those after it are
    /// where they were). With one subscriber (the common case) its queue is
    /// looked up once for the whole batch, and no payload is cloned.
    ///
    /// ```
    /// use estafeta_core::{Bytes, Config, Node, PublishError};
    /// let mut node = Node::new(Config::plaintext(), "alice").unwrap();
    /// let mut batch = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
    /// let (queued, refused) = node.pubsub().publish_batch("ticks", &mut batch);
    /// assert_eq!(queued, 0);
    /// assert!(matches!(refused, Err(PublishError::NoSubscribers(_))), "nobody subscribes yet");
    /// assert_eq!(&batch[0][..], b"a", "the payloads stay");
    /// ```
    pub fn publish_batch(&mut self, topic: &str, payloads: &mut [Payload]) -> (usize, Result<(), PublishError>) {
        if self.closing {
            return (0, Err(PublishError::Closed));
        }
        if let Err(e) = self.state.check_topic(topic) {
            return (0, Err(PublishError::BadTopic(e)));
        }
        let max = self.session.cfg.max_frame_size;
        self.state.publish_all_batch(topic, payloads, max, self.events, &mut self.session.ready)
    }

    fn resolve(&self, peer: &PeerRef) -> Result<NodeId, PublishError> {
        match peer {
            PeerRef::Id(id) if self.session.peers.contains_key(id) => Ok(*id),
            PeerRef::Id(_) => Err(PublishError::UnknownPeer(peer.clone())),
            PeerRef::Name(name) => {
                // A connected peer of that name first: a node restarted with
                // a new id leaves its old session suspended under the same name.
                // (No allocation: this runs for every message sent by name.)
                let named = |p: &&PeerInfo| &*p.name == name.as_str();
                let found = first_and_more(self.session.connected_infos().filter(named))
                    .or_else(|| first_and_more(self.session.peer_infos().filter(named)));
                match found {
                    None => Err(PublishError::UnknownPeer(peer.clone())),
                    Some((_, true)) => Err(PublishError::AmbiguousPeer(name.clone())),
                    Some((id, false)) => Ok(id),
                }
            }
        }
    }

    /// The application consumed `messages` messages (`bytes` payload bytes)
    /// that `peer` sent on `topic`: their credit may go back to the peer.
    /// Only with [`CreditMode::Manual`](crate::CreditMode::Manual); with the
    /// default a message is consumed when `poll_event` hands it out.
    ///
    /// Returns true if a grant is now due: the driver should drain the node.
    pub fn consumed(&mut self, peer: NodeId, topic: &str, messages: u64, bytes: u64) -> bool {
        match self.state.consumed(peer, topic, messages, bytes) {
            Some(conn) => {
                self.session.ready.insert(conn);
                true
            }
            None => false,
        }
    }

    /// How many peers with a session subscribe to `topic` (suspended ones included).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        PubSubRef { state: self.state }.subscriber_count(topic)
    }

    /// Bytes queued for `peer` (all its topics), if it is connected.
    pub fn queued_bytes(&self, peer: NodeId) -> Option<usize> {
        PubSubRef { state: self.state }.queued_bytes(peer)
    }
}

/// Read-only queries of the pub/sub plane, from a shared borrow of a
/// [`Node`](crate::Node) ([`Node::pubsub_ref`](crate::Node::pubsub_ref)).
#[derive(Debug, Clone, Copy)]
pub struct PubSubRef<'a> {
    pub(crate) state: &'a PubSubState,
}

impl<'a> PubSubRef<'a> {
    /// How many peers with a session subscribe to `topic`, suspended ones
    /// included (their subscriptions are kept while they may resume).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.state.index.get(topic).map_or(0, |s| s.peers.len())
    }

    /// How many connected peers subscribe to `topic`: a suspended session's
    /// subscriptions count again once it resumes.
    pub fn connected_subscriber_count(&self, topic: &str) -> usize {
        let connected = |id: &NodeId| self.state.peers.get(id).is_none_or(|p| !p.suspended);
        self.state.index.get(topic).map_or(0, |s| s.peers.iter().filter(|id| connected(id)).count())
    }

    /// How many connected peers subscribe to `topic` and have granted this
    /// node credit on it, so a message to them can leave now. A subscriber's
    /// first grant arrives about one round trip after its subscription is
    /// known; [`PubSubEvent::Writable`](crate::PubSubEvent::Writable) follows
    /// each subscription's first grant.
    pub fn ready_subscriber_count(&self, topic: &str) -> usize {
        let Some(s) = self.state.index.get(topic) else { return 0 };
        s.peers.iter().filter(|id| self.state.send_credit(**id, topic).is_some_and(|(m, b)| m > 0 && b > 0)).count()
    }

    /// Connected peers subscribing to `topic`, in id order.
    pub(crate) fn subscribers(&self, topic: &str) -> impl Iterator<Item = NodeId> + 'a {
        self.state.index.get(topic).into_iter().flat_map(|s| s.peers.iter().copied())
    }

    /// Topics this node subscribes to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &'a Topic> + 'a {
        self.state.local.iter()
    }

    /// True if this node subscribes to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.state.local.contains(topic)
    }

    /// Bytes queued for `peer` (all its topics), if it is connected.
    pub fn queued_bytes(&self, peer: NodeId) -> Option<usize> {
        self.state.queued_bytes(peer)
    }

    /// `peer`'s send log in a resumable session: messages queued and not
    /// written yet, and messages written and not acknowledged yet.
    pub fn send_log(&self, peer: NodeId) -> Option<(usize, usize)> {
        self.state.log_len(peer)
    }

    /// The credit `peer` granted this node on `topic`: messages and payload
    /// bytes it may still send (bytes may be negative by one message's
    /// overshoot). `None` before any grant.
    pub fn send_credit(&self, peer: NodeId, topic: &str) -> Option<(u64, i64)> {
        self.state.send_credit(peer, topic)
    }

    /// What this node still allows `peer` to send on `topic`, by its own
    /// count (granted minus received). `None` before any grant.
    pub fn receive_credit(&self, peer: NodeId, topic: &str) -> Option<(u64, i64)> {
        self.state.credit_left(peer, topic)
    }
}

/// The first peer's id, and whether there is another.
fn first_and_more<'a>(mut peers: impl Iterator<Item = &'a PeerInfo>) -> Option<(NodeId, bool)> {
    peers.next().map(|p| (p.id, peers.next().is_some()))
}
