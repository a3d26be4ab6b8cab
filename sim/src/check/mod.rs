//! The oracle: what every node was asked to do, what it wrote on the wire and
//! what it told its application, checked by one observer per plane.
//!
//! The [`Oracle`] keeps what every plane shares (the processes: machine, node
//! id, name, crash time) and the broken invariants, and hands each observer,
//! in dispatch order:
//! - every event a node emits to its application ([`Observer::on_event`]);
//! - every frame a node hands to a connection, as the wire tap parsed it
//!   ([`Observer::on_wire`]), and later the moment the receiver has read a
//!   frame the observer watches whole ([`Observer::on_fed`]);
//! - the node itself after every drain that left its application in sync
//!   ([`Observer::after_step`]).
//!
//! These are the safety checks, made as things happen; a broken one fails the
//! run at the end of the step. After healing, [`Observer::settled`] is the
//! liveness check; at the end, with the network quiet, [`Observer::at_end`]
//! accounts for everything the plane started.
//!
//! Planes: `session.rs` (peers up and down, handshakes), `pubsub.rs`
//! (messages, the subscriber index, the accounting of every message),
//! `discovery.rs` (requests, the connection limit, relayed messages). A new
//! plane adds its file, its `mod` line and one line to the `planes!` list
//! below.

mod discovery;
mod membership;
mod pubsub;
pub(crate) mod security;
mod session;
mod streams;
mod transfer;
mod wire_seq;

pub use pubsub::Accounting;
pub(crate) use pubsub::Mode;
pub(crate) use streams::number_of as stream_number;

use crate::net::{Net, ProcId, TcpId};
use crate::tap::Watch;
use crate::trace::fmt_time;
use bytes::Bytes;
use estafeta_core::wire::Header;
use estafeta_core::{Event, Node, NodeId};
use std::collections::BTreeSet;

/// One plane's checker. Each keeps its own records per process, reports
/// broken invariants with [`Cx::fail`], and implements only what it checks.
pub(crate) trait Observer {
    /// Process `p` started; its records start empty.
    fn on_start(&mut self, _p: ProcId) {}

    /// The node of process `p` emitted `ev` to its application.
    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event);

    /// A node handed a whole frame to a connection. Returning a key asks for
    /// [`Observer::on_fed`] with it once the receiver has read the frame.
    fn on_wire(&mut self, _cx: &mut Cx<'_>, _w: &Wire<'_>) -> Option<u64> {
        None
    }

    /// Process `to` has read the whole frame [`Observer::on_wire`] returned
    /// `key` for, from `tcp`.
    fn on_fed(&mut self, _cx: &mut Cx<'_>, _to: ProcId, _tcp: TcpId, _key: u64) {}

    /// A drain of process `p`'s node left no event behind: the application
    /// saw everything, so what its events said must equal the node's state.
    fn after_step(&mut self, _cx: &mut Cx<'_>, _p: ProcId, _node: &Node) {}

    /// Liveness after healing: `Ok` once this plane has settled as the
    /// applications asked, else what is still missing.
    fn settled(&self, _want: &Want<'_>) -> Result<(), String> {
        Ok(())
    }

    /// This plane's frames still travelling on live connections (the run
    /// waits for them to land before the accounting).
    fn in_transit(&self, _net: &Net) -> usize {
        0
    }

    /// The end of the run, with the network quiet: account for everything
    /// this plane started, and fail what is unexplained.
    fn at_end(&mut self, _cx: &mut Cx<'_>, _net: &Net) {}
}

/// Declares [`Planes`]: one observer per plane, in dispatch order.
macro_rules! planes {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// One observer per plane.
        #[derive(Debug, Default)]
        pub(crate) struct Planes {
            $($(#[$doc])* pub(crate) $name: $ty,)*
        }

        impl Planes {
            /// Calls `f` with each observer and its index, in dispatch order.
            #[allow(unused_assignments)]
            fn each_mut(&mut self, mut f: impl FnMut(usize, &mut dyn Observer)) {
                let mut i = 0;
                $(
                    f(i, &mut self.$name);
                    i += 1;
                )*
            }

            /// Calls `f` with each observer, in dispatch order.
            fn each(&self, mut f: impl FnMut(&dyn Observer)) {
                $(f(&self.$name);)*
            }
        }
    };
}

planes! {
    /// Peers up and down, handshakes.
    session: session::Session,
    /// Messages, the subscriber index, the accounting of every message.
    pubsub: pubsub::PubSub,
    /// Streams: one terminal per side, matching codes, credit on the wire.
    streams: streams::Streams,
    /// Group reports: one holder per index, epochs only increase.
    membership: membership::Membership,
    /// Requests, the connection limit, relayed messages.
    discovery: discovery::Discovery,
    /// Files: final files equal their source, monotone progress, bytes
    /// re-sent after a resume within one window, memory within the window.
    transfer: transfer::Transfer,
    /// Impostors, men in the middle and plaintext peers stay out.
    security: security::Security,
}

/// One process incarnation of a node, as every plane sees it.
#[derive(Clone, Debug)]
pub(crate) struct Proc {
    pub(crate) slot: usize,
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) crashed: Option<u64>,
}

/// What an observer is handed: the time, the processes and topics, and where
/// to report a broken invariant.
pub(crate) struct Cx<'a> {
    pub(crate) now: u64,
    pub(crate) procs: &'a [Proc],
    pub(crate) topics: &'a [String],
    violations: &'a mut Vec<String>,
}

impl Cx<'_> {
    /// Records a broken invariant, stamped with the time.
    pub(crate) fn fail(&mut self, what: String) {
        self.violations.push(format!("{}: {what}", fmt_time(self.now)));
    }

    /// Process `p` for reports: `name#proc(id)`.
    pub(crate) fn who(&self, p: ProcId) -> String {
        let r = &self.procs[p as usize];
        format!("{}#{p}({:#})", r.name, r.id)
    }

    pub(crate) fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == name)
    }
}

/// A frame a node handed to a connection, as the wire tap parsed it.
pub(crate) struct Wire<'a> {
    /// The writer's process.
    pub(crate) from: ProcId,
    /// The process at the other end of the connection.
    pub(crate) to: ProcId,
    pub(crate) tcp: TcpId,
    pub(crate) header: &'a Header<'a>,
    pub(crate) payload: &'a Bytes,
}

/// What the applications asked for, for the liveness check after healing.
/// Every node runs (checked before).
pub(crate) struct Want<'a> {
    /// Per machine: its node.
    pub(crate) nodes: Vec<&'a Node>,
    /// Per machine: its node id.
    pub(crate) ids: Vec<NodeId>,
    /// Per machine: the machines it should be connected to.
    pub(crate) neighbours: &'a [Vec<usize>],
    /// Per machine: the topics its application subscribes to.
    pub(crate) subs: Vec<&'a BTreeSet<usize>>,
    pub(crate) topics: &'a [String],
}

/// Everything the oracle knows.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    topics: Vec<String>,
    procs: Vec<Proc>,
    pub(crate) planes: Planes,
    pub(crate) violations: Vec<String>,
}

impl Oracle {
    pub(crate) fn new(topics: Vec<String>) -> Oracle {
        Oracle { topics, ..Default::default() }
    }

    /// The planes, with a context at `now`.
    fn split(&mut self, now: u64) -> (Cx<'_>, &mut Planes) {
        let Oracle { topics, procs, planes, violations } = self;
        (Cx { now, procs, topics, violations }, planes)
    }

    /// The pub/sub observer, for the commands that tell it what was asked.
    pub(crate) fn pubsub(&mut self, now: u64) -> (&mut pubsub::PubSub, Cx<'_>) {
        let (cx, planes) = self.split(now);
        (&mut planes.pubsub, cx)
    }

    /// The membership observer, for the per-step check of every report.
    pub(crate) fn membership(&mut self, now: u64) -> (&mut membership::Membership, Cx<'_>) {
        let (cx, planes) = self.split(now);
        (&mut planes.membership, cx)
    }

    /// The discovery observer, for the commands that tell it what was asked.
    pub(crate) fn discovery(&mut self) -> &mut discovery::Discovery {
        &mut self.planes.discovery
    }

    /// The transfer observer, for the commands that tell it what was sent.
    pub(crate) fn transfer(&mut self) -> &mut transfer::Transfer {
        &mut self.planes.transfer
    }

    /// Process `p` reported a received file whose content on disk hashes to `on_disk`.
    pub(crate) fn on_file(
        &mut self,
        now: u64,
        p: ProcId,
        r: &estafeta_core::transfer::Received,
        on_disk: Option<[u8; 32]>,
    ) {
        let (mut cx, planes) = self.split(now);
        planes.transfer.on_file(&mut cx, p, r, on_disk);
    }

    /// A process started on `slot` with node id `id`.
    pub(crate) fn new_proc(&mut self, slot: usize, id: NodeId, name: &str) -> ProcId {
        self.procs.push(Proc { slot, id, name: name.to_string(), crashed: None });
        let p = (self.procs.len() - 1) as ProcId;
        self.planes.each_mut(|_, o| o.on_start(p));
        p
    }

    /// The machine process `p` runs on.
    pub(crate) fn slot_of(&self, p: ProcId) -> usize {
        self.procs[p as usize].slot
    }

    pub(crate) fn crashed(&mut self, p: ProcId, now: u64) {
        self.procs[p as usize].crashed = Some(now);
    }

    /// Process `p`'s node emitted `ev` to its application.
    pub(crate) fn on_event(&mut self, now: u64, p: ProcId, ev: &Event) {
        let (mut cx, planes) = self.split(now);
        planes.each_mut(|_, o| o.on_event(&mut cx, p, ev));
    }

    /// Process `from` handed a frame to `tcp`, whose other end is `to`.
    /// Returns the watches observers asked for.
    pub(crate) fn on_wire(
        &mut self,
        now: u64,
        from: ProcId,
        tcp: TcpId,
        to: ProcId,
        header: &Header<'_>,
        payload: &Bytes,
    ) -> Vec<Watch> {
        let (mut cx, planes) = self.split(now);
        let w = Wire { from, to, tcp, header, payload };
        let mut watches = Vec::new();
        planes.each_mut(|i, o| watches.extend(o.on_wire(&mut cx, &w).map(|key| (i, key))));
        watches
    }

    /// True if machine `slot` runs a security actor (impostor, man in the
    /// middle, plaintext peer).
    pub(crate) fn is_actor(&self, slot: usize) -> bool {
        self.planes.security.is_actor(slot)
    }

    /// Honest process `p` processed input from actor process `from`, and
    /// lost the peers `lost` in it.
    pub(crate) fn after_actor_input(&mut self, now: u64, p: ProcId, from: ProcId, lost: &[NodeId]) {
        let (mut cx, planes) = self.split(now);
        planes.security.after_actor_input(&mut cx, p, from, lost);
    }

    /// Process `to` has read a watched frame whole.
    pub(crate) fn on_fed(&mut self, now: u64, to: ProcId, tcp: TcpId, (plane, key): Watch) {
        let (mut cx, planes) = self.split(now);
        planes.each_mut(|i, o| {
            if i == plane {
                o.on_fed(&mut cx, to, tcp, key);
            }
        });
    }

    /// After a drain that left no event behind: the application's picture
    /// and the counters must equal the node's state.
    pub(crate) fn after_step(&mut self, now: u64, p: ProcId, node: &Node) {
        let (mut cx, planes) = self.split(now);
        planes.each_mut(|_, o| o.after_step(&mut cx, p, node));
    }

    /// `Ok` once every plane has settled.
    pub(crate) fn settled(&self, want: &Want<'_>) -> Result<(), String> {
        let mut r = Ok(());
        self.planes.each(|o| {
            if r.is_ok() {
                r = o.settled(want);
            }
        });
        r
    }

    /// Frames of every plane still travelling on live connections.
    pub(crate) fn in_transit(&self, net: &Net) -> usize {
        let mut n = 0;
        self.planes.each(|o| n += o.in_transit(net));
        n
    }

    /// Every plane accounts for what it started; returns the fate of every
    /// message.
    pub(crate) fn account(&mut self, now: u64, net: &Net) -> Accounting {
        let (mut cx, planes) = self.split(now);
        planes.each_mut(|_, o| o.at_end(&mut cx, net));
        self.planes.pubsub.accounting.clone()
    }

    /// Machines (slots) that received message `g`.
    pub(crate) fn delivered_to(&self, g: u64) -> Vec<usize> {
        self.planes.pubsub.delivered_to(g).map(|p| self.procs[p as usize].slot).collect()
    }
}
