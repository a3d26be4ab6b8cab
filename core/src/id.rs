//! Identities and addresses: node ids, connection ids, topics, `name@host:port`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A node's 128-bit identity. Shown as 32 hex digits; `{:#}` shows the first 8.
///
/// ```
/// use estafeta_core::NodeId;
/// let id = NodeId::from_u128(0xabcdef);
/// assert_eq!(format!("{id:#}"), "00000000");
/// assert_eq!(id.to_string().len(), 32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId {
    // Two halves, high first (so the derived order is the number's), rather
    // than a `u128`: a `u128` is 16-byte aligned, which pads every struct
    // that holds an id, events among them, and makes each move a copy call.
    hi: u64,
    lo: u64,
}

impl NodeId {
    /// The id with this value.
    pub const fn from_u128(v: u128) -> Self {
        NodeId { hi: (v >> 64) as u64, lo: v as u64 }
    }
    /// The id's value.
    pub const fn as_u128(self) -> u128 {
        ((self.hi as u128) << 64) | self.lo as u128
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:08x}", (self.hi >> 32) as u32)
        } else {
            write!(f, "{:032x}", self.as_u128())
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self:#})")
    }
}

/// One connection of a node, as numbered by that node. Never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A topic name. Cheap to clone (shared string).
///
/// ```
/// use estafeta_core::Topic;
/// let t = Topic::from("prices");
/// assert_eq!(t.as_str(), "prices");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(Arc<str>);

impl Topic {
    /// The topic's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if both name the same topic; without comparing names when
    /// both share one string (clones of one `Topic`).
    #[inline]
    pub(crate) fn same(&self, other: &Topic) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl From<&str> for Topic {
    fn from(s: &str) -> Self {
        Topic(Arc::from(s))
    }
}

impl From<String> for Topic {
    fn from(s: String) -> Self {
        Topic(Arc::from(s))
    }
}

impl From<&Topic> for Topic {
    fn from(t: &Topic) -> Self {
        t.clone()
    }
}

impl std::ops::Deref for Topic {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// Where a node listens: `name@host:port`, or a bare `host:port`.
///
/// IPv6 hosts are written in brackets: `node@[::1]:7000`.
///
/// ```
/// use estafeta_core::PeerAddr;
/// let a: PeerAddr = "alice@127.0.0.1:7000".parse().unwrap();
/// assert_eq!(a.name.as_deref(), Some("alice"));
/// assert_eq!(a.host, "127.0.0.1");
/// assert_eq!(a.port, 7000);
/// assert_eq!(a.to_string(), "alice@127.0.0.1:7000");
/// assert_eq!(a.host_port(), "127.0.0.1:7000");
/// let b: PeerAddr = "[::1]:9".parse().unwrap();
/// assert_eq!(b.to_string(), "[::1]:9");
/// assert!("alice@nowhere".parse::<PeerAddr>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerAddr {
    /// The node's name, if the address carries one.
    pub name: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl PeerAddr {
    /// An address without a name.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        PeerAddr { name: None, host: host.into(), port }
    }

    /// The node id this address pins, if its name is one: 32 hex digits, as
    /// [`NodeId`] prints (`<id>@host:port`). A secure dial to it is refused
    /// unless the peer proves the key of this id.
    ///
    /// ```
    /// use estafeta_core::PeerAddr;
    /// let a: PeerAddr = "000000000000000000000000000000ff@10.0.0.1:7000".parse().unwrap();
    /// assert_eq!(a.pinned_id().map(|id| id.as_u128()), Some(255));
    /// let b: PeerAddr = "bob@10.0.0.1:7000".parse().unwrap();
    /// assert_eq!(b.pinned_id(), None);
    /// ```
    pub fn pinned_id(&self) -> Option<NodeId> {
        let name = self.name.as_deref()?;
        if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(name, 16).ok().map(NodeId::from_u128)
    }

    /// `host:port`, with IPv6 hosts in brackets: what a socket API resolves.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}@")?;
        }
        f.write_str(&self.host_port())
    }
}

/// Why a string is not a [`PeerAddr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrParseError(pub String);

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad address: {}", self.0)
    }
}

impl std::error::Error for AddrParseError {}

impl FromStr for PeerAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| AddrParseError(format!("{s:?}: {why}"));
        let (name, rest) = match s.rsplit_once('@') {
            Some(("", _)) => return Err(err("empty name before '@'")),
            Some((n, r)) => (Some(n.to_string()), r),
            None => (None, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, p) = inner.split_once("]:").ok_or_else(|| err("expected [ipv6]:port"))?;
            (h, p)
        } else {
            rest.rsplit_once(':').ok_or_else(|| err("expected host:port"))?
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if !rest.starts_with('[') && host.contains(':') {
            return Err(err("IPv6 hosts go in brackets"));
        }
        let port = port.parse::<u16>().map_err(|_| err("port is not a number 0-65535"))?;
        Ok(PeerAddr { name, host: host.to_string(), port })
    }
}

/// A peer named by a command: by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRef {
    /// The peer with this id.
    Id(NodeId),
    /// The one connected peer with this name.
    Name(String),
}

impl From<NodeId> for PeerRef {
    fn from(id: NodeId) -> Self {
        PeerRef::Id(id)
    }
}

impl From<&str> for PeerRef {
    fn from(name: &str) -> Self {
        PeerRef::Name(name.to_string())
    }
}

impl From<String> for PeerRef {
    fn from(name: String) -> Self {
        PeerRef::Name(name)
    }
}

impl fmt::Display for PeerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerRef::Id(id) => write!(f, "{id}"),
            PeerRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}
