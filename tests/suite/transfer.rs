//! File transfer on real sockets and real files, on both runtimes.

use super::child::{self, Child};
use super::util::{fast_config, node, sleep, wait_until};
use estafeta_driver::{Bytes, Config, FileEvent, FileOptions, Node, NodeId, Runtime};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOPIC: &str = "files";

fn cfg() -> Config {
    let mut c = fast_config();
    c.session.liveness_timeout = Duration::from_secs(2);
    c.transfer.window_chunks = 64; // 4 MiB at 64 KiB chunks
    c.transfer.peer_timeout = Duration::from_secs(20);
    // Restarted processes keep their id: plaintext, where ids are chosen,
    // not proven (a secure node keeps its id by keeping its identity key;
    // the interop and CLI file tests run secure).
    c.security.mode = estafeta_driver::SecurityMode::Plaintext;
    c
}

/// A fresh directory under the system's temporary directory.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("estafeta-{name}-{}-{:x}", std::process::id(), rand_u64()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Writes `len` bytes of generated content to `path`; returns its BLAKE3.
fn make_file(path: &Path, len: u64, seed: u64) -> [u8; 32] {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut h = estafeta_core::blake3::Hasher::new();
    let mut x = seed | 1;
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
        f.write_all(&buf[..n]).unwrap();
        h.update(&buf[..n]);
        left -= n as u64;
    }
    f.flush().unwrap();
    *h.finalize().as_bytes()
}

fn hash_file(path: &Path) -> Option<[u8; 32]> {
    let mut h = estafeta_core::blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).ok()?).ok()?;
    Some(*h.finalize().as_bytes())
}

async fn receiver<R: Runtime>(name: &str, dir: &Path, id: Option<NodeId>) -> (Node<R>, estafeta_driver::ReceivedFiles) {
    let mut b = Node::<R>::builder(name).config(cfg());
    if let Some(id) = id {
        b = b.id(id);
    }
    let n = b.build().await.unwrap();
    let files = n.receive_files(TOPIC, dir).await.unwrap();
    (n, files)
}

/// Waits for the next `Received` (or panics on `Failed`).
async fn next_received(files: &mut estafeta_driver::ReceivedFiles) -> estafeta_driver::Received {
    loop {
        match files.recv().await.expect("stream open") {
            FileEvent::Received(r) => return r,
            FileEvent::Failed { reason, .. } => panic!("transfer failed: {reason}"),
            FileEvent::Offered(_) | FileEvent::Progress(_) => {}
        }
    }
}

/// Size of the big test: 64 MiB by default, `ESTAFETA_BIG_FILE_MIB` to
/// change it (1024 for the 1 GiB run).
fn big_size() -> u64 {
    std::env::var("ESTAFETA_BIG_FILE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64) << 20
}

pub async fn a_big_file_reaches_three_receivers_verified<R: Runtime>() {
    let src = tmpdir("big-src");
    let size = big_size();
    let path = src.join("model.bin");
    let hash = make_file(&path, size, 42);
    let sender = node::<R>("sender", cfg()).await;
    let mut rx = Vec::new();
    for i in 0..3 {
        let dir = tmpdir(&format!("big-dst{i}"));
        let (n, files) = receiver::<R>(&format!("r{i}"), &dir, None).await;
        sender.connect(n.address().unwrap().to_string()).await.unwrap();
        rx.push((n, files, dir));
    }
    sender.wait_for_subscribers(TOPIC, 3).await.unwrap();
    let t0 = Instant::now();
    let t = sender.send_file(TOPIC, &path, FileOptions::default()).await.unwrap();
    assert_eq!(t.receivers().len(), 3);
    let mut last = std::collections::BTreeMap::new();
    while let Some(p) = t.progress().await {
        let prev = last.insert(p.peer.id, p.bytes).unwrap_or(0);
        assert!(p.bytes >= prev && p.total == size, "progress {} after {prev}", p.bytes);
    }
    for (peer, r) in t.outcomes().await {
        assert_eq!(r, Ok(()), "{peer}");
    }
    let secs = t0.elapsed().as_secs_f64();
    for (_, files, dir) in rx.iter_mut() {
        let r = next_received(files).await;
        assert_eq!((r.size, r.hash, r.name.as_str()), (size, hash, "model.bin"));
        assert_eq!(hash_file(&dir.join("model.bin")), Some(hash), "verified on disk");
        let left: Vec<_> = std::fs::read_dir(&*dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "only the final file is left: {left:?}");
    }
    eprintln!("{} MiB to 3 receivers in {secs:.2}s ({:.0} MiB/s per receiver)", size >> 20, (size >> 20) as f64 / secs);
    for (_, _, dir) in rx {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_dir_all(src);
}

/// The receiver runs as a child process killed with SIGKILL mid-transfer;
/// a new one with the same id and directory resumes with no byte below its
/// synced offset sent again.
pub async fn a_killed_receiver_resumes_where_it_synced<R: Runtime>() {
    const TEST: &str = "a_killed_receiver_resumes_where_it_synced";
    if let Some(role) = child::role() {
        if role == "receiver" {
            let dir = PathBuf::from(std::env::var("DIR").unwrap());
            let id = NodeId::from_u128(std::env::var("ID").unwrap().parse().unwrap());
            let (n, mut files) = receiver::<R>("child", &dir, Some(id)).await;
            n.connect(std::env::var("SENDER").unwrap()).await.unwrap();
            println!("READY");
            while let Some(ev) = files.recv().await {
                match ev {
                    FileEvent::Progress(p) => println!("PROGRESS {}", p.bytes),
                    FileEvent::Received(r) => println!("RECEIVED {}", r.size),
                    FileEvent::Failed { reason, .. } => println!("FAILED {reason}"),
                    FileEvent::Offered(_) => {}
                }
            }
        }
        return;
    }
    let src = tmpdir("kill-src");
    let dst = tmpdir("kill-dst");
    let size = 128u64 << 20;
    let path = src.join("data.bin");
    let hash = make_file(&path, size, 7);
    let sender = node::<R>("sender", cfg()).await;
    let addr = sender.address().unwrap().to_string();
    let env = [("DIR", dst.to_str().unwrap()), ("ID", "4242"), ("SENDER", addr.as_str())];
    let mut c = Child::spawn(TEST, "receiver", &env);
    c.wait_line::<R>("READY", Duration::from_secs(30)).await;
    sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let t = sender.send_file(TOPIC, &path, FileOptions::default()).await.unwrap();
    let mut synced = 0u64;
    while synced < 32 << 20 {
        synced = c.wait_line::<R>("PROGRESS ", Duration::from_secs(60)).await.parse().unwrap();
    }
    assert!(c.kill(), "killed by SIGKILL mid-transfer");
    let sent_before = sender.stats().transfer.bytes_sent;
    let mut c2 = Child::spawn(TEST, "receiver", &env);
    c2.wait_line::<R>("READY", Duration::from_secs(30)).await;
    let got = c2.wait_line::<R>("RECEIVED ", Duration::from_secs(120)).await;
    assert_eq!(got, size.to_string());
    assert_eq!(t.outcomes().await[0].1, Ok(()));
    assert_eq!(hash_file(&dst.join("data.bin")), Some(hash));
    let s = sender.stats().transfer;
    let window = 64 * 64 * 1024;
    assert!(s.bytes_resent <= window, "re-sent {} bytes, more than one window", s.bytes_resent);
    assert!(s.bytes_sent <= size + window, "sent {} for a {size}-byte file", s.bytes_sent);
    eprintln!(
        "SIGKILL at synced {} MiB: {} MiB sent before, {} bytes re-sent after the restart (window {window})",
        synced >> 20,
        sent_before >> 20,
        s.bytes_resent
    );
    let _ = std::fs::remove_dir_all(src);
    let _ = std::fs::remove_dir_all(dst);
}

pub async fn a_restarted_sender_offers_again_and_resumes<R: Runtime>() {
    let src = tmpdir("rs-src");
    let dst = tmpdir("rs-dst");
    let size = 64u64 << 20;
    let path = src.join("again.bin");
    let hash = make_file(&path, size, 9);
    let (rnode, mut files) = receiver::<R>("r", &dst, None).await;
    let raddr = rnode.address().unwrap().to_string();
    let a = node::<R>("sender", cfg()).await;
    a.connect(&raddr).await.unwrap();
    a.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let _t = a.send_file(TOPIC, &path, FileOptions::default()).await.unwrap();
    let mut had = 0;
    while had < 16 << 20 {
        if let Some(FileEvent::Progress(p)) = files.recv().await {
            had = p.bytes;
        }
    }
    a.abort().await;
    // A new sender process (new id) sends the same file again.
    let b = node::<R>("sender2", cfg()).await;
    b.connect(&raddr).await.unwrap();
    b.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let t = b.send_file(TOPIC, &path, FileOptions::default()).await.unwrap();
    assert_eq!(t.outcomes().await[0].1, Ok(()));
    let r = next_received(&mut files).await;
    assert_eq!(r.hash, hash);
    assert_eq!(hash_file(&dst.join("again.bin")), Some(hash));
    let sent = b.stats().transfer.bytes_sent;
    assert!(sent <= size - had, "the new sender sent {sent} though the receiver had {had} synced");
    eprintln!("sender restart: receiver had {} MiB, new sender sent {} MiB", had >> 20, sent >> 20);
    let _ = std::fs::remove_dir_all(src);
    let _ = std::fs::remove_dir_all(dst);
}

pub async fn a_flipped_byte_in_a_partial_file_is_detected<R: Runtime>() {
    let src = tmpdir("flip-src");
    let dst = tmpdir("flip-dst");
    let size = 64u64 << 20;
    let path = src.join("f.bin");
    let hash = make_file(&path, size, 11);
    let id = NodeId::from_u128(777);
    let (r1, mut files) = receiver::<R>("r", &dst, Some(id)).await;
    let sender = node::<R>("sender", cfg()).await;
    sender.connect(r1.address().unwrap().to_string()).await.unwrap();
    sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let t = sender.send_file(TOPIC, &path, FileOptions::default()).await.unwrap();
    let mut had = 0;
    while had < 16 << 20 {
        if let Some(FileEvent::Progress(p)) = files.recv().await {
            had = p.bytes;
        }
    }
    drop(files);
    r1.abort().await;
    // Bit rot inside the synced prefix.
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(dst.join("f.bin.part")).unwrap();
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(&[b[0] ^ 0x40]).unwrap();
    }
    let (r2, mut files) = receiver::<R>("r", &dst, Some(id)).await;
    sender.connect(r2.address().unwrap().to_string()).await.unwrap();
    assert_eq!(t.outcomes().await[0].1, Ok(()));
    next_received(&mut files).await;
    assert_eq!(hash_file(&dst.join("f.bin")), Some(hash));
    assert_eq!(sender.stats().transfer.prefix_mismatches, 1, "the corrupt prefix was caught");
    let _ = std::fs::remove_dir_all(src);
    let _ = std::fs::remove_dir_all(dst);
}

pub async fn hostile_names_are_refused_with_nothing_written_outside<R: Runtime>() {
    let base = tmpdir("hostile");
    let dst = base.join("in");
    let (rnode, mut files) = receiver::<R>("r", &dst, None).await;
    let sender = node::<R>("sender", cfg()).await;
    sender.connect(rnode.address().unwrap().to_string()).await.unwrap();
    sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let long = "a".repeat(10 * 1024);
    let names = ["../x", "/etc/x", "a/../../x", "con", "nul.txt", long.as_str(), "x\0y"];
    for name in names {
        let t = sender.send_bytes(TOPIC, name, Bytes::from_static(b"evil"), FileOptions::default()).unwrap();
        let r = &t.outcomes().await[0].1;
        assert!(r.as_ref().is_err_and(|e| e.contains("refused name")), "{name:.40}: {r:?}");
        match files.recv().await {
            Some(FileEvent::Failed { reason, .. }) => assert!(reason.contains("refused name")),
            other => panic!("{other:?}"),
        }
    }
    let everything: Vec<_> = walk(&base);
    assert_eq!(everything, vec![dst.clone()], "nothing written anywhere");
    assert!(!Path::new("/etc/x").exists());
    // The node keeps serving.
    let t = sender.send_bytes(TOPIC, "fine.txt", Bytes::from_static(b"ok"), FileOptions::default()).unwrap();
    assert_eq!(t.outcomes().await[0].1, Ok(()));
    assert_eq!(std::fs::read(dst.join("fine.txt")).unwrap(), b"ok");
    let _ = std::fs::remove_dir_all(base);
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out.sort();
    out
}

pub async fn a_disk_error_is_reported_and_the_node_keeps_serving<R: Runtime>() {
    let base = tmpdir("diskerr");
    let dst = base.join("in");
    let (rnode, mut files) = receiver::<R>("r", &dst, None).await;
    let mut msgs = rnode.subscribe("chat").unwrap();
    // The directory disappears and a file takes its place: every write fails.
    std::fs::remove_dir_all(&dst).unwrap();
    std::fs::write(&dst, b"not a directory").unwrap();
    let sender = node::<R>("sender", cfg()).await;
    sender.connect(rnode.address().unwrap().to_string()).await.unwrap();
    sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let t = sender.send_bytes(TOPIC, "a.bin", vec![7u8; 100_000], FileOptions::default()).unwrap();
    let r = t.outcomes().await[0].1.clone();
    assert!(r.as_ref().is_err_and(|e| e.contains("disk error")), "{r:?}");
    loop {
        if let Some(FileEvent::Failed { reason, .. }) = files.recv().await {
            assert!(reason.contains("disk error"), "{reason}");
            break;
        }
    }
    sender.wait_for_subscribers("chat", 1).await.unwrap();
    sender.publish("chat", "still here").await.unwrap();
    assert_eq!(&msgs.recv().await.unwrap().payload[..], b"still here");
    let _ = std::fs::remove_dir_all(base);
}

/// File operations run relative to the receive directory held open since
/// `receive_files`: the directory renamed and a symlink put in its place,
/// the file still lands in the directory the application chose (under its
/// new name) and nothing goes where the symlink points; a symlink planted
/// as the partial file's name fails the transfer and its target is untouched.
pub async fn a_moved_receive_directory_or_a_planted_symlink_redirects_nothing<R: Runtime>() {
    #[cfg(unix)]
    {
        let base = tmpdir("anchor");
        let dst = base.join("in");
        let (rnode, mut files) = receiver::<R>("r", &dst, None).await;
        let moved = base.join("moved");
        let elsewhere = base.join("elsewhere");
        std::fs::rename(&dst, &moved).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dst).unwrap();
        let sender = node::<R>("sender", cfg()).await;
        sender.connect(rnode.address().unwrap().to_string()).await.unwrap();
        sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let t = sender.send_bytes(TOPIC, "a.bin", data.clone(), FileOptions::default()).unwrap();
        assert_eq!(t.outcomes().await[0].1, Ok(()));
        next_received(&mut files).await;
        assert_eq!(std::fs::read(moved.join("a.bin")).unwrap(), data, "in the directory the application chose");
        assert_eq!(walk(&elsewhere), Vec::<PathBuf>::new(), "nothing where the symlink points");

        let victim = base.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, moved.join("b.bin.part")).unwrap();
        let t = sender.send_bytes(TOPIC, "b.bin", data.clone(), FileOptions::default()).unwrap();
        let r = t.outcomes().await[0].1.clone();
        assert!(r.as_ref().is_err_and(|e| e.contains("disk error")), "{r:?}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "the symlink was not followed");
        assert!(!moved.join("b.bin").exists());
        let _ = std::fs::remove_dir_all(base);
    }
}

pub async fn a_hundred_small_files_in_parallel<R: Runtime>() {
    let dst = tmpdir("many");
    let (rnode, mut files) = receiver::<R>("r", &dst, None).await;
    let sender = node::<R>("sender", cfg()).await;
    sender.connect(rnode.address().unwrap().to_string()).await.unwrap();
    sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..100u32 {
        let data: Vec<u8> = (0..(1000 + i * 13)).map(|j| (j ^ i) as u8).collect();
        handles.push((
            sender.send_bytes(TOPIC, &format!("f{i}.txt"), data.clone(), FileOptions::default()).unwrap(),
            data,
        ));
    }
    for (i, (t, data)) in handles.iter().enumerate() {
        assert_eq!(t.outcomes().await[0].1, Ok(()), "file {i}");
        assert_eq!(std::fs::read(dst.join(format!("f{i}.txt"))).unwrap(), *data);
    }
    let mut n = 0;
    while n < 100 {
        if let Some(FileEvent::Received(_)) = files.recv().await {
            n += 1;
        }
    }
    wait_until::<R>(|| sender.stats().transfer.delivered == 100, "100 delivered").await;
    let _ = sleep::<R>;
    let _ = std::fs::remove_dir_all(dst);
}

/// A file from a stream of `Bytes` (any async reader): spooled, hashed,
/// sent, and the spooled copy removed afterwards.
pub async fn a_file_from_a_stream_is_sent_and_its_spool_removed<R: Runtime>() {
    let dst = tmpdir("stream");
    let (rnode, mut files) = receiver::<R>("r", &dst, None).await;
    let sender = node::<R>("sender", cfg()).await;
    sender.connect(rnode.address().unwrap().to_string()).await.unwrap();
    sender.wait_for_subscribers(TOPIC, 1).await.unwrap();
    let parts: Vec<std::io::Result<Bytes>> = (0..50u8).map(|i| Ok(Bytes::from(vec![i; 10_000]))).collect();
    let whole: Vec<u8> = (0..50u8).flat_map(|i| vec![i; 10_000]).collect();
    let opts = FileOptions { meta: vec![("kind".into(), "log".into())], ..Default::default() };
    let t = sender.send_stream(TOPIC, "streamed.log", Iter(parts.into_iter()), opts).await.unwrap();
    assert_eq!(t.outcomes().await[0].1, Ok(()));
    let r = next_received(&mut files).await;
    assert_eq!(r.meta, vec![("kind".to_string(), "log".to_string())]);
    assert_eq!(std::fs::read(dst.join("streamed.log")).unwrap(), whole);
    let spools = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".estafeta-spool-"))
            .count()
    };
    wait_until::<R>(|| spools() == 0, "the spooled copy is removed").await;
    let _ = std::fs::remove_dir_all(dst);
}

/// A stream over an iterator.
struct Iter<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}
