//! Sequence numbers as the wire shows them, so that an observer can tell a
//! frame re-sent after a resume from a new one.
//!
//! In a resumable session every message, overwrite marker, relayed copy and
//! frame of a stream (`StreamFrame::is_logged`) takes the next sequence
//! number of its direction; numbers are implicit. A resumed connection starts with
//! `Resume { from }`; a connection that starts a session counts from 0.
//! Per direction of a session the highest number seen so far is kept: a
//! frame below it is a re-send (the sender's log writes it again). It
//! starts again from 0 when the writer holds no session with the reader: a
//! Hello that claims none, the writer's `PeerDown` for the reader, or a
//! connection whose first numbered frame has no Resume frame before it.

use super::Wire;
use crate::net::{ProcId, TcpId};
use estafeta_core::wire::{Capabilities, Header, SessionFrame};
use std::collections::BTreeMap;

/// The counter (see the module).
#[derive(Debug, Default)]
pub(crate) struct WireSeq {
    /// Per (connection, writer): the number of the writer's next frame.
    cursor: BTreeMap<(TcpId, ProcId), u64>,
    /// Per (writer, reader): one past the highest number written.
    high: BTreeMap<(ProcId, ProcId), u64>,
}

impl WireSeq {
    /// Counts `w`. Returns false for a re-sent frame, true otherwise.
    pub(crate) fn is_new(&mut self, w: &Wire<'_>) -> bool {
        match w.header {
            Header::Session(SessionFrame::Resume { from }) => {
                self.cursor.insert((w.tcp, w.from), *from);
                return true;
            }
            Header::Hello(h) if h.session.as_ref().is_none_or(|s| s.resume.is_none()) => {
                self.session_over(w.from, w.to);
                return true;
            }
            _ => {}
        }
        // Every node in a run is this build: streams resume with sessions.
        if !w.header.is_sequenced(Capabilities::STREAM_RESUME) {
            return true;
        }
        let high = self.high.entry((w.from, w.to)).or_default();
        let cursor = self.cursor.entry((w.tcp, w.from)).or_insert_with(|| {
            // The first such frame of a connection without a Resume frame:
            // a new session, numbered from 0.
            *high = 0;
            0
        });
        let seq = *cursor;
        *cursor += 1;
        if seq < *high {
            return false;
        }
        *high = seq + 1;
        true
    }

    /// `from` no longer holds a session with `to`: its next one counts from 0.
    pub(crate) fn session_over(&mut self, from: ProcId, to: ProcId) {
        self.high.insert((from, to), 0);
    }
}
