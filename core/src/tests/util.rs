//! A tiny in-memory network: nodes joined by instant byte pipes, driven with
//! the production [`Drain`]. Node `i` "listens" on port `i`.

use crate::*;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub(crate) enum Wire {
    Bytes(Vec<u8>),
    Closed,
}

pub(crate) struct Net {
    pub nodes: Vec<Node>,
    drains: Vec<Drain>,
    pub now: Timestamp,
    /// (node, conn) -> (node, conn)
    pipes: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    inflight: VecDeque<(usize, ConnId, Wire)>,
    pub events: Vec<Vec<Event>>,
    dials: VecDeque<(usize, ConnId, PeerAddr)>,
    /// Nodes that are down: dials to them are refused.
    pub down: Vec<bool>,
    /// Per-node cap on events held by the "application" (None: unbounded).
    pub app_cap: Vec<Option<usize>>,
}

struct NetSink<'a> {
    me: usize,
    pipes: &'a BTreeMap<(usize, ConnId), (usize, ConnId)>,
    inflight: &'a mut VecDeque<(usize, ConnId, Wire)>,
    events: &'a mut Vec<Event>,
    dials: &'a mut VecDeque<(usize, ConnId, PeerAddr)>,
    closed: Vec<ConnId>,
    cap: Option<usize>,
}

impl Sink for NetSink<'_> {
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        match self.pipes.get(&(self.me, conn)) {
            Some(&(n, c)) => {
                self.inflight.push_back((n, c, Wire::Bytes(bytes.to_vec())));
                WriteOutcome::Wrote(bytes.len())
            }
            None => WriteOutcome::Failed("no pipe".into()),
        }
    }
    fn act(&mut self, action: Action) {
        match action {
            Action::Dial { conn, addr } => self.dials.push_back((self.me, conn, addr)),
            Action::Close { conn } => {
                if let Some(&(n, c)) = self.pipes.get(&(self.me, conn)) {
                    self.inflight.push_back((n, c, Wire::Closed));
                }
                self.closed.push(conn);
            }
        }
    }
    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        if self.cap.is_some_and(|cap| self.events.len() >= cap) {
            return Err(event);
        }
        self.events.push(event);
        Ok(())
    }
}

pub(crate) fn fast_config(seed: u64) -> Config {
    Config {
        seed,
        heartbeat_interval: Duration::from_millis(100),
        liveness_timeout: Duration::from_millis(400),
        handshake_timeout: Duration::from_millis(500),
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(400),
        ..Config::default()
    }
}

impl Net {
    pub fn new(names: &[&str], cfg: impl Fn(usize) -> Config) -> Net {
        let nodes: Vec<Node> =
            names.iter().enumerate().map(|(i, n)| Node::new(cfg(i), n).expect("valid config")).collect();
        let k = nodes.len();
        Net {
            nodes,
            drains: (0..k).map(|_| Drain::default()).collect(),
            now: Timestamp::from_millis(1),
            pipes: BTreeMap::new(),
            inflight: VecDeque::new(),
            events: vec![Vec::new(); k],
            dials: VecDeque::new(),
            down: vec![false; k],
            app_cap: vec![None; k],
        }
    }

    pub fn addr(i: usize) -> PeerAddr {
        PeerAddr::new("mem", i as u16)
    }

    /// Runs until nothing is in flight at the current time.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                if self.down[i] {
                    continue;
                }
                let mut sink = NetSink {
                    me: i,
                    pipes: &self.pipes,
                    inflight: &mut self.inflight,
                    events: &mut self.events[i],
                    dials: &mut self.dials,
                    closed: Vec::new(),
                    cap: self.app_cap[i],
                };
                let step = self.drains[i].run(&mut self.nodes[i], self.now, &mut sink);
                busy |= step == Step::Yield;
                for c in sink.closed {
                    self.pipes.remove(&(i, c));
                }
            }
            while let Some((i, conn, addr)) = self.dials.pop_front() {
                busy = true;
                let j = addr.port as usize;
                if j >= self.nodes.len() || self.down[j] {
                    self.nodes[i].handle_closed(self.now, conn, CloseReason::Io("refused".into()));
                    continue;
                }
                match self.nodes[j].handle_accepted(self.now) {
                    Ok(cj) => {
                        self.pipes.insert((i, conn), (j, cj));
                        self.pipes.insert((j, cj), (i, conn));
                        self.nodes[i].handle_connected(self.now, conn);
                    }
                    Err(_) => self.nodes[i].handle_closed(self.now, conn, CloseReason::Io("refused".into())),
                }
            }
            while let Some((n, c, w)) = self.inflight.pop_front() {
                busy = true;
                if self.down[n] {
                    continue;
                }
                match w {
                    Wire::Bytes(b) => self.nodes[n].handle_bytes(self.now, c, &b),
                    Wire::Closed => {
                        self.pipes.remove(&(n, c));
                        self.nodes[n].handle_closed(self.now, c, CloseReason::Io("eof".into()))
                    }
                }
            }
            if !busy {
                return;
            }
        }
        panic!("livelock: network did not settle");
    }

    /// Advances virtual time to `t`, firing deadlines on the way.
    pub fn run_until(&mut self, t: Timestamp) {
        self.settle();
        loop {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.down[*i])
                .filter_map(|(_, n)| n.poll_timeout())
                .min();
            match next {
                Some(d) if d <= t => {
                    self.now = self.now.max(d);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = t;
        self.settle();
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Kills node `i`'s connections abruptly (as a crashed process's sockets would).
    pub fn crash(&mut self, i: usize) {
        self.down[i] = true;
        let mine: Vec<_> = self.pipes.iter().filter(|((n, _), _)| *n == i).map(|(k, v)| (*k, *v)).collect();
        for (k, (n, c)) in mine {
            self.pipes.remove(&k);
            self.pipes.remove(&(n, c));
            self.nodes[n].handle_closed(self.now, c, CloseReason::Io("reset".into()));
        }
    }

    pub fn restart(&mut self, i: usize, node: Node) {
        self.nodes[i] = node;
        self.drains[i] = Drain::default();
        self.down[i] = false;
    }

    pub fn messages(&self, i: usize) -> Vec<(String, Vec<u8>)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some((m.from.name.to_string(), m.payload.to_vec())),
                _ => None,
            })
            .collect()
    }
}
