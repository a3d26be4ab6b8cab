//! Group membership on the async node: serving groups as a coordinator
//! ([`NodeBuilder::coordinator`](crate::NodeBuilder::coordinator)), joining
//! one ([`Node::join`]) and watching the assignment.

use crate::node::Node;
use crate::runtime::Runtime;
use crate::state::Shared;
use crate::Error;
use estafeta_core::{Assignment, GroupInfo, MembershipEvent, PeerAddr};
use futures_core::Stream;
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The change queues of the memberships of one node.
#[derive(Debug, Default)]
pub(crate) struct MemberQueues {
    queues: BTreeMap<u64, ChangeQueue>,
}

#[derive(Debug)]
struct ChangeQueue {
    group: Arc<str>,
    queue: VecDeque<MembershipEvent>,
    lagged: u64,
    waker: Option<Waker>,
}

impl MemberQueues {
    /// A member-side event goes to the change streams of its group.
    pub(crate) fn deliver(&mut self, ev: &MembershipEvent, cap: usize) {
        let group = match ev {
            MembershipEvent::Assigned { group, .. }
            | MembershipEvent::Settling { group }
            | MembershipEvent::LeaseLost { group }
            | MembershipEvent::Refused { group, .. } => group,
            MembershipEvent::MemberJoined { .. }
            | MembershipEvent::MemberLeft { .. }
            | MembershipEvent::Settled { .. } => return,
        };
        for q in self.queues.values_mut().filter(|q| &q.group == group) {
            crate::state::push_lagging(&mut q.queue, &mut q.lagged, cap, ev.clone(), &mut q.waker);
        }
    }

    /// The driver exited: wake every stream so it ends.
    pub(crate) fn finish(&mut self) {
        for q in self.queues.values_mut() {
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
    }
}

impl<R: Runtime> Node<R> {
    /// Joins `group` at the coordinator at `coordinator` (`name@host:port` or
    /// `host:port`), which is dialed now and redialed after any failure.
    /// Returns at once; the assignment follows when the group settles.
    ///
    /// ```no_run
    /// use estafeta_driver::{Node, Runtime, Error};
    ///
    /// async fn replica<R: Runtime>(coordinator: &str) -> Result<(), Error> {
    ///     let node = Node::<R>::builder("replica").no_listen().build().await?;
    ///     let mut member = node.join("shards", coordinator)?;
    ///     while let Some(change) = member.next_change().await {
    ///         // Take the keys with hash % total == index, while it lasts.
    ///         println!("{change:?}: now {:?}", member.index_total());
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn join(&self, group: &str, coordinator: &str) -> Result<GroupMember, Error> {
        let addr: PeerAddr = coordinator.parse().map_err(|e: estafeta_core::AddrParseError| {
            Error::Command(estafeta_core::CommandError::BadGroup(format!("coordinator address {coordinator:?}: {e}")))
        })?;
        let shared = self.shared().clone();
        let id = {
            let mut st = shared.lock();
            st.node.join(group, addr)?;
            let id = st.app.next_id();
            let q = ChangeQueue { group: Arc::from(group), queue: VecDeque::new(), lagged: 0, waker: None };
            st.app.membership.queues.insert(id, q);
            st.app.wake_driver();
            id
        };
        Ok(GroupMember { shared, id, group: Arc::from(group) })
    }

    /// The groups this node coordinates, with their members and indexes.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.shared().lock().node.membership_ref().groups()
    }
}

/// This node's membership of one group ([`Node::join`]). Reports the
/// assignment only while its lease runs; dropping it leaves the group.
#[derive(Debug)]
pub struct GroupMember {
    shared: Arc<Shared>,
    id: u64,
    group: Arc<str>,
}

impl GroupMember {
    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The assignment with its epoch, if this node may act on it now:
    /// `None` while joining or settling, and once the lease lapsed.
    pub fn assignment(&self) -> Option<Assignment> {
        let now = self.shared.now();
        self.shared.lock().node.membership_ref().current_at(&self.group, now)
    }

    /// `(index, total)`: this node takes the work with `hash % total == index`.
    pub fn index_total(&self) -> Option<(u32, u32)> {
        self.assignment().map(|a| (a.index, a.total))
    }

    /// Changes missed because the stream was not read (the oldest are dropped).
    pub fn lagged(&self) -> u64 {
        self.shared.lock().app.membership.queues.get(&self.id).map_or(0, |q| q.lagged)
    }

    /// Waits for the next change (assigned, settling, lease lost, refused);
    /// `None` once the node is closed or the membership was refused.
    pub async fn next_change(&mut self) -> Option<MembershipEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Leaves the group: from this call on the node reports nothing for it,
    /// and the coordinator hears Leave with the node's next write.
    pub async fn leave(self) {
        // Drop does it.
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.app.membership.queues.remove(&self.id);
        if !st.app.membership.queues.values().any(|q| q.group == self.group) {
            st.node.membership().leave(&self.group);
            st.app.wake_driver();
        }
    }
}

impl Stream for GroupMember {
    type Item = MembershipEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MembershipEvent>> {
        let mut st = self.shared.lock();
        let finished = st.app.finished;
        let Some(q) = st.app.membership.queues.get_mut(&self.id) else { return Poll::Ready(None) };
        if let Some(ev) = q.queue.pop_front() {
            return Poll::Ready(Some(ev));
        }
        let refused = !st.node.membership_ref().joined().contains(&self.group);
        if finished || refused {
            return Poll::Ready(None);
        }
        let q = st.app.membership.queues.get_mut(&self.id).expect("present above");
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
