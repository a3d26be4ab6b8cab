//! Fuzzes the frame decoder: `decode_frame` then `RawFrame::parse` over
//! arbitrary bytes, with a limit and a split point taken from the input.
//!
//! Checks, besides "never panics": a frame never exceeds the limit; nothing
//! is consumed when the decoder needs more bytes or fails; a payload is a
//! tail of its frame; whatever parses re-encodes to a frame that parses to
//! the same header and payload; and feeding the same bytes in two pieces
//! gives the same frames and the same error as feeding them whole.

#![no_main]

use bytes::BytesMut;
use estafeta_core::wire::{decode_frame, encode_frame, LEN_PREFIX};
use libfuzzer_sys::fuzz_target;

/// (frame bytes, parsed Debug or parse error) for each frame, then the
/// decoder's error if it stopped on one.
type Decoded = (Vec<(Vec<u8>, String)>, Option<String>);

fn decode(pieces: &[&[u8]], max: usize) -> Decoded {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode_frame(&mut buf, max) {
                Ok(Some(frame)) => {
                    let len = frame.bytes().len();
                    assert!(len > 0 && len <= max, "frame of {len} with limit {max}");
                    assert_eq!(before - buf.len(), LEN_PREFIX + len);
                    let parsed = match frame.parse() {
                        Ok((header, payload)) => {
                            assert!(payload.len() < len);
                            assert_eq!(&frame.bytes()[len - payload.len()..], &payload[..]);
                            // Re-encode and parse again: same header, same payload.
                            let mut again = Vec::new();
                            encode_frame(&mut again, &header, &payload);
                            let mut b2 = BytesMut::from(&again[..]);
                            let f2 = decode_frame(&mut b2, usize::MAX)
                                .expect("re-encoded frame decodes")
                                .expect("re-encoded frame is whole");
                            let (h2, p2) = f2.parse().expect("re-encoded frame parses");
                            assert_eq!(h2, header);
                            assert_eq!(p2, payload);
                            format!("{header:?}")
                        }
                        Err(e) => format!("error: {e}"),
                    };
                    frames.push((frame.bytes().to_vec(), parsed));
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "consumed while incomplete");
                    break;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before, "consumed on error");
                    return (frames, Some(e.to_string()));
                }
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // Byte 0 picks the limit, byte 1 the split point; the rest is the stream.
    let max = match data[0] % 4 {
        0 => 1,
        1 => 64,
        2 => 4096,
        _ => 8 << 20,
    };
    let stream = &data[2..];
    let cut = (data[1] as usize * (stream.len() + 1)) / 256;
    let whole = decode(&[stream], max);
    let split = decode(&[&stream[..cut], &stream[cut..]], max);
    assert_eq!(whole, split, "a split changed what was decoded");
});
