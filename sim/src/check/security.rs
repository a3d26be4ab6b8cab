//! The security observer: the actors of a secure run stay out.
//!
//! - an impostor, a man in the middle and a plaintext peer never see a peer
//!   up and never receive a message (an impostor up at an honest node would
//!   see that node's Hello: it is up there as its victim);
//! - an honest machine never has an actor's own id up, and every peer up at
//!   an honest machine is authenticated (allow list, pin or network key);
//! - a plaintext peer and its counterparts count the refusal.

use super::{Cx, Observer};
use crate::net::ProcId;
use crate::security::{identity_of, Actor, SimSecurity};
use estafeta_core::{Event, NodeId, ProtocolError, PubSubEvent};
use std::collections::BTreeMap;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Security {
    actors: BTreeMap<usize, Actor>,
    /// The actors' own ids.
    actor_ids: BTreeMap<NodeId, usize>,
}

impl Security {
    /// The run's actors.
    pub(crate) fn setup(&mut self, seed: u64, sec: &SimSecurity) {
        for (slot, actor) in &sec.actors {
            self.actors.insert(*slot, *actor);
            self.actor_ids.insert(identity_of(seed, *slot).node_id(), *slot);
        }
    }
}

impl Observer for Security {
    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        let refusal = matches!(
            ev,
            Event::ProtocolViolation {
                error: ProtocolError::Unauthorized(_)
                    | ProtocolError::HandshakeFailed(_)
                    | ProtocolError::SecurityMismatch(_),
                ..
            }
        );
        if self.actors.is_empty() {
            // Without actors every node is honest: nobody is refused.
            if refusal {
                cx.fail(format!("{}: {ev:?}", cx.who(p)));
            }
            return;
        }
        let slot = cx.procs[p as usize].slot;
        match (self.actors.get(&slot), ev) {
            (Some(actor), Event::PeerUp { peer, .. }) => {
                cx.fail(format!("{actor:?} n{slot} got in: {peer} is up at it"));
            }
            (Some(actor), Event::PubSub(PubSubEvent::Message(m))) => {
                cx.fail(format!("{actor:?} n{slot} received a message from {}", m.from));
            }
            (None, Event::PeerUp { peer, authenticated, .. }) => {
                if let Some(a) = self.actor_ids.get(&peer.id) {
                    cx.fail(format!("n{slot} has actor n{a} up as {peer}"));
                }
                if !authenticated {
                    cx.fail(format!("n{slot} has {peer} up unauthenticated"));
                }
            }
            _ => {}
        }
    }
}
