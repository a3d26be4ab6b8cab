//! How received bytes reach the core's receive buffer, so that memory held by
//! received messages is what their frames weigh.
//!
//! Received payloads are slices of the receive buffer's allocations: a
//! message the application (or the core's event queue) still holds keeps the
//! whole allocation it arrived in alive. Growing one buffer the usual way
//! (reserve a chunk, read into its spare room, move a frame cut at the end
//! into the next chunk) leaves the cut frame's first part and the unread room
//! in every chunk that a held message pins: with 64 KiB messages that doubled
//! the memory of a stalled subscriber, and a trickle of small messages each
//! read into its own 64 KiB chunk pinned 64 KiB per message.
//!
//! So the driver sizes every allocation itself: the bytes of one socket read
//! go into an allocation of exactly their size plus the rest of the last frame
//! they start (its length prefix says how much), and the next read first
//! completes that frame in the room kept for it. An allocation then holds
//! whole frames and nothing else, and the memory pinned by held messages is
//! the bytes of their frames (header and payload). Reads of short frames go
//! through a 64 KiB buffer and are copied once. A long frame (at least
//! [`LONG_FRAME`] bytes) is read on its own, with the next frame's length
//! prefix: the read asks for exactly its rest plus those 4 bytes, straight
//! into its room (no copy) when that is at least [`ZERO_COPY_MIN`]. So a
//! stream of long frames costs one read and no copy per frame, and each
//! allocation holds one frame plus the 4 bytes of the next one's prefix
//! (which move on to that frame's own allocation).

use bytes::BytesMut;
use estafeta_core::wire::{LEN_PREFIX, PREAMBLE_LEN};
use estafeta_core::{ConnId, Node, Timestamp};

/// A frame at least this long is read on its own (see the module docs).
pub(crate) const LONG_FRAME: usize = 16 << 10;

/// A read of at least this many bytes into room kept in the receive buffer
/// goes straight there; below it the copy is cheap. It is also the spare
/// room below which a runtime's own `poll_read_buf` may grow the buffer
/// (tokio's does), so the room handed to it is never smaller.
pub(crate) const ZERO_COPY_MIN: usize = 16 << 10;

/// How to do the next read of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Read at most this many bytes into the driver's buffer, then [`RecvState::feed`].
    Copy(usize),
    /// Read at most this many bytes straight into the room kept for them at
    /// the end of the receive buffer, then [`RecvState::received`].
    Room(usize),
}

/// What one connection's reads have been.
#[derive(Debug, Default)]
pub(crate) struct RecvState {
    /// Bytes read so far. Until the preamble is in, the buffer does not start
    /// at a frame boundary and frames cannot be measured.
    bytes_in: u64,
}

impl RecvState {
    fn framed(&self) -> bool {
        self.bytes_in >= PREAMBLE_LEN as u64
    }

    /// How to read `conn` next, reading at most `chunk` bytes into the
    /// driver's buffer. Makes the room a [`Plan::Room`] reads into.
    pub(crate) fn plan(&self, node: &mut Node, conn: ConnId, chunk: usize) -> Plan {
        let max = node.config().session.max_frame_size;
        if !node.recv_is_framed(conn) {
            // A secure connection's buffer holds records, not frames: the
            // rest of a long record and the next one's length prefix are
            // read straight into room kept for them (the core opens the
            // record in place).
            return match node.recv_record_room(conn, LONG_FRAME) {
                Some(want) if want >= ZERO_COPY_MIN => match node.recv_buffer(conn) {
                    Some(rx) => {
                        fit(rx, want);
                        Plan::Room(want)
                    }
                    None => Plan::Copy(chunk),
                },
                Some(want) => Plan::Copy(want.min(chunk)),
                None => Plan::Copy(chunk),
            };
        }
        let Some(rx) = node.recv_buffer(conn) else { return Plan::Copy(chunk) };
        if !self.framed() {
            return Plan::Copy(chunk);
        }
        match cut_frame(rx, max) {
            // The rest of a long frame and the next frame's length prefix.
            Some(cut) if cut.is_long() => {
                let want = cut.room();
                if want >= ZERO_COPY_MIN {
                    fit(rx, want);
                    Plan::Room(want)
                } else {
                    Plan::Copy(want.min(chunk))
                }
            }
            _ => Plan::Copy(chunk),
        }
    }

    /// `n` bytes were read straight into the receive buffer.
    pub(crate) fn received(&mut self, node: &mut Node, now: Timestamp, conn: ConnId, n: usize) {
        self.bytes_in += n as u64;
        node.handle_received(now, conn, n);
    }

    /// Hands `data`, just read from `conn`'s socket, to the core: first the
    /// rest of the frame the receive buffer ends with (room was kept for it),
    /// then everything else in a new allocation of exactly its size plus the
    /// rest of the last frame it starts.
    pub(crate) fn feed(&mut self, node: &mut Node, now: Timestamp, conn: ConnId, mut data: &[u8]) {
        let max = node.config().session.max_frame_size;
        let framed = self.framed() && node.recv_is_framed(conn);
        self.bytes_in += data.len() as u64;
        while framed && !data.is_empty() {
            let Some(rx) = node.recv_buffer(conn) else { return };
            let Some(cut) = cut_frame(rx, max) else { break };
            fit(rx, cut.room());
            let take = cut.need.min(data.len());
            rx.extend_from_slice(&data[..take]);
            data = &data[take..];
            node.handle_received(now, conn, take);
        }
        if data.is_empty() {
            return;
        }
        let Some(rx) = node.recv_buffer(conn) else { return };
        // Before the preamble is in, frames cannot be measured: no room is
        // kept (the next reads move the cut frame once).
        let extra = if framed { cut_frame(data, max).map_or(0, |c| c.room()) } else { 0 };
        if rx.is_empty() && rx.capacity() < data.len() + extra {
            *rx = BytesMut::with_capacity(data.len() + extra);
        } else {
            // Whole frames the core has not taken yet (its event queue was
            // full) or the preamble: keep them with the new bytes.
            fit(rx, data.len() + extra);
        }
        rx.extend_from_slice(data);
        node.handle_received(now, conn, data.len());
    }
}

/// Makes room for `more` bytes in `rx` without over-allocating: if it has
/// too little, its bytes move to an allocation of exactly their size plus
/// `more`. (`BytesMut::reserve` rounds up to the buffer's original
/// capacity or doubles it.)
fn fit(rx: &mut BytesMut, more: usize) {
    if rx.capacity() - rx.len() < more {
        let mut b = BytesMut::with_capacity(rx.len() + more);
        b.extend_from_slice(rx);
        *rx = b;
    }
}

/// The last frame of a buffer that does not end on a frame boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    /// Bytes missing: the rest of the frame, or of its length prefix.
    need: usize,
    /// The whole frame's length with its prefix (0 while the prefix is cut).
    len: usize,
}

/// The frame cut at the end of `buf`, which starts at a frame boundary. A
/// length the core will refuse (0, or over `max`) counts as nothing
/// missing: the core closes the connection on it.
fn cut_frame(buf: &[u8], max: usize) -> Option<Cut> {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let Some(prefix) = rest.get(..LEN_PREFIX) else {
            return (!rest.is_empty()).then(|| Cut { need: LEN_PREFIX - rest.len(), len: 0 });
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 || len > max {
            return None;
        }
        let end = LEN_PREFIX + len;
        if rest.len() < end {
            return Some(Cut { need: end - rest.len(), len: end });
        }
        at += end;
    }
}

impl Cut {
    fn is_long(&self) -> bool {
        self.len >= LONG_FRAME
    }

    /// The room to keep for it: what it misses, and for a long frame the
    /// next frame's length prefix, read with it.
    fn room(&self) -> usize {
        self.need + if self.is_long() { LEN_PREFIX } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes().to_vec();
        f.resize(LEN_PREFIX + len, 7);
        f
    }

    #[test]
    fn cut_frame_measures_the_last_frame() {
        let cut = |b: &[u8]| cut_frame(b, 1 << 20).map(|c| (c.need, c.len));
        let two: Vec<u8> = [frame(10), frame(20)].concat();
        assert_eq!(cut(&two), None);
        assert_eq!(cut(&two[..two.len() - 5]), Some((5, 24)));
        assert_eq!(cut(&two[..14]), None, "ends on a boundary");
        assert_eq!(cut(&two[..16]), Some((2, 0)), "a cut length prefix");
        assert_eq!(cut(&two[..18]), Some((20, 24)));
        assert_eq!(cut_frame(&frame(2000)[..100], 1024), None, "over the maximum: the core refuses it");
        assert_eq!(cut(&[0, 0, 0, 0]), None, "an empty frame: the core refuses it");
        let long = cut_frame(&frame(LONG_FRAME)[..100], 1 << 20).unwrap();
        assert_eq!(long.room(), LONG_FRAME + LEN_PREFIX - 100 + LEN_PREFIX, "room for the next prefix too");
    }

    #[test]
    fn fit_allocates_exactly() {
        let mut rx = BytesMut::with_capacity(8);
        rx.extend_from_slice(b"abc");
        fit(&mut rx, 5);
        assert_eq!(rx.capacity(), 8, "room enough: unchanged");
        fit(&mut rx, 100);
        assert_eq!((&rx[..], rx.capacity()), (&b"abc"[..], 103));
    }
}
