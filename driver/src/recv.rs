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
//! the bytes of their frames (header and payload). Reads go through a 64 KiB
//! buffer and are copied once; the rest of a frame of at least
//! [`ZERO_COPY_MIN`] bytes is read straight into the room kept for it.

use bytes::BytesMut;
use estafeta_core::wire::{LEN_PREFIX, PREAMBLE_LEN};
use estafeta_core::{ConnId, Node, Timestamp};

/// The rest of a frame at least this long is read straight into its room
/// (no copy); below it the copy is cheap. It is also the spare room below
/// which a runtime's own `poll_read_buf` may grow the buffer (tokio's does),
/// so the room handed to it is never smaller.
pub(crate) const ZERO_COPY_MIN: usize = 16 << 10;

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

    /// Bytes to read straight into `conn`'s receive buffer, if the frame at
    /// its end misses at least [`ZERO_COPY_MIN`] of them. Room is made for
    /// exactly that many.
    pub(crate) fn zero_copy_room(&self, node: &mut Node, conn: ConnId) -> Option<usize> {
        let max = node.config().max_frame_size;
        let rx = node.recv_buffer(conn)?;
        if !self.framed() || rx.is_empty() {
            return None;
        }
        let need = tail_need(rx, max);
        if need < ZERO_COPY_MIN {
            return None;
        }
        fit(rx, need);
        Some(need)
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
        let max = node.config().max_frame_size;
        let framed = self.framed();
        self.bytes_in += data.len() as u64;
        while framed && !data.is_empty() {
            let Some(rx) = node.recv_buffer(conn) else { return };
            let need = if rx.is_empty() { 0 } else { tail_need(rx, max) };
            if need == 0 {
                break;
            }
            fit(rx, need);
            let take = need.min(data.len());
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
        let extra = if framed { tail_need(data, max) } else { 0 };
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

/// Bytes missing from the last frame of `buf`, which starts at a frame
/// boundary: 0 if it ends on one, the rest of the length prefix if that is
/// cut short. A length the core will refuse (0, or over `max`) counts as
/// nothing missing: the core closes the connection on it.
fn tail_need(buf: &[u8], max: usize) -> usize {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let Some(prefix) = rest.get(..LEN_PREFIX) else {
            return if rest.is_empty() { 0 } else { LEN_PREFIX - rest.len() };
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 || len > max {
            return 0;
        }
        let end = LEN_PREFIX + len;
        if rest.len() < end {
            return end - rest.len();
        }
        at += end;
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
    fn tail_need_measures_the_last_frame() {
        let two: Vec<u8> = [frame(10), frame(20)].concat();
        assert_eq!(tail_need(&two, 1024), 0);
        assert_eq!(tail_need(&two[..two.len() - 5], 1024), 5);
        assert_eq!(tail_need(&two[..14], 1024), 0, "ends on a boundary");
        assert_eq!(tail_need(&two[..16], 1024), 2, "a cut length prefix");
        assert_eq!(tail_need(&two[..18], 1024), 20);
        assert_eq!(tail_need(&frame(2000)[..100], 1024), 0, "over the maximum: the core refuses it");
        assert_eq!(tail_need(&[0, 0, 0, 0], 1024), 0, "an empty frame: the core refuses it");
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
