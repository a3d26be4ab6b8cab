//! The end of a graceful close: the close wait.
//!
//! Once a closing connection's goodbye is out, the node does not close the
//! socket: it asks the driver to half-close it ([`Action::HalfClose`]) and
//! keeps reading and processing what the peer still sends, until the peer
//! closes too (its goodbye or the end of the stream) or the wait
//! (`SessionConfig::close_timeout`) is over. Nothing more is written, so no
//! heartbeat or credit ever follows the goodbye. A socket closed at once
//! would make its kernel answer the peer's next bytes with a reset, which
//! throws away what is still unsent in the kernel (the tail of the data the
//! goodbye followed).

use super::Node;
use crate::event::{Action, CloseReason, PeerInfo};
use crate::id::ConnId;
use crate::session::Closing;

impl Node {
    /// `conn`'s goodbye is out (in the bytes the driver writes next).
    /// An open connection enters the close wait; any other (a refusal) is
    /// removed at once.
    pub(super) fn goodbye_sent(&mut self, conn: ConnId, reason: CloseReason) {
        let resumable =
            self.session.conns.get(&conn).and_then(|c| c.peer()).is_some_and(|p| self.pubsub.is_resumable(p.id));
        let Some(c) = self.session.conns.get_mut(&conn) else { return };
        // One budget: in a resumable session the wait for acks before the
        // goodbye and the close wait after it together end at `close_by`.
        let fresh = self.now + self.cfg.session.close_timeout;
        let until = match c.close_by {
            Some(by) if resumable => by.max(self.now),
            _ => fresh,
        };
        if !c.is_open() || c.refused() || self.cfg.session.plant_close_bug {
            self.remove_conn(conn, reason);
            return;
        }
        c.closing = Some(Closing::CloseWait { reason, until });
        c.control = Default::default();
        self.session.ready.remove(&conn);
        self.session.arm(conn);
        self.actions.push_back(Action::HalfClose { conn });
    }

    /// The reason to report for `conn` if it ends during its close wait:
    /// this node's own, whatever ended the wait (the peer's goodbye or its
    /// end of stream).
    pub(super) fn close_wait_reason(&self, conn: ConnId) -> Option<CloseReason> {
        match &self.session.conns.get(&conn)?.closing {
            Some(Closing::CloseWait { reason, .. }) => Some(reason.clone()),
            _ => None,
        }
    }

    /// The close wait of `conn` (with `peer`) is over: the peer closed, or
    /// the wait timed out. Called once per connection that entered the wait,
    /// just before the connection is removed and its peer's session ends.
    ///
    /// In a resumable session the goodbye waited for the peer's acks and
    /// this wait shares that budget: both end at the connection's
    /// `close_by` (`close_timeout` after the close began), never twice
    /// `close_timeout`. What `peer` has not acknowledged
    /// by now is lost with the session: the session's end, which follows
    /// at once, reports it as dropped with its range
    /// ([`SessionEvent::Ended`](crate::SessionEvent::Ended)`::unacked`) and
    /// never counts it as sent. Here it is counted in the session stats.
    pub(super) fn close_wait_over(&mut self, conn: ConnId, peer: Option<&PeerInfo>) {
        let Some(info) = peer else { return };
        let carries = self.session.peers.get(&info.id).is_some_and(|e| e.conns.contains(&conn));
        if let Some(r) = self.pubsub.unacked_range(info.id).filter(|_| carries) {
            self.session_stats.unacked_at_close += r.end - r.start;
        }
    }
}
