//! The member role: joins, heartbeats (repeated Joins), the lease, and the
//! assignment reported only while the lease runs.

use super::event::{Assignment, MembershipConfig, MembershipEvent};
use crate::event::{Event, Events, TargetId};
use crate::id::NodeId;
use crate::time::Timestamp;
use crate::timer::Timers;
use crate::wire::{encode_frame, Header, Hint, MembershipFrame, RefuseReason};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Joins sent and not yet answered that a member remembers (older ones
/// can no longer renew a lease: their answer is ignored and counted).
pub(crate) const MAX_UNANSWERED: usize = 32;

/// What a membership reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not assigned: joining, or the lease lapsed.
    Waiting,
    /// The coordinator says the group is settling.
    Settling,
    /// Assigned, while the lease runs.
    Assigned(Assignment),
}

/// What this node owes its coordinator for one membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owe {
    Nothing,
    Join,
    Leave,
}

/// One group this node is a member of.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) name: Arc<str>,
    pub(crate) target: TargetId,
    /// The coordinator, while connected to it.
    pub(crate) coord: Option<NodeId>,
    /// The coordinator's id last time: its session coming back on any
    /// connection (one it dialed, say) binds the membership again.
    known: Option<NodeId>,
    owe: Owe,
    next_seq: u64,
    /// Joins sent: (seq, local send time).
    sent: VecDeque<(u64, Timestamp)>,
    /// The highest seq answered so far.
    answered: u64,
    pub(crate) state: State,
    /// The last assignment, sent as a hint when (re)joining.
    hint: Option<Hint>,
}

#[derive(Debug, Default)]
pub(crate) struct Members {
    pub(crate) list: BTreeMap<Arc<str>, Membership>,
    /// Renewal deadlines and lease ends, by group.
    renew: Timers<u64>,
    lease: Timers<u64>,
    ids: BTreeMap<Arc<str>, u64>,
    names: BTreeMap<u64, Arc<str>>,
    next_id: u64,
}

impl Members {
    pub(crate) fn next_timer(&self) -> Option<Timestamp> {
        let a = self.renew.next().map(|(t, _)| t);
        let b = self.lease.next().map(|(t, _)| t);
        a.into_iter().chain(b).min()
    }

    /// Starts a membership of `group` with the coordinator at `target`.
    pub(crate) fn join(&mut self, group: &str, target: TargetId) -> bool {
        if self.list.contains_key(group) {
            return false;
        }
        let name: Arc<str> = Arc::from(group);
        self.next_id += 1;
        self.ids.insert(name.clone(), self.next_id);
        self.names.insert(self.next_id, name.clone());
        self.list.insert(
            name.clone(),
            Membership {
                name,
                target,
                coord: None,
                known: None,
                owe: Owe::Nothing,
                next_seq: 1,
                sent: VecDeque::new(),
                answered: 0,
                state: State::Waiting,
                hint: None,
            },
        );
        true
    }

    /// Ends the membership of `group`: it reports nothing from now on, and
    /// its coordinator hears Leave if connected. Returns the coordinator to wake.
    pub(crate) fn leave(&mut self, group: &str) -> Option<Option<NodeId>> {
        let m = self.list.get_mut(group)?;
        m.state = State::Waiting;
        match m.coord {
            Some(c) => {
                m.owe = Owe::Leave;
                let id = self.ids.get(group).copied();
                if let Some(id) = id {
                    self.renew.cancel(id);
                    self.lease.cancel(id);
                }
                Some(Some(c))
            }
            None => {
                self.remove(group);
                Some(None)
            }
        }
    }

    fn remove(&mut self, group: &str) {
        self.list.remove(group);
        if let Some(id) = self.ids.remove(group) {
            self.names.remove(&id);
            self.renew.cancel(id);
            self.lease.cancel(id);
        }
    }

    /// A connection to `peer` opened: the memberships of the dial targets
    /// known to reach it (`targets`), or bound to that peer before, (re)join
    /// there. `capable`: the peer runs the membership plane.
    pub(crate) fn on_conn_up(
        &mut self,
        cfg: &MembershipConfig,
        targets: &[TargetId],
        peer: NodeId,
        capable: bool,
        now: Timestamp,
        events: &mut Events,
    ) -> bool {
        let mine = |m: &&Membership| targets.contains(&m.target) || m.known == Some(peer);
        let groups: Vec<Arc<str>> = self.list.values().filter(mine).map(|m| m.name.clone()).collect();
        for g in &groups {
            if !capable {
                self.remove(g);
                let reason = RefuseReason::NotCoordinator;
                events.push(Event::Membership(MembershipEvent::Refused { group: g.clone(), reason }));
                continue;
            }
            let m = self.list.get_mut(g).expect("listed");
            if m.owe == Owe::Leave {
                continue;
            }
            if m.coord == Some(peer) {
                continue;
            }
            m.coord = Some(peer);
            m.known = Some(peer);
            m.owe = Owe::Join;
            let id = self.ids[g];
            self.renew.set(id, now + cfg.renew_interval);
        }
        capable && !groups.is_empty()
    }

    /// The session with `peer` ended: memberships there stop renewing; their
    /// leases run out on their own.
    pub(crate) fn on_peer_down(&mut self, peer: NodeId) {
        let gone: Vec<Arc<str>> =
            self.list.values().filter(|m| m.coord == Some(peer)).map(|m| m.name.clone()).collect();
        for g in gone {
            let m = self.list.get_mut(&g).expect("listed");
            if m.owe == Owe::Leave {
                self.remove(&g);
                continue;
            }
            m.coord = None;
            m.owe = Owe::Nothing;
            let id = self.ids[&g];
            self.renew.cancel(id);
        }
    }

    pub(crate) fn handle_timeout(
        &mut self,
        cfg: &MembershipConfig,
        now: Timestamp,
        events: &mut Events,
        stats: &mut super::MembershipStats,
        wake: &mut super::coordinator::Wake,
    ) {
        while let Some(id) = self.renew.pop_due(now) {
            let Some(m) = self.names.get(&id).and_then(|n| self.list.get_mut(n)) else { continue };
            if let (Some(c), Owe::Nothing | Owe::Join) = (m.coord, m.owe) {
                m.owe = Owe::Join;
                wake.insert(c);
                self.renew.set(id, now + cfg.renew_interval);
            }
        }
        while let Some(id) = self.lease.pop_due(now) {
            let Some(m) = self.names.get(&id).and_then(|n| self.list.get_mut(n)) else { continue };
            if let State::Assigned(a) = m.state {
                if !a.valid_at(now) && !cfg.ignore_lease {
                    m.state = State::Waiting;
                    stats.leases_lost += 1;
                    events.push(Event::Membership(MembershipEvent::LeaseLost { group: m.name.clone() }));
                } else if a.valid_at(now) {
                    self.lease.set(id, a.lease_until);
                }
            }
        }
    }

    pub(crate) fn has_control(&self, peer: NodeId) -> bool {
        self.list.values().any(|m| m.coord == Some(peer) && m.owe != Owe::Nothing)
    }

    /// Writes the Joins and Leaves owed to `peer`. A Join's send time is
    /// taken now, when its bytes are handed out (no later than the wire).
    pub(crate) fn write_control(
        &mut self,
        peer: NodeId,
        now: Timestamp,
        buf: &mut Vec<u8>,
        stats: &mut super::MembershipStats,
    ) {
        let mut left = Vec::new();
        for m in self.list.values_mut().filter(|m| m.coord == Some(peer)) {
            match m.owe {
                Owe::Nothing => {}
                Owe::Join => {
                    let seq = m.next_seq;
                    m.next_seq += 1;
                    if m.sent.len() >= MAX_UNANSWERED {
                        m.sent.pop_front();
                    }
                    m.sent.push_back((seq, now));
                    let frame = MembershipFrame::Join { group: &m.name, seq, hint: m.hint };
                    encode_frame(buf, &Header::Membership(frame), &[]);
                    stats.joins_sent += 1;
                }
                Owe::Leave => {
                    encode_frame(buf, &Header::Membership(MembershipFrame::Leave { group: &m.name }), &[]);
                    left.push(m.name.clone());
                }
            }
            m.owe = Owe::Nothing;
        }
        for g in left {
            self.remove(&g);
        }
    }

    /// An answer from `from` about `group`.
    pub(crate) fn on_answer(
        &mut self,
        cfg: &MembershipConfig,
        from: NodeId,
        frame: &MembershipFrame<'_>,
        now: Timestamp,
        events: &mut Events,
        stats: &mut super::MembershipStats,
    ) {
        let group = frame.group();
        let Some(m) = self.list.get_mut(group).filter(|m| m.coord == Some(from) && m.owe != Owe::Leave) else {
            stats.ignored += 1;
            return;
        };
        let name = m.name.clone();
        // An answer to a Join this process never sent (the coordinator still
        // echoes the Join of a previous process with this node's id).
        if let MembershipFrame::Settling { seq, .. } | MembershipFrame::Assigned { seq, .. } = *frame {
            if seq >= m.next_seq {
                stats.ignored += 1;
                return;
            }
        }
        match *frame {
            MembershipFrame::Refused { reason, .. } => {
                self.remove(group);
                events.push(Event::Membership(MembershipEvent::Refused { group: name, reason }));
            }
            MembershipFrame::Settling { seq, .. } => {
                if seq < m.answered {
                    stats.ignored += 1;
                    return;
                }
                m.answered = seq;
                if let State::Assigned(_) | State::Waiting = m.state {
                    m.state = State::Settling;
                    events.push(Event::Membership(MembershipEvent::Settling { group: name }));
                }
                let id = self.ids[group];
                self.lease.cancel(id);
            }
            MembershipFrame::Assigned { seq, index, total, epoch, .. } => {
                let older = m.hint.is_some_and(|h| epoch < h.epoch);
                let sent = m.sent.iter().find(|(s, _)| *s == seq).map(|(_, t)| *t);
                let (Some(sent), false, true) = (sent, older, seq >= m.answered) else {
                    stats.ignored += 1;
                    return;
                };
                m.answered = seq;
                m.sent.retain(|(s, _)| *s > seq);
                let a = Assignment { index, total, epoch, lease_until: sent + cfg.lease };
                if !a.valid_at(now) {
                    // Confirms a Join too old to start a lease now.
                    stats.ignored += 1;
                    return;
                }
                let was = m.state;
                m.state = State::Assigned(a);
                m.hint = Some(Hint { index, epoch });
                stats.assigned += 1;
                let id = self.ids[group];
                self.lease.set(id, a.lease_until);
                let same = matches!(was, State::Assigned(b) if (b.index, b.total, b.epoch) == (index, total, epoch));
                if !same {
                    events.push(Event::Membership(MembershipEvent::Assigned { group: name, assignment: a }));
                }
            }
            MembershipFrame::Join { .. } | MembershipFrame::Leave { .. } => {}
        }
    }

    /// The assignment of `group` if it may be acted on at `now`.
    pub(crate) fn current(&self, cfg: &MembershipConfig, group: &str, now: Timestamp) -> Option<Assignment> {
        match self.list.get(group)?.state {
            State::Assigned(a) if cfg.ignore_lease || a.valid_at(now) => Some(a),
            _ => None,
        }
    }
}
