//! Discovery on the async API: builder options (root, known peers,
//! connection limit, drop the root once paired), per-topic paired state,
//! `wait_paired`, and relay on a subscription.

use crate::node::{Node, NodeBuilder};
use crate::runtime::{Runtime, Timer};
use crate::stream::Subscription;
use crate::Error;
use bytes::Bytes;
use estafeta_core::{CommandError, Config, PeerAddr, Published, Topic};
use std::task::Poll;
use std::time::Duration;

/// The discovery options of a [`NodeBuilder`], applied over its [`Config`].
#[derive(Debug, Default, Clone)]
pub(crate) struct DiscoveryOptions {
    root: Option<usize>,
    max_connections: Option<usize>,
    drop_root: Option<bool>,
    join: Vec<String>,
}

impl DiscoveryOptions {
    /// Sets the config fields these options name.
    pub(crate) fn configure(&self, config: &mut Config) {
        if let Some(limit) = self.root {
            config.discovery.root = true;
            config.discovery.root_max_connections = limit;
        }
        if let Some(n) = self.max_connections {
            config.session.max_connections = n;
        }
        if let Some(d) = self.drop_root {
            config.discovery.drop_root_when_paired = d;
        }
    }

    /// Joins the known peers.
    pub(crate) fn join(&self, node: &mut estafeta_core::Node) -> Result<(), Error> {
        for a in &self.join {
            node.discovery().join(parse_addr(a)?)?;
        }
        Ok(())
    }
}

fn parse_addr(addr: &str) -> Result<PeerAddr, Error> {
    addr.parse().map_err(|e: estafeta_core::AddrParseError| Error::Command(CommandError::BadTopic(e.to_string())))
}

impl<R: Runtime> NodeBuilder<R> {
    /// Builds a root: a well-known node others join through. It forwards
    /// discovery requests, refers peers, needs no subscriptions, and admits
    /// `max_connections` connections (its own limit; more are refused with a
    /// goodbye saying so).
    pub fn root(mut self, max_connections: usize) -> Self {
        self.discovery.root = Some(max_connections);
        self
    }

    /// Discovers through the node at `addr` (`name@host:port` or
    /// `host:port`), typically a root: the node keeps it connected and asks
    /// it for the peers that share its topics. May be given more than once.
    pub fn discover_via(mut self, addr: impl Into<String>) -> Self {
        self.discovery.join.push(addr.into());
        self
    }

    /// The most connections (accepted, dialled, handshaking) this node holds
    /// at once ([`SessionConfig::max_connections`](crate::SessionConfig)).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.discovery.max_connections = Some(n);
        self
    }

    /// Closes the connections to the known peers given with
    /// [`NodeBuilder::discover_via`] once every topic has another peer, and joins
    /// again when a topic loses its last one.
    pub fn drop_root_when_paired(mut self, on: bool) -> Self {
        self.discovery.drop_root = Some(on);
        self
    }
}

impl<R: Runtime> Node<R> {
    /// Discovers through the node at `addr` from now on (see
    /// [`NodeBuilder::discover_via`]); does not wait for it.
    pub fn discover_via(&self, addr: &str) -> Result<(), Error> {
        let addr = parse_addr(addr)?;
        let mut st = self.shared().lock();
        st.node.discovery().join(addr)?;
        st.app.wake_driver();
        Ok(())
    }

    /// True if a connected peer shares `topic`. Only a handshake with such a
    /// peer makes it true, never a timeout.
    pub fn is_paired(&self, topic: &str) -> bool {
        self.shared().lock().node.discovery_ref().is_paired(topic)
    }

    /// This node's topics without a connected peer that shares them.
    pub fn unpaired(&self) -> Vec<Topic> {
        self.shared().lock().node.discovery_ref().unpaired()
    }

    /// Waits until a connected peer shares `topic`. Fails with
    /// [`Error::NotPaired`] if none does within `timeout`: a timeout never
    /// counts as paired.
    ///
    /// ```
    /// # use estafeta_driver::{Node, Runtime, Error};
    /// # use std::time::Duration;
    /// async fn ready<R: Runtime>(node: &Node<R>) -> Result<(), Error> {
    ///     match node.wait_paired("prices", Duration::from_secs(5)).await {
    ///         Ok(()) => Ok(()),
    ///         Err(Error::NotPaired(t)) => { eprintln!("nobody shares {t} yet"); Ok(()) }
    ///         Err(e) => Err(e),
    ///     }
    /// }
    /// ```
    pub async fn wait_paired(&self, topic: &str, timeout: Duration) -> Result<(), Error> {
        let mut timer = R::timer();
        timer.reset(R::now() + timeout);
        std::future::poll_fn(|cx| {
            let mut st = self.shared().lock();
            if st.node.discovery_ref().is_paired(topic) {
                return Poll::Ready(Ok(()));
            }
            if st.app.finished || st.node.is_closing() {
                return Poll::Ready(Err(Error::Closed));
            }
            st.app.peers_changed.register(cx.waker());
            drop(st);
            match timer.poll_fire(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Error::NotPaired(Topic::from(topic)))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Subscribes to `topic` with relay on: this node passes the topic's
    /// relayed messages on to its other subscribers of it (at most once per
    /// node, never back to their origin, within the hop limit). Publish on it
    /// with [`Node::publish_relayed`].
    pub fn subscribe_relay(&self, topic: &str) -> Result<Subscription, Error> {
        let sub = self.subscribe(topic)?;
        self.set_relay(topic, true)?;
        Ok(sub)
    }

    /// Turns relay of `topic` on or off.
    pub fn set_relay(&self, topic: &str, on: bool) -> Result<(), Error> {
        self.shared().lock().node.discovery().set_relay(topic, on)?;
        Ok(())
    }

    /// Publishes on `topic` with a relay identity, so relaying nodes pass
    /// it on; waits while a subscriber's queue is full.
    pub async fn publish_relayed(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, Error> {
        let payload = payload.into();
        self.publish_waiting(|node| node.discovery().publish(topic, payload.clone())).await
    }
}
