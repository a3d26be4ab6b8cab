//! The coordinator role: member table, settle period, epochs, sticky indexes
//! and the lease bookkeeping that keeps two members off one index.

use super::assign::{assign, Claim};
use super::event::{LeftReason, MembershipConfig, MembershipEvent};
use crate::event::{Event, Events, ProtocolError};
use crate::id::NodeId;
use crate::time::Timestamp;
use crate::timer::Timers;
use crate::wire::{encode_frame, Header, Hint, MembershipFrame, RefuseReason};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One member as the coordinator sees it.
#[derive(Debug)]
pub(crate) struct Mem {
    /// Its index in the group's current epoch (None until first settled).
    pub(crate) index: Option<u32>,
    /// The assignment it held before (sent in its first Join).
    hint: Option<Hint>,
    /// When its latest Join arrived.
    last_heard: Timestamp,
    /// That Join's sequence number (answers echo it).
    seq: u64,
}

/// A group served by this coordinator.
#[derive(Debug)]
pub(crate) struct Group {
    gid: u64,
    name: Arc<str>,
    pub(crate) members: BTreeMap<NodeId, Mem>,
    /// The last settled epoch (0: never settled).
    pub(crate) epoch: u64,
    pub(crate) total: u32,
    /// Settling since the first change, last change at the second.
    settling: Option<(Timestamp, Timestamp)>,
    /// No assignment before this: leases a previous run of this coordinator
    /// granted may still run until then.
    not_before: Timestamp,
    /// For each index, the last member confirmed on it and until when its
    /// lease may run (coordinator clock, drift margin included).
    held: BTreeMap<u32, (NodeId, Timestamp)>,
}

impl Group {
    /// True while the group is settling (members report nothing).
    pub(crate) fn is_settling(&self) -> bool {
        self.settling.is_some()
    }

    /// The group's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }
}

#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    pub(crate) groups: BTreeMap<Arc<str>, Group>,
    names: BTreeMap<u64, Arc<str>>,
    next_gid: u64,
    /// Member timeouts, by (group, member).
    expiry: Timers<(u64, NodeId)>,
    /// Settle deadlines, by group.
    settle: Timers<u64>,
    /// Answers owed: (peer, group).
    owed: BTreeSet<(NodeId, u64)>,
    /// Refusals owed: peer → group → reason.
    refusals: BTreeMap<NodeId, BTreeMap<Arc<str>, RefuseReason>>,
    /// Epochs settled.
    pub(crate) settled: u64,
    /// The highest epoch settled in any group: a group created (again)
    /// starts above it, so a group's epochs increase for as long as this
    /// coordinator runs, even after it emptied and was forgotten.
    max_epoch: u64,
}

/// A Join as the coordinator receives it.
pub(crate) struct JoinReq<'a> {
    pub(crate) from: NodeId,
    pub(crate) group: &'a str,
    pub(crate) seq: u64,
    pub(crate) hint: Option<Hint>,
}

/// What a coordinator call did, for the node to wake the peers concerned.
pub(crate) type Wake = BTreeSet<NodeId>;

impl Coordinator {
    pub(crate) fn next_timer(&self) -> Option<Timestamp> {
        let a = self.expiry.next().map(|(t, _)| t);
        let b = self.settle.next().map(|(t, _)| t);
        a.into_iter().chain(b).min()
    }

    pub(crate) fn on_join(
        &mut self,
        cfg: &MembershipConfig,
        join: JoinReq<'_>,
        now: Timestamp,
        events: &mut Events,
        wake: &mut Wake,
    ) -> Result<(), ProtocolError> {
        let JoinReq { from, group, seq, hint } = join;
        let refuse = |me: &mut Self, reason| {
            let r = me.refusals.entry(from).or_default();
            if r.len() >= cfg.max_joined && !r.contains_key(group) {
                return Err(ProtocolError::Limit(format!("more than {} refused joins pending", cfg.max_joined)));
            }
            r.insert(Arc::from(group), reason);
            Ok(())
        };
        if !cfg.coordinator {
            refuse(self, RefuseReason::NotCoordinator)?;
            wake.insert(from);
            return Ok(());
        }
        if !self.groups.contains_key(group) {
            if self.groups.len() >= cfg.max_groups {
                refuse(self, RefuseReason::TooManyGroups)?;
                wake.insert(from);
                return Ok(());
            }
            self.next_gid += 1;
            let name: Arc<str> = Arc::from(group);
            let g = Group {
                gid: self.next_gid,
                name: name.clone(),
                members: BTreeMap::new(),
                epoch: self.max_epoch,
                total: 0,
                settling: None,
                not_before: now + cfg.lease + cfg.drift_margin,
                held: BTreeMap::new(),
            };
            self.names.insert(g.gid, name.clone());
            self.groups.insert(name, g);
        }
        let g = self.groups.get_mut(group).expect("inserted above");
        let gid = g.gid;
        match g.members.get_mut(&from) {
            Some(m) => {
                // The latest Join: frames of one session arrive in order, and
                // a member that restarted (its seq starts again) is a new
                // session whose old frames the router dropped. Its timeout
                // timer stays armed at the earlier deadline and moves on
                // when it fires (no timer work per heartbeat).
                m.last_heard = now;
                m.seq = seq;
            }
            None => {
                if g.members.len() >= cfg.max_members {
                    let empty = g.members.is_empty();
                    if empty {
                        self.remove_group(gid);
                    }
                    refuse(self, RefuseReason::GroupFull)?;
                    wake.insert(from);
                    return Ok(());
                }
                g.members.insert(from, Mem { index: None, hint, last_heard: now, seq });
                events.push(Event::Membership(MembershipEvent::MemberJoined { group: g.name.clone(), member: from }));
                self.expiry.set((gid, from), now + cfg.member_timeout);
                self.change(cfg, gid, now, wake);
            }
        }
        self.owed.insert((from, gid));
        wake.insert(from);
        Ok(())
    }

    pub(crate) fn on_leave(
        &mut self,
        cfg: &MembershipConfig,
        from: NodeId,
        group: &str,
        now: Timestamp,
        events: &mut Events,
        wake: &mut Wake,
    ) {
        let Some(g) = self.groups.get_mut(group) else { return };
        if g.members.remove(&from).is_none() {
            return;
        }
        // The member stopped reporting before it sent Leave: its lease is over.
        g.held.retain(|_, (holder, _)| *holder != from);
        let gid = g.gid;
        events.push(Event::Membership(MembershipEvent::MemberLeft {
            group: g.name.clone(),
            member: from,
            reason: LeftReason::Left,
        }));
        self.expiry.cancel((gid, from));
        self.owed.remove(&(from, gid));
        self.change(cfg, gid, now, wake);
    }

    /// A member joined or left: the group settles again.
    fn change(&mut self, cfg: &MembershipConfig, gid: u64, now: Timestamp, wake: &mut Wake) {
        let Some(name) = self.names.get(&gid) else { return };
        let Some(g) = self.groups.get_mut(name) else { return };
        if g.members.is_empty() {
            self.remove_group(gid);
            return;
        }
        let first = g.settling.map_or(now, |(f, _)| f);
        let was_settled = g.settling.is_none();
        g.settling = Some((first, now));
        if was_settled {
            // Every member hears that the group is settling (and stops
            // reporting) with its next answer, sent now.
            for id in g.members.keys() {
                self.owed.insert((*id, gid));
                wake.insert(*id);
            }
        }
        let due = (now + cfg.settle).min(first + cfg.max_settle).max(g.not_before);
        self.settle.set(gid, due);
    }

    fn remove_group(&mut self, gid: u64) {
        if let Some(name) = self.names.remove(&gid) {
            self.groups.remove(&name);
        }
        self.settle.cancel(gid);
    }

    pub(crate) fn handle_timeout(
        &mut self,
        cfg: &MembershipConfig,
        now: Timestamp,
        events: &mut Events,
        wake: &mut Wake,
    ) {
        while let Some((gid, id)) = self.expiry.pop_due(now) {
            let Some(name) = self.names.get(&gid).cloned() else { continue };
            let Some(g) = self.groups.get_mut(&name) else { continue };
            let Some(m) = g.members.get(&id) else { continue };
            if now < m.last_heard + cfg.member_timeout {
                self.expiry.set((gid, id), m.last_heard + cfg.member_timeout);
                continue;
            }
            g.members.remove(&id);
            events.push(Event::Membership(MembershipEvent::MemberLeft {
                group: name,
                member: id,
                reason: LeftReason::Timeout,
            }));
            self.owed.remove(&(id, gid));
            self.change(cfg, gid, now, wake);
        }
        while let Some(gid) = self.settle.pop_due(now) {
            self.try_settle(gid, now, events, wake);
        }
    }

    /// The settle deadline passed: assign, unless an index would go to a
    /// member while another may still hold a lease on it.
    fn try_settle(&mut self, gid: u64, now: Timestamp, events: &mut Events, wake: &mut Wake) {
        let Some(name) = self.names.get(&gid) else { return };
        let Some(g) = self.groups.get_mut(name) else { return };
        if g.settling.is_none() {
            return;
        }
        let claims: Vec<(NodeId, Claim)> = g
            .members
            .iter()
            .map(|(id, m)| {
                let c = match (m.index, m.hint) {
                    (Some(i), _) => Claim::Current(i),
                    (None, Some(h)) => Claim::Hint(h.index, h.epoch),
                    (None, None) => Claim::None,
                };
                (*id, c)
            })
            .collect();
        let next = assign(&claims);
        let busy = next
            .iter()
            .filter_map(|(id, i)| g.held.get(i).filter(|(h, until)| h != id && *until > now).map(|(_, u)| *u))
            .max();
        if let Some(until) = busy.filter(|u| *u > now) {
            self.settle.set(gid, until);
            return;
        }
        let hinted = g.members.values().filter_map(|m| m.hint.map(|h| h.epoch)).max().unwrap_or(0);
        // Saturates only for hints no honest member sends (epoch near 2^64).
        g.epoch = g.epoch.max(hinted).saturating_add(1);
        g.total = next.len() as u32;
        g.settling = None;
        for (id, m) in g.members.iter_mut() {
            m.index = next.get(id).copied();
            self.owed.insert((*id, gid));
            wake.insert(*id);
        }
        g.held.retain(|_, (_, until)| *until > now);
        self.settled += 1;
        self.max_epoch = self.max_epoch.max(g.epoch);
        events.push(Event::Membership(MembershipEvent::Settled {
            group: g.name.clone(),
            epoch: g.epoch,
            total: g.total,
        }));
    }

    pub(crate) fn on_peer_down(&mut self, peer: NodeId) {
        let owed: Vec<(NodeId, u64)> = self.owed.range((peer, 0)..=(peer, u64::MAX)).copied().collect();
        for o in owed {
            self.owed.remove(&o);
        }
        self.refusals.remove(&peer);
    }

    pub(crate) fn has_control(&self, peer: NodeId) -> bool {
        self.owed.range((peer, 0)..=(peer, u64::MAX)).next().is_some() || self.refusals.contains_key(&peer)
    }

    /// Writes the answers owed to `peer`, as the state is now. An
    /// assignment sent is recorded as held until the member's lease (from a
    /// Join sent no later than it arrived) must have lapsed.
    pub(crate) fn write_control(&mut self, cfg: &MembershipConfig, peer: NodeId, buf: &mut Vec<u8>) {
        if let Some(r) = self.refusals.remove(&peer) {
            for (group, reason) in r {
                encode_frame(buf, &Header::Membership(MembershipFrame::Refused { group: &group, reason }), &[]);
            }
        }
        while let Some(&(_, gid)) = self.owed.range((peer, 0)..=(peer, u64::MAX)).next() {
            self.owed.remove(&(peer, gid));
            let Some(name) = self.names.get(&gid) else { continue };
            let Some(g) = self.groups.get_mut(name) else { continue };
            let Some(m) = g.members.get(&peer) else { continue };
            let frame = match (g.settling, m.index) {
                (None, Some(index)) => {
                    let until = m.last_heard + cfg.lease + cfg.drift_margin;
                    let h = g.held.entry(index).or_insert((peer, until));
                    if h.0 != peer || h.1 < until {
                        *h = (peer, until);
                    }
                    MembershipFrame::Assigned { group: name, seq: m.seq, index, total: g.total, epoch: g.epoch }
                }
                _ => MembershipFrame::Settling { group: name, seq: m.seq },
            };
            encode_frame(buf, &Header::Membership(frame), &[]);
        }
    }
}
