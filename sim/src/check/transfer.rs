//! The transfer plane's checker.
//!
//! Safety, as things happen:
//! - a file under its final name equals its source: when a node reports
//!   `Received`, the file at its path on the machine's disk hashes to the
//!   hash the sending application sent;
//! - progress is monotone between two starts of one transfer;
//! - every failure has a reason;
//! - bytes sent again after a resume are at most one credit window: for each
//!   (sender machine, receiver machine, content), a `Start` below the highest
//!   byte already sent re-sends at most the window;
//! - memory per transfer stays within its window (after every step).
//!
//! Liveness after healing: no node has a transfer in progress (each reached
//! received/delivered or failed with a reason).

use super::{Cx, Observer, Want, Wire};
use crate::net::ProcId;
use estafeta_core::transfer::{Direction, Received};
use estafeta_core::wire::transfer::TransferFrame;
use estafeta_core::wire::Header;
use estafeta_core::{Event, Node, NodeId, TransferEvent};
use std::collections::BTreeMap;

/// What the transfer checker saw; `Default` is empty.
#[derive(Debug, Default)]
pub(crate) struct Transfer {
    /// Sources the applications sent: (sender node id, transfer id) → hash.
    sources: BTreeMap<(NodeId, u64), [u8; 32]>,
    /// Offers seen on the wire: (sender proc, transfer id) → hash.
    offers: BTreeMap<(ProcId, u64), [u8; 32]>,
    /// Highest byte end sent, per (sender slot, receiver slot, content).
    high: BTreeMap<(usize, usize, [u8; 32]), u64>,
    /// Last progress per (proc, peer, id, direction).
    progress: BTreeMap<(ProcId, NodeId, u64, Direction), u64>,
    /// The window each receiver grants, in bytes.
    pub(crate) window: u64,
    /// Files received and checked, sends, bytes re-sent after resumes.
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) resent: u64,
    pub(crate) failed: u64,
}

impl Transfer {
    /// The application of process `p` (node `id`) sent transfer `t` with `hash`.
    pub(crate) fn on_send(&mut self, id: NodeId, t: u64, hash: [u8; 32]) {
        self.sources.insert((id, t), hash);
        self.sent += 1;
    }

    /// Process `p` reported `r`; `on_disk` is the hash of the file at its path.
    pub(crate) fn on_file(&mut self, cx: &mut Cx<'_>, p: ProcId, r: &Received, on_disk: Option<[u8; 32]>) {
        self.received += 1;
        let who = cx.who(p);
        match self.sources.get(&(r.peer.id, r.id)) {
            Some(h) if *h != r.hash => {
                cx.fail(format!("{who}: received {} with a hash its sender did not send", r.name))
            }
            _ => {}
        }
        if on_disk != Some(r.hash) {
            cx.fail(format!("{who}: {} under its final name does not match its source", r.path.display()));
        }
    }
}

impl Observer for Transfer {
    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        let Event::Transfer(t) = ev else { return };
        match t {
            TransferEvent::Started { peer, id, direction, .. } => {
                self.progress.remove(&(p, peer.id, *id, *direction));
            }
            TransferEvent::Progress { peer, id, direction, bytes, total } => {
                if bytes > total {
                    cx.fail(format!("{}: progress {bytes} past the size {total}", cx.who(p)));
                }
                let last = self.progress.entry((p, peer.id, *id, *direction)).or_default();
                if *bytes < *last {
                    cx.fail(format!("{}: progress of transfer {id:x} went back from {last} to {bytes}", cx.who(p)));
                }
                *last = *bytes;
            }
            TransferEvent::Failed { reason, .. } => {
                self.failed += 1;
                if reason.is_empty() {
                    cx.fail(format!("{}: a transfer failed without a reason", cx.who(p)));
                }
            }
            TransferEvent::Offered(_) | TransferEvent::Received(_) | TransferEvent::Delivered { .. } => {}
        }
    }

    fn on_wire(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>) -> Option<u64> {
        let Header::Transfer(f) = w.header else { return None };
        let (from, to) = (cx.procs[w.from as usize].slot, cx.procs[w.to as usize].slot);
        match f {
            TransferFrame::Offer { id, hash, .. } => {
                self.offers.insert((w.from, *id), *hash);
            }
            TransferFrame::Chunk { id, offset } => {
                let hash = self.offers.get(&(w.from, *id))?;
                let h = self.high.entry((from, to, *hash)).or_default();
                *h = (*h).max(offset + w.payload.len() as u64);
            }
            TransferFrame::Start { id, offset } => {
                let hash = self.offers.get(&(w.from, *id))?;
                let high = self.high.get(&(from, to, *hash)).copied().unwrap_or(0);
                if *offset < high {
                    let again = high - offset;
                    self.resent += again;
                    if again > self.window {
                        cx.fail(format!(
                            "{} resumes transfer {id:x} to {} at {offset}: {again} bytes again, more than one window ({})",
                            cx.who(w.from),
                            cx.who(w.to),
                            self.window
                        ));
                    }
                }
            }
            _ => {}
        }
        None
    }

    fn after_step(&mut self, cx: &mut Cx<'_>, p: ProcId, node: &Node) {
        let (held, window) = node.transfer_ref().max_held();
        if held > window {
            cx.fail(format!("{}: a transfer holds {held} bytes, more than its window {window}", cx.who(p)));
        }
    }

    fn settled(&self, want: &Want<'_>) -> Result<(), String> {
        for (slot, node) in want.nodes.iter().enumerate() {
            let t = node.transfer_ref();
            if t.outgoing() > 0 || t.incoming() > 0 {
                return Err(format!("n{slot} has {} outgoing and {} incoming transfers", t.outgoing(), t.incoming()));
            }
        }
        Ok(())
    }
}
