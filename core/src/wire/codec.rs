//! Encoding and decoding of the preamble and of frames.

use super::{negotiate, Header, WireError, LEN_PREFIX, MAGIC, MIN_VERSION, PREAMBLE_LEN, VERSION};
use bytes::{Buf, Bytes, BytesMut};

/// Appends the preamble of a plaintext node (magic + version + mode 0) to `out`.
pub fn write_preamble(out: &mut Vec<u8>) {
    write_preamble_mode(out, 0);
}

/// Appends the preamble with security mode byte `mode` (0 plaintext, 1 Noise).
pub fn write_preamble_mode(out: &mut Vec<u8>, mode: u8) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.push(mode);
}

/// Checks a received preamble; returns the version both sides will speak
/// (the lower of the two highest versions). A peer whose highest version is
/// below [`MIN_VERSION`] is refused; one that speaks newer versions is fine.
///
/// ```
/// use estafeta_core::wire::{check_preamble, write_preamble, WireError, VERSION};
/// let mut p = Vec::new();
/// write_preamble(&mut p);
/// assert_eq!(check_preamble(&p), Ok(VERSION));
/// assert_eq!(check_preamble(b"ESTF\x00\x63\x00"), Ok(VERSION), "a newer peer");
/// assert!(matches!(check_preamble(b"GET / H"), Err(WireError::BadMagic(_))));
/// assert!(matches!(check_preamble(b"ESTF\x00\x01\x00"), Err(WireError::UnsupportedVersion { .. })));
/// ```
pub fn check_preamble(bytes: &[u8]) -> Result<u16, WireError> {
    let mut magic = [0u8; 4];
    let n = bytes.len().min(4);
    magic[..n].copy_from_slice(&bytes[..n]);
    if bytes.len() < PREAMBLE_LEN || magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let theirs = u16::from_be_bytes([bytes[4], bytes[5]]);
    // The preamble carries only the peer's highest version: its lowest
    // comes in Hello and is checked there.
    negotiate((MIN_VERSION, VERSION), (0, theirs)).ok_or(WireError::UnsupportedVersion { theirs, ours: VERSION })
}

/// An upper bound on the encoded size of a frame with this header and payload length.
pub fn encoded_len_hint(topic_len: usize, payload_len: usize) -> usize {
    LEN_PREFIX + 16 + topic_len + payload_len
}

/// Appends one frame to `out` and returns its encoded length.
///
/// ```
/// use estafeta_core::wire::{encode_frame, decode_frame, Header};
/// use bytes::BytesMut;
/// let mut out = Vec::new();
/// encode_frame(&mut out, &Header::Publish { topic: "t" }, b"hi");
/// let mut buf = BytesMut::from(&out[..]);
/// let frame = decode_frame(&mut buf, 1024).unwrap().unwrap();
/// let (h, payload) = frame.parse().unwrap();
/// assert_eq!(h, Header::Publish { topic: "t" });
/// assert_eq!(&payload[..], b"hi");
/// ```
pub fn encode_frame(out: &mut Vec<u8>, header: &Header<'_>, payload: &[u8]) -> usize {
    let start = out.len();
    match header {
        // The frame of every message: written by hand, the bytes postcard writes.
        Header::Publish { topic } if topic.len() < VARINT_ONE_BYTE => return encode_publish(out, topic, payload),
        Header::Discovery(f) if super::relay_frame::encode_relay_header(out, f, payload.len()) => {}
        Header::Stream(f) if super::stream_data::encode_data_header(out, f, payload.len()) => {}
        _ => {
            out.extend_from_slice(&[0; LEN_PREFIX]);
            let taken = std::mem::take(out);
            // Serializing a Header into a Vec cannot fail: every field is a plain
            // integer, string or sequence, and Vec's Extend is infallible.
            *out = match postcard::to_extend(header, taken) {
                Ok(v) => v,
                Err(e) => unreachable!("postcard cannot fail to encode a Header: {e}"),
            };
        }
    }
    out.extend_from_slice(payload);
    let len = out.len() - start - LEN_PREFIX;
    out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    out.len() - start
}

/// [`encode_frame`] of a [`Header::Publish`]: the frame of every message,
/// written by hand (the bytes postcard writes; a topic of 128 bytes or
/// more goes through postcard).
///
/// ```
/// use estafeta_core::wire::{encode_frame, encode_publish, Header};
/// let (mut a, mut b) = (Vec::new(), Vec::new());
/// encode_publish(&mut a, "news", b"hi");
/// encode_frame(&mut b, &Header::Publish { topic: "news" }, b"hi");
/// assert_eq!(a, b);
/// ```
#[inline]
pub fn encode_publish(out: &mut Vec<u8>, topic: &str, payload: &[u8]) -> usize {
    let t = topic.as_bytes();
    if t.len() >= VARINT_ONE_BYTE {
        return encode_frame(out, &Header::Publish { topic }, payload);
    }
    let len = 2 + t.len() + payload.len();
    out.reserve(LEN_PREFIX + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&[PUBLISH_TAG, t.len() as u8]);
    out.extend_from_slice(t);
    out.extend_from_slice(payload);
    LEN_PREFIX + len
}

/// Postcard's encoding of the variant index of [`Header::Publish`] (a varint).
const PUBLISH_TAG: u8 = 3;
/// Varints below this are one byte.
const VARINT_ONE_BYTE: usize = 0x80;

/// The frame of every message, a Publish whose topic is shorter than 128
/// bytes, decoded by hand: the tag, a one-byte length, the topic. Anything
/// else, or anything wrong, is `None` and goes to postcard, so the outcome is
/// always postcard's.
fn parse_publish(frame: &[u8]) -> Option<(&str, &[u8])> {
    let (&[tag, len], rest) = frame.split_first_chunk::<2>()?;
    if tag != PUBLISH_TAG || usize::from(len) >= VARINT_ONE_BYTE {
        return None;
    }
    let (topic, payload) = rest.split_at_checked(usize::from(len))?;
    Some((std::str::from_utf8(topic).ok()?, payload))
}

/// Splits the next frame off `buf` if it is a whole Publish on `topic` in
/// the form [`encode_frame`] writes (a topic shorter than 128 bytes), and
/// returns its payload (shared with `buf`, no copy). Otherwise `buf` is left
/// as it was, for [`decode_frame`] (which also reports any error). The
/// receiver's hot path: a message on the topic of the one before it skips
/// the UTF-8 check and the split into a [`RawFrame`].
pub fn take_publish_on(buf: &mut BytesMut, topic: &str, max_frame: usize) -> Option<Bytes> {
    let t = topic.as_bytes();
    if t.len() >= VARINT_ONE_BYTE {
        return None;
    }
    let body = front_body(buf, max_frame)?;
    let payload = body.strip_prefix(&[PUBLISH_TAG, t.len() as u8])?.strip_prefix(t)?;
    let (len, n) = (body.len(), payload.len());
    Some(split_payload(buf, len, n))
}

/// A run of Publish frames split off the read buffer by [`take_publish_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRun {
    /// The frames as received, length prefixes included.
    pub frames: Bytes,
    /// Bytes of each frame's header (after its length prefix): the same
    /// for every frame of the run.
    pub head: usize,
    /// How many frames.
    pub count: usize,
    /// Their payload bytes, added up.
    pub payload_bytes: u64,
}

/// What a run may take at most: the credit left to the sender and a cap.
#[derive(Clone, Copy, Debug)]
pub struct RunLimit {
    /// Messages: the run takes fewer than this.
    pub msgs: u64,
    /// Payload bytes: a frame is taken while the payload bytes before it
    /// are fewer than this (the last may overshoot, as credit allows).
    pub bytes: u64,
}

/// Splits off the front of `buf` the longest run of at least two whole
/// Publish frames on `topic` in the form [`encode_frame`] writes, within
/// `max_frame` and `limit`; `None` (and `buf` untouched) if there are fewer.
/// The receiver's batch path: one split for the whole run, and one event.
///
/// ```
/// use estafeta_core::wire::{encode_frame, take_publish_run, Header, RunLimit};
/// use bytes::BytesMut;
/// let mut out = Vec::new();
/// for p in [&b"a"[..], b"bc", b"def"] {
///     encode_frame(&mut out, &Header::Publish { topic: "t" }, p);
/// }
/// encode_frame(&mut out, &Header::Publish { topic: "u" }, b"other topic");
/// let mut buf = BytesMut::from(&out[..]);
/// let run = take_publish_run(&mut buf, "t", 1024, RunLimit { msgs: 10, bytes: 100 }).unwrap();
/// assert_eq!((run.count, run.payload_bytes), (3, 6));
/// assert!(take_publish_run(&mut buf, "u", 1024, RunLimit { msgs: 10, bytes: 100 }).is_none(), "one frame");
/// ```
pub fn take_publish_run(buf: &mut BytesMut, topic: &str, max_frame: usize, limit: RunLimit) -> Option<PublishRun> {
    let t = topic.as_bytes();
    if t.len() >= VARINT_ONE_BYTE {
        return None;
    }
    let head = 2 + t.len();
    // The header every frame of the run starts with, compared in one go.
    let mut expect = [0u8; 2 + VARINT_ONE_BYTE];
    expect[..2].copy_from_slice(&[PUBLISH_TAG, t.len() as u8]);
    expect[2..head].copy_from_slice(t);
    let expect = &expect[..head];
    let (mut at, mut count, mut bytes) = (0usize, 0u64, 0u64);
    while count < limit.msgs && bytes < limit.bytes {
        let Some(body) = front_body(&buf[at..], max_frame) else { break };
        if body.len() < head || body[..head] != *expect {
            break;
        }
        bytes += (body.len() - head) as u64;
        count += 1;
        at += LEN_PREFIX + body.len();
    }
    if count < 2 {
        return None;
    }
    let frames = buf.split_to(at).freeze();
    Some(PublishRun { frames, head, count: count as usize, payload_bytes: bytes })
}

/// The body (after its length prefix) of the frame at the front of `buf`,
/// if it is all there and within `max_frame`: what a receiver's shortcut
/// reads before it splits the frame off with [`split_payload`].
#[inline]
pub(super) fn front_body(buf: &[u8], max_frame: usize) -> Option<&[u8]> {
    let (&len, rest) = buf.split_first_chunk::<LEN_PREFIX>()?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max_frame {
        return None;
    }
    rest.get(..len)
}

/// Splits the frame of `body_len` bytes at the front of `buf` off and
/// returns its last `payload_len` bytes, shared with `buf` (no copy).
#[inline]
pub(super) fn split_payload(buf: &mut BytesMut, body_len: usize, payload_len: usize) -> Bytes {
    buf.advance(LEN_PREFIX + body_len - payload_len);
    buf.split_to(payload_len).freeze()
}

/// One whole frame split off the read buffer (length prefix removed).
#[derive(Clone, Debug)]
pub struct RawFrame(Bytes);

impl RawFrame {
    /// Decodes the header; the payload is the rest of the frame, shared with the read buffer.
    pub fn parse(&self) -> Result<(Header<'_>, Bytes), WireError> {
        if let Some((topic, rest)) = parse_publish(&self.0) {
            return Ok((Header::Publish { topic }, self.0.slice_ref(rest)));
        }
        if let Some((frame, rest)) = super::stream_data::parse_data(&self.0) {
            return Ok((Header::Stream(frame), self.0.slice_ref(rest)));
        }
        if let Some((frame, rest)) = super::relay_frame::parse_relay(&self.0) {
            return Ok((Header::Discovery(frame), self.0.slice_ref(rest)));
        }
        let (header, rest) =
            postcard::take_from_bytes::<Header<'_>>(&self.0).map_err(|e| WireError::BadHeader(e.to_string()))?;
        Ok((header, self.0.slice_ref(rest)))
    }

    /// The frame's bytes after the length prefix.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Splits the next whole frame off `buf`, if one is there.
///
/// The length prefix is checked against `max_frame` before anything is
/// allocated. Returns `Ok(None)` when more bytes are needed; how the byte
/// stream was split into calls makes no difference.
pub fn decode_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<RawFrame>, WireError> {
    if buf.len() < LEN_PREFIX {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    if len > max_frame {
        return Err(WireError::FrameTooLarge { len, max: max_frame });
    }
    if buf.len() < LEN_PREFIX + len {
        return Ok(None);
    }
    buf.advance(LEN_PREFIX);
    Ok(Some(RawFrame(buf.split_to(len).freeze())))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Asserts that `h` (a header with a hand-written fast path) encodes to
    /// postcard's bytes exactly, and decodes back to itself.
    pub(in crate::wire) fn assert_matches_postcard(h: &Header<'_>) {
        let mut ours = Vec::new();
        encode_frame(&mut ours, h, b"payload");
        let mut theirs = vec![0; LEN_PREFIX];
        theirs.extend_from_slice(&postcard::to_allocvec(h).unwrap());
        theirs.extend_from_slice(b"payload");
        let len = (theirs.len() - LEN_PREFIX) as u32;
        theirs[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
        assert_eq!(ours, theirs, "{h:?}");
        let mut buf = BytesMut::from(&ours[..]);
        let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        let (got, payload) = frame.parse().unwrap();
        assert_eq!(&got, h);
        assert_eq!(&payload[..], b"payload");
    }

    /// The frame body `body` (no length prefix) parses to what postcard
    /// reads from it: the same header and payload, or an error from both.
    fn assert_parse_agrees_with_postcard(body: &[u8]) {
        if body.is_empty() {
            return;
        }
        let mut buf = BytesMut::from(&(body.len() as u32).to_be_bytes()[..]);
        buf.extend_from_slice(body);
        let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        let pc = postcard::take_from_bytes::<Header<'_>>(body).map(|(h, r)| (h, r.to_vec()));
        match (frame.parse(), pc) {
            (Ok((h, p)), Ok((h2, p2))) => assert_eq!((h, p.to_vec()), (h2, p2), "{body:?}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{body:?}: {a:?} vs {b:?}"),
        }
    }

    /// `n` values spread over the whole u128 range (xorshift, fixed seed),
    /// for the fast paths' agreement tests.
    pub(in crate::wire) fn spread_values(n: usize) -> Vec<u128> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u128;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    /// Every body of `bodies`, and every proper prefix of the body of the
    /// well-formed frame `good` (length prefix included), parses to what
    /// postcard reads from it.
    pub(in crate::wire) fn assert_all_agree_with_postcard(bodies: &[Vec<u8>], good: &[u8]) {
        let body = &good[LEN_PREFIX..];
        for b in bodies.iter().map(|b| &b[..]).chain((0..body.len()).map(|n| &body[..n])) {
            assert_parse_agrees_with_postcard(b);
        }
    }

    /// The hand-written Publish paths agree with postcard, byte for byte and
    /// in what they decode, on both sides of the one-byte length limit.
    #[test]
    fn publish_fast_paths_are_postcards() {
        for n in [0usize, 1, 5, 126, 127, 128, 129, 300] {
            let topic = "t".repeat(n);
            assert_matches_postcard(&Header::Publish { topic: &topic });
        }
        // The receiver's shortcut takes the same frames, and only those.
        for n in [1usize, 5, 127] {
            let topic = "t".repeat(n);
            let mut out = Vec::new();
            encode_frame(&mut out, &Header::Publish { topic: &topic }, b"payload");
            encode_frame(&mut out, &Header::Publish { topic: "other" }, b"x");
            let mut buf = BytesMut::from(&out[..]);
            assert_eq!(take_publish_on(&mut buf, &topic, 1 << 20).as_deref(), Some(&b"payload"[..]));
            assert_eq!(take_publish_on(&mut buf, &topic, 1 << 20), None, "another topic");
            assert_eq!(take_publish_on(&mut buf, "other", 4), None, "over max_frame");
            let mut half = BytesMut::from(&buf[..buf.len() - 1]);
            assert_eq!(take_publish_on(&mut half, "other", 1 << 20), None, "not whole yet");
            assert_eq!(take_publish_on(&mut buf, "other", 1 << 20).as_deref(), Some(&b"x"[..]));
            assert!(buf.is_empty());
        }
        // Not the fast path's: bad UTF-8, a short frame, another variant.
        for body in [&[3u8, 2, 0xff, 0xfe][..], &[3, 5, b'a'], &[3], &[4], &[1, 1, b'x']] {
            let frame = RawFrame(Bytes::copy_from_slice(body));
            let pc = postcard::take_from_bytes::<Header<'_>>(body).map(|(h, r)| (h, r.to_vec()));
            match (frame.parse(), pc) {
                (Ok((h, p)), Ok((h2, p2))) => assert_eq!((h, p.to_vec()), (h2, p2)),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{body:?}: {a:?} vs {b:?}"),
            }
        }
    }
}
