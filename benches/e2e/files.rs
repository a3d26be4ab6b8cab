//! File transfer cases of the end-to-end bench (issue 8).
//!
//! - `file_1GiB` (MB/s): one file (1 GiB at `E2E_SCALE=1`, `FILE_MIB` to
//!   change it) from one node to another over loopback, from `send_file`
//!   (which hashes the file first) to the receiver's `Received` (verified,
//!   synced, renamed), against a plain TCP copy of the same file in the same
//!   run: file read → socket → file write, then `sync_all`. Both nodes run
//!   plaintext (like with like; encryption's cost is in the `secure/` lines).
//!   Each side is sampled `E2E_SAMPLES_LONG` times in turn, medians printed.
//! - `file_with_pubsub_rate`: a 64 B pub/sub flow paced at 50 000 msg/s on
//!   the same connection while the file goes: messages received per second
//!   during the transfer against the same flow alone.
//! - `file_with_pubsub_p99` (µs): that flow's 99th percentile latency
//!   during the transfer; baseline: the same flow alone.
//! - `file_receiver_memory` (MiB): peak growth of the process's resident
//!   memory during the transfer (both nodes live in this process, so it
//!   bounds the receiver's from above); baseline: the bound the issue sets,
//!   the credit window + 16 MiB.

use super::baseline::Plain;
use super::*;
use estafeta_driver::{FileEvent, FileOptions};
use futures_core::Stream;
use std::path::{Path, PathBuf};

const FILE_TOPIC: &str = "bench-files";
const FLOW: &str = "bench-flow";
/// The flow's pace: messages per millisecond.
const FLOW_PER_MS: usize = 50;

fn file_size(s: &Settings) -> u64 {
    let mib = std::env::var("FILE_MIB").ok().and_then(|v| v.parse::<u64>().ok());
    mib.unwrap_or(((1024.0 * s.scale) as u64).max(8)) << 20
}

fn make_file(path: &Path, len: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// Samples resident memory until `stop`; returns the peak.
fn sample_peak(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(resident());
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    })
}

/// The plain copy: file read → socket → file write, then sync.
fn plain_copy<P: Plain>(src: PathBuf, dst: PathBuf, size: u64) -> Duration {
    let (addr_tx, addr_rx) = oneshot::channel();
    let recv: BoxFut<Instant> = Box::pin(async move {
        use std::io::Write;
        let (mut r, _w) = P::accept(addr_tx).await;
        let mut f = std::fs::File::create(&dst).expect("create");
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < size {
            let n = P::read(&mut r, &mut buf).await;
            assert!(n > 0, "plain copy: early end");
            f.write_all(&buf[..n]).expect("write");
            got += n as u64;
        }
        f.sync_all().expect("sync");
        Instant::now()
    });
    let send: BoxFut<Instant> = Box::pin(async move {
        use std::io::Read;
        let (_r, mut w) = P::connect(addr_rx).await;
        let start = Instant::now();
        let mut f = std::fs::File::open(&src).expect("open");
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            P::write_all(&mut w, &buf[..n]).await;
        }
        start
    });
    let (end, start) = P::pair(recv, send);
    end - start
}

/// What one run of ours measured.
struct Ours {
    time: Duration,
    flow_rate: f64,
    p99_us: f64,
    peak_extra: u64,
}

/// Ours: a file from one node to the other, with the paced flow running
/// if `flow_ms` > 0 (for that long at least, and as long as the transfer).
fn ours<P: Plain>(src: Option<PathBuf>, dir: PathBuf, flow_ms: u64) -> Ours {
    let (addr_tx, addr_rx) = oneshot::channel::<String>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let recv: BoxFut<(Instant, Vec<u64>, u64)> = Box::pin(async move {
        let n = super::secure::builder::<P::Ours>("rx").build().await.expect("node");
        let mut files = n.receive_files(FILE_TOPIC, &dir).await.expect("receive");
        let mut flow = n.subscribe(FLOW).expect("subscribe");
        addr_tx.send(n.address().expect("address").to_string()).expect("rendezvous");
        let origin = origin();
        let mut lat = Vec::new();
        let mut got = 0u64;
        let mut done = false;
        let mut end = Instant::now();
        let mut done_rx = done_rx;
        loop {
            let ev = std::future::poll_fn(|cx| {
                use std::pin::Pin;
                if !done {
                    if let std::task::Poll::Ready(ev) = Pin::new(&mut files).poll_next(cx) {
                        return std::task::Poll::Ready(Err(ev));
                    }
                }
                if let std::task::Poll::Ready(m) = Pin::new(&mut flow).poll_next(cx) {
                    return std::task::Poll::Ready(Ok(m));
                }
                if Pin::new(&mut done_rx).poll(cx).is_ready() {
                    return std::task::Poll::Ready(Ok(None));
                }
                std::task::Poll::Pending
            })
            .await;
            match ev {
                Ok(Some(m)) => {
                    let sent = u64::from_le_bytes(m.payload[..8].try_into().expect("stamp"));
                    lat.push(origin.elapsed().as_nanos() as u64 - sent);
                    got += 1;
                }
                Ok(None) => break,
                Err(Some(FileEvent::Received(_))) => {
                    end = Instant::now();
                    done = true;
                }
                Err(Some(FileEvent::Failed { reason, .. })) => panic!("bench transfer failed: {reason}"),
                Err(_) => {}
            }
        }
        (end, lat, got)
    });
    let send: BoxFut<(Instant, Duration, u64)> = Box::pin(async move {
        let n = super::secure::builder::<P::Ours>("tx").no_listen().build().await.expect("node");
        n.connect(addr_rx.await.expect("rendezvous")).await.expect("connect");
        n.wait_for_subscribers(FLOW, 1).await.expect("subscribers");
        n.wait_for_subscribers(FILE_TOPIC, 1).await.expect("subscribers");
        let origin = origin();
        let start = Instant::now();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let base = resident();
        let sampler = sample_peak(stop.clone());
        let transfer = match &src {
            Some(p) => Some(n.send_file(FILE_TOPIC, p, FileOptions::default()).await.expect("send")),
            None => None,
        };
        let mut sent = 0u64;
        let flow_until = start + Duration::from_millis(flow_ms);
        let mut tick = Instant::now();
        let mut outcome = None;
        loop {
            let file_done = match &transfer {
                Some(t) => {
                    if outcome.is_none() {
                        // Poll the outcome without waiting.
                        let f = t.outcomes();
                        let mut f = std::pin::pin!(f);
                        let w = std::task::Waker::noop();
                        if let std::task::Poll::Ready(o) = f.as_mut().poll(&mut std::task::Context::from_waker(w)) {
                            outcome = Some((o, Instant::now()));
                        }
                    }
                    outcome.is_some()
                }
                None => true,
            };
            if file_done && (flow_ms == 0 || Instant::now() >= flow_until) {
                break;
            }
            if flow_ms > 0 {
                for _ in 0..FLOW_PER_MS {
                    let mut p = vec![0u8; 64];
                    p[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
                    n.publish(FLOW, p).await.expect("publish");
                    sent += 1;
                }
            }
            tick += Duration::from_millis(1);
            let now = Instant::now();
            if tick > now {
                sleep::<P::Ours>(tick - now).await;
            } else {
                tick = now;
            }
        }
        let flow_time = start.elapsed();
        let _ = sent;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().expect("sampler");
        if let Some((o, _)) = &outcome {
            assert!(o.iter().all(|(_, r)| r.is_ok()), "{o:?}");
        }
        let _ = done_tx.send(());
        (start, flow_time, peak.saturating_sub(base))
    });
    let ((end, mut lat, got), (start, flow_time, peak_extra)) = P::pair(recv, send);
    lat.sort_unstable();
    let p99 = lat.get(lat.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(0) as f64 / 1000.0;
    Ours {
        time: end.saturating_duration_since(start),
        flow_rate: got as f64 / flow_time.as_secs_f64(),
        p99_us: p99,
        peak_extra,
    }
}

/// Sleeps on the runtime's own timer.
async fn sleep<R: Runtime>(d: Duration) {
    use estafeta_driver::Timer;
    let mut t = R::timer();
    let at = R::now() + d;
    t.reset(at);
    std::future::poll_fn(|cx| if R::now() >= at { std::task::Poll::Ready(()) } else { t.poll_fire(cx) }).await
}

/// One origin for the timestamps of both sides (one process).
fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

pub(crate) fn run_files(s: &Settings, rt: Rt) {
    if !s.wants("file") {
        return;
    }
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    let size = file_size(s);
    let base = std::env::temp_dir().join(format!("estafeta-bench-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("temp dir");
    let src = base.join("src.bin");
    make_file(&src, size);
    measuring(format!("{on}file_1GiB"));
    let mb = size as f64 / 1e6;
    let mut k = 0;
    let (ours_mb, plain_mb) = ours_and_baseline(s.samples(Length::Long), |is_ours| {
        k += 1;
        let secs = if is_ours {
            let dir = base.join(format!("ours{k}"));
            let o = on_runtime!(rt, ours(Some(src.clone()), dir.clone(), 0));
            let _ = std::fs::remove_dir_all(dir);
            o.time
        } else {
            let dst = base.join(format!("plain{k}.bin"));
            let d = on_runtime!(rt, plain_copy(src.clone(), dst.clone(), size));
            let _ = std::fs::remove_file(dst);
            d
        };
        mb / secs.as_secs_f64()
    });
    eprintln!("# {on}file: {} MiB", size >> 20);
    ratio_line(&format!("{on}file_1GiB"), &ours_mb, &plain_mb, "MB/s");
    // The flow alone, then with the file.
    measuring(format!("{on}file_with_pubsub"));
    let solo_ms = ((mb / ours_mb.median() * 1000.0) as u64).clamp(500, 5000);
    let mut withs = Vec::new();
    let sides = interleave(s.samples(Length::Long), 2, |with| {
        let o = if with == 0 {
            let dir = base.join("with");
            let o = on_runtime!(rt, ours(Some(src.clone()), dir.clone(), 1));
            let _ = std::fs::remove_dir_all(dir);
            withs.push(o.peak_extra);
            o
        } else {
            on_runtime!(rt, ours(None, base.join("solo"), solo_ms))
        };
        (o.flow_rate, o.p99_us)
    });
    let of = |side: usize, f: fn(&(f64, f64)) -> f64| Samples::of(sides[side].iter().map(f));
    ratio_line(&format!("{on}file_with_pubsub_rate"), &of(0, |x| x.0), &of(1, |x| x.0), "msg/s");
    ratio_line(&format!("{on}file_with_pubsub_p99"), &of(0, |x| x.1), &of(1, |x| x.1), "us");
    // The highest peak of the transfers with the flow.
    let peak_extra = withs.into_iter().max().unwrap_or(0);
    let window = estafeta_driver::Config::default().transfer.window_chunks as u64
        * estafeta_driver::Config::default().transfer.chunk_size as u64;
    let bound = (window >> 20) as f64 + 16.0;
    line(&format!("{on}file_receiver_memory"), peak_extra as f64 / (1 << 20) as f64, bound, "MiB");
    let _ = std::fs::remove_dir_all(&base);
}
