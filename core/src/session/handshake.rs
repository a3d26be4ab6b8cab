//! The handshake: this node's Hello, and the checks a peer's Hello must pass.

use crate::config::Config;
use crate::event::ProtocolError;
use crate::id::NodeId;
use crate::wire::{encode_frame, negotiate, Capabilities, Header, Hello, ListenAddr, WireError, MIN_VERSION, VERSION};

/// Who this node is, as its Hello says.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub(crate) id: NodeId,
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) caps: Capabilities,
    pub(crate) listen: Option<(String, u16)>,
}

/// Appends this node's Hello, announcing `subscriptions`.
pub(crate) fn encode_hello<'a>(
    buf: &mut Vec<u8>,
    me: &Me,
    subscriptions: impl Iterator<Item = &'a str>,
    session: Option<crate::wire::HelloSession>,
) -> usize {
    let mut hello = Hello::new(me.id.as_u128(), &me.name, me.caps, subscriptions.collect());
    hello.listen = me.listen.as_ref().map(|(host, port)| ListenAddr { host, port: *port });
    hello.session = session;
    encode_frame(buf, &Header::Hello(hello), &[])
}

/// Checks a peer's Hello against this node's limits. Returns the planes both
/// sides run.
pub(crate) fn check_hello(cfg: &Config, me: &Me, hello: &Hello<'_>) -> Result<Capabilities, ProtocolError> {
    let limit = |what: String| Err(ProtocolError::Limit(what));
    if hello.name.len() > cfg.session.max_name_len {
        return limit(format!("name of {} bytes > {}", hello.name.len(), cfg.session.max_name_len));
    }
    let max_subs = cfg.pubsub.max_subscriptions_per_peer;
    if hello.subscriptions.len() > max_subs {
        return limit(format!("{} subscriptions > {max_subs}", hello.subscriptions.len()));
    }
    if let Some(t) = hello.subscriptions.iter().find(|t| t.is_empty() || t.len() > cfg.pubsub.max_topic_len) {
        return limit(format!("bad topic of {} bytes", t.len()));
    }
    if negotiate((MIN_VERSION, VERSION), (hello.min_version, hello.version)).is_none() {
        return Err(ProtocolError::Wire(WireError::UnsupportedVersion { theirs: hello.version, ours: VERSION }));
    }
    if hello.id == me.id.as_u128() {
        return limit("peer has this node's own id (connected to itself?)".into());
    }
    let theirs = Capabilities::from_bits(hello.capabilities).known();
    // A Hello leaves before the peer's is known, so it may announce
    // subscriptions to a node without pub/sub: they are then ignored.
    Ok(Capabilities::from_bits(theirs.bits() & me.caps.known().bits()))
}
