//! The records after the handshake: Noise's transport `CipherState`s (the
//! keys of Noise's Split, AES-256-GCM or ChaCha20-Poly1305, the Noise nonce
//! encodings and REKEY), run with ring directly so that records are sealed
//! in place where the frame stream was written and opened in place where
//! they were received: no copy, no zero-filled scratch. The bytes on the wire
//! are exactly those of Noise transport messages.

use super::NoiseCipher;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

/// The AEAD tag.
pub(crate) const TAG: usize = 16;

/// One direction's cipher state: a key and its nonce counter.
pub(crate) struct RecordKey {
    key: LessSafeKey,
    cipher: NoiseCipher,
    /// The next nonce.
    n: u64,
}

/// Why a record could not be sealed or opened.
#[derive(Debug)]
pub(crate) struct RecordError;

impl RecordKey {
    /// The cipher state keyed with `k` (from Noise's Split), nonce 0.
    pub(crate) fn new(cipher: NoiseCipher, k: &[u8; 32]) -> RecordKey {
        RecordKey { key: key(cipher, k), cipher, n: 0 }
    }

    /// Noise's nonce encoding: 32 zero bits, then the counter (big-endian
    /// for AES-GCM, little-endian for ChaCha20-Poly1305).
    fn nonce(&self, n: u64) -> Nonce {
        let mut b = [0u8; 12];
        match self.cipher {
            NoiseCipher::AesGcm => b[4..].copy_from_slice(&n.to_be_bytes()),
            NoiseCipher::ChaChaPoly => b[4..].copy_from_slice(&n.to_le_bytes()),
        }
        Nonce::assume_unique_for_key(b)
    }

    /// Encrypts `data` in place; returns the tag. Fails only when the nonces
    /// run out (2^64 - 1 records).
    pub(crate) fn seal(&mut self, data: &mut [u8]) -> Result<[u8; TAG], RecordError> {
        if self.n == u64::MAX {
            return Err(RecordError);
        }
        let tag =
            self.key.seal_in_place_separate_tag(self.nonce(self.n), Aad::empty(), data).map_err(|_| RecordError)?;
        self.n += 1;
        let mut t = [0u8; TAG];
        t.copy_from_slice(tag.as_ref());
        Ok(t)
    }

    /// Opens the record `in_out` (ciphertext and tag) in place; returns the
    /// plaintext's length (at the start of `in_out`). A failure consumes no
    /// nonce: the connection closes on it anyway.
    pub(crate) fn open(&mut self, in_out: &mut [u8]) -> Result<usize, RecordError> {
        if self.n == u64::MAX {
            return Err(RecordError);
        }
        let n = self.key.open_in_place(self.nonce(self.n), Aad::empty(), in_out).map_err(|_| RecordError)?.len();
        self.n += 1;
        Ok(n)
    }

    /// Noise's REKEY: the new key is the first 32 bytes of
    /// ENCRYPT(k, 2^64 - 1, empty, 32 zeros). The nonce counter is kept.
    pub(crate) fn rekey(&mut self) {
        let mut k = [0u8; 32];
        // Sealing 32 bytes with a valid key cannot fail.
        let _ = self.key.seal_in_place_separate_tag(self.nonce(u64::MAX), Aad::empty(), &mut k);
        self.key = key(self.cipher, &k);
    }
}

fn key(cipher: NoiseCipher, k: &[u8; 32]) -> LessSafeKey {
    let alg = match cipher {
        NoiseCipher::AesGcm => &AES_256_GCM,
        NoiseCipher::ChaChaPoly => &CHACHA20_POLY1305,
    };
    // Both algorithms take 32-byte keys: this cannot fail.
    LessSafeKey::new(UnboundKey::new(alg, k).expect("a 32-byte key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use snow::params::CipherChoice;
    use snow::resolvers::{CryptoResolver, RingResolver};

    /// The records are snow's (and so Noise's) transport messages, rekey included.
    #[test]
    fn records_match_snows_cipher_states() {
        for (cipher, choice) in
            [(NoiseCipher::AesGcm, CipherChoice::AESGCM), (NoiseCipher::ChaChaPoly, CipherChoice::ChaChaPoly)]
        {
            let k = [7u8; 32];
            let mut ours = RecordKey::new(cipher, &k);
            let mut theirs = RingResolver.resolve_cipher(&choice).expect("ring cipher");
            theirs.set(&k);
            for n in 0..4u64 {
                if n == 2 {
                    ours.rekey();
                    theirs.rekey();
                }
                let msg = vec![n as u8; 100];
                let mut a = msg.clone();
                let tag = ours.seal(&mut a).unwrap();
                a.extend_from_slice(&tag);
                let mut b = vec![0u8; 116];
                let len = theirs.encrypt(n, &[], &msg, &mut b);
                assert_eq!(&a[..], &b[..len], "{cipher:?} record {n}");
            }
        }
    }
}
