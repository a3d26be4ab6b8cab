//! `estafeta send-file` and `estafeta receive-files`: chunked, verified,
//! resumable transfers from a shell, with a progress bar per receiver
//! (bytes, rate, ETA; drawn only when stderr is a terminal) and a final line
//! per file with its BLAKE3 hash.

use crate::args::{ReceiveFilesCmd, SendFileCmd};
use crate::common::{start, within, Failure};
use crate::pubsub_cmd::hex;
use estafeta_driver::{FileEvent, FileOptions, NodeId, Runtime};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Sends each file to every subscriber of the topic (waiting for
/// `--wait-subscribers` first) and prints one line per file and receiver.
/// Exits 1 if any receiver failed.
pub async fn send<R: Runtime>(cmd: SendFileCmd) -> Result<(), Failure> {
    let node = start::<R>(&cmd.node, "send-file").await?;
    let n = cmd.wait_subscribers;
    if n > 0 && within::<R, _>(Some(cmd.wait_timeout), node.wait_for_subscribers(&cmd.topic, n)).await.is_none() {
        node.close().await;
        return Err(Failure::TimedOut(format!(
            "fewer than {n} receivers of {:?} within {:?}",
            cmd.topic, cmd.wait_timeout
        )));
    }
    let mut meta = Vec::new();
    for kv in &cmd.meta {
        let (k, v) = kv.split_once('=').ok_or_else(|| Failure::Failed(format!("--meta {kv:?} is not key=value")))?;
        meta.push((k.to_string(), v.to_string()));
    }
    let mut failed = 0usize;
    for path in &cmd.paths {
        let opts = FileOptions { chunk_size: cmd.chunk_size, meta: meta.clone(), ..FileOptions::default() };
        let t = node
            .send_file(&cmd.topic, path, opts)
            .await
            .map_err(|e| Failure::Failed(format!("cannot send {}: {e}", path.display())))?;
        let bars = MultiProgress::new();
        let mut by_peer: BTreeMap<NodeId, ProgressBar> = BTreeMap::new();
        for p in t.receivers() {
            let b = bars.add(ProgressBar::new(0).with_style(bar_style()).with_prefix(p.name.to_string()));
            by_peer.insert(p.id, b);
        }
        while let Some(p) = t.progress().await {
            if let Some(b) = by_peer.get(&p.peer.id) {
                b.set_length(p.total);
                b.set_position(p.bytes);
            }
        }
        let hash = file_hash::<R>(path).await;
        for (peer, outcome) in t.outcomes().await {
            if let Some(b) = by_peer.get(&peer.id) {
                b.finish_and_clear();
            }
            match outcome {
                Ok(()) => println!("sent {} to {peer}: verified, blake3 {hash}", path.display()),
                Err(reason) => {
                    failed += 1;
                    println!("failed {} to {peer}: {reason}", path.display());
                }
            }
        }
    }
    node.close().await;
    if failed > 0 {
        return Err(Failure::Failed(format!("{failed} deliveries failed")));
    }
    Ok(())
}

/// The file's BLAKE3 hash in hex (for the final line), off the reactor.
async fn file_hash<R: Runtime>(path: &std::path::Path) -> String {
    let p = path.to_path_buf();
    let h = R::spawn_blocking(move || -> std::io::Result<String> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(&p)?)?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await;
    h.unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Receives files offered on the topic into the directory, printing a
/// line per received (verified) or failed file, until `--count` files
/// arrived or `--timeout` passed. A transfer interrupted before (this
/// command killed, the sender gone) resumes from what the directory holds.
pub async fn receive<R: Runtime>(cmd: ReceiveFilesCmd) -> Result<(), Failure> {
    let node = start::<R>(&cmd.node, "receive-files").await?;
    let mut files = node.receive_files(&cmd.topic, &cmd.dir).await?;
    eprintln!("estafeta: receiving files on {:?} into {}", cmd.topic, cmd.dir.display());
    let bars = MultiProgress::new();
    let mut by_transfer: BTreeMap<(NodeId, u64), ProgressBar> = BTreeMap::new();
    let mut received = 0u64;
    let want = cmd.count;
    let run = async {
        while want.is_none_or(|n| received < n) {
            let Some(ev) = files.recv().await else { break };
            match ev {
                FileEvent::Offered(o) => {
                    let b = ProgressBar::new(o.size).with_style(bar_style()).with_prefix(o.name.clone());
                    by_transfer.insert((o.peer.id, o.id), bars.add(b));
                }
                FileEvent::Progress(p) => {
                    if let Some(b) = by_transfer.get(&(p.peer.id, p.id)) {
                        b.set_length(p.total);
                        b.set_position(p.bytes);
                    }
                }
                FileEvent::Received(r) => {
                    if let Some(b) = by_transfer.remove(&(r.peer.id, r.id)) {
                        b.finish_and_clear();
                    }
                    let meta: Vec<String> = r.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "received {} ({} bytes) from {}: verified, blake3 {}{}",
                        r.path.display(),
                        r.size,
                        r.peer,
                        hex(&r.hash),
                        if meta.is_empty() { String::new() } else { format!(" [{}]", meta.join(" ")) }
                    );
                    received += 1;
                }
                FileEvent::Failed { peer, id, reason } => {
                    if let Some(b) = by_transfer.remove(&(peer.id, id)) {
                        b.finish_and_clear();
                    }
                    println!("failed a file from {peer}: {reason}");
                }
            }
        }
    };
    let finished = within::<R, _>(cmd.timeout, run).await.is_some();
    drop(files);
    node.close().await;
    match want {
        Some(n) if received < n && !finished => {
            Err(Failure::TimedOut(format!("{received} of {n} files arrived before the timeout")))
        }
        _ => Ok(()),
    }
}
