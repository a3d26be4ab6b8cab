//! The node handle and its builder.

use crate::driver::DriverCell;
use crate::format::{encode, Format, Postcard};
use crate::runtime::{Listener, Runtime};
use crate::state::{App, AppLimits, Shared, State};
use crate::stream::{Events, Subscription};
use crate::Error;
use bytes::Bytes;
use estafeta_core::{Config, NodeId, PeerAddr, PeerInfo, PeerRef, Published, SendMode, Stats, Topic};
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;

/// Builds a [`Node`]. Every setting has a default; see [`Config`] and [`AppLimits`].
///
/// ```
/// use estafeta_driver::{Config, Node, Runtime, Error};
/// use std::time::Duration;
///
/// async fn start<R: Runtime>() -> Result<Node<R>, Error> {
///     Node::<R>::builder("pricer")
///         .bind("0.0.0.0:7000")
///         .subscribe("prices")
///         .config({ let mut c = Config::default(); c.session.heartbeat_interval = Duration::from_millis(250); c })
///         .build()
///         .await
/// }
/// ```
pub struct NodeBuilder<R: Runtime> {
    name: String,
    bind: Option<String>,
    subscriptions: Vec<String>,
    config: Config,
    id: Option<NodeId>,
    identity: Option<estafeta_core::Identity>,
    limits: AppLimits,
    pub(crate) discovery: crate::discovery::DiscoveryOptions,
    _runtime: PhantomData<R>,
}

impl<R: Runtime> fmt::Debug for NodeBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder").field("name", &self.name).field("bind", &self.bind).finish()
    }
}

impl<R: Runtime> NodeBuilder<R> {
    /// A builder for a node called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        NodeBuilder {
            name: name.into(),
            bind: Some("127.0.0.1:0".into()),
            subscriptions: Vec::new(),
            config: Config::default(),
            id: None,
            identity: None,
            limits: AppLimits::default(),
            discovery: Default::default(),
            _runtime: PhantomData,
        }
    }

    /// Listens on `addr` (`host:port`; port 0 picks a free port). Default `127.0.0.1:0`.
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = Some(addr.into());
        self
    }

    /// Does not listen: the node only dials out.
    pub fn no_listen(mut self) -> Self {
        self.bind = None;
        self
    }

    /// Subscribes to `topic` from the start (messages go to [`Node::messages`]
    /// streams; use [`Node::subscribe`] for a stream of one topic).
    pub fn subscribe(mut self, topic: impl Into<String>) -> Self {
        self.subscriptions.push(topic.into());
        self
    }

    /// Protocol limits and timers. A zero seed is replaced by a random one.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Serves groups as a membership coordinator (sets
    /// `config.membership.coordinator`; call after [`NodeBuilder::config`]).
    pub fn coordinator(mut self) -> Self {
        self.config.membership.coordinator = true;
        self
    }

    /// Sets the node id (default: random), for example to keep it across
    /// restarts. Only in the plaintext mode ([`NodeBuilder::plaintext`]): a
    /// secure node's id is its identity key's ([`NodeBuilder::identity`]).
    pub fn id(mut self, id: NodeId) -> Self {
        self.id = Some(id);
        self
    }

    /// The node's identity key (default: generated from the operating
    /// system's randomness). Keep it (see [`Identity::secret_bytes`](estafeta_core::Identity::secret_bytes))
    /// to keep the node id across restarts.
    pub fn identity(mut self, identity: estafeta_core::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// No encryption, and ids claimed rather than proven: every peer must
    /// be plaintext too (a secure peer refuses it with a reason). For
    /// tests, benchmarks and closed networks only.
    pub fn plaintext(mut self) -> Self {
        self.config.security.mode = estafeta_core::SecurityMode::Plaintext;
        self
    }

    /// Limits of the application-side queues.
    pub fn app_limits(mut self, limits: AppLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Binds, starts the node's driver task on the runtime, and returns the handle.
    pub async fn build(self) -> Result<Node<R>, Error> {
        let mut config = self.config;
        if config.seed == 0 {
            config.seed = random_seed();
        }
        // Credit goes back as the application takes messages from its
        // subscriptions, not when the driver queues them.
        config.pubsub.credit = estafeta_core::CreditMode::Manual;
        config.streams.credit = estafeta_core::CreditMode::Manual;
        self.discovery.configure(&mut config);
        let secure = config.security.mode == estafeta_core::SecurityMode::Noise;
        let mut node = match (self.identity, self.id) {
            (Some(identity), _) => {
                estafeta_core::Node::with_identity(config, identity, Box::new(OsEntropy), &self.name)?
            }
            (None, Some(id)) => estafeta_core::Node::with_id(config, id, &self.name)?,
            (None, None) if secure => {
                let identity = estafeta_core::Identity::generate(&mut OsEntropy);
                estafeta_core::Node::with_identity(config, identity, Box::new(OsEntropy), &self.name)?
            }
            (None, None) => estafeta_core::Node::new(config, &self.name)?,
        };
        for t in &self.subscriptions {
            node.pubsub().subscribe(t)?;
        }
        let (listener, address) = match &self.bind {
            Some(addr) => {
                let l = R::bind(addr).await?;
                let local = l.local_addr()?;
                node.set_listen_addr(&local.ip().to_string(), local.port());
                let mut a = PeerAddr::new(local.ip().to_string(), local.port());
                a.name = Some(self.name.clone());
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        self.discovery.join(&mut node)?;
        let mut app = App::new(self.limits);
        for t in &self.subscriptions {
            *app.topic_refs.entry(Topic::from(t.as_str())).or_insert(0) += 1;
        }
        let shared = Shared::new(State { node, app }, R::now);
        R::spawn(DriverCell::<R>::new(shared.clone(), listener).task());
        Ok(Node { inner: Arc::new(Inner { shared, address }), _runtime: PhantomData })
    }
}

/// The operating system's randomness, for keys.
#[derive(Debug, Clone, Copy)]
pub struct OsEntropy;

impl estafeta_core::secure::Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        // Without OS randomness no key can be made safely: stop rather
        // than make a guessable one.
        if let Err(e) = getrandom::fill(dest) {
            panic!("the operating system's randomness failed: {e}");
        }
    }
}

/// A seed from the process's hasher keys and the clock (the core itself never
/// draws OS randomness).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() | 1
}

struct Inner {
    shared: Arc<Shared>,
    address: Option<PeerAddr>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: close gracefully in the background.
        let mut st = self.shared.lock();
        self.shared.begin_close(&mut st, false);
    }
}

/// A handle to a running node. Cheap to clone; when the last clone is
/// dropped the node closes gracefully in the background.
///
/// Use it through a runtime crate (`estafeta_tokio::Node`,
/// `estafeta_smol::Node`); the code is the same on both:
///
/// ```
/// use estafeta_driver::{Node, Runtime, Error, MessageExt};
///
/// async fn worker<R: Runtime>(boss_addr: &str) -> Result<(), Error> {
///     let me = Node::<R>::builder("worker").build().await?;
///     let mut jobs = me.subscribe("jobs")?;
///     me.connect(boss_addr).await?;
///     while let Some(job) = jobs.recv().await {
///         let n: u64 = job.decode()?;
///         // Reply to whoever sent the job.
///         me.send_to(job.from.id, "results", (n * n).to_be_bytes().to_vec()).await?;
///     }
///     Ok(())
/// }
/// ```
pub struct Node<R: Runtime> {
    inner: Arc<Inner>,
    _runtime: PhantomData<R>,
}

impl<R: Runtime> Clone for Node<R> {
    fn clone(&self) -> Self {
        Node { inner: self.inner.clone(), _runtime: PhantomData }
    }
}

impl<R: Runtime> fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("id", &self.id()).field("address", &self.inner.address).finish()
    }
}

impl<R: Runtime> Node<R> {
    /// A builder for a node called `name`.
    pub fn builder(name: impl Into<String>) -> NodeBuilder<R> {
        NodeBuilder::new(name)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared().lock().node.id()
    }

    /// This node's name.
    pub fn name(&self) -> String {
        self.shared().lock().node.name().to_string()
    }

    /// Where this node listens, as `name@host:port` (`None` if it does not listen).
    pub fn address(&self) -> Option<PeerAddr> {
        self.inner.address.clone()
    }

    /// Where this node listens with its id pinned, as `<id>@host:port`: a
    /// dial to it is refused unless the peer proves this node's key.
    pub fn pinned_address(&self) -> Option<PeerAddr> {
        let mut a = self.inner.address.clone()?;
        a.name = Some(self.id().to_string());
        Some(a)
    }

    /// This node's identity key (`None` for a plaintext node built with an id).
    pub fn identity_key(&self) -> Option<estafeta_core::secure::PublicKey> {
        self.shared().lock().node.identity_key()
    }

    /// The identity key a connected peer proved.
    pub fn peer_key(&self, peer: NodeId) -> Option<estafeta_core::secure::PublicKey> {
        self.shared().lock().node.peer_key(peer)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared().lock().node.stats()
    }

    /// How many subscription queues this node examined to deliver the
    /// messages it received so far: one per matching subscription of each
    /// message, whatever the number of other subscriptions. A diagnostic for
    /// tests, not a stable API.
    #[doc(hidden)]
    pub fn queue_visits(&self) -> u64 {
        self.shared().lock().app.queue_visits
    }

    /// Connected peers. A peer whose connection was lost and whose session
    /// waits for a resume is left out until it resumes (see
    /// [`SessionEvent`](estafeta_core::SessionEvent)).
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared().lock().node.connected_peers().cloned().collect()
    }

    /// How many connected peers subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.shared().lock().node.pubsub_ref().connected_subscriber_count(topic)
    }

    /// Connects to `addr` (`name@host:port` or `host:port`) and keeps it
    /// connected: the node redials with backoff after any failure, and
    /// re-sends its subscriptions on every new connection. Waits for the first
    /// handshake; fails only if the attempts run out
    /// ([`Config::reconnect_max_attempts`]). A peer that dialed this node
    /// and announced `addr` as where it listens is returned at once, with
    /// no second connection; the node dials `addr` if that peer's session
    /// is lost (see `docs/protocol.md`, "Dial targets").
    ///
    /// `Ok` means the connection is open *on this side*: the peer's handshake
    /// arrived and passed this node's checks, and the returned [`PeerInfo`]
    /// says who answered. It does not mean the peer accepted this node: the
    /// peer checks this node's handshake at the same moment and may still
    /// refuse it (a name or subscription list over its limits, a duplicate
    /// of a connection it already has). A refusal arrives a moment later as
    /// [`Event::PeerDown`](crate::Event::PeerDown) with the peer's reason on
    /// [`Node::events`], and the node redials as after any failure (a
    /// connection that ends within [`Config::liveness_timeout`] of its
    /// handshake counts as a failed attempt, so a peer that always refuses
    /// ends in [`Event::Dial(DialEvent::GaveUp)`](crate::Event::Dial(DialEvent::GaveUp))). To know that the
    /// peer kept the connection, wait for what you need from it, such as
    /// [`Node::wait_for_subscribers`].
    pub async fn connect(&self, addr: impl AsRef<str>) -> Result<PeerInfo, Error> {
        let addr: PeerAddr = addr.as_ref().parse().map_err(|e: estafeta_core::AddrParseError| {
            Error::Command(estafeta_core::CommandError::BadTopic(e.to_string()))
        })?;
        let target = {
            let mut st = self.shared().lock();
            let t = st.node.connect(addr.clone())?;
            st.app.wake_driver();
            t
        };
        std::future::poll_fn(|cx| {
            let mut st = self.shared().lock();
            if let Some(p) = st.node.target_peer(target) {
                return Poll::Ready(Ok(p.clone()));
            }
            if st.node.target_gave_up(target) {
                return Poll::Ready(Err(Error::ConnectFailed(addr.clone())));
            }
            if st.app.finished || st.node.is_closing() {
                return Poll::Ready(Err(Error::Closed));
            }
            st.app.peers_changed.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Subscribes to `topic` and returns the stream of its messages. Peers
    /// learn of it at once; use [`Node::wait_for_subscribers`] on the
    /// publishing side to know when they have.
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, Error> {
        let t = {
            let mut st = self.shared().lock();
            st.node.pubsub().subscribe(topic)?;
            let t = Topic::from(topic);
            *st.app.topic_refs.entry(t.clone()).or_insert(0) += 1;
            st.app.wake_driver();
            t
        };
        Ok(Subscription::new(self.shared().clone(), Some(t)))
    }

    /// Unsubscribes from `topic` now, whatever subscriptions are still open
    /// (they receive nothing more).
    pub fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        let mut st = self.shared().lock();
        st.app.topic_refs.remove(topic);
        st.app.uncount(topic);
        st.node.pubsub().unsubscribe(topic)?;
        st.app.wake_driver();
        Ok(())
    }

    /// A stream of every message this node receives, on any subscribed topic.
    pub fn messages(&self) -> Subscription {
        Subscription::new(self.shared().clone(), None)
    }

    /// A stream of lifecycle events (peer up/down with reasons, and more).
    pub fn events(&self) -> Events {
        Events::new(self.shared().clone())
    }

    /// Waits until at least `n` connected peers subscribe to `topic` and can
    /// take messages (they granted this node credit on it, about a round
    /// trip after they subscribed), so a publisher does not lose its first
    /// messages to a late subscriber and round-robin starts with all of them.
    ///
    /// ```
    /// # use estafeta_driver::{Node, Runtime, Error};
    /// async fn announce<R: Runtime>(node: &Node<R>) -> Result<(), Error> {
    ///     node.wait_for_subscribers("news", 2).await?; // both listeners are ready
    ///     node.publish("news", "first message, not lost").await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn wait_for_subscribers(&self, topic: &str, n: usize) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared().lock();
            if st.node.pubsub_ref().ready_subscriber_count(topic) >= n {
                return Poll::Ready(Ok(()));
            }
            if st.app.finished || st.node.is_closing() {
                return Poll::Ready(Err(Error::Closed));
            }
            // Subscriptions come with peer events, credit with Writable.
            st.app.peers_changed.register(cx.waker());
            st.app.writable.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Publishes without waiting. A full queue is `Err(e)` with
    /// `e.is_full()`; nothing was queued.
    ///
    /// ```
    /// # use estafeta_driver::{Node, Runtime, SendMode};
    /// fn tick<R: Runtime>(node: &Node<R>, n: u64) {
    ///     match node.try_publish_with("ticks", n.to_be_bytes().to_vec(), SendMode::RoundRobin) {
    ///         Ok(p) => assert_eq!(p.queued, 1),
    ///         Err(e) if e.is_full() => { /* back off; retry after a while */ }
    ///         Err(e) => eprintln!("not sent: {e}"),
    ///     }
    /// }
    /// ```
    pub fn try_publish_with(&self, topic: &str, payload: impl Into<Bytes>, mode: SendMode) -> Result<Published, Error> {
        let mut st = self.shared().lock();
        let r = st.node.pubsub().publish(topic, payload.into(), mode)?;
        st.app.wake_driver();
        Ok(r)
    }

    /// Publishes in `mode`, waiting while the queues are full.
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        mode: SendMode,
    ) -> Result<Published, Error> {
        let payload = payload.into();
        self.publish_waiting(|node| node.pubsub().publish(topic, payload.clone(), mode.clone())).await
    }

    /// Runs `publish` until it is not refused for a full queue, waiting for
    /// room in between (a `Writable` event wakes us).
    pub(crate) async fn publish_waiting(
        &self,
        mut publish: impl FnMut(&mut estafeta_core::Node) -> Result<Published, estafeta_core::PublishError>,
    ) -> Result<Published, Error> {
        std::future::poll_fn(|cx| {
            let Some(mut st) = self.shared().lock_or_yield(cx) else { return Poll::Pending };
            match publish(&mut st.node) {
                Ok(r) => {
                    st.app.wake_driver();
                    Poll::Ready(Ok(r))
                }
                Err(e) if e.is_full() => {
                    st.app.writable.register(cx.waker());
                    st.app.wake_driver();
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e.into())),
            }
        })
        .await
    }

    /// Publishes every payload of `payloads`, in order, to every subscriber
    /// of `topic`, taking the node's lock once per wake-up rather than once
    /// per message, and waiting while the queues are full. Each queued
    /// payload is removed from the front of `payloads`; returns how many.
    /// On an error (the same as [`Node::publish`]'s) the payloads not queued
    /// stay in `payloads`, the one refused first; so they do if the future
    /// is dropped while it waits.
    ///
    /// ```
    /// use estafeta_driver::{Bytes, Node, Runtime, Error};
    ///
    /// async fn stream_ticks<R: Runtime>(node: &Node<R>) -> Result<(), Error> {
    ///     let mut batch: Vec<Bytes> = Vec::with_capacity(256);
    ///     for tick in 0..10_000u64 {
    ///         batch.push(Bytes::copy_from_slice(&tick.to_be_bytes()));
    ///         if batch.len() == batch.capacity() {
    ///             node.publish_batch("ticks", &mut batch).await?; // empties it
    ///         }
    ///     }
    ///     let queued = node.publish_batch("ticks", &mut batch).await?;
    ///     assert!(queued <= 256 && batch.is_empty());
    ///     Ok(())
    /// }
    /// ```
    pub async fn publish_batch(&self, topic: &str, payloads: &mut Vec<Bytes>) -> Result<usize, Error> {
        let mut queued = 0;
        std::future::poll_fn(|cx| {
            let Some(mut st) = self.shared().lock_or_yield(cx) else { return Poll::Pending };
            // The core moves each payload it queues out of the slice and
            // leaves the refused one (and those after it) in place.
            let (n, refused) = st.node.pubsub().publish_batch(topic, payloads);
            let result = match refused {
                Ok(()) => Poll::Ready(Ok(())),
                Err(e) if e.is_full() => {
                    st.app.writable.register(cx.waker());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e.into())),
            };
            if n > 0 || result.is_pending() {
                st.app.wake_driver();
            }
            // Remove what was queued now: dropping this future while it waits
            // leaves exactly the payloads not queued.
            payloads.drain(..n);
            queued += n;
            result
        })
        .await
        .map(|()| queued)
    }

    /// Publishes to every subscriber of `topic`, waiting for queue space.
    /// With no subscriber connected it is an error, never a silent drop.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, Error> {
        self.publish_with(topic, payload, SendMode::All).await
    }

    /// Publishes to every subscriber of `topic` without waiting.
    pub fn try_publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, Error> {
        self.try_publish_with(topic, payload, SendMode::All)
    }

    /// Sends to one subscriber of `topic`, taking turns, waiting for space.
    pub async fn publish_round_robin(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, Error> {
        self.publish_with(topic, payload, SendMode::RoundRobin).await
    }

    /// Sends to one subscriber of `topic`, taking turns, without waiting.
    pub fn try_publish_round_robin(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, Error> {
        self.try_publish_with(topic, payload, SendMode::RoundRobin)
    }

    /// Sends to one peer (by id or name), which must subscribe to `topic`.
    pub async fn send_to(
        &self,
        peer: impl Into<PeerRef>,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Published, Error> {
        self.publish_with(topic, payload, SendMode::To(peer.into())).await
    }

    /// Sends to one peer without waiting.
    pub fn try_send_to(
        &self,
        peer: impl Into<PeerRef>,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Published, Error> {
        self.try_publish_with(topic, payload, SendMode::To(peer.into()))
    }

    /// Publishes a serde value (postcard) to every subscriber.
    pub async fn publish_value<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<Published, Error> {
        self.publish_with(topic, encode::<Postcard, T>(value)?, SendMode::All).await
    }

    /// Publishes a serde value encoded with format `F`, in `mode`.
    pub async fn publish_value_with<F: Format, T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
        mode: SendMode,
    ) -> Result<Published, Error> {
        self.publish_with(topic, encode::<F, T>(value)?, mode).await
    }

    /// Closes the node at once without flushing or saying goodbye, as a
    /// crashed process would (peers see the connections drop). Queued messages
    /// are dropped and counted.
    pub async fn abort(&self) {
        self.shared().begin_close(&mut self.shared().lock(), true);
        self.wait_finished().await
    }

    async fn wait_finished(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.shared().lock();
            if st.app.finished {
                return Poll::Ready(());
            }
            st.app.closed_waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Bytes queued in this node for `peer` (`None` if it is not connected).
    pub fn queued_bytes(&self, peer: NodeId) -> Option<usize> {
        self.shared().lock().node.pubsub().queued_bytes(peer)
    }

    /// Closes the node: flushes what is queued, says goodbye to every peer,
    /// ends every stream. Returns when every connection has flushed and
    /// said goodbye, and at the latest [`Config::close_timeout`] after the
    /// call (plus the time the driver task takes to be scheduled): what
    /// could not be written by then is dropped, counted in
    /// [`Stats::dropped`] and reported, and the sockets are closed, even one
    /// whose goodbye is still unwritten because its peer reads nothing.
    pub async fn close(&self) {
        self.shared().begin_close(&mut self.shared().lock(), false);
        self.wait_finished().await
    }
}
