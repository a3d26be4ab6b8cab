//! Real-network faults: nodes run as separate processes (this test binary
//! re-run in a role, on tokio) in two network namespaces joined by a veth
//! pair, and `ip`/`tc` break the network under them. Each test asserts a
//! guarantee users rely on. Needs root (CI runs as root); elsewhere each
//! test prints one line saying it was skipped.
//!
//! Roles (environment `ESTAFETA_NETNS_ROLE`):
//! - `sub`: binds `10.99.0.2:7000`, subscribes to `t`, checks that the
//!   messages (8-byte big-endian sequence numbers, padded) arrive in order
//!   without duplicates, prints `GOT count=.. next=..` every 100 ms and a
//!   final `DONE ...` line once `EXPECT` messages arrived or nothing
//!   arrived for `QUIET_MS`; `IDENTITY=<n>` fixes its identity key (and
//!   so its id) across processes;
//! - `pub`: dials the subscriber, prints `READY` when it subscribed, then
//!   publishes `COUNT` messages of `SIZE` bytes at `RATE` per second (0: as
//!   fast as the node takes them) on tokio, or smol with `RUNTIME=smol`,
//!   prints `PUBLISHED ...`, then closes
//!   gracefully (`CLOSE=1`) or keeps running; it prints `UP ms=..` and
//!   `DOWN ms=.. reason=..` for every session that starts and ends, and
//!   `LOST ms=.. reason=..`, `SESSION RESUMED ms=.. resent=..` and
//!   `SESSION ENDED ms=.. reason=.. unacked=.. from=..` for a session's
//!   connection lost, its resumption and its end (`RESUME_MS`: the resume window, default 30 s).

mod netns;

use estafeta_driver::{Config, DialEvent, Event, Node, Runtime, SessionEvent, Timer};
use netns::{field, Pair, Proc, ADDR_B};
use std::time::{Duration, Instant};

const TOPIC: &str = "t";

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The configuration both roles run: short timers so faults show fast.
fn config() -> Config {
    let mut c = Config::default();
    c.session.heartbeat_interval = Duration::from_millis(env_u64("HB_MS", 250));
    c.session.liveness_timeout = Duration::from_millis(env_u64("LIVENESS_MS", 1500));
    c.session.close_timeout = Duration::from_secs(20);
    c.dialer.dial_timeout = Duration::from_millis(env_u64("DIAL_TIMEOUT_MS", 1000));
    c.dialer.reconnect_base = Duration::from_millis(100);
    c.dialer.reconnect_cap = Duration::from_millis(env_u64("CAP_MS", 1000));
    c.dialer.reconnect_max_attempts = None;
    c.session.resume_window = Duration::from_millis(env_u64("RESUME_MS", 30_000));
    c
}

/// Runs the role this process was started for, if any; true if it did.
fn play_role() -> bool {
    let Some(role) = netns::role() else { return false };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match role.as_str() {
        "sub" => rt.block_on(subscriber()),
        "producer" => rt.block_on(producer()),
        "consumer" => rt.block_on(consumer()),
        "pub" => match std::env::var("RUNTIME").as_deref() {
            Ok("smol") => smol::block_on(publisher::<estafeta_smol::Smol>()),
            _ => rt.block_on(publisher::<estafeta_tokio::Tokio>()),
        },
        other => panic!("unknown role {other}"),
    }
    true
}

fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

/// Sleeps until `at` on runtime `R`'s timer.
async fn sleep_until<R: Runtime>(at: Instant) {
    let mut t = R::timer();
    t.reset(at);
    std::future::poll_fn(|cx| if Instant::now() >= at { std::task::Poll::Ready(()) } else { t.poll_fire(cx) }).await
}

/// What a receiver counted of numbered items (an 8-byte big-endian number
/// first): how many, the next expected, duplicates and numbers skipped. It
/// prints `GOT count= next=` every 100 ms.
struct Tally {
    count: u64,
    next: u64,
    dups: u64,
    gaps: u64,
    last_print: Instant,
}

impl Default for Tally {
    fn default() -> Self {
        Tally { count: 0, next: 0, dups: 0, gaps: 0, last_print: Instant::now() }
    }
}

impl Tally {
    fn take(&mut self, item: &[u8]) {
        let seq = u64::from_be_bytes(item[..8].try_into().unwrap());
        self.count += 1;
        if seq < self.next {
            self.dups += 1;
        } else {
            self.gaps += seq - self.next;
            self.next = seq + 1;
        }
        if self.last_print.elapsed() >= Duration::from_millis(100) {
            self.last_print = Instant::now();
            println!("GOT count={} next={}", self.count, self.next);
        }
    }

    fn line(&self) -> String {
        format!("count={} next={} dups={} gaps={}", self.count, self.next, self.dups, self.gaps)
    }
}

async fn subscriber() {
    let quiet = Duration::from_millis(env_u64("QUIET_MS", 3000));
    let expect = env_u64("EXPECT", u64::MAX);
    let mut builder = Node::<estafeta_tokio::Tokio>::builder("sub").bind(format!("{ADDR_B}:7000")).config(config());
    if let Some(key) = std::env::var("IDENTITY").ok().and_then(|v| v.parse::<u8>().ok()) {
        // The same id in every process started with this key (a restart).
        builder = builder.identity(estafeta_core::Identity::from_secret([key; 32]));
    }
    let node = builder.build().await.unwrap();
    let mut sub = node.subscribe(TOPIC).unwrap();
    let mut events = node.events();
    println!("READY");
    let mut t = Tally::default();
    let mut resets = 0u64;
    loop {
        while let Some(e) = events.try_next() {
            if let Event::PeerDown { reason, .. } = &e {
                let r = reason.to_string();
                if r.contains("reset") {
                    resets += 1;
                }
                println!("DOWN reason={}", r.replace(' ', "_"));
            }
        }
        let m = match tokio::time::timeout(quiet, sub.recv()).await {
            Ok(Some(m)) => m,
            _ if t.count > 0 => break,
            _ => continue,
        };
        t.take(&m.payload);
        if t.count >= expect {
            break;
        }
    }
    println!("DONE {} resets={resets}", t.line());
    node.close().await;
}

async fn publisher<R: Runtime>() {
    let start = Instant::now();
    let (count, size, rate) = (env_u64("COUNT", 1000), env_u64("SIZE", 64) as usize, env_u64("RATE", 0));
    let node = Node::<R>::builder("pub").bind("0.0.0.0:0").config(config()).build().await.unwrap();
    let mut events = node.events();
    R::spawn(async move {
        while let Some(e) = events.recv().await {
            match e {
                Event::PeerUp { .. } => println!("UP ms={}", ms_since(start)),
                Event::PeerDown { reason, .. } => {
                    println!("DOWN ms={} reason={}", ms_since(start), reason.to_string().replace(' ', "_"))
                }
                Event::Session(SessionEvent::Suspended { reason, .. }) => {
                    println!("LOST ms={} reason={}", ms_since(start), reason.to_string().replace(' ', "_"))
                }
                Event::Session(SessionEvent::Resumed { resent, .. }) => {
                    println!("SESSION RESUMED ms={} resent={resent}", ms_since(start))
                }
                Event::Session(SessionEvent::Ended { reason, unacked, unsent, received, .. }) => println!(
                    "SESSION ENDED ms={} reason={:?} unacked={} from={} unsent={unsent} received={received}",
                    ms_since(start),
                    reason,
                    unacked.end - unacked.start,
                    unacked.start
                ),
                Event::Dial(DialEvent::Failed { reason, .. }) => {
                    println!("DIALFAIL ms={} reason={}", ms_since(start), reason.to_string().replace(' ', "_"))
                }
                _ => {}
            }
        }
    });
    node.connect(format!("{ADDR_B}:7000")).await.unwrap();
    node.wait_for_subscribers(TOPIC, 1).await.unwrap();
    println!("READY ms={}", ms_since(start));
    let began = Instant::now();
    let mut payload = vec![0u8; size.max(8)];
    let mut refused = 0u64;
    for i in 0..count {
        if let Some(gap) = (i * 1_000_000).checked_div(rate) {
            sleep_until::<R>(began + Duration::from_micros(gap)).await;
        }
        payload[..8].copy_from_slice(&i.to_be_bytes());
        // While the peer is away (no subscriber) a publish is refused:
        // counted, and with resumable sessions it is buffered instead.
        if node.publish(TOPIC, payload.clone()).await.is_err() {
            refused += 1;
        }
    }
    let s = node.stats();
    println!("PUBLISHED count={count} refused={refused} sent={} dropped={}", s.pubsub.sent, s.pubsub.dropped);
    if env_u64("CLOSE", 1) == 1 {
        node.close().await;
        let s = node.stats();
        println!("CLOSED sent={} dropped={} ms={}", s.pubsub.sent, s.pubsub.dropped, ms_since(start));
    } else {
        sleep_until::<R>(Instant::now() + Duration::from_secs(3600)).await;
    }
}

/// Serves stream topic `rows` on `ADDR_B`: answers the first request with
/// `COUNT` numbered 64-byte replies at `RATE` a second, then ends it (1000).
async fn producer() {
    let (count, rate) = (env_u64("COUNT", 6000), env_u64("RATE", 1000).max(1));
    let node = Node::<estafeta_tokio::Tokio>::builder("producer")
        .bind(format!("{ADDR_B}:7000"))
        .config(config())
        .build()
        .await
        .unwrap();
    let mut server = node.serve_streams("rows").unwrap();
    println!("READY");
    let mut w = server.recv().await.expect("a request").writer;
    let began = Instant::now();
    let mut payload = vec![0u8; 64];
    for i in 0..count {
        sleep_until::<estafeta_tokio::Tokio>(began + Duration::from_micros(i * 1_000_000 / rate)).await;
        payload[..8].copy_from_slice(&i.to_be_bytes());
        if let Err(e) = w.write(payload.clone()).await {
            println!("WRITEFAIL i={i} error={}", format!("{e:?}").replace(' ', "_"));
            break;
        }
    }
    w.close();
    println!("WROTE count={count}");
    sleep_until::<estafeta_tokio::Tokio>(Instant::now() + Duration::from_secs(3600)).await;
}

/// Opens a stream on `rows` at `ADDR_B` and reads it to its end, counting
/// replies out of order or twice.
async fn consumer() {
    let node =
        Node::<estafeta_tokio::Tokio>::builder("consumer").bind("0.0.0.0:0").config(config()).build().await.unwrap();
    let mut events = node.events();
    node.connect(format!("{ADDR_B}:7000")).await.unwrap();
    node.wait_for_servers("rows", 1).await.unwrap();
    let mut stream = node.open_stream("rows", "all of them");
    println!("READY");
    let (mut t, mut resumed) = (Tally::default(), 0u64);
    while let Some(item) = stream.recv().await {
        while let Some(e) = events.try_next() {
            if let Event::Session(SessionEvent::Resumed { .. }) = e {
                resumed += 1;
                println!("RESUMED at={}", t.next);
            }
        }
        let Ok(reply) = item else { break };
        t.take(&reply);
    }
    let end = stream.end().map_or(0, |e| e.code.0);
    println!("DONE {} end={end} resumed={resumed}", t.line());
    node.close().await;
}

/// Starts the subscriber in `b` and then the publisher in `a`, each once it
/// says READY.
fn start(pair: &Pair, test: &str, sub_env: &[(&str, String)], pub_env: &[(&str, String)]) -> (Proc, Proc) {
    let mut sub = Proc::spawn(&pair.b, test, "sub", sub_env);
    sub.wait_line("READY", Duration::from_secs(10));
    let mut publ = Proc::spawn(&pair.a, test, "pub", pub_env);
    publ.wait_line("READY", Duration::from_secs(10));
    (sub, publ)
}

/// A graceful close over a link shaped to 2 Mbit/s delivers everything: the
/// publisher's last ~hundreds of KB sit in its kernel when it closes, and
/// the subscriber's heartbeats keep coming. (Before the close wait, the
/// subscriber lost the last 174-279 messages and saw a reset.)
#[test]
fn graceful_close_over_a_2mbit_link_delivers_everything() {
    graceful_close_over_a_2mbit_link("graceful_close_over_a_2mbit_link_delivers_everything", "tokio");
}

/// The same with the publisher on smol.
#[test]
fn graceful_close_over_a_2mbit_link_delivers_everything_smol() {
    graceful_close_over_a_2mbit_link("graceful_close_over_a_2mbit_link_delivers_everything_smol", "smol");
}

fn graceful_close_over_a_2mbit_link(test: &str, runtime: &str) {
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    pair.shape_a("2mbit");
    let count = 4000u64;
    let env = |extra: &[(&'static str, String)]| {
        let mut v = vec![("HB_MS", "100".to_string()), ("QUIET_MS", "3000".to_string())];
        v.extend_from_slice(extra);
        v
    };
    let publ_env =
        env(&[("COUNT", count.to_string()), ("SIZE", "128".into()), ("RATE", "0".into()), ("RUNTIME", runtime.into())]);
    let (mut sub, mut publ) = start(&pair, test, &env(&[]), &publ_env);
    let published = publ.wait_line("PUBLISHED ", Duration::from_secs(20));
    assert_eq!(field::<u64>(&published, "refused"), 0);
    let closed = publ.wait_line("CLOSED ", Duration::from_secs(25));
    let done = sub.wait_line("DONE ", Duration::from_secs(10));
    println!("publisher: {closed}; subscriber: {done}");
    assert_eq!(field::<u64>(&closed, "dropped"), 0, "{closed}");
    assert_eq!(field::<u64>(&done, "count"), count, "every message arrived: {done}");
    assert_eq!((field::<u64>(&done, "dups"), field::<u64>(&done, "gaps")), (0, 0), "{done}");
    assert_eq!(field::<u64>(&done, "resets"), 0, "no connection reset: {done}");
    assert!(publ.wait_exit(Duration::from_secs(5)) && sub.wait_exit(Duration::from_secs(10)));
}

/// After a silent partition (the subscriber's address removed: SYNs and
/// segments vanish), the reconnect comes within the dial timeout plus the
/// backoff cap of the heal, not after the kernel's two minutes of SYN
/// retries.
#[test]
fn after_a_silent_partition_the_reconnect_follows_the_heal_within_dial_timeout_and_backoff() {
    let test = "after_a_silent_partition_the_reconnect_follows_the_heal_within_dial_timeout_and_backoff";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let env = [("COUNT", "0".to_string()), ("CLOSE", "0".into()), ("RUNTIME", "smol".into())];
    let (_sub, mut publ) = start(&pair, test, &[("QUIET_MS", "60000".into())], &env);
    pair.address_b(false);
    // Liveness (1.5 s) ends the connection (the session is suspended);
    // then dials into silence time out.
    publ.wait_line("LOST ", Duration::from_secs(5));
    // Dials into the silence are abandoned at the dial timeout (1 s).
    let fail = publ.wait_line("reason=dial_timed_out", Duration::from_secs(4));
    std::thread::sleep(Duration::from_secs(2));
    let healed = Instant::now();
    pair.address_b(true);
    publ.wait_line("RESUMED ", Duration::from_secs(10));
    let took = healed.elapsed();
    println!("a dial timed out{fail}; reconnected {took:?} after the heal");
    // dial_timeout 1 s + reconnect_cap 1 s, plus a handshake and slack.
    assert!(took <= Duration::from_millis(3500), "reconnect {took:?} after the heal");
}

/// The link taken down and up again: the connection ends by liveness (the
/// link is down, not the peer) and the session is suspended, dials fail
/// while it is down, and the session resumes soon after the link is back.
#[test]
fn a_link_down_and_up_suspends_the_session_and_resumes_it() {
    let test = "a_link_down_and_up_suspends_the_session_and_resumes_it";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let env = [("COUNT", "0".to_string()), ("CLOSE", "0".into()), ("RUNTIME", "smol".into())];
    let (_sub, mut publ) = start(&pair, test, &[("QUIET_MS", "60000".into())], &env);
    pair.link_b(false);
    let down = publ.wait_line("LOST ", Duration::from_secs(5));
    assert!(down.contains("liveness"), "the silent peer's connection is ended by liveness: {down}");
    std::thread::sleep(Duration::from_secs(2));
    let healed = Instant::now();
    pair.link_b(true);
    publ.wait_line("RESUMED ", Duration::from_secs(10));
    assert!(
        healed.elapsed() <= Duration::from_millis(3500),
        "reconnect {:?} after the link came back",
        healed.elapsed()
    );
}

/// The subscriber's host vanishes (its link deleted): the publisher
/// notices the connection lost within its liveness timeout (the session is
/// suspended) and its dials keep failing on time (no dial hangs on SYN
/// retries).
#[test]
fn a_vanished_host_is_declared_down_and_dials_keep_timing_out() {
    let test = "a_vanished_host_is_declared_down_and_dials_keep_timing_out";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let (_sub, mut publ) =
        start(&pair, test, &[("QUIET_MS", "60000".into())], &[("COUNT", "0".to_string()), ("CLOSE", "0".into())]);
    let gone = Instant::now();
    pair.delete_link();
    publ.wait_line("LOST ", Duration::from_secs(5));
    assert!(gone.elapsed() <= Duration::from_millis(2500), "liveness 1.5 s: {:?}", gone.elapsed());
    // The link is gone, so the route is too: a dial fails at once
    // (unreachable) or times out; either way dials keep being retried.
    for _ in 0..2 {
        publ.wait_line("DIALFAIL ", Duration::from_secs(4));
    }
}

/// SIGKILL of the subscriber: the publisher notices at once (the kernel
/// resets the connection) and suspends the session; the subscriber does
/// not come back within the resume window (1 s here), so the session ends
/// with its loss reported (`Expired`, the unacknowledged range and the
/// unsent count), and every message is accounted for: sent (acknowledged),
/// refused (no subscriber) or reported dropped.
#[test]
fn a_sigkilled_subscriber_is_noticed_at_once_and_unsent_messages_are_reported() {
    let test = "a_sigkilled_subscriber_is_noticed_at_once_and_unsent_messages_are_reported";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let env =
        [("COUNT", "8000".to_string()), ("RATE", "2000".into()), ("CLOSE", "0".into()), ("RESUME_MS", "1000".into())];
    let (mut sub, mut publ) = start(&pair, test, &[("QUIET_MS", "60000".into())], &env);
    sub.wait_line("GOT ", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    sub.kill();
    let lost = publ.wait_line("LOST ", Duration::from_secs(5));
    assert!(killed.elapsed() < Duration::from_millis(1500), "noticed {:?} after the kill: {lost}", killed.elapsed());
    let ended = publ.wait_line("ENDED ", Duration::from_secs(5));
    assert!(ended.contains("reason=Expired"), "the window passed: {ended}");
    assert!(field::<u64>(&ended, "unacked") + field::<u64>(&ended, "unsent") > 0, "the loss is reported: {ended}");
    let published = publ.wait_line("PUBLISHED ", Duration::from_secs(10));
    let (count, refused, sent) =
        (field::<u64>(&published, "count"), field::<u64>(&published, "refused"), field::<u64>(&published, "sent"));
    let dropped = field::<u64>(&published, "dropped");
    println!("{lost}; {ended}; {published}");
    assert_eq!(count, refused + sent + dropped, "every message is sent, refused or reported dropped: {published}");
}

/// The subscriber's link down for 5 s while 2,000 msg/s are published:
/// with resumable sessions nothing is lost: every message arrives once, in
/// order.
#[test]
fn a_link_down_for_5s_at_2000_msgs_loses_nothing() {
    let test = "a_link_down_for_5s_at_2000_msgs_loses_nothing";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let count = 20_000u64;
    let env = [("COUNT", count.to_string()), ("RATE", "2000".into()), ("CLOSE", "1".into())];
    let (mut sub, mut publ) = start(&pair, test, &[("QUIET_MS", "10000".into()), ("EXPECT", count.to_string())], &env);
    std::thread::sleep(Duration::from_secs(2));
    pair.link_b(false);
    std::thread::sleep(Duration::from_secs(5));
    pair.link_b(true);
    // The connection was lost (liveness) and the session resumed on a new one.
    let lost = publ.wait_line("LOST ", Duration::from_secs(5));
    let resumed = publ.wait_line("RESUMED ", Duration::from_secs(10));
    let published = publ.wait_line("PUBLISHED ", Duration::from_secs(30));
    let done = sub.wait_line("DONE ", Duration::from_secs(30));
    println!("publisher: {lost}; {resumed}; {published}; subscriber: {done}");
    assert_eq!(field::<u64>(&published, "refused"), 0, "a suspended subscriber still takes messages: {published}");
    assert_eq!(field::<u64>(&done, "count"), count, "every message arrived: {done}");
    assert_eq!((field::<u64>(&done, "dups"), field::<u64>(&done, "gaps")), (0, 0), "once, in order: {done}");
}

/// The subscriber SIGKILLed and started again at once with the same
/// identity (same id, new incarnation): its session never resumes, even
/// though it is back well within the resume window. The publisher ends the
/// session with reason `PeerRestarted` and reports what may be lost (the
/// unacknowledged range, the unsent count), then starts a new session with
/// the new process, which receives the messages published from then on.
#[test]
fn a_restarted_subscriber_never_resumes_and_the_loss_is_reported() {
    let test = "a_restarted_subscriber_never_resumes_and_the_loss_is_reported";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let sub_env = [("QUIET_MS", "60000".to_string()), ("IDENTITY", "7".into())];
    let env = [("COUNT", "12000".to_string()), ("RATE", "2000".into()), ("CLOSE", "0".into())];
    let (mut sub, mut publ) = start(&pair, test, &sub_env, &env);
    sub.wait_line("GOT ", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    sub.kill();
    let lost = publ.wait_line("LOST ", Duration::from_secs(5));
    let mut again = Proc::spawn(&pair.b, test, "sub", &sub_env);
    again.wait_line("READY", Duration::from_secs(10));
    // The next session line is its end, not a resumption.
    let next = publ.wait_line("SESSION ", Duration::from_secs(10));
    assert!(next.starts_with("ENDED "), "a restarted peer must never resume: {next}");
    assert!(next.contains("reason=PeerRestarted"), "{next}");
    assert!(field::<u64>(&next, "unacked") + field::<u64>(&next, "unsent") > 0, "the loss is reported: {next}");
    publ.wait_line("UP ", Duration::from_secs(10));
    let got = again.wait_line("GOT ", Duration::from_secs(10));
    println!("{lost}; {next}; restarted subscriber: {got}");
}

/// A stream outlives a 3 s link outage with its session: the consumer's
/// connection is ended by liveness, the session suspended and resumed when
/// the link is back, and the consumer gets every reply once, in order, then
/// the producer's end (1000).
#[test]
fn a_stream_outlives_a_3s_link_outage() {
    let test = "a_stream_outlives_a_3s_link_outage";
    if play_role() || netns::skip(test) {
        return;
    }
    let pair = Pair::new();
    let mut producer =
        Proc::spawn(&pair.b, test, "producer", &[("COUNT", "6000".to_string()), ("RATE", "1000".into())]);
    producer.wait_line("READY", Duration::from_secs(10));
    let mut consumer = Proc::spawn(&pair.a, test, "consumer", &[]);
    consumer.wait_line("READY", Duration::from_secs(10));
    consumer.wait_line("GOT ", Duration::from_secs(5));
    pair.link_b(false);
    std::thread::sleep(Duration::from_secs(3));
    pair.link_b(true);
    let resumed = consumer.wait_line("RESUMED ", Duration::from_secs(10));
    let done = consumer.wait_line("DONE ", Duration::from_secs(30));
    println!("{resumed}; {done}");
    assert_eq!(field::<u64>(&done, "count"), 6000, "every reply: {done}");
    assert_eq!((field::<u64>(&done, "dups"), field::<u64>(&done, "gaps")), (0, 0), "{done}");
    assert_eq!(field::<u16>(&done, "end"), 1000, "the producer's end: {done}");
}
