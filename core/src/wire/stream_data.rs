//! The frame of every stream reply, [`StreamFrame::Data`], encoded and
//! decoded by hand: the bytes postcard writes, and postcard's outcome on what
//! it reads (anything the hand-written reader does not take goes to
//! postcard). A producer writes and a consumer reads one per reply, and
//! postcard's generic path through [`Header`](super::Header) costs several
//! times more than the frame's four or so bytes of header.
//!
//! ```text
//! 7 (Header::Stream) 3 (Data) id:varint(u64) more:u8(0|1) payload
//! ```

use super::codec::{front_body, split_payload};
use super::relay_frame::{put_varint64, take_varint};
use super::{StreamFrame, LEN_PREFIX};
use bytes::{Bytes, BytesMut};

/// Postcard's encoding of the variant index of [`Header::Stream`](super::Header::Stream).
const STREAM_TAG: u8 = 7;
/// Postcard's encoding of the variant index of [`StreamFrame::Data`].
const DATA_TAG: u8 = 3;

/// Appends room for the length prefix and the header of a Data frame (not
/// the payload); false (nothing written) for any other stream frame.
pub(super) fn encode_data_header(out: &mut Vec<u8>, frame: &StreamFrame<'_>, payload_len: usize) -> bool {
    let StreamFrame::Data { id, more } = *frame else { return false };
    // Prefix, two tags, at most ten varint bytes, the flag.
    let mut head = [0u8; LEN_PREFIX + 2 + 10 + 1];
    head[LEN_PREFIX] = STREAM_TAG;
    head[LEN_PREFIX + 1] = DATA_TAG;
    let at = put_varint64(&mut head, LEN_PREFIX + 2, id);
    head[at] = u8::from(more);
    out.reserve(at + 1 + payload_len);
    out.extend_from_slice(&head[..at + 1]);
    true
}

/// Decodes a Data frame; `None` for anything else, or anything wrong
/// (postcard then decides).
pub(super) fn parse_data(frame: &[u8]) -> Option<(StreamFrame<'static>, &[u8])> {
    let (&[h, d], rest) = frame.split_first_chunk::<2>()?;
    if h != STREAM_TAG || d != DATA_TAG {
        return None;
    }
    let (id, rest) = take_varint::<10>(rest)?;
    let (&more, payload) = rest.split_first()?;
    let more = match more {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some((StreamFrame::Data { id: id as u64, more }, payload))
}

/// Splits the next frame off `buf` if it is a whole, well-formed Data frame
/// within `max_frame`, and returns it with its payload (shared with `buf`,
/// no copy). Otherwise `buf` is left as it was, for
/// [`decode_frame`](super::decode_frame) (which also reports any error).
/// The consumer's hot path: it skips the split into a
/// [`RawFrame`](super::RawFrame).
pub fn take_stream_data(buf: &mut BytesMut, max_frame: usize) -> Option<(StreamFrame<'static>, Bytes)> {
    let body = front_body(buf, max_frame)?;
    let (frame, payload) = parse_data(body)?;
    let (len, n) = (body.len(), payload.len());
    Some((frame, split_payload(buf, len, n)))
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::{assert_all_agree_with_postcard, assert_matches_postcard, spread_values};
    use super::super::{decode_frame, encode_frame, Header};
    use super::*;
    use bytes::BytesMut;

    /// Byte for byte postcard's encoding, and decoded to the same frame.
    #[test]
    fn data_fast_paths_are_postcards() {
        let mut ids = vec![0u64, 1, 2, 127, 128, 16_383, 16_384, 1 << 35, (1 << 56) - 1, 1 << 56, 1 << 63, u64::MAX];
        for x in spread_values(50).into_iter().map(|v| v as u64) {
            ids.extend([x, x >> 20, x >> 45]);
        }
        for id in ids {
            for more in [false, true] {
                assert_matches_postcard(&Header::Stream(StreamFrame::Data { id, more }));
            }
        }
    }

    /// The consumer's shortcut takes the same frames as the general path,
    /// and leaves everything else (another frame, a partial one, one over
    /// the limit) where it was.
    #[test]
    fn the_shortcut_takes_whole_data_frames_only() {
        let mut out = Vec::new();
        encode_frame(&mut out, &Header::Stream(StreamFrame::Data { id: 300, more: false }), b"payload");
        let one = out.len();
        encode_frame(&mut out, &Header::Stream(StreamFrame::Credit { id: 300, bytes: 5 }), b"");
        encode_frame(&mut out, &Header::Stream(StreamFrame::Data { id: 7, more: true }), b"xy");
        let mut buf = BytesMut::from(&out[..]);
        let (f, p) = take_stream_data(&mut buf, 1 << 20).unwrap();
        assert_eq!((f, &p[..]), (StreamFrame::Data { id: 300, more: false }, &b"payload"[..]));
        assert_eq!(buf.len(), out.len() - one);
        assert!(take_stream_data(&mut buf, 1 << 20).is_none(), "a Credit frame is not taken");
        let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(matches!(frame.parse().unwrap().0, Header::Stream(StreamFrame::Credit { .. })));
        let whole = buf.clone();
        assert!(take_stream_data(&mut buf, 4).is_none(), "over the limit");
        for n in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..n]);
            assert!(take_stream_data(&mut part, 1 << 20).is_none(), "a partial frame");
            assert_eq!(part.len(), n);
        }
        assert_eq!(buf, whole);
        let (f, p) = take_stream_data(&mut buf, 1 << 20).unwrap();
        assert_eq!((f, &p[..]), (StreamFrame::Data { id: 7, more: true }, &b"xy"[..]));
        assert!(buf.is_empty());
    }

    /// On bytes that are not a well-formed Data frame the outcome is
    /// postcard's: the same header and payload, or an error from both.
    #[test]
    fn data_fast_parse_agrees_with_postcard_on_bad_bytes() {
        let mut bodies: Vec<Vec<u8>> = vec![
            vec![7, 3],
            vec![7, 3, 1],
            vec![7, 3, 1, 2],                   // a flag that is no bool
            vec![7, 3, 0x80, 0x00, 1],          // an overlong id
            vec![7, 3, 0x80, 0x80, 0x00, 0, 9], // an overlong id, longer
            vec![7, 0x83, 0, 1, 0],             // an overlong variant index
            vec![7, 3, 5, 0, 1, 2, 3],
            vec![7, 3, 5, 1],
        ];
        let mut max = vec![7, 3];
        max.extend([0xff; 9]);
        let mut over = max.clone();
        max.extend([0x01, 0, 9]); // id = u64::MAX
        over.extend([0x02, 0, 9]); // past u64
        let mut long = vec![7, 3];
        long.extend([0xff; 10]);
        long.extend([0x01, 0]); // eleven varint bytes
        bodies.extend([max, over, long]);
        let mut good = Vec::new();
        encode_frame(&mut good, &Header::Stream(StreamFrame::Data { id: 1 << 40, more: true }), b"xy");
        assert_all_agree_with_postcard(&bodies, &good);
    }
}
