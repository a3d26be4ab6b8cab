//! Message payloads that identify themselves: a message id, the length, and
//! filler bytes derived from the id, so a delivered payload can be checked
//! byte for byte without storing it.

use bytes::Bytes;

/// Bytes every payload starts with: magic, message id, total length.
pub const HEADER_LEN: usize = 14;
const MAGIC: [u8; 2] = *b"sm";

fn filler(id: u64, i: usize) -> u8 {
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64 * 0x2545_F491);
    (x >> 29) as u8 ^ (i as u8)
}

/// The payload of message `id`, `len` bytes long (at least [`HEADER_LEN`]).
///
/// ```
/// use estafeta_sim::payload;
/// let p = payload::make(7, 40);
/// assert_eq!(p.len(), 40);
/// assert_eq!(payload::id_of(&p), Some(7));
/// assert!(payload::is_intact(&p));
/// let mut bad = p.to_vec();
/// bad[30] ^= 1;
/// assert!(!payload::is_intact(&bad));
/// ```
pub fn make(id: u64, len: usize) -> Bytes {
    let len = len.max(HEADER_LEN);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&MAGIC);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend((HEADER_LEN..len).map(|i| filler(id, i)));
    Bytes::from(v)
}

/// The message id a payload carries, if it looks like one of ours.
pub fn id_of(p: &[u8]) -> Option<u64> {
    if p.len() < HEADER_LEN || p[..2] != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(p[2..10].try_into().ok()?))
}

/// True if the payload has its announced length and every filler byte.
pub fn is_intact(p: &[u8]) -> bool {
    let Some(id) = id_of(p) else { return false };
    let len = u32::from_le_bytes(p[10..14].try_into().expect("4 bytes")) as usize;
    len == p.len() && p[HEADER_LEN..].iter().enumerate().all(|(i, b)| *b == filler(id, i + HEADER_LEN))
}
