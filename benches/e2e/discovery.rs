//! Discovery and relay cases of the end-to-end bench:
//!
//! | name | ours | baseline | unit |
//! |---|---|---|---|
//! | `discovery_50_sim` | virtual seconds until 50 nodes (a root and 49 members on 5 topics, knowing only the root) are all paired, in the simulator | the same 49 members each given the address of a member that shares its topic (`connect`) | s |
//! | `discovery_50_loopback` | wall seconds for the same on loopback (tokio) | the same direct connects on loopback | s |
//! | `relay_64B` | 64 B messages per second from A to C through B relaying (a line A–B–C, `publish_relayed`) | A connected to C directly (`publish`) | msg/s |
//!
//! For the two `discovery_50` lines lower is better; for `relay_64B` higher.

use super::{measuring, oneshot, ours_and_baseline, ratio_line, Length, Settings};

/// A `case=` line in seconds (lower is better), with millisecond precision.
/// The simulator's figure is the same on every run: one sample.
fn line_secs(case: &str, ours: f64, base: f64) {
    println!("case={case} ours={ours:.3} baseline={base:.3} unit=s ratio={:.3} samples=1", ours / base);
}
use estafeta_core::Config;
use estafeta_sim::{Sim, SimConfig};
use estafeta_tokio::Node;
use std::time::{Duration, Instant};

const NODES: usize = 50;
const TOPICS: usize = 5;

fn topic_of(i: usize) -> usize {
    i % TOPICS
}

/// The member that every other member of its topic connects to in the baseline.
fn first_of(i: usize) -> usize {
    1 + (topic_of(i) + TOPICS - 1) % TOPICS
}

fn fast(c: &mut Config) {
    c.discovery.retry_base = Duration::from_millis(20);
    c.discovery.retry_cap = Duration::from_millis(300);
}

/// Virtual seconds until every member is paired: through the root, or
/// (`direct`) connecting to a member of its topic.
fn sim_once(direct: bool) -> f64 {
    let mut cfg = SimConfig::uniform(7, NODES, TOPICS);
    for (i, n) in cfg.nodes.iter_mut().enumerate() {
        fast(&mut n.config);
        n.config.discovery.root = i == 0;
    }
    let mut sim = Sim::new(cfg);
    for i in 1..NODES {
        sim.subscribe(i, topic_of(i));
    }
    for i in 1..NODES {
        match direct {
            false => sim.discover_via(i, 0),
            true if first_of(i) != i => sim.connect(i, first_of(i)),
            true => {}
        }
    }
    while !(1..NODES).all(|i| sim.is_paired(i, topic_of(i))) {
        sim.run_for(1_000).expect("no invariant breaks");
        assert!(sim.now() < 60_000_000, "not paired within a minute");
    }
    sim.now() as f64 / 1e6
}

/// Wall seconds until every member is paired on loopback.
async fn loopback_once(direct: bool) -> f64 {
    let mut c = Config::default();
    fast(&mut c);
    let root = Node::builder("root").config(c.clone()).root(4 * NODES).build().await.expect("root");
    let mut members = Vec::new();
    for i in 1..NODES {
        let n = Node::builder(format!("m{i}"))
            .config(c.clone())
            .subscribe(format!("t{}", topic_of(i)))
            .build()
            .await
            .expect("member");
        members.push(n);
    }
    let t0 = Instant::now();
    for (k, n) in members.iter().enumerate() {
        let i = k + 1;
        if direct {
            if first_of(i) != i {
                let to = members[first_of(i) - 1].address().expect("listens").to_string();
                let n = n.clone();
                tokio::spawn(async move { n.connect(to).await.expect("connects") });
            }
        } else {
            n.discover_via(&root.address().expect("listens").to_string()).expect("joins");
        }
    }
    for (k, n) in members.iter().enumerate() {
        n.wait_paired(&format!("t{}", topic_of(k + 1)), Duration::from_secs(60)).await.expect("paired");
    }
    let secs = t0.elapsed().as_secs_f64();
    for n in members.iter().chain([&root]) {
        n.close().await;
    }
    secs
}

/// What the relay case needs of a runtime besides the node: detached tasks
/// and a timeout.
trait RelayRt: estafeta_driver::Runtime {
    fn go(f: impl std::future::Future<Output = ()> + Send + 'static);
    async fn within<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T>;
}

impl RelayRt for estafeta_tokio::Tokio {
    fn go(f: impl std::future::Future<Output = ()> + Send + 'static) {
        tokio::spawn(f);
    }
    async fn within<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(d, f).await.ok()
    }
}

impl RelayRt for estafeta_smol::Smol {
    fn go(f: impl std::future::Future<Output = ()> + Send + 'static) {
        smol::spawn(f).detach();
    }
    async fn within<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
        smol::future::or(async { Some(f.await) }, async {
            smol::Timer::after(d).await;
            None
        })
        .await
    }
}

/// Seconds to move `n` 64 B messages from A to C: through B relaying, or directly.
async fn relay_once<R: RelayRt>(n: usize, relayed: bool) -> f64 {
    type N<R> = estafeta_driver::Node<R>;
    let c = Config::default();
    let a = N::<R>::builder("a").config(c.clone()).build().await.expect("a");
    let b = N::<R>::builder("b").config(c.clone()).build().await.expect("b");
    let cn = N::<R>::builder("c").config(c.clone()).build().await.expect("c");
    let addr = |x: &N<R>| x.address().expect("listens").to_string();
    let mut sub = if relayed {
        // B is a subscriber too: its application reads what it gets, so its
        // credit keeps flowing back to A.
        let mut b_sub = b.subscribe_relay("r").expect("b");
        R::go(async move {
            let mut batch = Vec::new();
            while b_sub.next_batch(&mut batch).await > 0 {
                batch.clear();
            }
        });
        let sub = cn.subscribe_relay("r").expect("c");
        a.connect(addr(&b)).await.expect("a-b");
        cn.connect(addr(&b)).await.expect("c-b");
        a.wait_for_subscribers("r", 1).await.expect("b subscribes");
        b.wait_for_subscribers("r", 1).await.expect("c subscribes");
        sub
    } else {
        let sub = cn.subscribe("r").expect("c");
        a.connect(addr(&cn)).await.expect("a-c");
        a.wait_for_subscribers("r", 1).await.expect("c subscribes");
        sub
    };
    let payload = estafeta_core::Bytes::from(vec![0xA5; 64]);
    let (done_tx, done_rx) = oneshot::channel();
    {
        let a = a.clone();
        let payload = payload.clone();
        R::go(async move {
            for _ in 0..n {
                if relayed {
                    a.publish_relayed("r", payload.clone()).await.expect("publish");
                } else {
                    a.publish("r", payload.clone()).await.expect("publish");
                }
            }
            let _ = done_tx.send(());
        })
    };
    let t0 = Instant::now();
    // Through the relay, copies C's queue at B cannot take in time are
    // dropped and reported there (`relay_lost`): wait for the rest.
    let (mut got, mut lost) = (0u64, 0u64);
    while got + lost < n as u64 {
        match R::within(Duration::from_millis(20), sub.recv()).await {
            Some(m) => {
                assert_eq!(m.expect("stream open").payload.len(), 64);
                got += 1;
            }
            None => lost = b.stats().discovery.relay_lost,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if lost > 0 {
        eprintln!("e2e: relay_64B: {lost} of {n} copies dropped at the relay (reported)");
    }
    done_rx.await.expect("publisher");
    for x in [&a, &b, &cn] {
        x.close().await;
    }
    secs
}

/// The `relay_64B` line (`name`) on one runtime: best of `s.repeat` rounds.
fn relay_line(s: &Settings, name: &str, mut block_on: impl FnMut(bool, usize) -> f64) {
    let n = s.count(300_000);
    measuring(format!("{name} of {n}"));
    let (ours, base) = ours_and_baseline(s.samples(Length::Short), |ours| n as f64 / block_on(ours, n));
    ratio_line(name, &ours, &base, "msg/s");
}

/// The discovery and relay lines (tokio for the loopback ones).
pub(crate) fn run(s: &Settings) {
    if s.wants("discovery_50_sim") {
        measuring("discovery_50_sim".into());
        let (ours, base) = (sim_once(false), sim_once(true));
        line_secs("discovery_50_sim", ours, base);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    if s.wants("discovery_50_loopback") {
        measuring("discovery_50_loopback".into());
        let (ours, base) = ours_and_baseline(s.samples(Length::Long), |ours| rt.block_on(loopback_once(!ours)));
        ratio_line("discovery_50_loopback", &ours, &base, "s");
    }
    if s.wants("relay_64B") {
        relay_line(s, "relay_64B", |relayed, n| rt.block_on(relay_once::<estafeta_tokio::Tokio>(n, relayed)));
    }
}

/// The relay line on smol (`smol/relay_64B`): every task on the global executor.
pub(crate) fn run_smol(s: &Settings) {
    if s.wants("smol/relay_64B") {
        relay_line(s, "smol/relay_64B", |relayed, n| smol::block_on(relay_once::<estafeta_smol::Smol>(n, relayed)));
    }
}
