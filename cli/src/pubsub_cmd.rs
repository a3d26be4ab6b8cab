//! `estafeta sub` and `estafeta pub`.

use crate::args::{OutputFormat, PubCmd, SubCmd};
use crate::common::{sleep, start, unix_now, within, Failure};
use estafeta_driver::{Message, Runtime, SendMode, Subscription};
use std::io::{BufRead, Write};
use std::time::Duration;

/// Prints messages of the topics until `--count` of them arrived or
/// `--timeout` passed.
pub async fn sub<R: Runtime>(cmd: SubCmd) -> Result<(), Failure> {
    let node = start::<R>(&cmd.node, "sub").await?;
    let mut all: Subscription = node.messages();
    // `messages()` sees every topic this node subscribes to; keep one
    // subscription per topic alive so each stays subscribed.
    let mut keep = Vec::new();
    for t in &cmd.topics {
        keep.push(node.subscribe(t)?);
    }
    let mut printed = 0u64;
    let want = cmd.count;
    let stdout = std::io::stdout();
    let print = async {
        while want.is_none_or(|n| printed < n) {
            let Some(m) = all.recv().await else { break };
            for k in &mut keep {
                while k.try_next().is_some() {}
            }
            let mut out = stdout.lock();
            let line = format_message(&m, cmd.format);
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                break; // stdout closed (a pipe whose reader left): stop quietly
            }
            printed += 1;
        }
    };
    let finished = within::<R, _>(cmd.timeout, print).await.is_some();
    node.close().await;
    match want {
        Some(n) if printed < n && !finished => {
            Err(Failure::TimedOut(format!("{printed} of {n} messages arrived before the timeout")))
        }
        _ => Ok(()),
    }
}

/// One output line for `m`.
pub fn format_message(m: &Message, format: OutputFormat) -> String {
    match format {
        OutputFormat::Text => format!("[{}] {}: {}", m.topic, m.from.name, String::from_utf8_lossy(&m.payload)),
        OutputFormat::Hex => format!("[{}] {}: {}", m.topic, m.from.name, hex(&m.payload)),
        OutputFormat::Json => {
            let mut v = serde_json::json!({
                "ts": unix_now(),
                "topic": m.topic.as_str(),
                "from": &*m.from.name,
                "from_id": m.from.id.to_string(),
                "size": m.payload.len(),
            });
            match std::str::from_utf8(&m.payload) {
                Ok(s) => v["text"] = s.into(),
                Err(_) => v["hex"] = hex(&m.payload).into(),
            }
            v.to_string()
        }
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Publishes the message (`--repeat` times) or each line of stdin, after
/// waiting for `--wait-subscribers`, then closes gracefully (what is queued
/// is flushed).
pub async fn publish<R: Runtime>(cmd: PubCmd) -> Result<(), Failure> {
    let node = start::<R>(&cmd.node, "pub").await?;
    let mode = match (&cmd.to, cmd.round_robin) {
        (Some(p), _) => SendMode::To(p.as_str().into()),
        (None, true) => SendMode::RoundRobin,
        (None, false) => SendMode::All,
    };
    if cmd.wait_subscribers > 0 {
        let n = cmd.wait_subscribers;
        if within::<R, _>(Some(cmd.wait_timeout), node.wait_for_subscribers(&cmd.topic, n)).await.is_none() {
            node.close().await;
            return Err(Failure::TimedOut(format!(
                "fewer than {n} subscribers of {:?} within {:?}",
                cmd.topic, cmd.wait_timeout
            )));
        }
    }
    let interval = Duration::from_millis(cmd.interval_ms);
    let mut sent = 0u64;
    let result = match &cmd.message {
        Some(msg) => {
            let mut r = Ok(());
            for i in 0..cmd.repeat {
                if i > 0 && !interval.is_zero() {
                    sleep::<R>(interval).await;
                }
                if let Err(e) = node.publish_with(&cmd.topic, msg.clone().into_bytes(), mode.clone()).await {
                    r = Err(Failure::from(e));
                    break;
                }
                sent += 1;
            }
            r
        }
        None => {
            let mut r = Ok(());
            // Reading stdin blocks this thread only: the node's driver runs
            // on the runtime's other threads.
            for line in std::io::stdin().lock().lines() {
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        r = Err(Failure::Failed(format!("reading stdin: {e}")));
                        break;
                    }
                };
                if let Err(e) = node.publish_with(&cmd.topic, line.into_bytes(), mode.clone()).await {
                    r = Err(Failure::from(e));
                    break;
                }
                sent += 1;
                if !interval.is_zero() {
                    sleep::<R>(interval).await;
                }
            }
            r
        }
    };
    node.close().await;
    let dropped = node.stats().pubsub.dropped;
    eprintln!("estafeta: published {sent} messages to {:?} ({dropped} dropped)", cmd.topic);
    result
}
