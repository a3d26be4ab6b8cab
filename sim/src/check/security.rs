//! The security observer: the actors of a secure run stay out.
//!
//! - an impostor, a man in the middle and a plaintext peer never see a peer
//!   up and never receive a message (an impostor up at an honest node would
//!   see that node's Hello: it is up there as its victim);
//! - an honest machine never has an actor's own id up, and every peer up at
//!   an honest machine is authenticated (allow list, pin or network key);
//! - a plaintext peer and its counterparts count the refusal;
//! - an actor never ends an honest node's session with anyone (the
//!   impostor of today's hole ended its victim's): bytes an honest node
//!   reads from an actor, and the close of an actor's socket, leave every
//!   peer it had up still up (the driver takes the node's peers right
//!   before and right after the input; timers never run inside it).

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

impl Security {
    /// True if machine `slot` runs an actor.
    pub(crate) fn is_actor(&self, slot: usize) -> bool {
        self.actors.contains_key(&slot)
    }

    /// Honest process `p` processed input from actor process `from`:
    /// `lost` are the peers that were up before and are not after.
    pub(crate) fn after_actor_input(&mut self, cx: &mut Cx<'_>, p: ProcId, from: ProcId, lost: &[NodeId]) {
        let slot = cx.procs[from as usize].slot;
        let Some(actor) = self.actors.get(&slot) else { return };
        for id in lost {
            cx.fail(format!("{actor:?} n{slot} ended the session of {id} at {}", cx.who(p)));
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
