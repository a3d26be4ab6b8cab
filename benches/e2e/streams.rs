//! The streams cases of the end-to-end bench (same process layout as the
//! others: one side per thread and runtime on tokio, the global executor on
//! smol):
//!
//! | name | ours | baseline |
//! |---|---|---|
//! | `stream_64B`, `stream_1KiB` (msg/s) | one stream: a producer writes, the consumer reads | pub/sub of the same size (`throughput_*`'s ours), same run |
//! | `request_rtt_p50` (us) | `Node::request` to a node that echoes each request on its stream (both nodes plaintext) | plain-TCP ping-pong (`direct/rtt_p50`'s baseline) |
//! | `stream_beside_stalled` (msg/s) | one stream of 1 KiB writes beside a stalled stream on the same connection | the same stream alone |
//!
//! Like every case but `secure/`, the nodes run in the plaintext mode
//! ([`super::secure::builder`]): `request_rtt_p50` sets a node against plain
//! TCP, and `stream_*` against pub/sub nodes, which are plaintext too. What
//! encryption costs is in the `secure/` lines. (The idle-stream figures keep
//! the default, secure, mode: they are no ratio.)
//!
//! It also prints, as `#` lines on stderr, the cost of one idle open stream:
//! the memory both ends hold for it (resident set growth over 10,000 idle
//! streams, divided) and its share of a stream heartbeat (bytes per interval).

use super::*;

const STOPIC: &str = "bench-stream";
const ETOPIC: &str = "bench-echo";

/// The producer side: serves `STOPIC`; each request is answered on a task
/// of its own with `total` writes of `size` bytes (forever if it asks for
/// "stall"), then a close.
async fn producer<R: Runtime>(
    size: usize,
    total: usize,
    addr_tx: oneshot::Sender<String>,
    done_rx: oneshot::Receiver<()>,
) {
    let node = super::secure::builder::<R>("producer").build().await.expect("node starts");
    let mut server = node.serve_streams(STOPIC).expect("serves");
    addr_tx.send(node.address().expect("listens").to_string()).expect("consumer waits");
    let serve = async move {
        while let Some(req) = server.recv().await {
            let mut w = req.writer;
            let stall = &req.request[..] == b"stall";
            R::spawn(async move {
                let payload = Bytes::from(vec![0x5A; size]);
                let mut i = 0;
                while stall || i < total {
                    if w.write(payload.clone()).await.is_err() {
                        return;
                    }
                    i += 1;
                }
                w.close();
            });
        }
    };
    R::spawn(serve);
    done_rx.await.expect("consumer done");
    node.close().await;
}

/// The consumer side: opens a stalled stream first if asked, then the
/// measured one; returns the time from the end of the warm-up to the last
/// message.
async fn consumer<R: Runtime>(
    run: Run,
    stalled: bool,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Duration {
    let node = super::secure::builder::<R>("consumer").no_listen().build().await.expect("node starts");
    node.connect(addr_rx.await.expect("address")).await.expect("connects");
    node.wait_for_servers(STOPIC, 1).await.expect("server");
    let _stall = stalled.then(|| node.open_stream(STOPIC, "stall"));
    let mut s = node.open_stream(STOPIC, "go");
    for _ in 0..run.warm {
        s.recv().await.expect("open").expect("reply");
    }
    let t0 = Instant::now();
    for _ in 0..run.n {
        let b = s.recv().await.expect("open").expect("reply");
        assert_eq!(b.len(), run.size);
    }
    let d = t0.elapsed();
    done_tx.send(()).expect("producer waits");
    node.close().await;
    d
}

fn stream_on<P: baseline::Plain>(run: Run, stalled: bool) -> Duration {
    let (addr_tx, addr_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let ((), d) = P::pair(
        Box::pin(producer::<P::Ours>(run.size, run.warm + run.n, addr_tx, done_rx)),
        Box::pin(consumer::<P::Ours>(run, stalled, addr_rx, done_tx)),
    );
    d
}

/// The echo side of the request case.
async fn echo<R: Runtime>(total: usize, addr_tx: oneshot::Sender<String>, done_rx: oneshot::Receiver<()>) {
    let node = super::secure::builder::<R>("echo").build().await.expect("node starts");
    let mut server = node.serve_streams(ETOPIC).expect("serves");
    addr_tx.send(node.address().expect("listens").to_string()).expect("pinger waits");
    for _ in 0..total {
        let req = server.recv().await.expect("request");
        let mut w = req.writer;
        w.write(req.request).await.expect("write");
        w.close();
    }
    done_rx.await.expect("pinger done");
    node.close().await;
}

async fn requester<R: Runtime>(
    warm: usize,
    rounds: usize,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Vec<Duration> {
    let node = super::secure::builder::<R>("ping").no_listen().build().await.expect("node starts");
    node.connect(addr_rx.await.expect("address")).await.expect("connects");
    node.wait_for_servers(ETOPIC, 1).await.expect("server");
    let payload = Bytes::from(vec![0x5A; RTT_PAYLOAD]);
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warm + rounds {
        let t = Instant::now();
        let r = node.request(ETOPIC, payload.clone(), Duration::from_secs(10)).await.expect("reply");
        let d = t.elapsed();
        assert_eq!(r.len(), RTT_PAYLOAD);
        if i >= warm {
            rtts.push(d);
        }
    }
    done_tx.send(()).expect("echoer waits");
    node.close().await;
    rtts
}

fn request_p50_on<P: baseline::Plain>(warm: usize, rounds: usize) -> Duration {
    let (addr_tx, addr_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let ((), mut rtts) = P::pair(
        Box::pin(echo::<P::Ours>(warm + rounds, addr_tx, done_rx)),
        Box::pin(requester::<P::Ours>(warm, rounds, addr_rx, done_tx)),
    );
    rtts.sort_unstable();
    rtts[rtts.len() / 2]
}

/// Memory and heartbeat bytes of idle open streams, on one runtime.
async fn idle_cost<R: Runtime>(streams: usize) -> (f64, f64) {
    let mut cfg = estafeta_driver::Config::default();
    cfg.streams.heartbeat_interval = Duration::from_millis(200);
    let p = Node::<R>::builder("idle-p").config(cfg.clone()).build().await.expect("node starts");
    let mut server = p.serve_streams(STOPIC).expect("serves");
    let c = Node::<R>::builder("idle-c").config(cfg).no_listen().build().await.expect("node starts");
    c.connect(p.address().expect("listens").to_string()).await.expect("connects");
    c.wait_for_servers(STOPIC, 1).await.expect("server");
    let rss0 = rss_bytes();
    let open: Vec<_> = (0..streams).map(|_| c.open_stream(STOPIC, "idle")).collect();
    let mut writers = Vec::with_capacity(streams);
    for _ in 0..streams {
        writers.push(server.recv().await.expect("request").writer);
    }
    let rss1 = rss_bytes();
    // Heartbeat bytes: what both nodes send over 10 intervals, all idle.
    let b0 = p.stats().session.bytes_out + c.stats().session.bytes_out;
    let h0 = p.stats().streams.heartbeats + c.stats().streams.heartbeats;
    sleep::<R>(Duration::from_millis(2000)).await;
    let b1 = p.stats().session.bytes_out + c.stats().session.bytes_out;
    let h1 = p.stats().streams.heartbeats + c.stats().streams.heartbeats;
    let per_beat = (b1 - b0) as f64 / ((h1 - h0).max(1)) as f64;
    drop(open);
    drop(writers);
    c.close().await;
    p.close().await;
    ((rss1.saturating_sub(rss0)) as f64 / streams as f64, per_beat / streams as f64)
}

async fn sleep<R: Runtime>(d: Duration) {
    use estafeta_driver::Timer;
    let mut t = R::timer();
    let at = R::now() + d;
    t.reset(at);
    std::future::poll_fn(|cx| if R::now() >= at { std::task::Poll::Ready(()) } else { t.poll_fire(cx) }).await
}

/// The resident set size of this process (Linux), or 0.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// The streams lines of one runtime.
pub(crate) fn run(s: &Settings, rt: Rt) {
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    for (name, size, count) in [("stream_64B", 64, 500_000), ("stream_1KiB", 1024, 200_000)] {
        let case = format!("{on}{name}");
        if !s.wants(&case) {
            continue;
        }
        let n = s.count(count);
        let run = Run { size, warm: warmup(n), n };
        let (ours, base) = ours_and_baseline(s.samples(Length::Short), |ours| {
            let d = if ours {
                measuring(format!("{} stream of {n} x {size} B", rt.name()));
                on_runtime!(rt, stream_on(run, false))
            } else {
                throughput_once(rt, Impl::Ours, run, 1)
            };
            n as f64 / d.as_secs_f64()
        });
        ratio_line(&case, &ours, &base, "msg/s");
    }
    let case = format!("{on}request_rtt_p50");
    if s.wants(&case) {
        let warm = (s.rounds / 10).max(100);
        let (ours, base) = ours_and_baseline(s.samples(Length::Short), |ours| {
            let d = if ours {
                measuring(format!("{} request round trips", rt.name()));
                on_runtime!(rt, request_p50_on(warm, s.rounds))
            } else {
                rtt_once(rt, Impl::Direct, s.rounds).0
            };
            d.as_secs_f64() * 1e6
        });
        ratio_line(&case, &ours, &base, "us");
    }
    let case = format!("{on}stream_beside_stalled");
    if s.wants(&case) {
        let n = s.count(200_000);
        let run = Run { size: 1024, warm: warmup(n), n };
        let (beside, solo) = ours_and_baseline(s.samples(Length::Short), |beside| {
            measuring(format!("{} stream beside a stalled one", rt.name()));
            n as f64 / on_runtime!(rt, stream_on(run, beside)).as_secs_f64()
        });
        ratio_line(&case, &beside, &solo, "msg/s");
    }
    if s.wants(&format!("{on}stream_idle")) {
        idle_line(rt, on);
    }
}

/// The idle-stream figures, measured in a fresh process: resident set
/// growth shows nothing in a process whose allocator kept the pages freed
/// by the cases before (smol's figure read 0 B after the tokio lines).
fn idle_line(rt: Rt, on: &str) {
    const CHILD: &str = "E2E_IDLE_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().expect("the bench's own path");
        let status = std::process::Command::new(exe)
            .args(std::env::args().skip(1).filter(|a| a == "--bench"))
            .env(CHILD, "1")
            .env("E2E_CASES", format!("{on}stream_idle"))
            .env("E2E_RUNTIME", rt.name())
            .status()
            .expect("the bench runs itself");
        assert!(status.success(), "the idle-stream child failed: {status}");
        return;
    }
    measuring(format!("{} idle streams", rt.name()));
    let (mem, hb) = match rt {
        Rt::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(idle_cost::<estafeta_tokio::Tokio>(10_000)),
        Rt::Smol => smol::block_on(idle_cost::<estafeta_smol::Smol>(10_000)),
    };
    eprintln!("# {on}stream_idle: {mem:.0} B of memory per idle open stream (both ends), {hb:.1} B of heartbeat per stream per interval");
}
