//! `estafeta bench`: pub/sub throughput and request/reply latency, like
//! `nats bench`. A server node counts what arrives on `bench/data` and
//! echoes `bench/ping` back to its sender as `bench/pong`; the client
//! publishes for `--seconds`, asks the server what it received
//! (`bench/end` → `bench/report`), then measures `--rounds` round trips.
//! Both run in this process, or the server runs elsewhere with `--serve`
//! and the client reaches it with `--connect`.

use crate::args::BenchCmd;
use crate::common::{start, within, Failure};
use bytes::Bytes;
use estafeta_driver::{Node, Runtime};
use std::time::{Duration, Instant};

const DATA: &str = "bench/data";
const END: &str = "bench/end";
const REPORT: &str = "bench/report";
const PING: &str = "bench/ping";
const PONG: &str = "bench/pong";
/// Messages per `publish_batch` call.
const BATCH: usize = 256;
/// How long the client waits for an answer of the server.
const ANSWER: Duration = Duration::from_secs(30);

/// Runs the server (`--serve`), the client against `--connect`, or both here.
pub async fn run<R: Runtime>(cmd: BenchCmd) -> Result<(), Failure> {
    if cmd.serve {
        let server = start::<R>(&cmd.node, "bench-server").await?;
        serve(server).await;
        return Ok(());
    }
    let mut opts = cmd.node.clone();
    if opts.connect.is_empty() {
        // In this process: a server node on a free loopback port.
        let server = start::<R>(&crate::args::NodeOpts { connect: vec![], ..opts.clone() }, "bench-server").await?;
        let addr = server.address().ok_or_else(|| Failure::Failed("the server node does not listen".into()))?;
        opts.connect = vec![addr.host_port()];
        opts.no_listen = true;
        R::spawn(serve(server));
    }
    let client = start::<R>(&opts, "bench-client").await?;
    let result = measure(&client, &cmd).await;
    client.close().await;
    result
}

/// Serves benchmarks until the node closes.
async fn serve<R: Runtime>(node: Node<R>) {
    let (Ok(mut data), Ok(mut end), Ok(mut ping)) = (node.subscribe(DATA), node.subscribe(END), node.subscribe(PING))
    else {
        return;
    };
    let mut all = node.messages();
    let (mut count, mut bytes, mut first, mut last) = (0u64, 0u64, None::<Instant>, None::<Instant>);
    // A report asked for: (who, how many messages it sent). `bench/end`
    // may overtake the last data messages (order is kept per topic), so
    // the report waits until that many arrived.
    let mut asked: Option<(estafeta_driver::NodeId, u64)> = None;
    let mut batch = Vec::new();
    while all.next_batch(&mut batch).await > 0 {
        for m in batch.drain(..) {
            match m.topic.as_str() {
                DATA => {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                    count += 1;
                    bytes += m.payload.len() as u64;
                }
                END => {
                    let n = std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    asked = Some((m.from.id, n));
                }
                PING => {
                    let _ = node.send_to(m.from.id, PONG, m.payload).await;
                }
                _ => {}
            }
            if let Some((to, _)) = asked.filter(|(_, n)| count >= *n) {
                let secs = match (first, last) {
                    (Some(a), Some(b)) => (b - a).as_secs_f64(),
                    _ => 0.0,
                };
                let report = format!("{count} {bytes} {secs}");
                let _ = node.send_to(to, REPORT, report.into_bytes()).await;
                (count, bytes, first, last, asked) = (0, 0, None, None, None);
            }
        }
        // The per-topic streams only keep their topics subscribed.
        for s in [&mut data, &mut end, &mut ping] {
            while s.try_next().is_some() {}
        }
    }
}

/// The client's two measurements, printed as they finish.
async fn measure<R: Runtime>(node: &Node<R>, cmd: &BenchCmd) -> Result<(), Failure> {
    let mut report = node.subscribe(REPORT)?;
    let mut pong = node.subscribe(PONG)?;
    for topic in [DATA, END, PING] {
        if within::<R, _>(Some(ANSWER), node.wait_for_subscribers(topic, 1)).await.is_none() {
            return Err(Failure::TimedOut(format!("no bench server subscribes to {topic}")));
        }
    }
    println!("bench: {} B payloads, {:?} of publishing, then {} round trips", cmd.size, cmd.seconds, cmd.rounds);

    // Throughput: publish in batches for the given time, then ask the server.
    let payload = Bytes::from(vec![0xA5u8; cmd.size]);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    while start.elapsed() < cmd.seconds {
        batch.extend(std::iter::repeat_n(payload.clone(), BATCH));
        sent += node.publish_batch(DATA, &mut batch).await? as u64;
    }
    node.publish(END, sent.to_string().into_bytes()).await?;
    let answer = within::<R, _>(Some(ANSWER), report.recv()).await.flatten();
    let answer = answer.ok_or_else(|| Failure::TimedOut("the bench server sent no report".into()))?;
    let text = String::from_utf8_lossy(&answer.payload).to_string();
    let mut f = text.split_whitespace();
    let (count, bytes, secs): (u64, u64, f64) = match (f.next(), f.next(), f.next()) {
        (Some(c), Some(b), Some(s)) => (c.parse().unwrap_or(0), b.parse().unwrap_or(0), s.parse().unwrap_or(0.0)),
        _ => return Err(Failure::Failed(format!("bad report from the server: {text:?}"))),
    };
    let secs = secs.max(1e-9);
    println!(
        "throughput: {:.0} msg/s, {:.1} MB/s ({count} messages of {} B received in {secs:.3} s)",
        count as f64 / secs,
        bytes as f64 / secs / 1e6,
        cmd.size
    );

    // Latency: one ping at a time to the server, which echoes it.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Failure::Failed(format!("histogram: {e}")))?;
    let ping = Bytes::from(vec![0x5Au8; cmd.size]);
    for _ in 0..cmd.rounds {
        let t = Instant::now();
        node.publish(PING, ping.clone()).await?;
        if within::<R, _>(Some(ANSWER), pong.recv()).await.flatten().is_none() {
            return Err(Failure::TimedOut("the bench server did not answer a ping".into()));
        }
        let _ = hist.record((t.elapsed().as_nanos() as u64 / 1000).max(1));
    }
    if cmd.rounds > 0 {
        println!(
            "latency (us): p50={} p90={} p99={} p99.9={} max={} ({} round trips)",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.9),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max(),
            hist.len()
        );
    }
    Ok(())
}
