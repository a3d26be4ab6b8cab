//! Logs through `tracing`: the driver turns the core's events into `tracing`
//! events (the core itself stays free of logging). Every line is emitted
//! inside the node's span (`node{name, id}`), which the driver task enters;
//! what concerns one connection (accepted, dialed, peer up, refusals, the
//! socket closing) also inside its `conn{id, addr, dialed, peer}` span.
//!
//! Levels, chosen so that INFO is useful and quiet:
//!
//! | level | what |
//! |---|---|
//! | INFO | a peer up or down (with the reason), a dial target given up, the node closed |
//! | WARN | messages dropped (with the count and reason), a peer refused for breaking the protocol |
//! | INFO | a stream that ended with a code other than 1000 (normal); group assignments, members joining and leaving, groups settling |
//! | INFO | files offered, received (verified) and delivered |
//! | WARN | a group lease lost, a join refused, relayed messages lost, a file transfer failed |
//! | DEBUG | topics paired and unpaired (every node reports them, discovery or not), dial failures with the retry delay, subscriptions of peers, stream requests and normal ends, who serves streams |
//!
//! Messages and stream data are never logged. With no subscriber installed each
//! call costs one relaxed load of `tracing`'s global maximum level.

use estafeta_core::{
    CloseCode, DialEvent, DiscoveryEvent, Event, MembershipEvent, PubSubEvent, StreamEvent, TransferEvent,
};

/// Logs `event` at its level (see the module documentation).
#[cold]
pub(crate) fn event(event: &Event) {
    match event {
        Event::PeerUp { peer, conn, target, authenticated } => {
            let (conn, dialed, authenticated) = (conn.0, target.is_some(), *authenticated);
            tracing::info!(peer = %peer, conn, dialed, authenticated, "peer up")
        }
        Event::Refused { conn, code, reason } => {
            tracing::warn!(conn = conn.0, code = code.0, reason = %reason, "refused by the peer")
        }
        Event::PeerDown { peer, reason } => {
            tracing::info!(peer = %peer, code = reason.code().0, %reason, "peer down")
        }
        Event::ProtocolViolation { conn, peer, error } => match peer {
            Some(p) => tracing::warn!(conn = conn.0, peer = %p, %error, "peer refused: protocol violation"),
            None => tracing::warn!(conn = conn.0, %error, "connection refused during the handshake"),
        },
        Event::Dial(DialEvent::Connected { target, peer }) => {
            tracing::debug!(target = target.0, peer = %peer, "dial target connected")
        }
        Event::Dial(DialEvent::Failed { target, addr, reason, retry_in }) => {
            tracing::debug!(target = target.0, %addr, %reason, retry_in = ?retry_in, "dial failed")
        }
        Event::Dial(DialEvent::GaveUp { target, addr }) => {
            tracing::info!(target = target.0, %addr, "dial target gave up: attempts used up")
        }
        Event::PubSub(PubSubEvent::Message(_) | PubSubEvent::Messages(_)) => {}
        Event::PubSub(PubSubEvent::Subscribed { peer, topic }) => {
            tracing::debug!(peer = %peer, topic = %topic, "peer subscribed")
        }
        Event::PubSub(PubSubEvent::Unsubscribed { peer, topic }) => {
            tracing::debug!(peer = %peer, topic = %topic, "peer unsubscribed")
        }
        Event::PubSub(PubSubEvent::Writable) => tracing::trace!("room to publish again"),
        Event::PubSub(PubSubEvent::Dropped { peer, count, reason }) => match peer {
            Some(p) => tracing::warn!(peer = %p, count, reason = ?reason, "messages dropped"),
            None => tracing::warn!(count, reason = ?reason, "messages dropped"),
        },
        Event::PubSub(PubSubEvent::Overwritten { peer, topic, count, seq }) => {
            tracing::debug!(peer = %peer, topic = %topic, count, seq = ?seq, "queued messages overwritten by newer ones")
        }
        Event::PubSub(PubSubEvent::Skipped { peer, topic, count, seq }) => {
            tracing::debug!(peer = %peer, topic = %topic, count, seq = ?seq, "the peer overwrote messages to this node")
        }
        Event::Stream(StreamEvent::Request { stream, peer, topic, request, .. }) => {
            tracing::debug!(stream = ?stream, peer = %peer, topic = %topic, size = request.len(), "stream request")
        }
        Event::Stream(StreamEvent::Data { .. }) => {}
        Event::Stream(StreamEvent::Closed { stream, role, end }) => {
            if end.code == CloseCode::NORMAL {
                tracing::debug!(stream = ?stream, role = ?role, "stream closed")
            } else {
                let (code, text, remote) = (end.code.0, &end.text, end.remote);
                tracing::info!(stream = ?stream, role = ?role, code, text = %text, remote, "stream ended")
            }
        }
        Event::Stream(StreamEvent::Writable { stream }) => tracing::trace!(stream = ?stream, "stream writable"),
        Event::Stream(StreamEvent::Serving { peer, topic, serving }) => {
            tracing::debug!(peer = %peer, topic = %topic, serving, "peer serves streams")
        }
        Event::Membership(m) => membership(m),
        Event::Transfer(t) => transfer(t),
        Event::Discovery(DiscoveryEvent::Paired { topic }) => tracing::debug!(topic = %topic, "topic paired"),
        Event::Discovery(DiscoveryEvent::Unpaired { topic }) => tracing::debug!(topic = %topic, "topic unpaired"),
        Event::Discovery(DiscoveryEvent::RelayLost { topic, origin, count, reason }) => {
            tracing::warn!(topic = %topic, origin = %origin, count, reason = ?reason, "relayed messages lost")
        }
        Event::Discovery(DiscoveryEvent::DialFailed { addr, reason }) => {
            tracing::debug!(%addr, %reason, "discovered peer could not be dialed")
        }
        Event::Session(estafeta_core::SessionEvent::Suspended { peer, reason }) => {
            tracing::info!(peer = %peer, %reason, "connection lost: session suspended")
        }
        Event::Session(estafeta_core::SessionEvent::Resumed { peer, resent }) => {
            tracing::info!(peer = %peer, resent, "session resumed")
        }
        Event::Session(estafeta_core::SessionEvent::Ended { peer, reason, unacked, unsent, received }) => {
            if unacked.is_empty() && *unsent == 0 {
                tracing::debug!(peer = %peer, %reason, received, "session ended")
            } else {
                tracing::warn!(peer = %peer, %reason, ?unacked, unsent, received, "session ended: messages possibly lost")
            }
        }
        Event::Closed => tracing::info!("node closed"),
    }
}

/// Membership changes: INFO for what changes who does what (assigned,
/// lease lost, refused, settled, members leaving), DEBUG for the rest.
fn membership(m: &MembershipEvent) {
    match m {
        MembershipEvent::Assigned { group, assignment: a } => {
            tracing::info!(group = %group, index = a.index, total = a.total, epoch = a.epoch, "group assigned")
        }
        MembershipEvent::Settling { group } => tracing::debug!(group = %group, "group settling"),
        MembershipEvent::LeaseLost { group } => tracing::warn!(group = %group, "group lease lost: reporting no index"),
        MembershipEvent::Refused { group, reason } => tracing::warn!(group = %group, reason = ?reason, "join refused"),
        MembershipEvent::MemberJoined { group, member } => {
            tracing::info!(group = %group, member = %member, "member joined")
        }
        MembershipEvent::MemberLeft { group, member, reason } => {
            tracing::info!(group = %group, member = %member, reason = ?reason, "member left")
        }
        MembershipEvent::Settled { group, epoch, total } => {
            tracing::info!(group = %group, epoch, total, "group settled")
        }
    }
}

/// File transfers: INFO for offers, received and delivered files, WARN for
/// failures, DEBUG for starts (and resumes), TRACE for progress.
fn transfer(t: &TransferEvent) {
    match t {
        TransferEvent::Offered(o) => {
            tracing::info!(peer = %o.peer, id = o.id, topic = %o.topic, name = %o.name, size = o.size, "file offered")
        }
        TransferEvent::Started { peer, id, direction, offset } => {
            tracing::debug!(peer = %peer, id, direction = ?direction, offset, "file transfer started")
        }
        TransferEvent::Progress { peer, id, bytes, total, .. } => {
            tracing::trace!(peer = %peer, id, bytes, total, "file transfer progress")
        }
        TransferEvent::Received(r) => {
            tracing::info!(peer = %r.peer, id = r.id, path = %r.path.display(), size = r.size, "file received and verified")
        }
        TransferEvent::Delivered { peer, id } => tracing::info!(peer = %peer, id, "file delivered"),
        TransferEvent::Failed { peer, id, direction, reason } => {
            tracing::warn!(peer = %peer, id, direction = ?direction, reason = %reason, "file transfer failed")
        }
    }
}
