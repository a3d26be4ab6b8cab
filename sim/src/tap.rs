//! A wire tap on one direction of a connection: parses the byte stream a node
//! hands to its socket into frames, so the oracle knows exactly which messages
//! were handed to which connection, and where each frame ends in the stream.

use bytes::{Buf, Bytes, BytesMut};
use estafeta_core::wire::{decode_frame, Header, PREAMBLE_LEN};

/// A publish frame seen on the wire.
#[derive(Debug)]
pub(crate) struct Tapped {
    /// Stream offset just past the frame: once the receiver was fed this many
    /// bytes, it has the whole frame.
    pub end: u64,
    pub topic: String,
    pub payload: Bytes,
}

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
}

impl Tap {
    /// `bytes` were offered for writing. They must start at the accepted
    /// offset; the part seen before must be identical. New publish frames are
    /// appended to `out`.
    pub(crate) fn offer(&mut self, bytes: &[u8], out: &mut Vec<Tapped>) -> Result<(), String> {
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
        self.parse(out)
    }

    /// The socket took `n` bytes of what was offered.
    pub(crate) fn accept(&mut self, n: usize) {
        debug_assert!(n <= self.pending.len());
        self.pending.advance(n.min(self.pending.len()));
        self.accepted += n as u64;
    }

    fn parse(&mut self, out: &mut Vec<Tapped>) -> Result<(), String> {
        if self.parsed == 0 {
            if self.buf.len() < PREAMBLE_LEN {
                return Ok(());
            }
            self.buf.advance(PREAMBLE_LEN);
            self.parsed = PREAMBLE_LEN as u64;
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
            if let Header::Publish { topic } = header {
                out.push(Tapped { end: self.parsed, topic: topic.to_string(), payload });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estafeta_core::wire::{encode_frame, write_preamble};

    #[test]
    fn finds_frames_across_splits_and_reoffers() {
        let mut stream = Vec::new();
        write_preamble(&mut stream);
        encode_frame(&mut stream, &Header::Heartbeat, &[]);
        encode_frame(&mut stream, &Header::Publish { topic: "t" }, b"abc");
        let end = stream.len() as u64;
        let mut tap = Tap::default();
        let mut out = Vec::new();
        tap.offer(&stream[..5], &mut out).unwrap();
        tap.accept(3);
        tap.offer(&stream[3..9], &mut out).unwrap();
        tap.accept(6);
        tap.offer(&stream[9..11], &mut out).unwrap();
        // A blocked write; the drain must offer the same bytes again.
        assert!(tap.offer(&[stream[9] ^ 0xff, stream[10]], &mut out).is_err());
        tap.offer(&stream[9..], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end, end);
        assert_eq!(&out[0].payload[..], b"abc");
        assert_eq!(out[0].topic, "t");
    }
}
