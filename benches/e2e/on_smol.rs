//! The smol side of the end-to-end bench: the global executor and the plain
//! async-io TCP baseline.

use super::*;
use smol::channel;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// Runs both sides as tasks on smol's global executor.
pub fn pair<A, FA, B, FB>(a: A, b: B) -> (FA::Output, FB::Output)
where
    A: FnOnce() -> FA,
    FA: Future + Send + 'static,
    FA::Output: Send + 'static,
    B: FnOnce() -> FB,
    FB: Future + Send + 'static,
    FB::Output: Send + 'static,
{
    smol::block_on(async {
        let ta = smol::spawn(a());
        let tb = smol::spawn(b());
        (ta.await, tb.await)
    })
}

/// The writer task: `&Async<TcpStream>` writes, so the socket is shared
/// with the reading side through an `Arc`.
async fn writer(sock: Arc<Async<TcpStream>>, rx: channel::Receiver<Bytes>) {
    let mut sock = &*sock;
    let mut w = FrameWriter::new();
    while let Ok(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(p) = next {
            if w.push(&p) {
                sock.write_all(&w.out).await.expect("write");
                w.out.clear();
            }
            next = rx.try_recv().ok();
        }
        // The queue is drained: write what is buffered.
        if !w.out.is_empty() {
            sock.write_all(&w.out).await.expect("write");
            w.out.clear();
        }
    }
}

async fn read_frames(sock: &Async<TcpStream>, r: &mut FrameReader, n: usize) {
    let mut sock = sock;
    let mut got = r.take(n);
    while got < n {
        let k = sock.read(r.spare()).await.expect("read");
        r.filled(k);
        got += r.take(n - got);
    }
}

async fn accept(addr_tx: oneshot::Sender<String>) -> Arc<Async<TcpStream>> {
    let l = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind");
    let addr = l.get_ref().local_addr().expect("address").to_string();
    addr_tx.send(addr).expect("peer waits");
    let (s, _) = l.accept().await.expect("accept");
    s.get_ref().set_nodelay(true).expect("nodelay");
    Arc::new(s)
}

async fn connect(addr_rx: oneshot::Receiver<String>) -> Arc<Async<TcpStream>> {
    let addr: std::net::SocketAddr = addr_rx.await.expect("address").parse().expect("socket address");
    let s = Async::<TcpStream>::connect(addr).await.expect("connect");
    s.get_ref().set_nodelay(true).expect("nodelay");
    Arc::new(s)
}

pub async fn base_receive(
    size: usize,
    warm: usize,
    n: usize,
    addr_tx: oneshot::Sender<String>,
    warm_tx: oneshot::Sender<()>,
    done_tx: oneshot::Sender<()>,
) -> Instant {
    let s = accept(addr_tx).await;
    let mut r = FrameReader::new(size);
    read_frames(&s, &mut r, warm).await;
    warm_tx.send(()).expect("sender waits");
    read_frames(&s, &mut r, n).await;
    let t1 = Instant::now();
    assert_eq!(r.start, r.end, "more bytes than sent");
    done_tx.send(()).expect("sender waits");
    t1
}

pub async fn base_send(
    size: usize,
    warm: usize,
    n: usize,
    addr_rx: oneshot::Receiver<String>,
    warm_rx: oneshot::Receiver<()>,
    done_rx: oneshot::Receiver<()>,
) -> Instant {
    let s = connect(addr_rx).await;
    let (tx, rx) = channel::bounded(queue_capacity(size));
    let w = smol::spawn(writer(s, rx));
    let payload = Bytes::from(vec![0xA5; size]);
    for _ in 0..warm {
        tx.send(payload.clone()).await.expect("writer runs");
    }
    warm_rx.await.expect("warm-up received");
    let t0 = Instant::now();
    for _ in 0..n {
        tx.send(payload.clone()).await.expect("writer runs");
    }
    drop(tx);
    w.await;
    done_rx.await.expect("receiver done");
    t0
}

pub async fn base_echo(total: usize, addr_tx: oneshot::Sender<String>, done_rx: oneshot::Receiver<()>) {
    let s = accept(addr_tx).await;
    let (tx, rx) = channel::bounded(queue_capacity(RTT_PAYLOAD));
    let w = smol::spawn(writer(s.clone(), rx));
    let mut rd = &*s;
    let mut r = FrameReader::new(RTT_PAYLOAD);
    for _ in 0..total {
        let p = loop {
            if let Some(p) = r.next_frame() {
                break Bytes::copy_from_slice(p);
            }
            let k = rd.read(r.spare()).await.expect("read");
            r.filled(k);
        };
        tx.send(p).await.expect("writer runs");
    }
    done_rx.await.expect("pinger done");
    drop(tx);
    w.await;
}

pub async fn base_ping(
    warm: usize,
    rounds: usize,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Vec<Duration> {
    let s = connect(addr_rx).await;
    let (tx, rx) = channel::bounded(queue_capacity(RTT_PAYLOAD));
    let w = smol::spawn(writer(s.clone(), rx));
    let mut rd = &*s;
    let mut r = FrameReader::new(RTT_PAYLOAD);
    let payload = Bytes::from(vec![0x5A; RTT_PAYLOAD]);
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warm + rounds {
        let t = Instant::now();
        tx.send(payload.clone()).await.expect("writer runs");
        while r.take(1) == 0 {
            let k = rd.read(r.spare()).await.expect("read");
            r.filled(k);
        }
        let d = t.elapsed();
        if i >= warm {
            rtts.push(d);
        }
    }
    done_tx.send(()).expect("echoer waits");
    drop(tx);
    w.await;
    rtts
}
