//! What the discovery plane tells the application.

use crate::event::CloseReason;
use crate::id::{NodeId, PeerAddr, Topic};

/// Why relayed messages were lost (always counted, always reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayLoss {
    /// A peer's queue was full (or closing) when a message was to be
    /// forwarded to it: that peer may miss it unless another path brings it.
    QueueFull,
    /// Sequence numbers of an origin left the de-duplication window without
    /// having arrived by any path: lost on the way.
    Skipped,
    /// A copy arrived older than the window: dropped, since it may have been
    /// delivered already.
    TooOld,
}

/// What the discovery plane tells the application ([`Event::Discovery`](crate::Event::Discovery)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A local topic now has at least one connected peer that shares it.
    Paired {
        /// The topic.
        topic: Topic,
    },
    /// A local topic has no connected peer that shares it any more (also
    /// reported once for a new subscription with no peer yet).
    Unpaired {
        /// The topic.
        topic: Topic,
    },
    /// Relayed messages were lost.
    RelayLost {
        /// The topic.
        topic: Topic,
        /// The origin of the lost messages.
        origin: NodeId,
        /// How many.
        count: u64,
        /// Why.
        reason: RelayLoss,
    },
    /// A dial this plane made (to a request's origin or a referred peer)
    /// failed or its connection ended; it is not redialed, the origin asks
    /// again while it is unpaired.
    DialFailed {
        /// Where.
        addr: PeerAddr,
        /// Why.
        reason: CloseReason,
    },
}
