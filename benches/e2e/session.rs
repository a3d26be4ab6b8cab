//! Resumable sessions: their cost on a healthy connection, and what they
//! deliver when the connection keeps being reset.
//!
//! ```text
//! case=session/throughput_64B    ours=<msg/s, sessions on> baseline=<msg/s, resume_window 0> ratio=<on/off>
//! case=session/throughput_1KiB   ...
//! case=session/throughput_64KiB  ours=<MB/s> ...
//! case=session/reset_every_100ms ours=<msg/s through a proxy resetting every 100 ms> baseline=<msg/s through the same proxy, not resetting>
//! case=session/resume_latency    ours=<us from reconnect to first message, sessions on> baseline=<the same, resume_window 0: a new session>
//! ```
//!
//! With `smol/` after `session/` on smol. Each figure is the median of
//! `max(E2E_SAMPLES, 3)` samples (`E2E_SAMPLES_PRECISE` for the three
//! throughput lines) taken alternately (off, on, off, on, ...),
//! printed with ` samples=<n> spread=<on>/<off>` (see `samples.rs`; for
//! `resume_latency` the samples are every reset of every round).
//! Both nodes run the default configuration (plaintext, like every
//! non-`secure/` case), with only `resume_window` changed.
//!
//! - `reset_every_100ms`: 1 KiB messages for 3 s (times `E2E_SCALE`),
//!   numbered, checked in order and exactly once at the receiver; after a
//!   warm-up the proxy
//!   (`tests/support/reset_proxy.rs`) resets each connection 100 ms after
//!   accepting it (RST both ways). The time lost per reset is mostly the
//!   dialer's: a connection that lived less than `liveness_timeout` counts
//!   as a failed attempt, so the redial delay doubles from `reconnect_base`
//!   (100 ms) towards `reconnect_cap` (5 s) at each reset.
//! - `resume_latency`: a publisher sends one 64 B message per millisecond;
//!   the proxy resets the connection; the figure is the time from the
//!   proxy accepting the redialed connection to the subscriber receiving a
//!   message through it (handshake, resume or new session, first message).

use super::baseline::Plain;
use super::{
    ends, measuring, publish_n, ratio_line, receive_n, warmup, Length, Rt, Run, RxEnds, Samples, Settings, TxEnds,
    CASES, TOPIC,
};
use super::{on_smol, on_tokio};
use bytes::Bytes;
use estafeta_driver::{Error, NodeBuilder, Runtime, Timer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

#[path = "../../tests/support/reset_proxy.rs"]
mod reset_proxy;
use reset_proxy::ResetProxy;

/// A node of these cases: the default configuration, resumption on or off
/// as the case says (`E2E_RESUME` does not apply here).
fn builder<R: Runtime>(name: &str, sessions: bool) -> NodeBuilder<R> {
    super::secure::builder_with(name, sessions)
}

async fn sleep<R: Runtime>(d: Duration) {
    let at = R::now() + d;
    let mut t = R::timer();
    t.reset(at);
    std::future::poll_fn(|cx| if R::now() >= at { Poll::Ready(()) } else { t.poll_fire(cx) }).await
}

/// Samples per figure: at least three; the throughput lines, judged
/// against 0.95, take `E2E_SAMPLES_PRECISE` (see `samples.rs`).
fn samples(s: &Settings, length: Length) -> usize {
    s.samples(length).max(3)
}

pub(crate) fn run(s: &Settings, rt: Rt) {
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    for case in &CASES {
        let name = format!("session/{on}{}", case.name);
        if s.wants(&name) {
            throughput(s, rt, &name, case);
        }
    }
    let name = format!("session/{on}reset_every_100ms");
    if s.wants(&name) {
        resets(s, rt, &name);
    }
    let name = format!("session/{on}resume_latency");
    if s.wants(&name) {
        resume_latency(s, rt, &name);
    }
}

// ----- throughput, sessions on against off -------------------------------

fn throughput(s: &Settings, rt: Rt, name: &str, case: &super::Case) {
    let n = s.count(case.count);
    let run = Run { size: case.size, warm: warmup(n), n };
    let rate = match case.unit {
        super::Unit::MsgPerSec => n as f64,
        super::Unit::MegabytesPerSec => (n * case.size) as f64 / 1e6,
    };
    let unit = if matches!(case.unit, super::Unit::MsgPerSec) { "msg/s" } else { "MB/s" };
    let mut figures = [Vec::new(), Vec::new()];
    for _ in 0..samples(s, Length::Precise) {
        for (i, sessions) in [(0, false), (1, true)] {
            measuring(format!("{name} sessions {sessions}"));
            let d = on_runtime!(rt, throughput_on(run, sessions));
            figures[i].push(rate / d.as_secs_f64());
        }
    }
    let [off, on] = figures;
    eprintln!("# {name}: {n} x {} B, off {off:.0?}, on {on:.0?}", case.size);
    ratio_line(name, &Samples::of(on), &Samples::of(off), unit);
}

fn throughput_on<P: Plain>(run: Run, sessions: bool) -> Duration {
    let (rx, tx) = ends();
    let (t1, t0) =
        P::pair(Box::pin(receive::<P::Ours>(run, rx, sessions)), Box::pin(send::<P::Ours>(run, tx, sessions)));
    t1.saturating_duration_since(t0)
}

async fn receive<R: Runtime>(run: Run, ends: RxEnds, sessions: bool) -> Instant {
    let (Run { size, warm, n }, RxEnds { addr_tx, warm_tx, done_tx }) = (run, ends);
    let node = builder::<R>("rx", sessions).build().await.expect("node starts");
    let mut sub = node.subscribe(TOPIC).expect("subscribes");
    addr_tx.send(node.address().expect("listens").to_string()).expect("sender waits");
    receive_n(&mut sub, warm, size, &mut None).await;
    warm_tx.send(()).expect("sender waits");
    receive_n(&mut sub, n, size, &mut None).await;
    let t1 = Instant::now();
    assert!(sub.try_next().is_none(), "more messages than sent");
    done_tx.send(()).expect("sender waits");
    node.close().await;
    t1
}

async fn send<R: Runtime>(run: Run, ends: TxEnds, sessions: bool) -> Instant {
    let (Run { size, warm, n }, TxEnds { addr_rx, warm_rx, done_rx }) = (run, ends);
    let node = builder::<R>("tx", sessions).no_listen().build().await.expect("node starts");
    node.connect(addr_rx.await.expect("address")).await.expect("connects");
    node.wait_for_subscribers(TOPIC, 1).await.expect("subscriber");
    let payload = Bytes::from(vec![0xA5; size]);
    publish_n(&node, &payload, warm, false).await;
    warm_rx.await.expect("warm-up received");
    let t0 = Instant::now();
    publish_n(&node, &payload, n, false).await;
    done_rx.await.expect("receiver done");
    node.close().await;
    t0
}

// ----- through a proxy resetting every 100 ms ----------------------------

/// Payload of the reset case.
const RESET_SIZE: usize = 1024;

fn resets(s: &Settings, rt: Rt, name: &str) {
    let span = Duration::from_secs_f64((3.0 * s.scale).max(0.5));
    let mut figures = [Vec::new(), Vec::new()];
    for _ in 0..samples(s, Length::Short) {
        for (i, resetting) in [(0, false), (1, true)] {
            measuring(format!("{name} resetting {resetting}"));
            let (d, n, count) = on_runtime!(rt, through_proxy_on(span, resetting));
            figures[i].push(n as f64 / d.as_secs_f64());
            if resetting {
                eprintln!("# {name}: {n} x {RESET_SIZE} B in {:.3} s, {count} resets", d.as_secs_f64());
            }
        }
    }
    let [quiet, resetting] = figures;
    ratio_line(name, &Samples::of(resetting), &Samples::of(quiet), "msg/s");
}

/// Numbered messages for `span` through a proxy (resetting every 100 ms
/// after the warm-up, or never); returns the time, the messages and the resets.
fn through_proxy_on<P: Plain>(span: Duration, resetting: bool) -> (Duration, u64, u64) {
    let (rx, tx) = ends();
    let ((t1, n), (t0, resets)) =
        P::pair(Box::pin(numbered_receive::<P::Ours>(rx)), Box::pin(numbered_send::<P::Ours>(span, tx, resetting)));
    (t1.saturating_duration_since(t0), n, resets)
}

/// Warm-up messages of the reset case.
const RESET_WARM: u64 = 10_000;

fn numbered(i: u64, last: bool) -> Bytes {
    let mut p = vec![0u8; RESET_SIZE];
    p[..8].copy_from_slice(&i.to_be_bytes());
    p[8] = last as u8;
    Bytes::from(p)
}

/// Receives numbered messages, each exactly once and in order, until the
/// last; returns when it arrived and how many came after the warm-up.
async fn numbered_receive<R: Runtime>(ends: RxEnds) -> (Instant, u64) {
    let RxEnds { addr_tx, warm_tx, done_tx } = ends;
    let mut warm_tx = Some(warm_tx);
    let node = builder::<R>("rx", true).build().await.expect("node starts");
    let mut sub = node.subscribe(TOPIC).expect("subscribes");
    addr_tx.send(node.address().expect("listens").host_port()).expect("sender waits");
    let mut want = 0u64;
    loop {
        let m = sub.recv().await.expect("stream open");
        let got = u64::from_be_bytes(m.payload[..8].try_into().expect("numbered"));
        assert_eq!(got, want, "a message lost, repeated or out of order through the resets");
        want += 1;
        if want == RESET_WARM {
            warm_tx.take().expect("once").send(()).expect("sender waits");
        }
        if m.payload[8] == 1 {
            break;
        }
    }
    let t1 = Instant::now();
    done_tx.send(()).expect("sender waits");
    node.close().await;
    (t1, want - RESET_WARM)
}

async fn numbered_send<R: Runtime>(span: Duration, ends: TxEnds, resetting: bool) -> (Instant, u64) {
    let TxEnds { addr_rx, warm_rx, done_rx } = ends;
    let node = builder::<R>("tx", true).no_listen().build().await.expect("node starts");
    let every = Duration::from_millis(100);
    let proxy = ResetProxy::start(&addr_rx.await.expect("address"), every, every, 1);
    proxy.set_resetting(false);
    node.connect(proxy.host_port()).await.expect("connects");
    node.wait_for_subscribers(TOPIC, 1).await.expect("subscriber");
    for i in 0..RESET_WARM {
        node.publish(TOPIC, numbered(i, false)).await.expect("publish");
    }
    warm_rx.await.expect("warm-up received");
    let t0 = Instant::now();
    proxy.set_resetting(resetting);
    let mut i = RESET_WARM;
    loop {
        let last = i % 64 == 0 && t0.elapsed() >= span;
        node.publish(TOPIC, numbered(i, last)).await.expect("publish");
        i += 1;
        if last {
            break;
        }
    }
    done_rx.await.expect("receiver done");
    let resets = proxy.resets();
    proxy.set_resetting(false);
    node.close().await;
    drop(proxy);
    (t0, resets)
}

// ----- from reconnect to the first message -------------------------------

/// Resets per sample.
const RESETS: usize = 5;

fn resume_latency(s: &Settings, rt: Rt, name: &str) {
    let mut figures = [Vec::new(), Vec::new()];
    for _ in 0..samples(s, Length::Short) {
        for (i, sessions) in [(0, false), (1, true)] {
            measuring(format!("{name} sessions {sessions}"));
            let us = on_runtime!(rt, latency_on(sessions));
            figures[i].extend(us);
        }
    }
    let [off, on] = figures;
    eprintln!("# {name}: {} resets each, median of all", on.len());
    ratio_line(name, &Samples::of(on), &Samples::of(off), "us");
}

/// Microseconds from each redialed connection's accept to the first
/// message received after it.
fn latency_on<P: Plain>(sessions: bool) -> Vec<f64> {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let (received, accepts) = P::pair(
        Box::pin(timed_receive::<P::Ours>(addr_tx, sessions, arrivals.clone())),
        Box::pin(paced_send::<P::Ours>(addr_rx, sessions, arrivals)),
    );
    let mut out = Vec::new();
    // The first accept is the first connection, not a reconnect.
    for at in accepts.iter().skip(1) {
        if let Some(first) = received.iter().find(|t| *t >= at) {
            out.push(first.duration_since(*at).as_secs_f64() * 1e6);
        }
    }
    assert_eq!(out.len(), RESETS, "every reconnect delivered a message");
    out
}

/// Records when each message arrives until the last (payload `[1]`).
async fn timed_receive<R: Runtime>(
    addr_tx: tokio::sync::oneshot::Sender<String>,
    sessions: bool,
    arrivals: Arc<Mutex<Vec<Instant>>>,
) -> Vec<Instant> {
    let node = builder::<R>("rx", sessions).build().await.expect("node starts");
    let mut sub = node.subscribe(TOPIC).expect("subscribes");
    addr_tx.send(node.address().expect("listens").host_port()).expect("sender waits");
    loop {
        let m = sub.recv().await.expect("stream open");
        arrivals.lock().expect("arrivals").push(Instant::now());
        if m.payload[0] == 1 {
            break;
        }
    }
    node.close().await;
    std::mem::take(&mut *arrivals.lock().expect("arrivals"))
}

/// Publishes one message a millisecond through the proxy while a thread
/// resets the connection `RESETS` times, each once the previous reconnect
/// has carried messages for 100 ms; returns the proxy's accept times.
async fn paced_send<R: Runtime>(
    addr_rx: tokio::sync::oneshot::Receiver<String>,
    sessions: bool,
    arrivals: Arc<Mutex<Vec<Instant>>>,
) -> Vec<Instant> {
    let node = builder::<R>("tx", sessions).no_listen().build().await.expect("node starts");
    let proxy = Arc::new(ResetProxy::start(
        &addr_rx.await.expect("address"),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        1,
    ));
    node.connect(proxy.host_port()).await.expect("connects");
    node.wait_for_subscribers(TOPIC, 1).await.expect("subscriber");
    let stop = Arc::new(AtomicBool::new(false));
    let controller = {
        let (proxy, stop) = (proxy.clone(), stop.clone());
        std::thread::spawn(move || {
            let received = || arrivals.lock().expect("arrivals").len();
            std::thread::sleep(Duration::from_millis(100));
            for _ in 0..RESETS {
                let before = proxy.accepted();
                proxy.reset_now();
                while proxy.accepted() == before {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Messages flow again through the new connection for 100 ms.
                let seen = received();
                while received() == seen {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let publish = |last: bool| {
        let node = &node;
        async move {
            let payload = Bytes::from(if last { vec![1u8; 64] } else { vec![0u8; 64] });
            loop {
                match node.publish(TOPIC, payload.clone()).await {
                    Ok(_) => return,
                    // Sessions off: the subscriber is gone until the new session.
                    Err(Error::Publish(_)) => node.wait_for_subscribers(TOPIC, 1).await.expect("subscriber"),
                    Err(e) => panic!("publish: {e}"),
                }
            }
        }
    };
    while !stop.load(Ordering::SeqCst) {
        publish(false).await;
        sleep::<R>(Duration::from_millis(1)).await;
    }
    publish(true).await;
    controller.join().expect("controller");
    node.close().await;
    proxy.accept_times()
}
