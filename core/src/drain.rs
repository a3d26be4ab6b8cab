//! The drive loop, written once: drains a [`Node`]'s outputs into a [`Sink`]
//! in the documented order, within a work budget.
//!
//! The tokio driver, the smol driver and the simulator all call [`Drain::run`];
//! they differ only in how they wait for sockets, timers and the application.

use crate::event::{Action, CloseReason, Event};
use crate::id::ConnId;
use crate::node::Node;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// What a write to a socket did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// This many bytes were written (possibly fewer than offered).
    Wrote(usize),
    /// The socket cannot take bytes now; the sink arranged to be woken when it can.
    Blocked,
    /// The socket failed; the connection is reported closed with this message.
    Failed(String),
}

/// Where a [`Drain`] puts a node's outputs. Implemented by each driver.
pub trait Sink {
    /// Writes bytes to `conn`'s socket without blocking.
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome;
    /// Carries out an action: start a dial, half-close or close a socket.
    fn act(&mut self, action: Action);
    /// Hands an event to the application, or gives it back if the
    /// application's queue is full (the sink arranges to be woken when it has room).
    // The event comes back by value so the drain can retry it without an
    // allocation; boxing it would cost one per message.
    #[allow(clippy::result_large_err)]
    fn deliver(&mut self, event: Event) -> Result<(), Event>;
    /// Starts a file operation for the transfer plane, off the event loop;
    /// its result goes back through [`Node::handle_file`] with the
    /// request's id. A sink that never sends or receives files may answer
    /// every request with an error.
    fn file(&mut self, request: crate::transfer::FileRequest);
}

/// How much one [`Drain::run`] may do before yielding to other tasks.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Bytes pulled for writing.
    pub bytes: usize,
    /// Events delivered.
    pub events: usize,
    /// How long a connection the node closed may stay open while its last
    /// bytes (the goodbye) wait for a blocked socket. Default 1 s.
    pub linger: std::time::Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { bytes: 1 << 20, events: 4096, linger: std::time::Duration::from_secs(1) }
    }
}

/// What the driver does after a [`Drain::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing more to do until a socket, the application or the deadline wakes us.
    Idle {
        /// Call [`Drain::run`] again at this time at the latest.
        deadline: Option<Timestamp>,
    },
    /// The budget ran out with work left: run again soon, after yielding.
    Yield,
}

#[derive(Debug)]
struct Tail {
    bytes: Vec<u8>,
    pos: usize,
}

/// Drains a node in order: due timers, then bytes for each connection (an
/// unwritten tail first), then actions, then events, until nothing is left or
/// the budget is spent. Keeps the unwritten tail of each blocked connection
/// and an event the application could not take yet.
#[derive(Debug, Default)]
pub struct Drain {
    buf: Vec<u8>,
    tails: BTreeMap<ConnId, Tail>,
    parked: Option<Event>,
    budget: Budget,
    /// Connections the node closed whose tail is still being written, with
    /// the time they are closed regardless.
    lingering: BTreeMap<ConnId, Timestamp>,
    /// Connections to half-close once their tail (the goodbye) is written.
    half_close: BTreeSet<ConnId>,
    /// The connection served last: the next round starts after it.
    cursor: Option<ConnId>,
}

impl Drain {
    /// A drain with the given budget per run.
    pub fn new(budget: Budget) -> Self {
        Drain { budget, ..Default::default() }
    }

    /// Bytes waiting in blocked connections' tails.
    pub fn pending_bytes(&self) -> usize {
        self.tails.values().map(|t| t.bytes.len() - t.pos).sum()
    }

    /// True if an event is waiting for the application to make room.
    pub fn app_blocked(&self) -> bool {
        self.parked.is_some()
    }

    /// True while a connection the node closed still has its last bytes to
    /// write (at most [`Budget::linger`]); keep its socket until then.
    pub fn is_lingering(&self) -> bool {
        !self.lingering.is_empty()
    }

    /// True if `conn` has bytes the socket has not taken yet.
    pub fn is_write_blocked(&self, conn: ConnId) -> bool {
        self.tails.contains_key(&conn)
    }

    /// Runs the node's outputs into `sink` at time `now`.
    pub fn run(&mut self, node: &mut Node, now: Timestamp, sink: &mut impl Sink) -> Step {
        let mut bytes_left = self.budget.bytes;
        let mut events_left = self.budget.events;
        loop {
            if node.poll_timeout().is_some_and(|d| d <= now) {
                node.handle_timeout(now);
            }
            let mut progressed = false;
            // 1. Unwritten tails first, so bytes leave in order.
            // (Walked by key, not collected: no allocation per pass.)
            let mut next = self.tails.keys().next().copied();
            while let Some(conn) = next {
                progressed |= self.flush_tail(node, now, conn, sink);
                next = self.tails.range(ConnId(conn.0 + 1)..).next().map(|(c, _)| *c);
            }
            // 2. New bytes: one quantum (one `poll_transmit`) per connection
            // per round, starting after the connection served last, so a
            // busy connection never starves the others. The place is kept
            // across runs.
            let start = self.cursor;
            let mut after = start;
            let mut wrapped = start.is_none();
            loop {
                let conn = match node.next_transmit(after) {
                    Some(c) if wrapped && start.is_some_and(|s| c > s) => break,
                    Some(c) => c,
                    None if !wrapped => {
                        wrapped = true;
                        after = None;
                        continue;
                    }
                    None => break,
                };
                after = Some(conn);
                if self.tails.contains_key(&conn) {
                    continue;
                }
                if bytes_left == 0 {
                    return Step::Yield;
                }
                // One quantum; more while no other connection has output
                // (nobody to be fair to, and a round trip through the rest
                // of the loop per quantum costs throughput).
                loop {
                    self.buf.clear();
                    let n = node.poll_transmit(now, conn, &mut self.buf);
                    if n == 0 {
                        break;
                    }
                    self.cursor = Some(conn);
                    bytes_left = bytes_left.saturating_sub(n);
                    progressed = true;
                    let bytes = std::mem::take(&mut self.buf);
                    self.tails.insert(conn, Tail { bytes, pos: 0 });
                    self.flush_tail(node, now, conn, sink);
                    let alone = node.next_transmit(Some(conn)).is_none() && node.next_transmit(None) == Some(conn);
                    if !alone || self.tails.contains_key(&conn) {
                        break;
                    }
                    if bytes_left == 0 {
                        return Step::Yield;
                    }
                }
            }
            // 3. Actions.
            while let Some(action) = node.poll_action() {
                progressed = true;
                if let Action::HalfClose { conn } = action {
                    self.flush_tail(node, now, conn, sink);
                    if self.tails.contains_key(&conn) {
                        // The goodbye waits for a blocked socket: shut
                        // writing down once it is out.
                        self.half_close.insert(conn);
                        continue;
                    }
                }
                if let Action::Close { conn } = action {
                    self.half_close.remove(&conn);
                    self.flush_tail(node, now, conn, sink);
                    if self.tails.contains_key(&conn) {
                        // The socket is blocked with the last bytes (the
                        // goodbye) unwritten: close once they are out, or
                        // when the linger time is up.
                        self.lingering.insert(conn, now + self.budget.linger);
                        continue;
                    }
                }
                sink.act(action);
            }
            progressed |= self.close_lingering(now, sink);
            progressed |= self.half_close_written(sink);
            // File operations for the transfer plane.
            while let Some(req) = node.poll_file_request() {
                progressed = true;
                sink.file(req);
            }
            // 4. Events, as long as the application takes them.
            if let Some(ev) = self.parked.take() {
                match sink.deliver(ev) {
                    Ok(()) => progressed = true,
                    Err(ev) => self.parked = Some(ev),
                }
            }
            while self.parked.is_none() {
                if events_left == 0 {
                    return Step::Yield;
                }
                let Some(ev) = node.poll_event() else { break };
                events_left -= 1;
                progressed = true;
                if let Err(ev) = sink.deliver(ev) {
                    self.parked = Some(ev);
                }
            }
            if !progressed {
                let linger = self.lingering.values().min().copied();
                let deadline = match (node.poll_timeout(), linger) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                return Step::Idle { deadline };
            }
        }
    }

    /// Closes lingering connections whose tail is written (or failed) or
    /// whose time is up. Returns true if any was closed.
    fn close_lingering(&mut self, now: Timestamp, sink: &mut impl Sink) -> bool {
        let done: Vec<ConnId> = self
            .lingering
            .iter()
            .filter(|(conn, until)| !self.tails.contains_key(conn) || now >= **until)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in &done {
            self.lingering.remove(conn);
            self.tails.remove(conn);
            sink.act(Action::Close { conn: *conn });
        }
        !done.is_empty()
    }

    /// Half-closes the connections whose goodbye is now written. Returns
    /// true if any was.
    fn half_close_written(&mut self, sink: &mut impl Sink) -> bool {
        if self.half_close.is_empty() {
            return false;
        }
        let done: Vec<ConnId> = self.half_close.iter().filter(|c| !self.tails.contains_key(c)).copied().collect();
        for conn in &done {
            self.half_close.remove(conn);
            sink.act(Action::HalfClose { conn: *conn });
        }
        !done.is_empty()
    }

    /// Writes as much of `conn`'s tail as the socket takes. Returns true if
    /// anything happened. The buffer of a finished tail is kept for reuse.
    fn flush_tail(&mut self, node: &mut Node, now: Timestamp, conn: ConnId, sink: &mut impl Sink) -> bool {
        let Some(tail) = self.tails.get_mut(&conn) else {
            return false;
        };
        let mut progressed = false;
        while tail.pos < tail.bytes.len() {
            match sink.write(conn, &tail.bytes[tail.pos..]) {
                WriteOutcome::Wrote(0) | WriteOutcome::Blocked => return progressed,
                WriteOutcome::Wrote(n) => {
                    tail.pos += n;
                    progressed = true;
                }
                WriteOutcome::Failed(e) => {
                    self.tails.remove(&conn);
                    node.handle_closed(now, conn, CloseReason::Io(e));
                    return true;
                }
            }
        }
        let done = self.tails.remove(&conn).expect("present above");
        if self.buf.capacity() < done.bytes.capacity() {
            self.buf = done.bytes;
        }
        progressed
    }
}
