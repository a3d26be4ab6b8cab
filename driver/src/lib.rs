//! # estafeta-driver: one async driver for every runtime
//!
//! The handle API of estafeta ([`Node`], [`NodeBuilder`], [`Subscription`],
//! [`Events`]) and the task that drives the sans-IO core, written once and
//! generic over a small [`Runtime`] trait (sockets, a timer, spawn, a clock).
//! `estafeta-tokio` and `estafeta-smol` implement that trait and re-export
//! these types with the runtime filled in, so switching runtime is one line.
//!
//! The driver holds no protocol logic: it waits, reads sockets into the core,
//! and runs the core's [`Drain`](estafeta_core::Drain).

#![forbid(unsafe_code)]

mod anchor;
mod discovery;
mod driver;
mod entry;
mod error;
mod fileio;
mod format;
mod log;
mod membership;
mod node;
mod recv;
mod runtime;
mod state;
mod stream;
mod streams;
mod transfer;

pub use error::Error;
pub use format::{encode, Format, MessageExt, Postcard};
pub use membership::GroupMember;
pub use node::{Node, NodeBuilder};
pub use runtime::{poll_read_copy, ConnectFuture, Listener, Runtime, Socket, Timer};
pub use state::AppLimits;
pub use stream::{Events, Subscription};
pub use streams::{
    ReplyStream, StreamClosed, StreamOptions, StreamRequest, StreamServer, StreamWriteError, TypedReplyStream, Writer,
};
pub use transfer::{FileEvent, FileOptions, FileProgress, FileTransfer, ReceivedFiles};

pub use estafeta_core::secure;
pub use estafeta_core::transfer::{Direction, Offered, Received, TransferError};
pub use estafeta_core::{Assignment, GroupInfo, LeftReason, MembershipConfig, MembershipEvent};
pub use estafeta_core::{
    Bytes, CloseCode, CloseReason, Config, DialEvent, DialerConfig, DiscoveryConfig, DiscoveryEvent, DiscoveryStats,
    DropReason, Event, FullQueuePolicy, Identity, Message, MessageRun, NodeId, PeerAddr, PeerInfo, PeerRef,
    PubSubConfig, PubSubEvent, Published, RelayLoss, Relayed, SecurityConfig, SecurityMode, SecurityStats, SendMode,
    SessionConfig, Stats, StreamEnd, StreamEvent, StreamId, StreamsConfig, Topic, TransferConfig, TransferEvent,
};
pub use estafeta_core::{LossReason, SessionEvent};
pub use node::OsEntropy;
