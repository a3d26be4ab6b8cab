//! The direct plain-TCP baseline: the sending task itself frames each payload
//! (`len:u32be payload`) into a 64 KiB buffer, writes it to the socket when it
//! is full and once more at the end; no channel, no writer task. The receiver
//! is the same frame reader as the channel baseline's ([`base_receive`]). The
//! fan-out case writes every payload into one such buffer per subscriber.
//!
//! [`base_receive`]: super::baseline::base_receive

use super::baseline::Plain;
use super::*;

/// A socket with its own 64 KiB write buffer (what `BufWriter` would do).
struct Buffered<P: Plain> {
    wr: P::Writer,
    w: FrameWriter,
    /// Kept open: dropping it could shut the connection on some runtimes.
    _rd: P::Reader,
}

impl<P: Plain> Buffered<P> {
    async fn connect(addr_rx: oneshot::Receiver<String>) -> Self {
        let (rd, wr) = P::connect(addr_rx).await;
        Buffered { wr, w: FrameWriter::new(), _rd: rd }
    }

    /// Buffers one frame; writes the buffer if it is full.
    async fn push(&mut self, payload: &[u8]) {
        if self.w.push(payload) {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if !self.w.out.is_empty() {
            P::write_all(&mut self.wr, &self.w.out).await;
            self.w.out.clear();
        }
    }
}

/// Sends `n` frames to every socket, flushing at the end.
async fn send_frames<P: Plain>(socks: &mut [Buffered<P>], payload: &[u8], n: usize) {
    for _ in 0..n {
        for s in socks.iter_mut() {
            s.push(payload).await;
        }
    }
    for s in socks.iter_mut() {
        s.flush().await;
    }
}

/// The direct sender, to one receiver or several (fan-out: each frame goes
/// to every receiver).
pub(crate) async fn direct_send<P: Plain>(run: Run, ends: Vec<TxEnds>) -> Instant {
    let Run { size, warm, n } = run;
    let mut socks = Vec::with_capacity(ends.len());
    let mut waits = Vec::with_capacity(ends.len());
    for TxEnds { addr_rx, warm_rx, done_rx } in ends {
        socks.push(Buffered::<P>::connect(addr_rx).await);
        waits.push((warm_rx, done_rx));
    }
    let payload = vec![0xA5; size];
    send_frames(&mut socks, &payload, warm).await;
    let mut done = Vec::with_capacity(waits.len());
    for (warm_rx, done_rx) in waits {
        warm_rx.await.expect("warm-up received");
        done.push(done_rx);
    }
    let t0 = Instant::now();
    send_frames(&mut socks, &payload, n).await;
    for done_rx in done {
        done_rx.await.expect("receiver done");
    }
    t0
}

/// Reads one whole frame (of `RTT_PAYLOAD` bytes) into `r`.
async fn read_one<P: Plain>(rd: &mut P::Reader, r: &mut FrameReader) {
    while r.take(1) == 0 {
        let k = P::read(rd, r.spare()).await;
        r.filled(k);
    }
}

/// Writes one frame at once.
async fn write_one<P: Plain>(wr: &mut P::Writer, w: &mut FrameWriter, payload: &[u8]) {
    w.push(payload);
    P::write_all(wr, &w.out).await;
    w.out.clear();
}

/// The echoer of the plain ping-pong: each frame read is written straight back.
pub(crate) async fn direct_echo<P: Plain>(
    total: usize,
    addr_tx: oneshot::Sender<String>,
    done_rx: oneshot::Receiver<()>,
) {
    let (mut rd, mut wr) = P::accept(addr_tx).await;
    let (mut r, mut w) = (FrameReader::new(RTT_PAYLOAD), FrameWriter::new());
    for _ in 0..total {
        loop {
            if let Some(p) = r.next_frame() {
                w.push(p);
                break;
            }
            let k = P::read(&mut rd, r.spare()).await;
            r.filled(k);
        }
        P::write_all(&mut wr, &w.out).await;
        w.out.clear();
    }
    done_rx.await.expect("pinger done");
}

/// The pinger of the plain ping-pong: write one frame, read one frame.
pub(crate) async fn direct_ping<P: Plain>(
    warm: usize,
    rounds: usize,
    addr_rx: oneshot::Receiver<String>,
    done_tx: oneshot::Sender<()>,
) -> Vec<Duration> {
    let (mut rd, mut wr) = P::connect(addr_rx).await;
    let (mut r, mut w) = (FrameReader::new(RTT_PAYLOAD), FrameWriter::new());
    let payload = vec![0x5A; RTT_PAYLOAD];
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warm + rounds {
        let t = Instant::now();
        write_one::<P>(&mut wr, &mut w, &payload).await;
        read_one::<P>(&mut rd, &mut r).await;
        if i >= warm {
            rtts.push(t.elapsed());
        }
    }
    done_tx.send(()).expect("echoer waits");
    rtts
}
