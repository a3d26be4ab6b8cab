//! Per-topic permissions, NATS style: per peer id, allow lists for
//! subscribe and publish with prefix patterns, enforced by the receiver.

use crate::id::NodeId;
use std::collections::BTreeMap;

/// A topic pattern: an exact topic, or a prefix ending in `*`
/// (`"orders.*"` matches `"orders.eu"` and `"orders.eu.paid"`; `"*"` matches all).
///
/// ```
/// use estafeta_core::secure::TopicRule;
/// assert!(TopicRule::new("orders.*").matches("orders.eu"));
/// assert!(!TopicRule::new("orders.*").matches("order"));
/// assert!(TopicRule::new("news").matches("news"));
/// assert!(!TopicRule::new("news").matches("news2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRule(String);

impl TopicRule {
    /// A rule from its pattern.
    pub fn new(pattern: impl Into<String>) -> Self {
        TopicRule(pattern.into())
    }

    /// True if `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => self.0 == topic,
        }
    }
}

/// What one peer may do: the topics it may publish to this node and the
/// topics it may subscribe to here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allow {
    /// Topics the peer may publish on (its messages on others are dropped and counted).
    pub publish: Vec<TopicRule>,
    /// Topics the peer may subscribe to (others are refused with a reason).
    pub subscribe: Vec<TopicRule>,
}

impl Allow {
    /// Everything.
    pub fn all() -> Self {
        Allow { publish: vec![TopicRule::new("*")], subscribe: vec![TopicRule::new("*")] }
    }
}

/// Per-topic permissions of the peers of a node. Empty (the default):
/// every peer may publish and subscribe to every topic.
///
/// ```
/// use estafeta_core::secure::{permissions::Allow, Permissions, TopicRule};
/// use estafeta_core::NodeId;
/// let alice = NodeId::from_u128(1);
/// let mut p = Permissions::default();
/// p.peers.insert(alice, Allow { publish: vec![TopicRule::new("alice.*")], subscribe: vec![TopicRule::new("*")] });
/// p.others = Some(Allow::default()); // nobody else may do anything
/// assert!(p.may_publish(alice, "alice.x") && !p.may_publish(alice, "bob.x"));
/// assert!(!p.may_subscribe(NodeId::from_u128(2), "news"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Rules for these peers.
    pub peers: BTreeMap<NodeId, Allow>,
    /// Rules for every other peer (`None`: they may do everything).
    pub others: Option<Allow>,
}

impl Permissions {
    fn rules(&self, peer: NodeId) -> Option<&Allow> {
        self.peers.get(&peer).or(self.others.as_ref())
    }

    /// True if `peer` may publish on `topic` to this node.
    pub fn may_publish(&self, peer: NodeId, topic: &str) -> bool {
        self.rules(peer).is_none_or(|a| a.publish.iter().any(|r| r.matches(topic)))
    }

    /// True if `peer` may subscribe to `topic` at this node.
    pub fn may_subscribe(&self, peer: NodeId, topic: &str) -> bool {
        self.rules(peer).is_none_or(|a| a.subscribe.iter().any(|r| r.matches(topic)))
    }

    /// True if no rule restricts anyone.
    pub fn is_open(&self) -> bool {
        self.peers.is_empty() && self.others.is_none()
    }
}
