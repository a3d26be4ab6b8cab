//! What a publish should do, from the events the publishing application
//! saw: the peers it reaches, or the error it gets.

use super::{Mode, PeerView, PubSub};
use crate::net::ProcId;
use estafeta_core::{NodeId, PeerRef};
use std::collections::BTreeSet;

impl PubSub {
    /// Who the application of `p` expects a publish on `topic` to reach,
    /// from the events it saw, or the error it expects.
    pub(super) fn expect(&self, p: ProcId, topic: usize, mode: &Mode) -> Result<BTreeSet<NodeId>, &'static str> {
        let view = &self.procs[p as usize].view;
        let subs: BTreeSet<NodeId> = self.subscribers(p, topic).collect();
        match mode {
            Mode::All | Mode::RoundRobin if subs.is_empty() => Err("NoSubscribers"),
            Mode::All | Mode::RoundRobin => Ok(subs),
            Mode::To(target) => {
                let ids: Vec<NodeId> = match target {
                    PeerRef::Id(id) => view.contains_key(id).then_some(*id).into_iter().collect(),
                    PeerRef::Name(n) => {
                        // A connected peer of that name first, as the core resolves.
                        let named = |only_connected: bool| -> Vec<NodeId> {
                            let fits = |v: &PeerView| *v.name == **n && (v.connected || !only_connected);
                            view.iter().filter(|(_, v)| fits(v)).map(|(id, _)| *id).collect()
                        };
                        let connected = named(true);
                        if connected.is_empty() {
                            named(false)
                        } else {
                            connected
                        }
                    }
                };
                match ids.as_slice() {
                    [] => Err("UnknownPeer"),
                    [id] if subs.contains(id) => Ok([*id].into()),
                    [_] => Err("NotSubscribed"),
                    _ => Err("AmbiguousPeer"),
                }
            }
        }
    }
}
