//! The transfer tests' shared setup: a sender and receivers over the
//! in-memory network, each with an in-memory disk, and readers of what
//! each node reported.

use super::{config_with, Net};
use estafeta_core::transfer::{Direction, MemFs, Received, SendOptions};
use estafeta_core::{Bytes, Config, Event, Node, NodeId, TransferEvent};
use std::path::Path;
use std::time::Duration;

pub const TOPIC: &str = "files";
pub const DIR: &str = "/in";
pub const CHUNK: u32 = 16 << 10;
pub const WINDOW: u32 = 8;
pub const WINDOW_BYTES: u64 = CHUNK as u64 * WINDOW as u64;

pub fn cfg(seed: u64) -> Config {
    config_with(seed, |c| {
        c.transfer.window_chunks = WINDOW;
        c.transfer.chunk_size = CHUNK;
        c.transfer.read_size = 32 << 10;
        c.transfer.max_in_flight = 48 << 10;
        c.transfer.peer_timeout = Duration::from_secs(3);
    })
}

/// Deterministic content.
pub fn content(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

pub fn receiver(seed: u64, id: u128, name: &str) -> Node {
    let mut n = Node::with_id(cfg(seed), NodeId::from_u128(id), name).unwrap();
    n.pubsub().subscribe(TOPIC).unwrap();
    n.transfer().receive(TOPIC, DIR).unwrap();
    n
}

/// Node 0 sends; nodes 1..=n receive into `/in`; node 0 dials each.
pub fn net(receivers: usize) -> Net {
    let mut nodes = vec![Node::with_id(cfg(100), NodeId::from_u128(100), "sender").unwrap()];
    for i in 1..=receivers {
        nodes.push(receiver(i as u64, i as u128, &format!("r{i}")));
    }
    let mut net = Net::new(nodes);
    for i in 1..=receivers {
        net.node(0).connect(Net::addr(i)).unwrap();
    }
    net.run_for(Duration::from_millis(300));
    net
}

pub fn opts() -> SendOptions {
    SendOptions { chunk_size: Some(CHUNK), ..Default::default() }
}

pub fn transfer_events(net: &Net, i: usize) -> Vec<TransferEvent> {
    // Crashed instances first, then the current one.
    net.retired
        .iter()
        .filter(|r| r.slot == i)
        .flat_map(|r| r.events.iter())
        .chain(net.slots[i].events.iter())
        .filter_map(|e| match e {
            Event::Transfer(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

pub fn received(net: &Net, i: usize) -> Vec<Received> {
    transfer_events(net, i)
        .into_iter()
        .filter_map(|e| match e {
            TransferEvent::Received(r) => Some(*r),
            _ => None,
        })
        .collect()
}

pub fn failures(net: &Net, i: usize) -> Vec<String> {
    transfer_events(net, i)
        .into_iter()
        .filter_map(|e| match e {
            TransferEvent::Failed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

pub fn delivered(net: &Net, i: usize) -> usize {
    transfer_events(net, i).iter().filter(|e| matches!(e, TransferEvent::Delivered { .. })).count()
}

/// Synced bytes the receiver `i` reported last.
pub fn progress(net: &Net, i: usize) -> u64 {
    transfer_events(net, i)
        .iter()
        .filter_map(|e| match e {
            TransferEvent::Progress { bytes, direction: Direction::Incoming, .. } => Some(*bytes),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Steps the network (no time passes) until receiver `i` synced at least `bytes`.
pub fn run_until_progress(net: &mut Net, i: usize, bytes: u64) {
    for _ in 0..100_000 {
        if progress(net, i) >= bytes {
            return;
        }
        if !net.step() {
            net.run_for(Duration::from_millis(10));
        }
    }
    panic!("receiver {i} never reached {bytes} bytes");
}

pub fn file<'a>(fs: &'a MemFs, name: &str) -> Option<&'a [u8]> {
    fs.read(&Path::new(DIR).join(name))
}

/// Files other than the final ones: partials and sidecars.
pub fn leftovers(fs: &MemFs) -> Vec<String> {
    fs.paths().map(|p| p.display().to_string()).filter(|p| p.contains(".part")).collect()
}
