//! The session plane's observer: which peers each application was told are
//! up, and what nodes say about themselves in the handshake.
//!
//! Safety:
//! - `PeerUp` only for a peer that is not up, `PeerDown` only for one that is;
//! - the peers the events describe are the node's `peers()`;
//! - a `Hello` carries the writer's own node id and name.
//!
//! Liveness, after healing: every node is connected to each of its
//! neighbours and lists no other peer.

use super::{Cx, Observer, Want, Wire};
use crate::net::ProcId;
use estafeta_core::wire::Header;
use estafeta_core::{Event, Node, NodeId, ProtocolError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The application's picture of its peers, per process.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Peers up (id and name), from events.
    peers: Vec<BTreeMap<NodeId, Arc<str>>>,
}

impl Observer for Session {
    fn on_start(&mut self, _p: ProcId) {
        self.peers.push(BTreeMap::new());
    }

    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        let peers = &mut self.peers[p as usize];
        let broken = match ev {
            Event::PeerUp { peer, .. } => peers
                .insert(peer.id, peer.name.clone())
                .is_some()
                .then(|| format!("PeerUp {peer} while it was already up")),
            Event::PeerDown { peer, .. } => {
                peers.remove(&peer.id).is_none().then(|| format!("PeerDown {peer} that was not up"))
            }
            // Every simulated node is honest: a violation is a bug in one of
            // them. Among others this is the credit invariant: a receiver
            // checks every message against the credit it granted, so no
            // sender ever has more messages in flight on a subscription than
            // it was granted (or this fires with CreditExceeded).
            // Refusals of the secure channel are the security observer's.
            Event::ProtocolViolation {
                error:
                    ProtocolError::Unauthorized(_) | ProtocolError::HandshakeFailed(_) | ProtocolError::SecurityMismatch(_),
                ..
            } => None,
            Event::ProtocolViolation { peer, error, .. } => {
                let who = peer.as_ref().map_or("a peer".to_string(), |p| p.to_string());
                Some(format!("refused {who}: {error}"))
            }
            _ => None,
        };
        if let Some(what) = broken {
            cx.fail(format!("{}: {what}", cx.who(p)));
        }
    }

    fn on_wire(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>) -> Option<u64> {
        if let Header::Hello(h) = w.header {
            let me = &cx.procs[w.from as usize];
            if h.id != me.id.as_u128() || h.name != me.name {
                let claim = format!("{} ({:#})", h.name, NodeId::from_u128(h.id));
                cx.fail(format!("{} sent a Hello as {claim}", cx.who(w.from)));
            }
        }
        None
    }

    fn after_step(&mut self, cx: &mut Cx<'_>, p: ProcId, node: &Node) {
        let view = &self.peers[p as usize];
        if !node.peers().map(|i| i.id).eq(view.keys().copied()) {
            let ids: Vec<String> = node.peers().map(|i| i.to_string()).collect();
            let seen: Vec<String> = view.keys().map(|k| format!("{k:#}")).collect();
            cx.fail(format!("{}: peers {ids:?} but events say {seen:?}", cx.who(p)));
        }
    }

    fn settled(&self, want: &Want<'_>) -> Result<(), String> {
        for (slot, node) in want.nodes.iter().enumerate() {
            let expect: Vec<NodeId> = want.neighbours[slot].iter().map(|o| want.ids[*o]).collect();
            let have: Vec<NodeId> = node.peers().map(|p| p.id).collect();
            // Connected now: a suspended session is not settled (what is
            // published to it waits for a resume that may not come).
            let connected: Vec<NodeId> = node.connected_peers().map(|p| p.id).collect();
            if let Some(w) = expect.iter().find(|w| !connected.contains(w)) {
                return Err(format!("n{slot} is not connected to {w:#}"));
            }
            if let Some(extra) = have.iter().find(|h| !expect.contains(h)) {
                return Err(format!("n{slot} lists a ghost peer {extra:#}"));
            }
        }
        Ok(())
    }
}
