//! Identity keys, node ids derived from them, and the entropy input.

use crate::id::NodeId;
use sha2::{Digest, Sha256};
use std::fmt;

/// Domain prefix of the hash that turns an identity key into a [`NodeId`].
const NODE_ID_DOMAIN: &[u8] = b"estafeta-node-id:v1:";

/// Where a node gets the randomness for its keys: the Noise static key,
/// each handshake's ephemeral key and a generated identity.
///
/// Drivers pass the operating system's randomness; the simulator passes a
/// [`SeededEntropy`] stream derived from the run seed, so runs replay.
/// `Config::seed` is never used for keys.
pub trait Entropy: Send {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// A deterministic byte stream (SHA-256 in counter mode over a 32-byte
/// key): for simulators and tests that must replay. **Not** a source of
/// secrets unless the key itself is secret and random.
///
/// ```
/// use estafeta_core::secure::{Entropy, SeededEntropy};
/// let (mut a, mut b) = (SeededEntropy::from_seed(7), SeededEntropy::from_seed(7));
/// let (mut x, mut y) = ([0u8; 40], [0u8; 40]);
/// a.fill(&mut x);
/// b.fill(&mut y);
/// assert_eq!(x, y);
/// ```
#[derive(Clone)]
pub struct SeededEntropy {
    key: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededEntropy {
    /// A stream keyed by 32 bytes.
    pub fn new(key: [u8; 32]) -> Self {
        SeededEntropy { key, counter: 0, block: [0; 32], used: 32 }
    }

    /// A stream keyed by a 64-bit seed (a simulator's run seed and host).
    pub fn from_seed(seed: u64) -> Self {
        let mut h = Sha256::new();
        h.update(b"estafeta-seeded-entropy:");
        h.update(seed.to_be_bytes());
        SeededEntropy::new(h.finalize().into())
    }
}

impl fmt::Debug for SeededEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededEntropy(..)")
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        for b in dest {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(self.key);
                h.update(self.counter.to_be_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

/// The public half of an identity key (Ed25519), 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The node id this key stands for: the first 16 bytes of
    /// SHA-256(`"estafeta-node-id:v1:"` ‖ key). See docs/security.md for why
    /// 128 bits keep impersonation infeasible.
    pub fn node_id(&self) -> NodeId {
        let mut h = Sha256::new();
        h.update(NODE_ID_DOMAIN);
        h.update(self.0);
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        NodeId::from_u128(u128::from_be_bytes(b))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A node's identity: an Ed25519 key pair. Its [`NodeId`] is derived from
/// the public key, and every secure handshake proves possession of it.
///
/// ```
/// use estafeta_core::secure::{Identity, SeededEntropy};
/// let id = Identity::generate(&mut SeededEntropy::from_seed(1));
/// let again = Identity::from_secret(id.secret_bytes());
/// assert_eq!(id.node_id(), again.node_id());
/// assert_eq!(id.node_id(), id.public_key().node_id());
/// ```
#[derive(Clone)]
pub struct Identity {
    key: ed25519_dalek::SigningKey,
}

impl Identity {
    /// A new identity from `entropy`.
    pub fn generate(entropy: &mut dyn Entropy) -> Identity {
        let mut secret = [0u8; 32];
        entropy.fill(&mut secret);
        Identity::from_secret(secret)
    }

    /// The identity with this secret key (as saved by [`Identity::secret_bytes`]).
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        Identity { key: ed25519_dalek::SigningKey::from_bytes(&secret) }
    }

    /// The secret key, to save the identity (keep it private).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The node id of this identity.
    pub fn node_id(&self) -> NodeId {
        self.public_key().node_id()
    }

    /// Signs `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.node_id())
    }
}

/// Checks `sig` by `key` over `msg`.
pub(crate) fn verify(key: &PublicKey, msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&key.0) else { return false };
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig)).is_ok()
}
