//! One connection's secure channel: the peer's preamble, the Noise XX
//! handshake with identity payloads, then AEAD records. Pure: bytes in,
//! bytes out, no knowledge of the node.

use super::identity::{verify, Entropy, Identity, PublicKey, SeededEntropy};
use super::records::RecordKey;
use super::{NoiseCipher, SecurityConfig};
use crate::wire::{check_preamble, WireError, PREAMBLE_LEN};
use bytes::{Buf, BytesMut};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use std::fmt;

/// Domain prefix of the message an identity key signs: the Noise static key.
pub(crate) const STATIC_DOMAIN: &[u8] = b"estafeta-noise-static:v1:";
/// Largest Noise message (and record, tag included).
pub(crate) const MAX_MSG: usize = 65_535;
pub(crate) use super::records::TAG;
/// Largest plaintext of one record.
pub(crate) const MAX_PLAIN: usize = MAX_MSG - TAG;
/// The bytes of frames one `poll_transmit` writes at most on a secure
/// connection (it stops once past it, so it may overrun by one frame): with
/// frames up to 4 KiB, a quantum is one record, which ends on a frame
/// boundary. A quantum of the default 64 KiB would be a full record and a
/// few bytes more in a second one, cutting a frame: the receiver then reads
/// twice per record (the long record's rest, then the short one with most
/// of the next) and copies the cut frame's two parts together.
pub(crate) const RECORD_QUANTUM: usize = MAX_PLAIN - (4 << 10);
/// Identity payload: public key, signature, and the records the sender
/// seals with one key before it rekeys (u64, so the receiver rekeys in step).
const ID_PAYLOAD: usize = 32 + 64 + 8;

/// Where a secure connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Waiting for the peer's preamble.
    AwaitPreamble,
    /// The Noise handshake runs.
    Handshake,
    /// Records.
    Transport,
}

/// Why a secure connection failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChanError {
    /// The peer's preamble is not one this node speaks.
    Preamble(WireError),
    /// The peer wants plaintext.
    Mode(String),
    /// The handshake failed.
    Handshake(String),
    /// A record did not decrypt.
    Decrypt(String),
    /// The peer refused this node during the handshake (its clear refusal).
    RefusedByPeer { code: u16, reason: String },
}

/// Randomness handed to snow: a stream keyed by bytes drawn from the node's entropy.
struct Rand(SeededEntropy);

impl Random for Rand {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

/// ring for ciphers and hashes, snow's default for X25519, our randomness.
struct Resolver {
    seed: [u8; 32],
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(Rand(SeededEntropy::new(self.seed))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice).or_else(|| DefaultResolver.resolve_hash(choice))
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice).or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}

fn params(cfg: &SecurityConfig) -> &'static str {
    match (cfg.network_key.is_some(), cfg.cipher) {
        (false, NoiseCipher::AesGcm) => "Noise_XX_25519_AESGCM_SHA256",
        (false, NoiseCipher::ChaChaPoly) => "Noise_XX_25519_ChaChaPoly_SHA256",
        (true, NoiseCipher::AesGcm) => "Noise_XXpsk3_25519_AESGCM_SHA256",
        (true, NoiseCipher::ChaChaPoly) => "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
    }
}

fn builder(cfg: &SecurityConfig, seed: [u8; 32]) -> Result<Builder<'static>, snow::Error> {
    Ok(Builder::with_resolver(params(cfg).parse()?, Box::new(Resolver { seed })))
}

/// This node's keys, as every connection's handshake needs them.
pub(crate) struct Keys {
    pub(crate) identity: Identity,
    /// The Noise static key pair of this process (X25519).
    pub(crate) static_priv: Vec<u8>,
    /// `identity`'s signature over the static key.
    pub(crate) signature: [u8; 64],
    /// The key the handshake presents (the identity's, except for a test impostor).
    presented: PublicKey,
}

impl Keys {
    /// A fresh static key signed by `identity`.
    pub(crate) fn new(identity: Identity, cfg: &SecurityConfig, entropy: &mut dyn Entropy) -> Result<Keys, String> {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed);
        let kp = builder(cfg, seed).and_then(|b| b.generate_keypair()).map_err(|e| e.to_string())?;
        let mut msg = STATIC_DOMAIN.to_vec();
        msg.extend_from_slice(&kp.public);
        let signature = identity.sign(&msg);
        let presented = match cfg.impersonate {
            Some(k) if cfg.impersonate_in_handshake => k,
            _ => identity.public_key(),
        };
        Ok(Keys { identity, static_priv: kp.private, signature, presented })
    }

    fn payload(&self, rekey_every: u64) -> [u8; ID_PAYLOAD] {
        let mut p = [0u8; ID_PAYLOAD];
        p[..32].copy_from_slice(&self.presented.0);
        p[32..96].copy_from_slice(&self.signature);
        p[96..].copy_from_slice(&rekey_every.to_be_bytes());
        p
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({:?})", self.identity)
    }
}

/// What a connection's channel needs from its node for one input.
pub(crate) struct Ctx<'a> {
    pub(crate) keys: &'a Keys,
    pub(crate) cfg: &'a SecurityConfig,
    pub(crate) entropy: &'a mut dyn Entropy,
}

/// One connection's secure channel.
pub(crate) struct SecureConn {
    pub(crate) initiator: bool,
    stage: Stage,
    hs: Option<Box<HandshakeState>>,
    /// The record keys, after the handshake: this node's, the peer's.
    keys: Option<Box<(RecordKey, RecordKey)>>,
    /// Bytes received and not yet taken (the driver appends here).
    pub(crate) crx: BytesMut,
    /// Clear bytes to write before anything else (handshake messages).
    pub(crate) out: Vec<u8>,
    /// The peer's proven identity key, after the handshake.
    pub(crate) remote: Option<PublicKey>,
    /// Admitted with an allow list, a pin or a network key.
    pub(crate) authenticated: bool,
    records_in: u64,
    records_out: u64,
    /// Rekeys done by this channel (both directions).
    pub(crate) rekeys: u64,
    rekey_every: u64,
    /// The peer's interval, from its identity payload.
    rekey_in: u64,
}

impl fmt::Debug for SecureConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureConn")
            .field("initiator", &self.initiator)
            .field("stage", &self.stage)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Writes `msg` as a handshake message (`len:u16 || msg`).
fn push_msg(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

/// The clear refusal sent in place of a handshake message: a zero length,
/// then `code:u16 len:u16 reason`. Unauthenticated: informational only.
pub(crate) fn push_refusal(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason = &reason.as_bytes()[..reason.len().min(512)];
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    out.extend_from_slice(reason);
}

/// Parses a clear refusal at the start of `buf` (which starts with a zero
/// length). `None` while incomplete.
fn take_refusal(buf: &mut BytesMut) -> Option<ChanError> {
    if buf.len() < 6 {
        return None;
    }
    let code = u16::from_be_bytes([buf[2], buf[3]]);
    let len = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    if buf.len() < 6 + len {
        return None;
    }
    let reason = String::from_utf8_lossy(&buf[6..6 + len]).into_owned();
    buf.advance(6 + len);
    Some(ChanError::RefusedByPeer { code, reason })
}

impl SecureConn {
    pub(crate) fn new(initiator: bool, rekey_every: u64) -> Self {
        SecureConn {
            initiator,
            stage: Stage::AwaitPreamble,
            hs: None,
            keys: None,
            crx: BytesMut::new(),
            out: Vec::new(),
            remote: None,
            authenticated: false,
            records_in: 0,
            records_out: 0,
            rekeys: 0,
            rekey_every: rekey_every.max(1),
            rekey_in: u64::MAX,
        }
    }

    pub(crate) fn stage(&self) -> Stage {
        self.stage
    }

    /// Takes what `crx` holds: the preamble, handshake messages, then
    /// records, decrypted into `plain`. Returns `Ok(true)` when the handshake
    /// has just completed: the caller decides admission, then calls again
    /// for the records that follow. A record that fails leaves nothing of
    /// itself in `plain`.
    pub(crate) fn input(&mut self, ctx: &mut Ctx<'_>, plain: &mut BytesMut) -> Result<bool, ChanError> {
        loop {
            match self.stage {
                Stage::AwaitPreamble => {
                    if self.crx.len() < PREAMBLE_LEN {
                        return Ok(false);
                    }
                    let pre = self.crx.split_to(PREAMBLE_LEN);
                    check_preamble(&pre).map_err(ChanError::Preamble)?;
                    if pre[PREAMBLE_LEN - 1] != super::SecurityMode::Noise.wire_byte() {
                        return Err(ChanError::Mode(
                            "the peer wants plaintext; this node requires the secure transport (security.mode = Noise)"
                                .into(),
                        ));
                    }
                    self.start(ctx, &pre)?;
                }
                Stage::Handshake => {
                    let Some(len) = self.crx.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else {
                        return Ok(false);
                    };
                    if len == 0 {
                        return match take_refusal(&mut self.crx) {
                            Some(e) => Err(e),
                            None => Ok(false),
                        };
                    }
                    if self.crx.len() < 2 + len {
                        return Ok(false);
                    }
                    let msg = self.crx.split_to(2 + len);
                    if self.step(ctx, &msg[2..])? {
                        return Ok(true);
                    }
                }
                Stage::Transport => return self.open_records(plain).map(|_| false),
            }
        }
    }

    /// The peer's preamble is in: build the handshake (prologue = the
    /// initiator's preamble, then the responder's) and, as the initiator,
    /// write the first message.
    fn start(&mut self, ctx: &mut Ctx<'_>, theirs: &[u8]) -> Result<(), ChanError> {
        let mut ours = Vec::with_capacity(PREAMBLE_LEN);
        crate::wire::write_preamble_mode(&mut ours, super::SecurityMode::Noise.wire_byte());
        let prologue = if self.initiator { [&ours[..], theirs].concat() } else { [theirs, &ours[..]].concat() };
        let mut seed = [0u8; 32];
        ctx.entropy.fill(&mut seed);
        let fail = |e: snow::Error| ChanError::Handshake(format!("cannot start the handshake: {e}"));
        let mut b = builder(ctx.cfg, seed).map_err(fail)?;
        b = b.local_private_key(&ctx.keys.static_priv).map_err(fail)?.prologue(&prologue).map_err(fail)?;
        if let Some(psk) = &ctx.cfg.network_key {
            b = b.psk(3, psk).map_err(fail)?;
        }
        let mut hs = if self.initiator { b.build_initiator() } else { b.build_responder() }.map_err(fail)?;
        if self.initiator {
            let mut buf = [0u8; 128];
            let n = hs.write_message(&[], &mut buf).map_err(fail)?;
            push_msg(&mut self.out, &buf[..n]);
        }
        self.hs = Some(Box::new(hs));
        self.stage = Stage::Handshake;
        Ok(())
    }

    /// One handshake message from the peer. Returns true when the handshake is complete.
    fn step(&mut self, ctx: &mut Ctx<'_>, msg: &[u8]) -> Result<bool, ChanError> {
        let Some(hs) = self.hs.as_mut() else { return Err(ChanError::Handshake("no handshake".into())) };
        if hs.is_my_turn() || hs.is_handshake_finished() {
            return Err(ChanError::Handshake("handshake message out of turn".into()));
        }
        let mut payload = vec![0u8; msg.len()];
        let n = hs.read_message(msg, &mut payload).map_err(|e| {
            let hint = if ctx.cfg.network_key.is_some() { " (wrong network key?)" } else { "" };
            ChanError::Handshake(format!("handshake message rejected: {e}{hint}"))
        })?;
        // The responder's msg2 and the initiator's msg3 carry an identity.
        if hs.get_remote_static().is_some() && self.remote.is_none() {
            let remote_static = hs.get_remote_static().unwrap_or_default().to_vec();
            let (key, rekey_in) = check_identity(&payload[..n], &remote_static, ctx.cfg.skip_signature_check)?;
            self.remote = Some(key);
            self.rekey_in = rekey_in;
        } else if n != 0 {
            return Err(ChanError::Handshake("unexpected handshake payload".into()));
        }
        if hs.is_my_turn() && !hs.is_handshake_finished() {
            let mut buf = vec![0u8; 512];
            let n = hs
                .write_message(&ctx.keys.payload(self.rekey_every), &mut buf)
                .map_err(|e| ChanError::Handshake(format!("cannot write handshake message: {e}")))?;
            push_msg(&mut self.out, &buf[..n]);
        }
        if !hs.is_handshake_finished() {
            return Ok(false);
        }
        let mut hs = self.hs.take().expect("checked above");
        if self.remote.is_none() {
            return Err(ChanError::Handshake("the peer sent no identity".into()));
        }
        // Noise's Split: the first key is the initiator's sending key.
        let (i2r, r2i) = hs.dangerously_get_raw_split();
        let (mine, theirs) = if self.initiator { (i2r, r2i) } else { (r2i, i2r) };
        let cipher = ctx.cfg.cipher;
        self.keys = Some(Box::new((RecordKey::new(cipher, &mine), RecordKey::new(cipher, &theirs))));
        self.stage = Stage::Transport;
        Ok(true)
    }

    /// Decrypts every whole record in `crx` into `plain`, each in place in
    /// the bytes it arrived in; a record's plaintext becomes `plain` itself
    /// (no copy) when `plain` is empty, else it is appended.
    fn open_records(&mut self, plain: &mut BytesMut) -> Result<(), ChanError> {
        let Some(keys) = self.keys.as_mut() else { return Ok(()) };
        while let Some(len) = self.crx.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) {
            if len == 0 && self.records_in == 0 {
                // A refusal sent in place of the handshake's last message.
                return match take_refusal(&mut self.crx) {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            if len < TAG {
                return Err(ChanError::Decrypt(format!("decrypt failed: record {} of {len} bytes", self.records_in)));
            }
            if self.crx.len() < 2 + len {
                return Ok(());
            }
            let Ok(n) = keys.1.open(&mut self.crx[2..2 + len]) else {
                return Err(ChanError::Decrypt(format!("decrypt failed: record {}", self.records_in)));
            };
            if plain.is_empty() {
                let mut rec = self.crx.split_to(2 + len);
                rec.advance(2);
                rec.truncate(n);
                *plain = rec;
            } else {
                plain.extend_from_slice(&self.crx[2..2 + n]);
                self.crx.advance(2 + len);
            }
            self.records_in += 1;
            if self.records_in % self.rekey_in == 0 {
                keys.1.rekey();
                self.rekeys += 1;
            }
        }
        Ok(())
    }

    /// The records of what follows `at + 2` in `buf`: `buf[at..at + 2]` was
    /// reserved for the first record's length. Seals it in place, in as few
    /// records of at most [`MAX_PLAIN`] bytes as hold it, of equal lengths
    /// (within a byte): a 64 KiB message then goes in two records of 32 KiB
    /// rather than a full one and a sliver, and the receiver reads each
    /// straight into place (both are long, see `record_room`) instead of
    /// reading the sliver with most of the next record and copying that.
    pub(crate) fn seal_in_place(&mut self, buf: &mut Vec<u8>, at: usize) -> Result<(), ChanError> {
        let every = self.rekey_every;
        let Some(keys) = self.keys.as_mut() else { return Err(ChanError::Decrypt("no transport".into())) };
        let n = buf.len() - at - 2;
        let lens = record_lens(n);
        let k = lens.len();
        buf.resize(buf.len() + k * TAG + (k - 1) * 2, 0);
        // Record i's plaintext starts at at + 2 + (the lengths before it)
        // and moves right by i * (2 + TAG) bytes: move the later ones first.
        let mut from = at + 2 + n;
        for (i, len) in lens.clone().enumerate().skip(1).rev() {
            from -= len;
            buf.copy_within(from..from + len, from + i * (2 + TAG));
        }
        let mut p = at + 2;
        for len in lens {
            let tag = keys
                .0
                .seal(&mut buf[p..p + len])
                .map_err(|_| ChanError::Decrypt("encrypt failed: nonces exhausted".into()))?;
            buf[p + len..p + len + TAG].copy_from_slice(&tag);
            buf[p - 2..p].copy_from_slice(&((len + TAG) as u16).to_be_bytes());
            p += len + TAG + 2;
            self.records_out += 1;
            if self.records_out % every == 0 {
                keys.0.rekey();
                self.rekeys += 1;
            }
        }
        Ok(())
    }

    /// Bytes `crx` misses to end the record it ends in, plus the next
    /// record's length prefix, if that record is at least `long` bytes
    /// (after the handshake only).
    pub(crate) fn record_room(&self, long: usize) -> Option<usize> {
        self.keys.as_ref()?;
        let mut at = 0;
        loop {
            let rest = &self.crx[at..];
            let len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
            if rest.len() < 2 + len {
                return (len >= long).then_some(2 + len - rest.len() + 2);
            }
            at += 2 + len;
        }
    }
}

/// Checks an identity payload against the Noise static key it must sign.
fn check_identity(payload: &[u8], remote_static: &[u8], skip: bool) -> Result<(PublicKey, u64), ChanError> {
    if payload.len() != ID_PAYLOAD {
        return Err(ChanError::Handshake(format!("identity payload of {} bytes", payload.len())));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&payload[..32]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&payload[32..96]);
    let mut rekey = [0u8; 8];
    rekey.copy_from_slice(&payload[96..]);
    let rekey = u64::from_be_bytes(rekey);
    if rekey == 0 {
        return Err(ChanError::Handshake("the peer announced a rekey interval of 0 records".into()));
    }
    let key = PublicKey(key);
    let mut msg = STATIC_DOMAIN.to_vec();
    msg.extend_from_slice(remote_static);
    if !skip && !verify(&key, &msg, &sig) {
        return Err(ChanError::Handshake("identity signature does not match the Noise static key".into()));
    }
    Ok((key, rekey))
}

/// The plaintext lengths of the records `n` bytes are sealed in: as few
/// records of at most [`MAX_PLAIN`] bytes as hold them, of equal lengths
/// (within a byte). Computed, not collected: sealing allocates nothing.
pub(crate) fn record_lens(n: usize) -> impl DoubleEndedIterator<Item = usize> + ExactSizeIterator + Clone {
    let k = n.div_ceil(MAX_PLAIN).max(1);
    (0..k).map(move |i| n / k + usize::from(i < n % k))
}
