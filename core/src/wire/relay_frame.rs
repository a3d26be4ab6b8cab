//! The frame of every relayed message, [`DiscoveryFrame::Relay`] with a
//! topic shorter than 128 bytes, encoded and decoded by hand: the bytes
//! postcard writes, and postcard's outcome on what it reads (anything the
//! hand-written reader does not take goes to postcard). A relay reads and
//! writes one per message, and postcard's generic path for the 128-bit
//! origin costs several times more.
//!
//! ```text
//! 9 (Header::Discovery) 2 (Relay) topic_len:u8 topic origin:varint(u128)
//! epoch:varint(u32) seq:varint(u64) hops:u8 payload
//! ```

use super::codec::{front_body, split_payload};
use super::{DiscoveryFrame, LEN_PREFIX};

/// Postcard's encoding of the variant index of [`Header::Discovery`](super::Header::Discovery).
const DISCOVERY_TAG: u8 = 9;
/// Postcard's encoding of the variant index of [`DiscoveryFrame::Relay`].
const RELAY_TAG: u8 = 2;
/// Topics shorter than this have a one-byte length.
const ONE_BYTE: usize = 0x80;
/// The longest header after the topic: origin, epoch, seq varints and hops.
const MAX_TAIL: usize = 19 + 5 + 10 + 1;

/// Appends room for the length prefix and the header of a Relay frame (not
/// the payload) if its topic is shorter than 128 bytes; false (nothing
/// written) otherwise.
pub(super) fn encode_relay_header(out: &mut Vec<u8>, frame: &DiscoveryFrame<'_>, payload_len: usize) -> bool {
    let DiscoveryFrame::Relay { topic, origin, epoch, seq, hops } = *frame else { return false };
    if topic.len() >= ONE_BYTE {
        return false;
    }
    let mut tail = [0u8; MAX_TAIL];
    let mut n = put_varint(&mut tail, 0, origin);
    n = put_varint(&mut tail, n, u128::from(epoch));
    n = put_varint(&mut tail, n, u128::from(seq));
    tail[n] = hops;
    n += 1;
    out.reserve(LEN_PREFIX + 3 + topic.len() + n + payload_len);
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.extend_from_slice(&[DISCOVERY_TAG, RELAY_TAG, topic.len() as u8]);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&tail[..n]);
    true
}

/// Writes `v` as a varint at `buf[at..]`; returns the end. A 128-bit value
/// is cut into 56-bit parts (8 varint bytes each) so that every shift is
/// a 64-bit one.
fn put_varint(buf: &mut [u8; MAX_TAIL], mut at: usize, v: u128) -> usize {
    const PART: u32 = 56;
    const MASK: u128 = (1 << PART) - 1;
    let mut v = v;
    while v > MASK {
        let bytes = spread((v & MASK) as u64) | CONTINUED;
        buf[at..at + 8].copy_from_slice(&bytes.to_le_bytes());
        at += 8;
        v >>= PART;
    }
    put_varint64(buf, at, v as u64)
}

/// The high bit of each of 8 bytes: all of them continue the varint.
const CONTINUED: u64 = 0x8080_8080_8080_8080;

/// The low 56 bits of `x` as 8 groups of 7, one per byte (little-endian).
fn spread(x: u64) -> u64 {
    let x = (x & 0x0fff_ffff) | ((x & 0x00ff_ffff_f000_0000) << 4);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x0fff_c000_0fff_c000) << 2);
    (x & 0x007f_007f_007f_007f) | ((x & 0x3f80_3f80_3f80_3f80) << 1)
}

/// The inverse of [`spread`]: the low 7 bits of each of 8 bytes, packed.
fn pack(x: u64) -> u64 {
    let x = x & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

/// Writes `v` as postcard's varint at `buf[at..]` (at most ten bytes);
/// returns the end. Below 2^56, with eight bytes of room, the groups are
/// spread in one word and written at once.
#[inline]
pub(super) fn put_varint64(buf: &mut [u8], at: usize, v: u64) -> usize {
    if v < 0x80 {
        buf[at] = v as u8;
        return at + 1;
    }
    put_long_varint64(buf, at, v)
}

/// [`put_varint64`] of a value of two bytes or more.
fn put_long_varint64(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    if let Some(room) = buf.get_mut(at..at + 8).filter(|_| v >> 56 == 0) {
        let n = varint_len(v);
        let continued = CONTINUED & ((1u64 << (8 * (n - 1))) - 1);
        room.copy_from_slice(&(spread(v) | continued).to_le_bytes());
        return at + n;
    }
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// The bytes of `v`'s varint, for `v` below 2^56 (1 to 8).
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Decodes a Relay frame whose topic is shorter than 128 bytes; `None` for
/// anything else, or anything wrong (postcard then decides).
pub(super) fn parse_relay(frame: &[u8]) -> Option<(DiscoveryFrame<'_>, &[u8])> {
    let (&[h, r, len], rest) = frame.split_first_chunk::<3>()?;
    if h != DISCOVERY_TAG || r != RELAY_TAG || usize::from(len) >= ONE_BYTE {
        return None;
    }
    let (topic, rest) = rest.split_at_checked(usize::from(len))?;
    let topic = std::str::from_utf8(topic).ok()?;
    let (RelayHead { origin, epoch, seq, hops }, payload) = take_identity(rest)?;
    Some((DiscoveryFrame::Relay { topic, origin, epoch, seq, hops }, payload))
}

/// The relay identity after a Relay frame's topic, and the payload after it.
#[inline(always)]
fn take_identity(rest: &[u8]) -> Option<(RelayHead, &[u8])> {
    let (origin, rest) = take_varint::<19>(rest)?;
    let (epoch, rest) = take_varint::<5>(rest)?;
    let (seq, rest) = take_varint::<10>(rest)?;
    let (&hops, payload) = rest.split_first()?;
    Some((RelayHead { origin, epoch: epoch as u32, seq: seq as u64, hops }, payload))
}

/// The relay identity of a Relay frame taken by [`take_relay_on`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayHead {
    /// The node that published the message.
    pub origin: u128,
    /// The origin's epoch.
    pub epoch: u32,
    /// The origin's sequence number on the topic.
    pub seq: u64,
    /// Relays it has passed through.
    pub hops: u8,
}

/// Splits the next frame off `buf` if it is a whole Relay frame on `topic`
/// in the form [`encode_relay_header`] writes (a topic shorter than 128
/// bytes), and returns its identity and payload (shared with `buf`, no
/// copy). Otherwise `buf` is left as it was, for
/// [`decode_frame`](super::decode_frame) (which also reports any error). A
/// relay's and a relayed subscriber's hot path, as
/// [`take_publish_on`](super::take_publish_on) is a subscriber's: a copy on
/// the topic of the frame before it skips the UTF-8 check, the tries of the
/// other frame kinds and the split into a [`RawFrame`](super::RawFrame).
pub fn take_relay_on(buf: &mut bytes::BytesMut, topic: &str, max_frame: usize) -> Option<(RelayHead, bytes::Bytes)> {
    let t = topic.as_bytes();
    if t.len() >= ONE_BYTE {
        return None;
    }
    let body = front_body(buf, max_frame)?;
    let rest = body.strip_prefix(&[DISCOVERY_TAG, RELAY_TAG, t.len() as u8])?.strip_prefix(t)?;
    let (head, payload) = take_identity(rest)?;
    let (len, n) = (body.len(), payload.len());
    Some((head, split_payload(buf, len, n)))
}

/// Postcard's varint reader for an integer of at most `MAX` varint bytes
/// (19 for u128, 10 for u64, 5 for u32): the same bytes taken, the same
/// values accepted (the last possible byte may only carry the bits left).
/// Bytes are gathered 8 at a time (56 bits) in 64-bit words.
#[inline(always)]
pub(super) fn take_varint<const MAX: usize>(buf: &[u8]) -> Option<(u128, &[u8])> {
    let max_last: u8 = match MAX {
        19 => 0b11,
        10 => 0b1,
        _ => 0b1111,
    };
    if let Some(&b) = buf.first().filter(|b| **b < 0x80) {
        return Some((u128::from(b), &buf[1..]));
    }
    let mut parts = [0u64; 4];
    let mut i = 0;
    // Eight bytes at a time while eight are there: whole groups of
    // continuing bytes, then the group that ends the varint.
    while let Some(group) = buf.get(i..i + 8) {
        let raw = u64::from_le_bytes(group.try_into().expect("8 bytes"));
        let stop = !raw & CONTINUED;
        if stop == 0 {
            if i + 8 >= MAX {
                return None; // no room left for the last byte
            }
            parts[(i / 8) & 3] = pack(raw);
            i += 8;
            continue;
        }
        let n = stop.trailing_zeros() as usize / 8 + 1;
        if i + n > MAX || i + n == MAX && (raw >> (8 * (n - 1))) as u8 > max_last {
            return None;
        }
        parts[(i / 8) & 3] = pack(raw) & ((1u64 << (7 * n)) - 1);
        let v = u128::from(parts[0]) | u128::from(parts[1]) << 56 | u128::from(parts[2]) << 112;
        return Some((v, &buf[i + n..]));
    }
    while i < MAX {
        let b = *buf.get(i)?;
        parts[(i / 8) & 3] |= u64::from(b & 0x7f) << (7 * (i % 8));
        if b & 0x80 == 0 {
            if i == MAX - 1 && b > max_last {
                return None;
            }
            let v = u128::from(parts[0]) | u128::from(parts[1]) << 56 | u128::from(parts[2]) << 112;
            return Some((v, &buf[i + 1..]));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::{assert_all_agree_with_postcard, spread_values};
    use super::super::{encode_frame, Header};
    use super::*;

    fn frames() -> Vec<(String, u128, u32, u64, u8)> {
        let mut v = Vec::new();
        for topic in [0usize, 1, 5, 127, 128, 300] {
            let mut origins = vec![0u128, 1, 127, 128, (1 << 56) - 1, 1 << 56, u64::MAX as u128, u64::MAX as u128 + 1];
            origins.extend([(1 << 112) - 1, 1 << 112, u128::MAX]);
            for x in spread_values(20) {
                origins.extend([x, x >> 40, x >> 70]);
            }
            for origin in origins {
                for (epoch, seq, hops) in [(0, 0, 0), (1, 1, 1), (u32::MAX, u64::MAX, u8::MAX), (300, 1 << 40, 7)] {
                    v.push(("t".repeat(topic), origin, epoch, seq, hops));
                }
            }
        }
        v
    }

    /// Byte for byte postcard's encoding, and decoded to the same frame.
    #[test]
    fn relay_fast_paths_are_postcards() {
        for (topic, origin, epoch, seq, hops) in frames() {
            let h = Header::Discovery(DiscoveryFrame::Relay { topic: &topic, origin, epoch, seq, hops });
            super::super::codec::tests::assert_matches_postcard(&h);
        }
    }

    /// On bytes that are not a well-formed Relay frame the outcome is
    /// postcard's: the same header and payload, or an error from both.
    #[test]
    fn relay_fast_parse_agrees_with_postcard_on_bad_bytes() {
        let mut bodies: Vec<Vec<u8>> = vec![
            vec![9, 2],
            vec![9, 2, 1, b'x'],
            vec![9, 2, 1, 0xff, 1, 1, 1, 1],
            vec![9, 2, 0, 0x80, 0x00, 1, 1, 1],                   // an overlong origin
            vec![9, 2, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1], // epoch = u32::MAX
            vec![9, 2, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x10, 1, 1], // epoch past u32
            vec![9, 2, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 1], // seq past u64
            vec![9, 2, 0, 1, 1, 1],                               // no hops
            vec![9, 0x82, 0, 0, 1, 1, 1, 1],                      // an overlong variant index
        ];
        let mut origin = vec![9, 2, 0];
        origin.extend([0xff; 18]);
        let mut over = origin.clone();
        origin.extend([0x03, 1, 1, 1]);
        over.extend([0x04, 1, 1, 1]);
        bodies.extend([origin, over]);
        let mut zero = vec![9, 2, 0];
        zero.extend([0x80; 18]);
        zero.extend([0x00, 1, 1, 1]); // an overlong zero origin, through both 8-byte groups
        bodies.push(zero);
        let mut seq = vec![9, 2, 0, 1, 1];
        seq.extend([0xff; 9]);
        seq.extend([0x01, 1]); // seq = u64::MAX, through one 8-byte group
        bodies.push(seq);
        // Every prefix of a good frame.
        let mut good = Vec::new();
        encode_frame(
            &mut good,
            &Header::Discovery(DiscoveryFrame::Relay {
                topic: "topic",
                origin: u128::MAX - 5,
                epoch: 9,
                seq: 1 << 33,
                hops: 2,
            }),
            b"xy",
        );
        assert_all_agree_with_postcard(&bodies, &good);
    }
}
