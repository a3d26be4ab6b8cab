//! A wire tap on one direction of a connection: cuts the byte stream a node
//! hands to its socket into frames and parses each with the core's own
//! decoder (`decode_frame`, `RawFrame::parse`), so the oracle sees every
//! frame of every kind that was handed to a connection, and learns when the
//! receiver has read a frame it watches whole. On a secure connection it
//! parses the plaintext of each record (see [`Secure`]).

use bytes::{Buf, Bytes, BytesMut};
use estafeta_core::wire::{decode_frame, Header, PREAMBLE_LEN};
use std::collections::VecDeque;

/// Who wants to know when the receiver has a frame whole: an observer's
/// index, and the key that observer gave the frame.
pub(crate) type Watch = (usize, u64);

/// Where the tap hands every frame it parses (header and payload), in stream
/// order; returns the watches to keep until the receiver has the frame.
pub(crate) type OnFrame<'a> = dyn FnMut(&Header<'_>, &Bytes) -> Vec<Watch> + 'a;

/// Parses the bytes offered to one direction of a connection.
///
/// The drain offers an unwritten tail again after a partial or blocked write;
/// the tap checks that every re-offer starts where the socket stopped taking
/// bytes and repeats the same bytes.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    /// Bytes accepted by the socket (stream offset).
    accepted: u64,
    /// Offered but not yet accepted, starting at `accepted`.
    pending: BytesMut,
    /// Unparsed bytes, starting at stream offset `parsed`.
    buf: BytesMut,
    parsed: u64,
    /// Bytes handed to the receiving node.
    fed: u64,
    /// Watched frames not yet wholly fed to the receiver: (stream offset just
    /// past the frame, watch).
    watched: VecDeque<(u64, Watch)>,
    /// The writer dialed the connection (the secure channel's initiator).
    dialer: bool,
    /// The plaintext of the records the writer sealed and the tap has not
    /// seen on the wire yet, in order.
    sealed: VecDeque<Vec<u8>>,
    /// The preamble announced the secure mode: see [`Secure`].
    secure: Option<Secure>,
}

/// A secure direction. The ciphertext is cut into the channel's units
/// (`len:u16 || body`): the writer's handshake messages (two for the
/// dialer, one for the acceptor), then records. Each record is paired with
/// the plaintext its node sealed (handed over by the core's plaintext tap,
/// [`estafeta_core::PlaintextTap`]), and frames are parsed from the
/// plaintext, so the oracle sees the same frames as on a plaintext
/// connection. A frame is read whole once the receiver has read the whole
/// record it ends in (a record is decrypted whole).
#[derive(Debug, Default)]
struct Secure {
    /// Handshake messages still to come.
    handshake_left: usize,
    /// Plaintext not yet cut into frames.
    plain: BytesMut,
    /// A refusal in clear ended the stream: nothing more is parsed.
    stopped: bool,
}

impl Tap {
    /// The tap of the direction written by the dialer (`dialer`) or the acceptor.
    pub(crate) fn new(dialer: bool) -> Tap {
        Tap { dialer, ..Tap::default() }
    }

    /// The writer sealed a record with this plaintext; its bytes follow.
    pub(crate) fn sealed(&mut self, plain: Vec<u8>) {
        self.sealed.push_back(plain);
    }

    /// `bytes` were offered for writing. They must start at the accepted
    /// offset; the part seen before must be identical. Every frame the new
    /// bytes complete goes to `on_frame`.
    pub(crate) fn offer(&mut self, bytes: &[u8], on_frame: &mut OnFrame<'_>) -> Result<(), String> {
        let seen = self.pending.len().min(bytes.len());
        if bytes[..seen] != self.pending[..seen] {
            return Err(format!("the drain re-offered different bytes at stream offset {}", self.accepted));
        }
        let new = &bytes[seen..];
        if new.is_empty() {
            return Ok(());
        }
        self.pending.extend_from_slice(new);
        self.buf.extend_from_slice(new);
        self.parse(on_frame)
    }

    /// The socket took `n` bytes of what was offered.
    pub(crate) fn accept(&mut self, n: usize) {
        debug_assert!(n <= self.pending.len());
        self.pending.advance(n.min(self.pending.len()));
        self.accepted += n as u64;
    }

    /// The receiver read `n` more bytes: the watches of frames it now has
    /// whole go to `out`, in stream order.
    pub(crate) fn fed(&mut self, n: usize, out: &mut Vec<Watch>) {
        self.fed += n as u64;
        while self.watched.front().is_some_and(|(end, _)| *end <= self.fed) {
            out.push(self.watched.pop_front().expect("front exists").1);
        }
    }

    fn parse(&mut self, on_frame: &mut OnFrame<'_>) -> Result<(), String> {
        if self.parsed == 0 {
            if self.buf.len() < PREAMBLE_LEN {
                return Ok(());
            }
            if self.buf[PREAMBLE_LEN - 1] != estafeta_core::SecurityMode::Plaintext.wire_byte() {
                let handshake_left = if self.dialer { 2 } else { 1 };
                self.secure = Some(Secure { handshake_left, ..Secure::default() });
            }
            self.buf.advance(PREAMBLE_LEN);
            self.parsed = PREAMBLE_LEN as u64;
        }
        if self.secure.is_some() {
            return self.parse_secure(on_frame);
        }
        loop {
            let before = self.buf.len();
            let frame = match decode_frame(&mut self.buf, u32::MAX as usize) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("node wrote an undecodable frame: {e}")),
            };
            self.parsed += (before - self.buf.len()) as u64;
            let (header, payload) = frame.parse().map_err(|e| format!("node wrote a malformed header: {e}"))?;
            for w in on_frame(&header, &payload) {
                self.watched.push_back((self.parsed, w));
            }
        }
    }
}

impl Tap {
    /// [`Tap::parse`] on a secure direction: see [`Secure`].
    fn parse_secure(&mut self, on_frame: &mut OnFrame<'_>) -> Result<(), String> {
        let Some(sec) = self.secure.as_mut() else { return Ok(()) };
        loop {
            if sec.stopped {
                self.buf.clear();
                return Ok(());
            }
            let Some(len) = self.buf.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else {
                return Ok(());
            };
            if len == 0 {
                // A refusal in clear (in place of a handshake message, or a
                // goodbye frame before the handshake): the stream ends.
                sec.stopped = true;
                continue;
            }
            if self.buf.len() < 2 + len {
                return Ok(());
            }
            self.buf.advance(2 + len);
            self.parsed += 2 + len as u64;
            if sec.handshake_left > 0 {
                sec.handshake_left -= 1;
                continue;
            }
            let Some(plain) = self.sealed.pop_front() else {
                return Err(format!("a record of {len} bytes on the wire that its node did not seal"));
            };
            if plain.len() + TAG != len {
                return Err(format!("a record of {len} bytes sealed from {} bytes of plaintext", plain.len()));
            }
            sec.plain.extend_from_slice(&plain);
            loop {
                let frame = match decode_frame(&mut sec.plain, u32::MAX as usize) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(format!("node sealed an undecodable frame: {e}")),
                };
                let (header, payload) = frame.parse().map_err(|e| format!("node sealed a malformed header: {e}"))?;
                for w in on_frame(&header, &payload) {
                    self.watched.push_back((self.parsed, w));
                }
            }
        }
    }
}

/// The AEAD tag of a record.
const TAG: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use estafeta_core::wire::{encode_frame, write_preamble};

    /// Every frame's header and payload, as the tap parsed them.
    type Seen = Vec<(String, Vec<u8>)>;

    fn record(seen: &mut Seen) -> impl FnMut(&Header<'_>, &Bytes) -> Vec<Watch> + '_ {
        |h, p| {
            seen.push((format!("{h:?}"), p.to_vec()));
            vec![(0, seen.len() as u64 - 1)]
        }
    }

    #[test]
    fn finds_every_frame_across_splits_and_reoffers() {
        let mut stream = Vec::new();
        write_preamble(&mut stream);
        let frames = [
            Header::Subscribe { topic: "t" },
            Header::Heartbeat,
            Header::Publish { topic: "t" },
            Header::Unsubscribe { topic: "t" },
            Header::Goodbye { code: 1000, reason: "bye" },
            Header::Stream(estafeta_core::wire::StreamFrame::Heartbeat { reply: false, seen: 2, held: vec![2, 5] }),
        ];
        let mut ends = Vec::new();
        for h in &frames {
            let payload: &[u8] = if matches!(h, Header::Publish { .. }) { b"abc" } else { b"" };
            encode_frame(&mut stream, h, payload);
            ends.push(stream.len());
        }
        let (mut tap, mut seen) = (Tap::default(), Seen::new());
        let mut on = record(&mut seen);
        tap.offer(&stream[..5], &mut on).unwrap();
        tap.accept(3);
        tap.offer(&stream[3..9], &mut on).unwrap();
        tap.accept(6);
        tap.offer(&stream[9..11], &mut on).unwrap();
        // A blocked write; the drain must offer the same bytes again.
        assert!(tap.offer(&[stream[9] ^ 0xff, stream[10]], &mut on).is_err());
        tap.offer(&stream[9..], &mut on).unwrap();
        drop(on);
        let want: Vec<String> = frames.iter().map(|h| format!("{h:?}")).collect();
        assert_eq!(seen.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(), want);
        assert_eq!(seen[2].1, b"abc");
        // The receiver has a frame once it has read up to its end.
        let mut fed = Vec::new();
        tap.fed(ends[1] - 1, &mut fed);
        assert_eq!(fed, [(0, 0)]);
        tap.fed(1, &mut fed);
        assert_eq!(fed, [(0, 0), (0, 1)]);
        tap.fed(stream.len() - ends[1], &mut fed);
        assert_eq!(fed.len(), frames.len());
    }
}
