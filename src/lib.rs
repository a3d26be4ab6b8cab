//! # estafeta
//!
//! A messaging fabric for Rust services: nodes on different machines connect
//! over TCP, subscribe to topics and publish to them in three send modes (to
//! every subscriber, round-robin to one, or to one named peer), reconnect on
//! their own, detect dead peers, and never lose a message without saying so.
//!
//! The protocol is a sans-IO core ([`core`]); drivers run it on tokio
//! (feature `tokio`, the default) and on smol (feature `smol`). Both features
//! can be on at once. Switching runtime is one line:
//!
//! ```no_run
//! use estafeta::tokio::Node;      // or: use estafeta::smol::Node;
//! # async fn demo() -> Result<(), estafeta::Error> {
//! let alice = Node::builder("alice").build().await?;
//! let mut news = alice.subscribe("news")?;
//! let bob = Node::builder("bob").build().await?;
//! bob.connect(alice.address().unwrap().to_string()).await?;
//! bob.wait_for_subscribers("news", 1).await?;
//! bob.publish("news", "hello").await?;
//! let msg = news.recv().await.unwrap();
//! assert_eq!(&msg.payload[..], b"hello");
//! assert_eq!(&*msg.from.name, "bob");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub use estafeta_core as core;
pub use estafeta_driver::{
    encode, AppLimits, Bytes, CloseCode, CloseReason, Config, DiscoveryEvent, Error, Event, Events, Format,
    FullQueuePolicy, Message, MessageExt, MessageRun, NodeId, PeerAddr, PeerInfo, PeerRef, Postcard, Published,
    SendMode, Stats, Subscription, Topic,
};
pub use estafeta_driver::{secure, Identity, OsEntropy, SecurityConfig, SecurityMode, SecurityStats};
pub use estafeta_driver::{Assignment, GroupInfo, GroupMember, MembershipConfig, MembershipEvent};
pub use estafeta_driver::{FileEvent, FileOptions, FileProgress, ReceivedFiles, TransferConfig, TransferEvent};
pub use estafeta_driver::{
    ReplyStream, StreamClosed, StreamEnd, StreamEvent, StreamId, StreamOptions, StreamRequest, StreamServer,
    StreamWriteError, TypedReplyStream, Writer,
};

/// estafeta on tokio: `estafeta::tokio::Node`.
#[cfg(feature = "tokio")]
pub use estafeta_tokio as tokio;

/// estafeta on smol: `estafeta::smol::Node`.
#[cfg(feature = "smol")]
pub use estafeta_smol as smol;

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
