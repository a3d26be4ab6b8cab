//! # estafeta-core: the sans-IO protocol of estafeta
//!
//! Pure state machines fed bytes and time, emitting bytes, actions and
//! events. No I/O, no clock, no threads, no OS randomness: the same inputs
//! give the same outputs, byte for byte. The tokio and smol drivers and the
//! deterministic simulator all run this code.
//!
//! ## Driving a node
//!
//! A driver owns the sockets and one timer, and loops:
//!
//! 1. **Inputs.** Report what happened, with the current time `now`
//!    (a [`Timestamp`] from an origin the driver picks, never going back):
//!    [`Node::handle_accepted`] for an accepted socket,
//!    [`Node::handle_connected`] when a dial connected,
//!    [`Node::handle_bytes`] for received bytes (or, without a copy,
//!    [`Node::recv_buffer`] then [`Node::handle_received`]; read only while
//!    [`Node::wants_read`] says so: that is how backpressure reaches TCP),
//!    [`Node::handle_closed`] when a socket ended or a dial failed,
//!    [`Node::handle_timeout`] when the deadline passed.
//!    Application commands are plain calls on the node ([`Node::connect`],
//!    [`Node::close`]) or on a plane's accessor: [`Node::pubsub`] gives
//!    [`PubSub::subscribe`], [`PubSub::publish`] and [`PubSub::consumed`].
//! 2. **Drain**, in this order, after every input or command:
//!    bytes ([`Node::poll_transmit`], writing them in order, keeping an
//!    unwritten tail for a blocked socket), then actions
//!    ([`Node::poll_action`]: [`Action::Dial`], [`Action::Close`]), then
//!    events ([`Node::poll_event`]: [`Event`] has one variant per plane, such
//!    as [`Event::PubSub`]), then the deadline ([`Node::poll_timeout`], or
//!    [`Node::next_timer`] with its reason).
//!    [`Drain::run`] does all of this with a work budget against any [`Sink`];
//!    use it rather than writing the loop again.
//! 3. **Wait** for a socket, the deadline, or a command.
//!
//! `examples/std_loop.rs` in the repository drives two nodes from a plain
//! `std::net` loop with no async runtime.
//!
//! ## Panics and errors
//!
//! Bytes from the network never panic and never make a call fail: a
//! malformed or forbidden frame closes that connection with a reason, counts in
//! [`SessionStats::malformed`] and surfaces as [`Event::ProtocolViolation`]. Commands
//! return typed errors ([`PublishError`], [`CommandError`]) that leave the
//! node's state unchanged.
//!
//! ## Planes
//!
//! [`Node`] routes; the work is done by planes that never see it: the
//! session (connections, handshake, peer table), the dialer, pub/sub and
//! streams ([`Node::streams`]: request → stream of replies),
//! each with its own sub-config ([`SessionConfig`], [`DialerConfig`],
//! [`PubSubConfig`], [`StreamsConfig`]), stats block and events. Frames pass one router: the
//! handshake gate, the capability gate (both sides announced the plane,
//! [`Capabilities`]), the session gate (the frame belongs to the peer's
//! current session), then the plane. Outbound, each connection writes its
//! control state first, then round-robin over data sources, each produced on
//! pull; the [`Drain`] gives each connection one quantum per round.
//!
//! ## Bounds
//!
//! Every queue is bounded ([`Config`]). Messages are sent against **credit**
//! the receiver grants per subscription ([`PubSubConfig::window_messages`]),
//! so connections are always read; a full send queue is
//! [`PublishError::Full`], then [`PubSubEvent::Writable`]. The read buffer per
//! connection and the frame size (checked before allocating) are bounded;
//! pending events are a backstop for a driver that stops taking them (input
//! processing pauses and [`Node::wants_read`] turns false). Drops happen only
//! by policy and are counted ([`PubSubStats::dropped`]) and reported
//! ([`PubSubEvent::Dropped`]).

#![forbid(unsafe_code)]

mod config;
mod dialer;
mod discovery;
mod drain;
mod error;
mod event;
mod id;
mod membership;
mod node;
mod pubsub;
pub mod resume;
mod rng;
pub mod secure;
mod session;
mod stats;
mod streams;
mod time;
mod timer;
pub mod transfer;
pub mod wire;

pub use blake3;
pub use bytes::Bytes;
pub use config::{
    Config, ConfigError, CreditMode, DialerConfig, FullQueuePolicy, PubSubConfig, SessionConfig, StreamsConfig,
    TransferConfig,
};
pub use discovery::{Discovery, DiscoveryConfig, DiscoveryEvent, DiscoveryRef, RelayLoss};
pub use drain::{Budget, Drain, Sink, Step, WriteOutcome};
pub use error::{CommandError, PublishError};
pub use event::{Action, CloseReason, DialEvent, Event, PeerInfo, ProtocolError, TargetId};
pub use id::{AddrParseError, ConnId, NodeId, PeerAddr, PeerRef, Topic};
pub use membership::{
    Assignment, GroupInfo, LeftReason, Membership, MembershipConfig, MembershipEvent, MembershipRef, MembershipStats,
};
pub use node::Node;
pub use pubsub::{
    DropReason, Message, MessageRun, PubSub, PubSubEvent, PubSubRef, Published, Relayed, RunIntoIter, RunIter, SendMode,
};
pub use resume::{LossReason, SessionEvent};
pub use secure::{Identity, PlaintextTap, SecurityConfig, SecurityMode, SecurityStats};
pub use stats::{DialerStats, DiscoveryStats, PubSubStats, SessionStats, Stats, StreamsStats, TransferStats};
pub use streams::{Role, StreamEnd, StreamEvent, StreamId, Streams, StreamsRef, WriteError};
pub use time::Timestamp;
pub use timer::TimerReason;
pub use transfer::{FileRequest, TransferEvent};
pub use wire::{Capabilities, CloseCode};
