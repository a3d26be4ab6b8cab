//! End-to-end loopback benchmark: estafeta node to node, beside two plain
//! TCP baselines doing the same length-prefixed framing, measured in the
//! same run.
//!
//! ```text
//! cargo bench --bench e2e                    # tokio lines, then smol lines
//! E2E_SCALE=0.1 cargo bench --bench e2e      # a quick run (a tenth of the messages)
//! ```
//!
//! Cases: one-way throughput of 64 B, 1 KiB and 64 KiB payloads (first send
//! to last receive, after a warm-up on the same connection); fan-out of 64 B
//! payloads from one publisher to four subscribing nodes; and the round trip
//! of one 64 B message each way (p50 and p99 over `E2E_ROUNDS` round trips
//! after a warm-up). Each case prints its lines as soon as it is measured:
//!
//! ```text
//! case=<name> ours=<value> baseline=<value> unit=<unit> ratio=<ours/baseline>
//! ```
//!
//! (followed by ` samples=<n> spread=<ours>/<baseline> ci90=<lo>..<hi>`, see
//! `E2E_SAMPLES`).
//! For throughput higher is better; for round trips (unit `us`) lower is better.
//! The names, with `smol/` after the group on smol (`smol/throughput_64B`,
//! `direct/smol/throughput_64B`, `fanout4/smol/throughput_64B`):
//!
//! | name | ours | baseline |
//! |---|---|---|
//! | `throughput_64B`, `throughput_1KiB` (msg/s), `throughput_64KiB` (MB/s) | one publisher, one subscriber | the channel baseline |
//! | `rtt_p50`, `rtt_p99` (us) | ping-pong between two nodes | the channel baseline's ping-pong |
//! | `direct/throughput_*`, `direct/rtt_*` | the same figure as above | the direct baseline |
//! | `batch/throughput_*` | the same through `Node::publish_batch` (256 messages a call) and `Subscription::next_runs` (payloads read in place) | the direct baseline |
//! | `fanout4/throughput_64B` (msg/s) | messages received per second by the four subscribers together | the direct baseline writing every frame to four sockets |
//! | `fanout4/per_subscriber_64B` (msg/s) | the same divided by four: what each subscriber receives | the same, per socket |
//! | `discovery_50_sim`, `discovery_50_loopback` (s), `relay_64B` (msg/s) | see `e2e/discovery.rs` (tokio; `relay_64B` also on smol) | ditto |
//!
//! Compare figures within one run: on a virtual machine whose idle vCPUs
//! halt, a round trip is dominated by waking the other side's vCPU (tens of
//! µs), and it is several times shorter while other work keeps the vCPUs busy.
//! Throughput moves between two modes from run to run: the kernel often keeps
//! both sides' threads on one vCPU (they wake each other), and the ratio then
//! compares CPU time per message; on two vCPUs the slower side sets the pace.
//! Run it more than once.
//!
//! # Layout: one process, the same for ours and the baselines
//!
//! Both sides live in this process (two OS processes would be a little more
//! honest, two tasks on one thread much less). What runs where is the same
//! for ours and for the baselines:
//!
//! - **tokio**: each side (sender and receiver, pinger and echoer) has its own
//!   OS thread running its own current-thread tokio runtime, and its
//!   application code (publish loop, subscription) runs as a task spawned on
//!   it. Ours: the side's node spawns its driver task on that runtime.
//!   Baseline: the side spawns its writer task on that runtime. In the
//!   fan-out case the four receivers are four tasks on the receiving side
//!   (with their four nodes' drivers).
//! - **smol**: every task (both sides' application code, the nodes' drivers
//!   or the baseline's writer tasks) runs on smol's global executor, given
//!   two threads (`SMOL_THREADS=2` unless set) for the machine's two cores.
//!
//! # The baselines
//!
//! Like with like: in every case set against a plain-TCP baseline, our
//! nodes run in the plaintext mode (`secure::builder`), as the baselines
//! carry no encryption; this includes `request_rtt_p50` (streams) and
//! `file_1GiB`. The `secure/` lines compare an encrypted node with the same
//! node in plaintext. The discovery and relay lines set our nodes against
//! our nodes (relayed against direct, discovered against connected) and run
//! the default configuration, encrypted, on both sides.
//!
//! What a competent engineer writes on plain TCP (Nagle off), in two ways:
//!
//! - **channel** (the lines without a group): the application queues
//!   payloads in a bounded channel (8 MiB or 65 536 messages, like a node's
//!   per-peer queue); a writer task encodes each one as `len:u32be payload`
//!   into a buffer, writes it when it holds 64 KiB, and writes the rest when
//!   the channel is drained (as our driver flushes when the node's queue is
//!   empty). The echoer of the round-trip case queues each received payload
//!   back the same way.
//! - **direct** (`direct/`, `fanout4/`): no channel and no writer task: the
//!   sending task itself encodes each frame into a 64 KiB buffer, writes it
//!   to the socket when it is full and once more at the end (a `BufWriter`).
//!   Fan-out writes each frame into one such buffer per subscriber. Its
//!   round trip is a plain ping-pong: write one frame, read one frame.
//!
//! Both read the same way: up to 64 KiB per call into a buffer, parsing
//! frames out of it and checking and counting every one.
//!
//! # Environment
//!
//! - `E2E_SCALE` (default 1): multiplies message counts and round trips.
//! - `E2E_ROUNDS` (default 5000): measured round trips (then scaled).
//! - `E2E_SAMPLES` (default 5; 2 in the smoke test): samples of each side of
//!   a case, taken in turn (ours, baseline, ours, baseline, ...); the line
//!   gives each side's median and the ratio of the medians, then
//!   `samples=<n> spread=<ours>/<baseline>` ((max - min) / median of each
//!   side) and `ci90=<lo>..<hi>` (a 90 % bootstrap interval of the ratio,
//!   from three samples a side). See `e2e/samples.rs`.
//! - `E2E_SAMPLES_LONG` (default 3, at most `E2E_SAMPLES`; 1 in the smoke
//!   test): the same for the long cases (`file_*`, `discovery_50_loopback`).
//! - `E2E_SAMPLES_PRECISE` (default 21 under `--bench`; `E2E_SAMPLES` if
//!   that is set, or in the smoke test): the same for the `session/`
//!   throughput lines and the `secure/` lines, whose ratio is judged
//!   against a target a few percent from 1.0 (see `e2e/samples.rs`).
//! - `E2E_REPEAT`: the old name of `E2E_SAMPLES`, read if that one is unset.
//! - `E2E_RUNTIME` (`tokio`, `smol`, default both).
//! - `E2E_CASES`: comma-separated substrings of the printed names; only
//!   matching lines are measured (`direct/`, `fanout4`, `rtt`, ...).
//! - `E2E_IMPL` (`ours`, `batch`, `baseline`, `direct`): measure only those, for
//!   profiling; the others' figures are then printed as 0 (ratio `inf` or 0).
//! - `E2E_SECURE=1`: our nodes of the cases outside `secure/` run encrypted,
//!   for profiling the secure mode alone (with `E2E_IMPL=ours`).
//! - `E2E_RESUME=0`: our nodes of the cases outside `session/` run without
//!   sessions (`resume_window` 0), for profiling what sessions cost.
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a smoke test
//! at 1 % of the counts.

use bytes::Bytes;
use estafeta_driver::{MessageRun, Node, Runtime, Subscription};
use samples::{interleave, ours_and_baseline, ratio_line, Length, Samples};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const TOPIC: &str = "bench";
const PING: &str = "ping";
const PONG: &str = "pong";
/// Bytes the baseline writes at once / reads per call (our driver's figures).
const CHUNK: usize = 64 << 10;
/// Payload of the round-trip case.
const RTT_PAYLOAD: usize = 64;

/// One throughput case: name, payload size, messages at scale 1, unit.
struct Case {
    name: &'static str,
    size: usize,
    count: usize,
    unit: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    MsgPerSec,
    MegabytesPerSec,
}

/// Default samples of a side of a `Length::Precise` case (see `e2e/samples.rs`).
const PRECISE_SAMPLES: usize = 21;

const CASES: [Case; 3] = [
    Case { name: "throughput_64B", size: 64, count: 1_000_000, unit: Unit::MsgPerSec },
    Case { name: "throughput_1KiB", size: 1024, count: 300_000, unit: Unit::MsgPerSec },
    Case { name: "throughput_64KiB", size: 64 << 10, count: 20_000, unit: Unit::MegabytesPerSec },
];

struct Settings {
    scale: f64,
    rounds: usize,
    /// Samples of each side of a short case (`E2E_SAMPLES`).
    repeat: usize,
    /// Samples of each side of a long case (`E2E_SAMPLES_LONG`).
    long_repeat: usize,
    /// Samples of each side of a case judged against a target near 1.0
    /// (`E2E_SAMPLES_PRECISE`).
    precise_repeat: usize,
    runtimes: Vec<String>,
    cases: Vec<String>,
    impls: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let bench = std::env::args().any(|a| a == "--bench");
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let scale = var("E2E_SCALE").map(|v| v.parse::<f64>().expect("E2E_SCALE is a number")).unwrap_or(if bench {
            1.0
        } else {
            0.01
        });
        let rounds = var("E2E_ROUNDS").map(|v| v.parse::<usize>().expect("E2E_ROUNDS is a count")).unwrap_or(5000);
        let count = |k: &str| var(k).map(|v| v.parse::<usize>().unwrap_or_else(|_| panic!("{k} is a count")));
        let given = count("E2E_SAMPLES").or_else(|| count("E2E_REPEAT"));
        let repeat = given.unwrap_or(if bench { 5 } else { 2 }).max(1);
        let long_repeat = count("E2E_SAMPLES_LONG").unwrap_or(if bench { 3 } else { 1 }).clamp(1, repeat);
        // Unset, it follows an explicit `E2E_SAMPLES` (a quick run stays quick).
        let precise_default = if bench && given.is_none() { PRECISE_SAMPLES } else { repeat };
        let precise_repeat = count("E2E_SAMPLES_PRECISE").unwrap_or(precise_default).max(1);
        let list =
            |k: &str| -> Vec<String> { var(k).map_or_else(Vec::new, |v| v.split(',').map(str::to_string).collect()) };
        Settings {
            scale,
            rounds: ((rounds as f64 * scale) as usize).max(100),
            repeat,
            long_repeat,
            precise_repeat,
            runtimes: list("E2E_RUNTIME"),
            cases: list("E2E_CASES"),
            impls: list("E2E_IMPL"),
        }
    }

    /// Samples of each side of a case of this length.
    fn samples(&self, length: Length) -> usize {
        match length {
            Length::Short => self.repeat,
            Length::Long => self.long_repeat,
            Length::Precise => self.precise_repeat,
        }
    }

    fn count(&self, base: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(100)
    }

    fn wants_runtime(&self, rt: &str) -> bool {
        self.runtimes.is_empty() || self.runtimes.iter().any(|r| r == rt)
    }

    fn wants_impl(&self, which: Impl) -> bool {
        self.impls.is_empty() || self.impls.iter().any(|i| i == which.name())
    }

    fn wants(&self, case: &str) -> bool {
        self.cases.is_empty() || self.cases.iter().any(|c| case.contains(c.as_str()))
    }
}

/// Warm-up messages sent on the connection before the measured ones.
fn warmup(count: usize) -> usize {
    (count / 10).max(10)
}

/// Messages the baseline's channel holds: the node's per-peer limits
/// (8 MiB, 65 536 frames).
fn queue_capacity(size: usize) -> usize {
    ((8 << 20) / (size + 4)).clamp(16, 65_536)
}

// ----- the baseline's framing, shared by both runtimes ------------------

/// Encodes frames into a buffer that is written in chunks.
struct FrameWriter {
    out: Vec<u8>,
}

impl FrameWriter {
    fn new() -> Self {
        FrameWriter { out: Vec::with_capacity(2 * CHUNK) }
    }

    /// Appends one frame; true if the buffer should be written now.
    fn push(&mut self, payload: &[u8]) -> bool {
        let len = u32::try_from(payload.len()).expect("frame fits u32");
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(payload);
        self.out.len() >= CHUNK
    }
}

/// Reads frames out of a buffer filled by socket reads.
struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    size: usize,
}

impl FrameReader {
    /// A reader of frames whose payloads are all `size` bytes.
    fn new(size: usize) -> Self {
        FrameReader { buf: vec![0; size + 4 + CHUNK], start: 0, end: 0, size }
    }

    /// The next whole frame's payload, if buffered.
    fn next_frame(&mut self) -> Option<&[u8]> {
        let avail = &self.buf[self.start..self.end];
        let prefix: [u8; 4] = avail.get(..4)?.try_into().expect("4 bytes");
        let len = u32::from_be_bytes(prefix) as usize;
        assert_eq!(len, self.size, "baseline frame has the wrong length");
        if avail.len() < 4 + len {
            return None;
        }
        let at = self.start + 4;
        self.start = at + len;
        Some(&self.buf[at..at + len])
    }

    /// Counts up to `want` whole frames; returns how many.
    fn take(&mut self, want: usize) -> usize {
        let mut n = 0;
        while n < want && self.next_frame().is_some() {
            n += 1;
        }
        n
    }

    /// Room for the next read (at most `CHUNK` bytes), after moving a
    /// partial frame to the front.
    fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end + CHUNK > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let stop = (self.end + CHUNK).min(self.buf.len());
        &mut self.buf[self.end..stop]
    }

    fn filled(&mut self, n: usize) {
        assert!(n > 0, "baseline peer closed early");
        self.end += n;
    }
}

// ----- one throughput run: its shape and the two sides' rendezvous -------

/// The shape of one throughput run.
#[derive(Clone, Copy)]
struct Run {
    size: usize,
    warm: usize,
    n: usize,
}

/// The receiving side's ends: it announces its address, says when the
/// warm-up arrived, and says when everything arrived.
struct RxEnds {
    addr_tx: oneshot::Sender<String>,
    warm_tx: oneshot::Sender<()>,
    done_tx: oneshot::Sender<()>,
}

/// The sending side's ends of the same rendezvous.
struct TxEnds {
    addr_rx: oneshot::Receiver<String>,
    warm_rx: oneshot::Receiver<()>,
    done_rx: oneshot::Receiver<()>,
}

fn ends() -> (RxEnds, TxEnds) {
    let (addr_tx, addr_rx) = oneshot::channel();
    let (warm_tx, warm_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    (RxEnds { addr_tx, warm_tx, done_tx }, TxEnds { addr_rx, warm_rx, done_rx })
}

// ----- ours, generic over the runtime -----------------------------------

/// Messages per `publish_batch` in the batch cases.
const BATCH: usize = 256;

/// Receives `n` messages of `size` bytes, one by one or in batches (runs
/// of messages, their payloads read in place).
async fn receive_n(sub: &mut Subscription, n: usize, size: usize, batch: &mut Option<Vec<MessageRun>>) {
    let Some(batch) = batch else {
        for _ in 0..n {
            let m = sub.recv().await.expect("stream open");
            assert_eq!(m.payload.len(), size);
        }
        return;
    };
    let mut got = 0;
    while got < n {
        got += sub.next_runs(batch).await;
        assert!(batch.drain(..).all(|r| r.payload_slices().all(|p| p.len() == size)));
    }
    assert_eq!(got, n, "more messages than sent");
}

/// Publishes `n` copies of `payload`, one by one or in batches.
async fn publish_n<R: Runtime>(node: &Node<R>, payload: &Bytes, n: usize, batch: bool) {
    if !batch {
        for _ in 0..n {
            node.publish(TOPIC, payload.clone()).await.expect("publish");
        }
        return;
    }
    let mut b = Vec::with_capacity(BATCH);
    for k in (0..n).step_by(BATCH) {
        b.extend((k..n.min(k + BATCH)).map(|_| payload.clone()));
        node.publish_batch(TOPIC, &mut b).await.expect("publish");
    }
}

/// Our receiver (`batch`: through `Subscription::next_runs`).
async fn ours_receive<R: Runtime>(run: Run, ends: RxEnds, batch: bool) -> Instant {
    let (Run { size, warm, n }, RxEnds { addr_tx, warm_tx, done_tx }) = (run, ends);
    let node = secure::builder::<R>("rx").build().await.expect("node starts");
    let mut sub = node.subscribe(TOPIC).expect("subscribes");
    let addr = node.address().expect("listens").to_string();
    addr_tx.send(addr).expect("sender waits");
    let mut batch = batch.then(Vec::new);
    receive_n(&mut sub, warm, size, &mut batch).await;
    warm_tx.send(()).expect("sender waits");
    receive_n(&mut sub, n, size, &mut batch).await;
    let t1 = Instant::now();
    assert!(sub.try_next().is_none(), "more messages than sent");
    done_tx.send(()).expect("sender waits");
    node.close().await;
    t1
}

/// Our sender, to one receiving node or several (fan-out: every message
/// goes to every subscriber, `SendMode::All`); `batch`: through
/// `Node::publish_batch`.
async fn ours_send<R: Runtime>(run: Run, ends: Vec<TxEnds>, batch: bool) -> Instant {
    let Run { size, warm, n } = run;
    let node = secure::builder::<R>("tx").no_listen().build().await.expect("node starts");
    let mut waits = Vec::with_capacity(ends.len());
    for TxEnds { addr_rx, warm_rx, done_rx } in ends {
        node.connect(addr_rx.await.expect("address")).await.expect("connects");
        waits.push((warm_rx, done_rx));
    }
    node.wait_for_subscribers(TOPIC, waits.len()).await.expect("subscribers");
    let payload = Bytes::from(vec![0xA5; size]);
    publish_n(&node, &payload, warm, batch).await;
    let mut done = Vec::with_capacity(waits.len());
    for (warm_rx, done_rx) in waits {
        warm_rx.await.expect("warm-up received");
        done.push(done_rx);
    }
    let t0 = Instant::now();
    publish_n(&node, &payload, n, batch).await;
    // Wait for the receivers before closing, as the baselines do.
    for done_rx in done {
        done_rx.await.expect("receiver done");
    }
    node.close().await;
    t0
}

async fn ours_echo<R: Runtime>(total: usize, addr_tx: oneshot::Sender<String>, done_rx: oneshot::Receiver<()>) {
    let node = secure::builder::<R>("echo").build().await.expect("node starts");
    let mut sub = node.subscribe(PING).expect("subscribes");
    addr_tx.send(node.address().expect("listens").to_string()).expect("pinger waits");
    node.wait_for_subscribers(PONG, 1).await.expect("subscriber");
    for _ in 0..total {
        let m = sub.recv().await.expect("stream open");
        node.publish(PONG, m.payload).await.expect("publish");
    }
    done_rx.await.expect("pinger done");
    node.close().await;
}

async fn ours_ping<R: Runtime>(
    warm: usize,
    rounds: usize,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Vec<Duration> {
    let node = secure::builder::<R>("ping").no_listen().build().await.expect("node starts");
    let mut sub = node.subscribe(PONG).expect("subscribes");
    node.connect(addr_rx.await.expect("address")).await.expect("connects");
    node.wait_for_subscribers(PING, 1).await.expect("subscriber");
    let payload = Bytes::from(vec![0x5A; RTT_PAYLOAD]);
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warm + rounds {
        let t = Instant::now();
        node.publish(PING, payload.clone()).await.expect("publish");
        let m = sub.recv().await.expect("stream open");
        let d = t.elapsed();
        assert_eq!(m.payload.len(), RTT_PAYLOAD);
        if i >= warm {
            rtts.push(d);
        }
    }
    done_tx.send(()).expect("echoer waits");
    node.close().await;
    rtts
}

// ----- the runtimes and the baselines ------------------------------------

/// A boxed future, for tasks spawned in numbers.
type BoxFut<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs every future as a task of its own (one inline) and waits for all.
async fn join_all<P: baseline::Plain, T: Send + 'static>(mut futs: Vec<BoxFut<T>>) -> Vec<T> {
    if futs.len() == 1 {
        return vec![futs.pop().expect("one").await];
    }
    let tasks: Vec<BoxFut<T>> = futs.into_iter().map(P::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

#[path = "e2e/baseline.rs"]
mod baseline;
#[path = "e2e/direct.rs"]
mod direct;
/// Discovery and relay: `discovery_50_sim`, `discovery_50_loopback`, `relay_64B`.
#[path = "e2e/discovery.rs"]
mod discovery;
/// smol: every task on the global executor.
#[path = "e2e/on_smol.rs"]
mod on_smol;
/// tokio: one thread and one current-thread runtime per side.
#[path = "e2e/on_tokio.rs"]
mod on_tokio;
/// Interleaved samples, medians and the printed line.
#[path = "e2e/samples.rs"]
mod samples;
/// Encrypted against plaintext, and handshakes per second.
#[path = "e2e/secure.rs"]
mod secure;

// ----- measuring and printing -------------------------------------------

/// What is being measured now, and since when (for the watchdog).
static CURRENT: std::sync::Mutex<Option<(String, Instant)>> = std::sync::Mutex::new(None);
/// A measurement that takes longer than this is stuck: the run fails.
const STUCK: Duration = Duration::from_secs(120);

fn measuring(what: String) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some((what, Instant::now()));
}

/// Fails the run (rather than hanging it) if a measurement gets stuck.
fn watchdog() {
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_secs(1));
        if let Some((what, since)) = &*CURRENT.lock().unwrap_or_else(|e| e.into_inner()) {
            if since.elapsed() > STUCK {
                eprintln!("e2e: {what} did not finish within {STUCK:?}");
                std::process::exit(2);
            }
        }
    });
}

/// The runtime the sides run on.
#[derive(Clone, Copy, PartialEq)]
enum Rt {
    Tokio,
    Smol,
}

/// Which implementation is measured.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Impl {
    Ours,
    /// Ours through `publish_batch` and `next_runs`.
    Batch,
    /// The channel baseline.
    Base,
    /// The direct baseline.
    Direct,
}

const IMPLS: usize = 4;

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Tokio => "tokio",
            Rt::Smol => "smol",
        }
    }
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::Batch => "batch",
            Impl::Base => "baseline",
            Impl::Direct => "direct",
        }
    }
}

/// Runs `f` with the runtime's bench primitives.
macro_rules! on_runtime {
    ($rt:expr, $f:ident($($arg:expr),*)) => {
        match $rt {
            Rt::Tokio => $f::<on_tokio::TokioPlain>($($arg),*),
            Rt::Smol => $f::<on_smol::SmolPlain>($($arg),*),
        }
    };
}

/// File transfer cases (after the macro they use).
#[path = "e2e/files.rs"]
mod files;

/// One throughput run to `fanout` receivers: from the first measured send to
/// the last receive.
fn throughput_on<P: baseline::Plain>(which: Impl, run: Run, fanout: usize) -> Duration {
    let (rx, tx): (Vec<RxEnds>, Vec<TxEnds>) = (0..fanout).map(|_| ends()).unzip();
    let receivers = rx.into_iter().map(|e| -> BoxFut<Instant> {
        match which {
            Impl::Ours | Impl::Batch => Box::pin(ours_receive::<P::Ours>(run, e, which == Impl::Batch)),
            Impl::Base | Impl::Direct => Box::pin(baseline::base_receive::<P>(run, e)),
        }
    });
    let receivers = Box::pin(join_all::<P, Instant>(receivers.collect()));
    let sender: BoxFut<Instant> = {
        match which {
            Impl::Ours | Impl::Batch => Box::pin(ours_send::<P::Ours>(run, tx, which == Impl::Batch)),
            Impl::Base => {
                let [tx] = <[TxEnds; 1]>::try_from(tx).ok().expect("the channel baseline has one receiver");
                Box::pin(baseline::base_send::<P>(run, tx))
            }
            Impl::Direct => Box::pin(direct::direct_send::<P>(run, tx)),
        }
    };
    let (t1, t0) = P::pair(receivers, sender);
    t1.into_iter().max().expect("a receiver").saturating_duration_since(t0)
}

fn throughput_once(rt: Rt, which: Impl, run: Run, fanout: usize) -> Duration {
    measuring(format!("{} throughput of {} x {} B to {fanout} ({})", rt.name(), run.n, run.size, which.name()));
    on_runtime!(rt, throughput_on(which, run, fanout))
}

/// Round trips: the echoing side, then the pinging side, which returns them.
fn rtt_on<P: baseline::Plain>(which: Impl, warm: usize, rounds: usize) -> Vec<Duration> {
    let total = warm + rounds;
    let (addr_tx, addr_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let ((), rtts) = match which {
        Impl::Ours | Impl::Batch => P::pair(
            Box::pin(ours_echo::<P::Ours>(total, addr_tx, done_rx)),
            Box::pin(ours_ping::<P::Ours>(warm, rounds, addr_rx, done_tx)),
        ),
        Impl::Base => P::pair(
            Box::pin(baseline::base_echo::<P>(total, addr_tx, done_rx)),
            Box::pin(baseline::base_ping::<P>(warm, rounds, addr_rx, done_tx)),
        ),
        Impl::Direct => P::pair(
            Box::pin(direct::direct_echo::<P>(total, addr_tx, done_rx)),
            Box::pin(direct::direct_ping::<P>(warm, rounds, addr_rx, done_tx)),
        ),
    };
    rtts
}

/// p50 and p99 of one round-trip run.
fn rtt_once(rt: Rt, which: Impl, rounds: usize) -> (Duration, Duration) {
    measuring(format!("{} round trips ({})", rt.name(), which.name()));
    let warm = (rounds / 10).max(100);
    let mut rtts = on_runtime!(rt, rtt_on(which, warm, rounds));
    rtts.sort_unstable();
    let at = |q: usize| rtts[(rtts.len() * q / 100).min(rtts.len() - 1)];
    (at(50), at(99))
}

/// The best figure of each implementation over `s.repeat` rounds that
/// alternate between them. An implementation not measured keeps `worst`.
/// Kept for cases written against it; cases print medians instead
/// ([`samples_of`], [`ratio_line`]).
#[allow(dead_code)]
fn best_of<T: Copy>(
    s: &Settings,
    impls: &[Impl],
    worst: T,
    better: impl Fn(T, T) -> T,
    mut once: impl FnMut(Impl) -> T,
) -> impl Fn(Impl) -> T {
    let mut best = [worst; IMPLS];
    let wanted: Vec<Impl> = impls.iter().copied().filter(|i| s.wants_impl(*i)).collect();
    for (k, v) in interleave(s.repeat, wanted.len(), |k| once(wanted[k])).into_iter().enumerate() {
        let w = wanted[k] as usize;
        best[w] = v.into_iter().fold(best[w], &better);
    }
    move |which: Impl| best[which as usize]
}

/// Samples of each implementation, taken in turn (`s.samples(length)`
/// rounds); `once` gives one sample's figures (in the printed units). An
/// implementation `E2E_IMPL` leaves out gets figures of 0.
fn samples_of<const K: usize>(
    s: &Settings,
    length: Length,
    impls: &[Impl],
    mut once: impl FnMut(Impl) -> [f64; K],
) -> impl Fn(Impl) -> [Samples; K] {
    let wanted: Vec<Impl> = impls.iter().copied().filter(|i| s.wants_impl(*i)).collect();
    let taken = interleave(s.samples(length), wanted.len(), |k| once(wanted[k]));
    let mut all: [Vec<[f64; K]>; IMPLS] = Default::default();
    for (k, v) in taken.into_iter().enumerate() {
        all[wanted[k] as usize] = v;
    }
    move |which: Impl| std::array::from_fn(|j| Samples::of(all[which as usize].iter().map(|f| f[j])))
}

fn line(case: &str, ours: f64, base: f64, unit: &str) {
    let fmt = |v: f64| {
        if v >= 1000.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    println!("case={case} ours={} baseline={} unit={unit} ratio={:.3}", fmt(ours), fmt(base), ours / base);
}

/// Subscribers of the fan-out case.
const FANOUT: usize = 4;
/// The fan-out case: 64 B messages, each to every subscriber.
const FANOUT_CASE: Case = Case { name: "throughput_64B", size: 64, count: 250_000, unit: Unit::MsgPerSec };

fn run_throughput(s: &Settings, rt: Rt, case: &Case) {
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    let name = |group: &str| format!("{group}{on}{}", case.name);
    // The lines wanted: (ours, baseline, name).
    let lines: Vec<(Impl, Impl, String)> = [
        (Impl::Ours, Impl::Base, name("")),
        (Impl::Ours, Impl::Direct, name("direct/")),
        (Impl::Batch, Impl::Direct, name("batch/")),
    ]
    .into_iter()
    .filter(|(_, _, n)| s.wants(n))
    .collect();
    let mut impls: Vec<Impl> = Vec::new();
    for which in lines.iter().flat_map(|(o, b, _)| [*b, *o]) {
        if !impls.contains(&which) {
            impls.push(which);
        }
    }
    if impls.is_empty() {
        return;
    }
    let n = s.count(case.count);
    let run = Run { size: case.size, warm: warmup(n), n };
    let (rate, unit) = case.rate(n);
    let figures =
        samples_of(s, Length::Short, &impls, |which| [rate / throughput_once(rt, which, run, 1).as_secs_f64()]);
    eprintln!("# {on}{}: {n} x {} B", case.name, case.size);
    for (ours, base, name) in &lines {
        let ([o], [b]) = (figures(*ours), figures(*base));
        ratio_line(name, &o, &b, unit);
    }
}

impl Case {
    /// What `n` messages of this case amount to in its unit (divide by
    /// seconds for the rate), and the unit.
    fn rate(&self, n: usize) -> (f64, &'static str) {
        match self.unit {
            Unit::MsgPerSec => (n as f64, "msg/s"),
            Unit::MegabytesPerSec => ((n * self.size) as f64 / 1e6, "MB/s"),
        }
    }
}

/// One publisher, `FANOUT` subscribing nodes: the aggregate rate (messages
/// received by all subscribers per second) and the rate per subscriber.
fn run_fanout(s: &Settings, rt: Rt) {
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    let group = format!("fanout{FANOUT}/{on}");
    if !s.wants(&format!("{group}{}", FANOUT_CASE.name)) {
        return;
    }
    let n = s.count(FANOUT_CASE.count);
    let run = Run { size: FANOUT_CASE.size, warm: warmup(n), n };
    let impls = [Impl::Direct, Impl::Ours];
    // Per subscriber: messages each one received per second.
    let per_sub =
        samples_of(
            s,
            Length::Short,
            &impls,
            |which| [n as f64 / throughput_once(rt, which, run, FANOUT).as_secs_f64()],
        );
    eprintln!("# {group}{}: {n} x {} B to each of {FANOUT}", FANOUT_CASE.name, FANOUT_CASE.size);
    let ([ours], [direct]) = (per_sub(Impl::Ours), per_sub(Impl::Direct));
    let k = FANOUT as f64;
    ratio_line(&format!("{group}{}", FANOUT_CASE.name), &ours.scaled(k), &direct.scaled(k), "msg/s");
    ratio_line(&format!("{group}per_subscriber_64B"), &ours, &direct, "msg/s");
}

fn run_rtt(s: &Settings, rt: Rt) {
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    let baselines: Vec<(Impl, &str)> = [(Impl::Base, ""), (Impl::Direct, "direct/")]
        .into_iter()
        .filter(|(_, g)| s.wants(&format!("{g}{on}rtt")))
        .collect();
    if baselines.is_empty() {
        return;
    }
    let impls: Vec<Impl> = baselines.iter().map(|(i, _)| *i).chain([Impl::Ours]).collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let figures = samples_of(s, Length::Short, &impls, |which| {
        let (p50, p99) = rtt_once(rt, which, s.rounds);
        [us(p50), us(p99)]
    });
    eprintln!("# {on}rtt: {} round trips of {RTT_PAYLOAD} B each way", s.rounds);
    let [o50, o99] = figures(Impl::Ours);
    for (which, group) in baselines {
        let [b50, b99] = figures(which);
        ratio_line(&format!("{group}{on}rtt_p50"), &o50, &b50, "us");
        ratio_line(&format!("{group}{on}rtt_p99"), &o99, &b99, "us");
    }
}

fn run_runtime(s: &Settings, rt: Rt) {
    for case in &CASES {
        run_throughput(s, rt, case);
    }
    run_fanout(s, rt);
    run_rtt(s, rt);
    streams::run(s, rt);
    files::run_files(s, rt);
    secure::run_secure(s, rt);
    session::run(s, rt);
}

/// The streams cases.
#[path = "e2e/streams.rs"]
mod streams;

/// Resumable sessions: cost against `resume_window` 0, through a resetting proxy, resume latency.
#[path = "e2e/session.rs"]
mod session;

fn main() {
    if std::env::var_os("SMOL_THREADS").is_none() {
        // Before any thread exists: the smol executor reads it when first used.
        std::env::set_var("SMOL_THREADS", "2");
    }
    let s = Settings::from_env();
    if std::env::var("E2E_SECURE").is_ok_and(|v| v == "1") {
        secure::SECURE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if std::env::var("E2E_RESUME").is_ok_and(|v| v == "0") {
        secure::NO_RESUME.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    watchdog();
    if s.wants_runtime("tokio") {
        run_runtime(&s, Rt::Tokio);
    }
    if s.wants_runtime("smol") {
        run_runtime(&s, Rt::Smol);
    }
    if s.wants_runtime("tokio") {
        discovery::run(&s);
    }
    if s.wants_runtime("smol") {
        discovery::run_smol(&s);
    }
}
