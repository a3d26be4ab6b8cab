//! What the application consumed with [`CreditMode::OnPoll`]: each message
//! or stream reply handed out by `poll_event` frees credit, and finding its
//! plane's per-peer, per-topic (or per-stream) state costs lookups. They are
//! added up while consecutive events come from one source and reported to
//! the plane once per run: when the source changes, when the event queue
//! empties, and before anything else the node does (every call that takes
//! the time, and the planes' handles). A grant due leaves with the next pull
//! of bytes, so a run reported before that pull loses no time.

use super::Node;
use crate::config::{Config, CreditMode};
use crate::event::Event;
use crate::id::{NodeId, Topic};
use crate::pubsub::PubSubEvent;
use crate::streams::{StreamEvent, StreamId};

/// Consumption not yet reported to its plane.
#[derive(Debug, Default)]
pub(super) enum Unreported {
    /// Nothing is waiting.
    #[default]
    Nothing,
    /// Messages of `peer` on `topic`.
    PubSub { peer: NodeId, topic: Topic, msgs: u64, bytes: u64 },
    /// Replies on `stream`.
    Stream { stream: StreamId, msgs: u64, bytes: u64 },
}

/// Counts `ev` as consumed if it is a message or a reply and its plane
/// counts consumption on poll: in the run `unreported` holds if it is of
/// that run; otherwise returns the run it starts (report the old one first).
pub(super) fn count(unreported: &mut Unreported, cfg: &Config, ev: &Event) -> Option<Unreported> {
    match ev {
        Event::PubSub(PubSubEvent::Message(m)) if cfg.pubsub.credit == CreditMode::OnPoll => {
            count_pubsub(unreported, &m.from.id, &m.topic, 1, m.payload.len() as u64)
        }
        Event::PubSub(PubSubEvent::Messages(run)) if cfg.pubsub.credit == CreditMode::OnPoll => {
            count_pubsub(unreported, &run.from.id, &run.topic, run.len() as u64, run.payload_bytes())
        }
        Event::Stream(StreamEvent::Data { stream, payload }) if cfg.streams.credit == CreditMode::OnPoll => {
            let len = payload.len() as u64;
            if let Unreported::Stream { stream: s, msgs, bytes } = unreported {
                if s == stream {
                    *msgs += 1;
                    *bytes += len;
                    return None;
                }
            }
            Some(Unreported::Stream { stream: *stream, msgs: 1, bytes: len })
        }
        _ => None,
    }
}

/// [`count`] for `n` messages of `from` on `t`, `len` payload bytes.
fn count_pubsub(unreported: &mut Unreported, from: &NodeId, t: &Topic, n: u64, len: u64) -> Option<Unreported> {
    if let Unreported::PubSub { peer, topic, msgs, bytes } = unreported {
        if peer == from && topic.same(t) {
            *msgs += n;
            *bytes += len;
            return None;
        }
    }
    Some(Unreported::PubSub { peer: *from, topic: t.clone(), msgs: n, bytes: len })
}

impl Node {
    /// Reports what waits to its plane; a grant that becomes due wakes its
    /// connection.
    #[inline]
    pub(super) fn report_consumed(&mut self) {
        if !matches!(self.unreported, Unreported::Nothing) {
            self.report_unreported();
        }
    }

    fn report_unreported(&mut self) {
        let conn = match std::mem::take(&mut self.unreported) {
            Unreported::Nothing => return,
            Unreported::PubSub { peer, topic, msgs, bytes } => self.pubsub.consumed(peer, &topic, msgs, bytes),
            Unreported::Stream { stream, msgs, bytes } => self.streams.consumed(stream, msgs, bytes),
        };
        if let Some(conn) = conn {
            self.session.ready.insert(conn);
        }
    }
}
