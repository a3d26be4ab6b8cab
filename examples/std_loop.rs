//! Driving estafeta's sans-IO core from a hand-written `std::net` loop, with
//! no async runtime. Copy this when you embed estafeta in your own event loop.
//!
//! What it does: node "bob" listens on 127.0.0.1 (any free port) and
//! subscribes to `greetings`; node "alice" connects, waits until she sees a
//! subscriber, and publishes. Bob prints what he gets and who sent it. Then
//! bob "crashes" (his state and sockets are dropped) and a new bob starts on
//! the same port: alice's node redials on its own, sees the new subscriber,
//! and messages flow again. Alice closes gracefully at the end. Exit code 0
//! on success, 1 if anything did not happen within its time limit.
//!
//! ```text
//! cargo run --example std_loop
//! ```
//!
//! # The drive contract, in short
//!
//! A [`Node`] does no I/O and reads no clock. You own the sockets and the
//! clock, and you loop:
//!
//! 1. **Inputs**, each with the current time `now`:
//!    `handle_accepted` (a listener accepted a socket), `handle_connected`
//!    (a dial the node asked for connected), `handle_bytes` (bytes arrived;
//!    read a socket only while `wants_read(conn)` is true: that is how the
//!    node pushes back on a fast sender), `handle_closed` (a socket reached
//!    end of stream or failed, or a dial failed), `handle_timeout` (the
//!    deadline passed). Commands are plain calls: `subscribe`, `publish`,
//!    `connect`, `disconnect`, `close`.
//! 2. **Drain**, after every input or command: [`Drain::run`] takes the
//!    node's outputs in the order the protocol needs and hands them to your
//!    [`Sink`]: bytes to write (`Sink::write`), then actions
//!    (`Sink::act`: [`Action::Dial`], [`Action::HalfClose`], [`Action::Close`]), then events for the
//!    application (`Sink::deliver`). It also fires due timers. It returns
//!    [`Step::Idle`] with the next deadline, or [`Step::Yield`] when its work
//!    budget ran out and it wants to run again soon.
//! 3. **Wait** for a socket to become readable or writable, for the deadline,
//!    or for an application command; then go to 1.
//!
//! Time rules: pick one origin (an `Instant` at start-up) and give the core
//! microseconds since it as a [`Timestamp`]. Time must never go backwards
//! between calls to the same node, so read the clock again after anything
//! that blocks (here: a dial) rather than reusing an old `now`.
//!
//! This example waits the simplest way: non-blocking sockets, checked every
//! millisecond. A real loop would sleep in `poll`/`epoll` (for example with
//! the `polling` or `mio` crates) on the sockets and the deadline instead.

use estafeta_core::transfer::{FileRequest, MemFs};
use estafeta_core::{
    Action, Bytes, CloseReason, Config, ConnId, DialEvent, Drain, Event, Message, Node, PeerAddr, PubSubEvent,
    PublishError, SendMode, Sink, Step, Timestamp, WriteOutcome,
};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const TOPIC: &str = "greetings";

/// The one clock of the program. The core only ever sees `Timestamp`s.
#[derive(Clone, Copy)]
struct Clock {
    origin: Instant,
}

impl Clock {
    fn now(&self) -> Timestamp {
        let us = self.origin.elapsed().as_micros();
        Timestamp::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    /// How long until `deadline`, if it is set and not absurdly far away.
    /// (`Timestamp::MAX` means "never": do not turn it into an `Instant`.)
    fn until(&self, deadline: Option<Timestamp>) -> Option<Duration> {
        let d = deadline?;
        if d == Timestamp::MAX {
            return None;
        }
        Some(d.saturating_since(self.now()))
    }
}

/// A seed from the OS for the node's id and its backoff jitter. (The core
/// never draws OS randomness itself: the driver does, here through std's
/// randomly keyed hasher, so this example needs no extra crate.)
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// A node with an identity key from the operating system's randomness
/// (encrypted connections; its id is its key's).
fn secure_node(label: &str) -> Node {
    use estafeta_driver::OsEntropy;
    let identity = estafeta_core::Identity::generate(&mut OsEntropy);
    Node::with_identity(config(), identity, Box::new(OsEntropy), label).expect("valid config")
}

fn config() -> Config {
    let mut cfg = Config { seed: os_seed(), ..Config::default() };
    // Redial quickly in this demo; the defaults are 100 ms doubling to 5 s.
    cfg.dialer.reconnect_base = Duration::from_millis(50);
    cfg.dialer.reconnect_cap = Duration::from_millis(500);
    cfg
}

/// One node and everything its driver owns: the sockets, the drain, the
/// application's inbox.
struct Host {
    label: &'static str,
    node: Node,
    /// Keeps the order of outputs and the unwritten tail of a blocked socket.
    drain: Drain,
    listener: Option<TcpListener>,
    sockets: BTreeMap<ConnId, TcpStream>,
    /// Dials the node asked for during the last drain.
    dials: Vec<(ConnId, PeerAddr)>,
    /// Events handed to the application, not looked at yet.
    inbox: Vec<Event>,
    /// Messages received: (sender's name, payload).
    received: Vec<(String, String)>,
    /// The node's next deadline, from the last drain.
    deadline: Option<Timestamp>,
    /// File operations the transfer plane asked for during the last drain.
    files: Vec<FileRequest>,
    /// Where they run: an in-memory file system here (a real loop runs
    /// them with `std::fs` on a worker thread, never on the loop itself).
    fs: MemFs,
}

/// The [`Sink`] over std sockets: what `Drain::run` calls with the node's
/// outputs. It must not call back into the node (the drain holds it), so it
/// only writes, records, and queues.
struct StdSink<'a> {
    sockets: &'a mut BTreeMap<ConnId, TcpStream>,
    dials: &'a mut Vec<(ConnId, PeerAddr)>,
    inbox: &'a mut Vec<Event>,
    files: &'a mut Vec<FileRequest>,
}

impl Sink for StdSink<'_> {
    /// Bytes for `conn`, in order. Write what the socket takes now; the
    /// drain keeps the rest and offers it first next time.
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return WriteOutcome::Failed("socket already closed".into());
        };
        match socket.write(bytes) {
            Ok(0) => WriteOutcome::Failed("socket wrote nothing".into()),
            Ok(n) => WriteOutcome::Wrote(n),
            // Full send buffer: the drain keeps the tail. We poll, so there
            // is nothing to arm; an epoll loop would wait for writability.
            Err(e) if e.kind() == ErrorKind::WouldBlock => WriteOutcome::Blocked,
            Err(e) if e.kind() == ErrorKind::Interrupted => WriteOutcome::Wrote(0),
            // The drain reports this to the node as `handle_closed`.
            Err(e) => WriteOutcome::Failed(e.to_string()),
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            // Open a TCP connection. std cannot connect without blocking, so
            // the dial is done after the drain returns (see `Host::dial`).
            Action::Dial { conn, addr } => self.dials.push((conn, addr)),
            // The goodbye is written: send FIN but keep the socket and keep
            // reading it; the node asks for `Close` once the peer closed too.
            Action::HalfClose { conn } => {
                if let Some(socket) = self.sockets.get(&conn) {
                    let _ = socket.shutdown(Shutdown::Write);
                }
            }
            // The node is done with `conn`: everything it wanted to send was
            // already handed to `write`. Close the socket; do not report it
            // to the node again.
            Action::Close { conn } => {
                if let Some(socket) = self.sockets.remove(&conn) {
                    let _ = socket.shutdown(Shutdown::Write);
                }
            } // Every action is matched: a new one fails to compile here.
        }
    }

    /// An event for the application. Returning `Err(event)` would mean "my
    /// queue is full, hold it": the drain parks it and the node stops
    /// processing input (and `wants_read` turns false) until there is room.
    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        self.inbox.push(event);
        Ok(())
    }

    /// A file operation for the transfer plane (reading a file being sent,
    /// writing one being received). Its result is an input: it is run after
    /// the drain and reported with `Node::handle_file`.
    fn file(&mut self, request: FileRequest) {
        self.files.push(request);
    }
}

impl Host {
    fn new(label: &'static str, node: Node, listener: Option<TcpListener>) -> Host {
        Host {
            label,
            node,
            drain: Drain::default(),
            listener,
            sockets: BTreeMap::new(),
            dials: Vec::new(),
            inbox: Vec::new(),
            received: Vec::new(),
            deadline: None,
            files: Vec::new(),
            fs: MemFs::default(),
        }
    }

    /// A node listening on `addr` (use port 0 for any free port).
    fn listen(label: &'static str, addr: SocketAddr) -> std::io::Result<Host> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let node = secure_node(label);
        Ok(Host::new(label, node, Some(listener)))
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref()?.local_addr().ok()
    }

    /// One turn of the loop for this node: inputs, then drain.
    fn pump(&mut self, clock: Clock) {
        self.accept(clock);
        self.read(clock);
        // Time passed (the deadline) is an input too; `Drain::run` checks
        // `poll_timeout` and calls `handle_timeout` itself when it is due.
        self.drive(clock);
    }

    /// Input: accepted sockets.
    fn accept(&mut self, clock: Clock) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((socket, _)) => match self.node.handle_accepted(clock.now()) {
                    Ok(conn) => {
                        let _ = socket.set_nonblocking(true);
                        let _ = socket.set_nodelay(true);
                        self.sockets.insert(conn, socket);
                    }
                    // The node is closing, or too many refusals are in
                    // flight (over the connection limit the node takes the
                    // socket to refuse it with a goodbye): drop the socket.
                    Err(e) => eprintln!("[{}] refused a connection: {e}", self.label),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("[{}] accept failed: {e}", self.label);
                    return;
                }
            }
        }
    }

    /// Input: bytes from every socket the node wants to read.
    fn read(&mut self, clock: Clock) {
        let mut buf = [0u8; 16 * 1024];
        let conns: Vec<ConnId> = self.sockets.keys().copied().collect();
        for conn in conns {
            // A few reads per socket per turn, so one busy peer cannot
            // starve the others; and only while the node wants bytes.
            for _ in 0..8 {
                if !self.node.wants_read(conn) {
                    break;
                }
                let Some(socket) = self.sockets.get_mut(&conn) else {
                    break;
                };
                match socket.read(&mut buf) {
                    Ok(0) => {
                        // End of stream. Tell the node; it forgets `conn`.
                        self.sockets.remove(&conn);
                        let reason = CloseReason::Io("end of stream".into());
                        self.node.handle_closed(clock.now(), conn, reason);
                        break;
                    }
                    // The node copies what it needs; `buf` is ours again.
                    Ok(n) => self.node.handle_bytes(clock.now(), conn, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.sockets.remove(&conn);
                        let reason = CloseReason::Io(e.to_string());
                        self.node.handle_closed(clock.now(), conn, reason);
                        break;
                    }
                }
            }
        }
    }

    /// Drain: run the node's outputs into the sockets and the inbox, carry
    /// out the dials it asked for, and repeat until it is idle.
    fn drive(&mut self, clock: Clock) {
        loop {
            let mut sink = StdSink {
                sockets: &mut self.sockets,
                dials: &mut self.dials,
                inbox: &mut self.inbox,
                files: &mut self.files,
            };
            // Read the clock for every run: never reuse a `now` older than
            // one already given to the node.
            let step = self.drain.run(&mut self.node, clock.now(), &mut sink);
            let dials = std::mem::take(&mut self.dials);
            let dialed = !dials.is_empty() || !self.files.is_empty();
            for (conn, addr) in dials {
                self.dial(clock, conn, &addr);
            }
            for req in std::mem::take(&mut self.files) {
                let result = self.fs.run(req.op);
                self.node.handle_file(clock.now(), req.id, result);
            }
            match step {
                // A dial result is an input: drain again.
                _ if dialed => continue,
                // Out of budget: a real loop would let other work run first.
                Step::Yield => continue,
                Step::Idle { deadline } => {
                    self.deadline = deadline;
                    return;
                }
            }
        }
    }

    /// Carries out `Action::Dial`, then reports the outcome to the node.
    fn dial(&mut self, clock: Clock, conn: ConnId, addr: &PeerAddr) {
        let target = addr.host_port().to_socket_addrs().ok().and_then(|mut a| a.next());
        let result = match target {
            Some(sa) => TcpStream::connect_timeout(&sa, Duration::from_millis(500)),
            None => Err(std::io::Error::new(ErrorKind::NotFound, "unresolvable")),
        };
        // The connect may have blocked: read the clock afresh.
        let now = clock.now();
        match result {
            Ok(socket) => {
                let _ = socket.set_nonblocking(true);
                let _ = socket.set_nodelay(true);
                self.sockets.insert(conn, socket);
                self.node.handle_connected(now, conn);
            }
            // The node schedules the next attempt with backoff and jitter;
            // we will see `Event::Dial(DialEvent::Failed)` with `retry_in`.
            Err(e) => self.node.handle_closed(now, conn, CloseReason::Io(e.to_string())),
        }
    }

    /// The application got a message.
    fn on_message(&mut self, m: Message) {
        let me = self.label;
        let text = String::from_utf8_lossy(&m.payload).into_owned();
        println!("[{me}] {}: {text:?} from {}", m.topic, m.from.name);
        self.received.push((m.from.name.to_string(), text));
    }

    /// The application: look at what the node reported.
    fn handle_events(&mut self) {
        for event in std::mem::take(&mut self.inbox) {
            let me = self.label;
            match event {
                Event::PubSub(PubSubEvent::Message(m)) => self.on_message(m),
                // Messages that arrived together: the same, one by one.
                Event::PubSub(PubSubEvent::Messages(run)) => run.into_iter().for_each(|m| self.on_message(m)),
                Event::PeerUp { peer, .. } => println!("[{me}] peer up: {peer}"),
                Event::PeerDown { peer, reason } => {
                    println!("[{me}] peer down: {peer}: {reason}")
                }
                Event::PubSub(PubSubEvent::Subscribed { peer, topic }) => {
                    println!("[{me}] {} subscribes to {topic}", peer.name)
                }
                // A dial failed or a dialed connection was lost; the node
                // redials after `retry_in` (None: it gave up, `GaveUp` follows).
                Event::Dial(DialEvent::Failed { addr, reason, retry_in, .. }) => {
                    println!("[{me}] connection to {addr} failed ({reason}); next dial in {retry_in:?}")
                }
                Event::Dial(DialEvent::GaveUp { addr, .. }) => println!("[{me}] gave up on {addr}"),
                // Group membership (this example joins no group).
                Event::Membership(m) => println!("[{me}] membership: {m:?}"),
                // A publish was refused with `Full` earlier: retry it now.
                Event::PubSub(PubSubEvent::Writable) => {}
                // Streams: this example opens none and serves none.
                Event::Stream(ev) => println!("[{me}] stream event: {ev:?}"),
                // Drops are always counted (`PubSubStats::dropped`) and reported.
                Event::PubSub(PubSubEvent::Dropped { count, reason, .. }) => {
                    println!("[{me}] {count} message(s) dropped: {reason:?}")
                }
                // Only with `FullQueuePolicy::DropOldest`: gaps of latest-value topics.
                Event::PubSub(PubSubEvent::Overwritten { count, topic, .. }) => {
                    println!("[{me}] {count} queued message(s) on {topic} overwritten by newer ones")
                }
                Event::PubSub(PubSubEvent::Skipped { count, topic, peer, .. }) => {
                    println!("[{me}] {peer} overwrote {count} message(s) on {topic} before sending them")
                }
                Event::Refused { code, reason, .. } => println!("[{me}] refused by the peer: {code}: {reason}"),
                Event::ProtocolViolation { error, .. } => {
                    println!("[{me}] a peer broke the protocol: {error}")
                }
                Event::Closed => println!("[{me}] closed"),
                // Sessions outlive connections: suspended, resumed, ended
                // with the sequence numbers of what may be lost.
                Event::Session(s) => println!("[{me}] session: {s:?}"),
                // File transfers (none in this example): offers, progress,
                // files received or delivered, failures with a reason.
                Event::Transfer(t) => println!("[{me}] transfer: {t:?}"),
                // Every event is matched: a new one fails to compile here.
                Event::PubSub(PubSubEvent::Unsubscribed { peer, topic }) => {
                    println!("[{me}] {} unsubscribes from {topic}", peer.name)
                }
                Event::Dial(DialEvent::Connected { peer, .. }) => println!("[{me}] connected to {peer}"),
                // Discovery: a topic gained or lost its last peer, relayed
                // messages were lost, a discovery dial failed.
                Event::Discovery(ev) => println!("[{me}] discovery: {ev:?}"),
            }
        }
    }
}

/// Runs both hosts until `done` says so, or fails after `limit`.
fn run_until(
    clock: Clock,
    alice: &mut Host,
    bob: &mut Option<Host>,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&Host, Option<&Host>) -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        alice.pump(clock);
        alice.handle_events();
        if let Some(b) = bob.as_mut() {
            b.pump(clock);
            b.handle_events();
        }
        if done(alice, bob.as_ref()) {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        // Wait: here a short sleep, bounded by the nearest deadline. An
        // epoll loop would wait for socket readiness with this timeout.
        let nearest = [alice.deadline, bob.as_ref().and_then(|b| b.deadline)]
            .into_iter()
            .filter_map(|d| clock.until(d))
            .min()
            .unwrap_or(Duration::MAX);
        std::thread::sleep(nearest.min(Duration::from_millis(1)));
    }
}

/// Publishes `count` messages from alice, retrying on `Full`.
fn publish(clock: Clock, alice: &mut Host, bob: &mut Option<Host>, first: usize, count: usize) -> Result<(), String> {
    for i in first..first + count {
        let payload = Bytes::from(format!("hello #{i}"));
        loop {
            match alice.node.pubsub().publish(TOPIC, payload.clone(), SendMode::All) {
                Ok(_) => break,
                // The subscriber's queue is full: drive until `Writable`.
                Err(PublishError::Full(_)) => {
                    run_until(clock, alice, bob, "room", Duration::from_secs(2), |_, _| true)?
                }
                Err(e) => return Err(format!("publish failed: {e}")),
            }
        }
        // A command is an input: drain after it.
        alice.drive(clock);
    }
    Ok(())
}

fn check_received(bob: &Host, expected: std::ops::Range<usize>) -> Result<(), String> {
    let want: Vec<(String, String)> = expected.map(|i| ("alice".to_string(), format!("hello #{i}"))).collect();
    if bob.received == want {
        Ok(())
    } else {
        Err(format!("bob received {:?}, expected {want:?}", bob.received))
    }
}

fn scenario() -> Result<(), String> {
    let clock = Clock { origin: Instant::now() };
    let err = |e: std::io::Error| e.to_string();

    // Bob listens and subscribes.
    let mut bob = Host::listen("bob", "127.0.0.1:0".parse().unwrap()).map_err(err)?;
    bob.node.pubsub().subscribe(TOPIC).map_err(|e| e.to_string())?;
    let bob_addr = bob.local_addr().ok_or("bob has no address")?;
    println!("bob listens on {bob_addr}");
    let mut bob = Some(bob);

    // Alice keeps a connection to bob: the node asks us to dial
    // (`Action::Dial`), and redials by itself whenever the connection drops.
    let mut alice = Host::new("alice", secure_node("alice"), None);
    let target = PeerAddr { name: Some("bob".into()), host: bob_addr.ip().to_string(), port: bob_addr.port() };
    alice.node.connect(target).map_err(|e| e.to_string())?;

    let limit = Duration::from_secs(3);
    run_until(clock, &mut alice, &mut bob, "bob's subscription", limit, |a, _| {
        a.node.pubsub_ref().subscriber_count(TOPIC) == 1
    })?;
    publish(clock, &mut alice, &mut bob, 0, 3)?;
    run_until(clock, &mut alice, &mut bob, "3 messages", limit, |_, b| b.is_some_and(|b| b.received.len() >= 3))?;
    check_received(bob.as_ref().unwrap(), 0..3)?;

    // Bob crashes: his node, drain and sockets are dropped. Alice's sockets
    // see end of stream; her node suspends bob's session (it could resume
    // within `resume_window`) and starts redialing.
    println!("--- bob restarts ---");
    bob = None;
    run_until(clock, &mut alice, &mut bob, "alice to notice", limit, |a, _| a.node.connected_peers().count() == 0)?;
    // Leave bob down long enough for a refused dial or two.
    let down_until = Instant::now() + Duration::from_millis(150);
    run_until(clock, &mut alice, &mut bob, "bob's downtime", limit, |_, _| Instant::now() >= down_until)?;

    // A new bob (new node id, no memory of alice) on the same port.
    let mut new_bob = Host::listen("bob", bob_addr).map_err(err)?;
    new_bob.node.pubsub().subscribe(TOPIC).map_err(|e| e.to_string())?;
    bob = Some(new_bob);
    // The new bob's id is new: old bob's suspended session never resumes
    // (it ends when its window passes), so count connected subscribers.
    run_until(clock, &mut alice, &mut bob, "the reconnect", limit, |a, _| {
        a.node.pubsub_ref().connected_subscriber_count(TOPIC) == 1
    })?;
    publish(clock, &mut alice, &mut bob, 3, 3)?;
    run_until(clock, &mut alice, &mut bob, "3 more messages", limit, |_, b| b.is_some_and(|b| b.received.len() >= 3))?;
    check_received(bob.as_ref().unwrap(), 3..6)?;
    let reconnects = alice.node.stats().dialer.reconnects;
    if reconnects != 1 {
        return Err(format!("alice counted {reconnects} reconnects, expected 1"));
    }

    // Alice closes gracefully: queued messages are flushed, bob gets a
    // goodbye (code 1001, going away), then `Event::Closed`.
    alice.node.close();
    alice.drive(clock);
    run_until(clock, &mut alice, &mut bob, "alice to close", limit, |a, _| a.node.is_closed())?;
    run_until(clock, &mut alice, &mut bob, "bob to see alice go", limit, |_, b| {
        b.is_some_and(|b| b.node.peers().count() == 0)
    })?;
    let stats = alice.node.stats();
    println!(
        "alice: {} sent, {} dropped, {} reconnect(s)",
        stats.pubsub.sent, stats.pubsub.dropped, stats.dialer.reconnects
    );
    Ok(())
}

fn main() -> ExitCode {
    match scenario() {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("std_loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
