//! The secure channel: Noise XX (through `snow`) between socket bytes and
//! the frame decoder, identities that are keys, and admission.
//!
//! ```text
//! preamble  := "ESTF" version:u16be mode:u8        (in clear, both sides; mode 0 plain, 1 noise)
//! handshake := len:u16be noise_msg                 (XX: -> e; <- e,ee,s,es + id; -> s,se + id)
//! record    := len:u16be AEAD(plaintext ≤ 65 519 B) (carries the frame stream unchanged)
//! id        := ed25519_pub:32 sig:64 rekey_after:u64  (sig over "estafeta-noise-static:v1:" ‖ noise_static)
//! ```
//!
//! The dialer is the initiator. The prologue is the initiator's preamble
//! then the responder's, so neither version nor mode can be downgraded.
//! After the handshake the peer's identity key is known and its
//! [`NodeId`](crate::NodeId) derived from it; admission ([`SecurityConfig::allow`],
//! a pinned id in the dial address, [`SecurityConfig::network_key`]) is
//! decided before the connection has any per-peer state. See
//! docs/security.md for the threat model.

pub(crate) mod channel;
mod identity;
pub mod permissions;
mod records;

pub(crate) use channel::{ChanError, SecureConn, Stage};
pub use identity::{Entropy, Identity, PublicKey, SeededEntropy};
pub use permissions::{Permissions, TopicRule};

use crate::id::NodeId;
use std::collections::BTreeSet;

/// Simulator hook ([`Node::set_plaintext_tap`](crate::Node::set_plaintext_tap)):
/// the plaintext of every record a node seals, with its connection, in order.
#[doc(hidden)]
pub type PlaintextTap = std::sync::Arc<std::sync::Mutex<Vec<(crate::ConnId, Vec<u8>)>>>;

/// Whether connections are encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SecurityMode {
    /// Noise XX: encrypted, and the peer's id is proven by its key. The default.
    #[default]
    Noise,
    /// No encryption and ids are whatever peers claim: only for tests,
    /// benchmarks and closed networks. Both sides must choose it.
    Plaintext,
}

impl SecurityMode {
    /// The byte the preamble carries for this mode.
    pub fn wire_byte(self) -> u8 {
        match self {
            SecurityMode::Plaintext => 0,
            SecurityMode::Noise => 1,
        }
    }
}

/// The AEAD cipher of the Noise channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NoiseCipher {
    /// AES-256-GCM (fastest on CPUs with AES instructions). The default.
    #[default]
    AesGcm,
    /// ChaCha20-Poly1305 (for CPUs without AES instructions).
    ChaChaPoly,
}

/// How connections are secured and who is admitted.
///
/// ```
/// use estafeta_core::secure::{Identity, SecurityConfig, SeededEntropy};
/// let alice = Identity::generate(&mut SeededEntropy::from_seed(1));
/// let mut sec = SecurityConfig::default();
/// sec.allow = Some([alice.node_id()].into_iter().collect());
/// assert!(sec.authenticates(false));
/// ```
#[derive(Clone, Debug)]
pub struct SecurityConfig {
    /// Encrypted (default) or plaintext.
    pub mode: SecurityMode,
    /// The AEAD cipher. Both sides must choose the same (a mismatch fails the handshake).
    pub cipher: NoiseCipher,
    /// Only these peers are admitted (`None`: any peer that proves a key).
    pub allow: Option<BTreeSet<NodeId>>,
    /// A network key every peer must know (mixed in as Noise `XXpsk3`).
    pub network_key: Option<[u8; 32]>,
    /// Records this node seals with one key before it replaces the key
    /// (Noise rekey). Each side announces its own in its identity payload,
    /// and the receiver rekeys in step. Default 2^20.
    pub rekey_after_records: u64,
    /// Per-topic permissions by peer id (none: every peer may do everything).
    pub permissions: Permissions,
    /// Test switch: accept identity payloads without checking their
    /// signature (the planted bug the simulator must catch).
    #[doc(hidden)]
    pub skip_signature_check: bool,
    /// Test switch: check a Hello's id against the proven key only after
    /// the older connections of that id were closed as duplicates (the
    /// planted bug that lets an impostor end its victim's session).
    #[doc(hidden)]
    pub late_hello_check: bool,
    /// Test actor: an impostor that claims this key's id in its Hello
    /// without holding the key.
    #[doc(hidden)]
    pub impersonate: Option<PublicKey>,
    /// Test actor: the impostor also presents the key in its handshake
    /// (signed by its own key, so the signature is wrong).
    #[doc(hidden)]
    pub impersonate_in_handshake: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            mode: SecurityMode::Noise,
            cipher: NoiseCipher::AesGcm,
            allow: None,
            network_key: None,
            rekey_after_records: 1 << 20,
            permissions: Permissions::default(),
            skip_signature_check: false,
            late_hello_check: false,
            impersonate: None,
            impersonate_in_handshake: false,
        }
    }
}

impl SecurityConfig {
    /// True if a peer admitted under this config has proven who it is to
    /// this node: an allow list or a network key is set, or the dial address
    /// pinned its id (`pinned`). Otherwise the channel is encrypted but a man
    /// in the middle is not excluded.
    pub fn authenticates(&self, pinned: bool) -> bool {
        self.mode == SecurityMode::Noise && (pinned || self.allow.is_some() || self.network_key.is_some())
    }
}

/// Decides admission of a peer that proved the key of `peer`: the pin of
/// the dial address (if any) and the allow list must accept it. Returns
/// whether the peer counts as authenticated (see
/// [`SecurityConfig::authenticates`](crate::secure::SecurityConfig::authenticates)),
/// or the reason of the refusal.
///
/// ```
/// use estafeta_core::secure::SecurityConfig;
/// use estafeta_core::secure::admit;
/// use estafeta_core::NodeId;
/// let (a, b) = (NodeId::from_u128(1), NodeId::from_u128(2));
/// let mut cfg = SecurityConfig::default();
/// assert_eq!(admit(&cfg, a, None), Ok(false), "encrypted, not authenticated");
/// assert_eq!(admit(&cfg, a, Some(a)), Ok(true), "pinned");
/// assert!(admit(&cfg, a, Some(b)).is_err());
/// cfg.allow = Some([b].into_iter().collect());
/// assert!(admit(&cfg, a, None).unwrap_err().contains("allow list"));
/// ```
pub fn admit(cfg: &SecurityConfig, peer: NodeId, pin: Option<NodeId>) -> Result<bool, String> {
    if let Some(p) = pin {
        if p != peer {
            return Err(format!("unauthorized: dialed {p} but the peer proved the key of {peer}"));
        }
    }
    if let Some(allow) = &cfg.allow {
        if !allow.contains(&peer) {
            return Err(format!("unauthorized: {peer} is not in the allow list"));
        }
    }
    Ok(cfg.authenticates(pin.is_some()))
}

/// Counters of the secure channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecurityStats {
    /// Handshakes completed (the peer's key was proven).
    pub handshakes: u64,
    /// Peers this node refused after their handshake (not allowed, pin mismatch): code 4003.
    pub unauthorized: u64,
    /// Handshakes that failed (bad message, bad signature, wrong network key): code 4004.
    pub handshake_failed: u64,
    /// Records that failed to decrypt (tampering): the connection closed.
    pub decrypt_failed: u64,
    /// Peers refused because one side wants plaintext and the other not.
    pub mode_mismatch: u64,
    /// Connections this node was refused on by the peer (codes 4003, 4004, 1003 before the peer was up).
    pub refused_by_peer: u64,
    /// Rekeys done (both directions counted).
    pub rekeys: u64,
    /// Messages dropped because the sending peer may not publish on the topic.
    pub publish_denied: u64,
    /// Subscriptions refused because the peer may not subscribe to the topic.
    pub subscribe_denied: u64,
}

/// Close code: the peer is authenticated but not admitted.
pub const UNAUTHORIZED: crate::CloseCode = crate::CloseCode(4003);
/// Close code: the secure handshake failed.
pub const HANDSHAKE_FAILED: crate::CloseCode = crate::CloseCode(4004);
