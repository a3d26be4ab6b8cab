//! What the agenda holds ([`Ev`]) and the kinds of trace records ([`kind`]).
//! Both sit below the simulator: the layers that schedule events and write
//! the trace (host, network, faults, applications) name them without
//! knowing `Sim`.

use crate::fault::Fault;
use crate::net::{NetEv, ProcId};

/// Trace record kinds (hashed with their fields).
pub(crate) mod kind {
    pub const NET: u64 = 1;
    pub const WAKE: u64 = 2;
    pub const TIMER: u64 = 3;
    pub const FAULT: u64 = 5;
    pub const WRITE: u64 = 6;
    pub const READ: u64 = 7;
    pub const ACT: u64 = 8;
    pub const EVENT: u64 = 9;
    pub const INPUT: u64 = 10;
    pub const PUBLISH: u64 = 11;
    pub const COMMAND: u64 = 12;
}

/// Something scheduled on the agenda.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    Net(NetEv),
    /// The node's driver looks at its sockets.
    Wake {
        slot: usize,
        proc: ProcId,
    },
    /// The node's deadline.
    Timer {
        slot: usize,
        proc: ProcId,
        gen: u64,
    },
    /// The node's application does its next thing.
    App {
        slot: usize,
        proc: ProcId,
    },
    /// A scheduled fault.
    Fault(Fault),
}

/// The words a network event adds to the trace hash.
pub(crate) fn net_words(e: &NetEv) -> [u64; 3] {
    match *e {
        NetEv::Arrive { tcp, dir, .. } => [1, tcp as u64, dir as u64],
        NetEv::Credit { tcp, dir, bytes } => [2, tcp as u64, ((dir as u64) << 32) | bytes as u64],
        NetEv::Syn { dial } => [3, dial as u64, 0],
        NetEv::SynAck { dial, tcp } => [4, dial as u64, tcp.map_or(u64::MAX, |t| t as u64)],
        NetEv::DialTimeout { dial } => [5, dial as u64, 0],
    }
}
