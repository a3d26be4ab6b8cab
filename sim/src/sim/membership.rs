//! Groups: members join at a coordinator, and after every step the oracle
//! checks what every member reports at that instant of virtual time.

use super::Sim;
use crate::check::Cx;
use crate::ev::kind;
use crate::group::GROUP;
use crate::host::{addr_of, HostState};
use estafeta_core::Assignment;

impl Sim {
    fn node_join(&mut self, slot: usize, coordinator: usize) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            let r = node.join(GROUP, addr_of(coordinator));
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 6, coordinator as u64], || {
                format!("n{slot} joins {GROUP} at n{coordinator}: {r:?}")
            });
        }
    }

    /// The application of `slot` joins the group at `coordinator` (kept
    /// across restarts).
    pub fn join(&mut self, slot: usize, coordinator: usize) {
        if !self.hosts[slot].joins.contains(&coordinator) {
            self.hosts[slot].joins.push(coordinator);
        }
        if self.hosts[slot].state != HostState::Down {
            self.node_join(slot, coordinator);
            self.drain(slot);
        }
    }

    /// A new process re-joins what its application joined.
    pub(crate) fn rejoin(&mut self, slot: usize) {
        for c in self.hosts[slot].joins.clone() {
            self.node_join(slot, c);
        }
    }

    /// What the member on `slot` reports now, on its own clock (a paused
    /// process too: its application would act on it).
    pub fn reported(&self, slot: usize) -> Option<Assignment> {
        let h = &self.hosts[slot];
        if h.joins.is_empty() || h.state == HostState::Down {
            return None;
        }
        h.node.as_ref()?.membership_ref().current_at(GROUP, h.clock.timestamp(self.now))
    }

    /// Checks what every member reports at this instant.
    pub(crate) fn check_groups(&mut self) {
        if self.hosts.iter().all(|h| h.joins.is_empty()) {
            return;
        }
        let reports: Vec<(crate::net::ProcId, Assignment)> =
            (0..self.hosts.len()).filter_map(|s| self.reported(s).map(|a| (self.hosts[s].proc, a))).collect();
        let (m, mut cx): (_, Cx<'_>) = self.oracle.membership(self.now);
        m.check_reports(&mut cx, &reports);
    }

    /// Liveness, strict: `Some(why)` if every member of `members` is
    /// connected to `coordinator` (its membership is bound to it: a member
    /// whose own dial is still pending is not) but the group is still not
    /// settled more than
    /// `settle` + two renewals + `slack_us` after the latest of the last
    /// change at the coordinator, the last member's connection, `healed_us`
    /// (until the heal, slow links may hold a member's renewals behind a
    /// backlog of other bytes, so its lease may lapse) and the end of any
    /// backlog between the coordinator and a member.
    pub fn group_late(&self, coordinator: usize, members: &[usize], slack_us: u64, healed_us: u64) -> Option<String> {
        let bound = |m: usize| self.node(m).is_some_and(|n| n.membership_ref().connected(GROUP));
        if !members.iter().all(|m| self.connected(*m, coordinator) && bound(*m)) {
            return None;
        }
        let obs = &self.oracle.planes.membership;
        let up = members.iter().map(|m| obs.last_up[self.hosts[*m].proc as usize]).max().unwrap_or(0);
        let cfg = &self.hosts[coordinator].config.membership;
        let settle = cfg.settle.as_micros() as u64;
        let renew = cfg.renew_interval.as_micros() as u64;
        // A member's Joins and the coordinator's answers wait behind what
        // was queued before them on the two links (simulator seed 18161: a
        // slow reader left the coordinator's link to it backlogged for a
        // second after the heal, and the group settled once it drained).
        let backlog = members
            .iter()
            .flat_map(|m| [self.net.link(coordinator, *m), self.net.link(*m, coordinator)])
            .map(crate::link::Link::backlog_until)
            .max()
            .unwrap_or(0);
        let bound = (obs.last_change + settle).max(up).max(healed_us).max(backlog) + 2 * renew + slack_us;
        let why = self.group_settled(members).err()?;
        (self.now > bound).then(|| {
            format!(
                "not settled at {}, past {} (last change {}, last member up {}): {why}",
                crate::trace::fmt_time(self.now),
                crate::trace::fmt_time(bound),
                crate::trace::fmt_time(obs.last_change),
                crate::trace::fmt_time(up)
            )
        })
    }

    /// Liveness: every member of `members` reports, in one epoch, the
    /// indexes `0..members.len()`.
    pub fn group_settled(&self, members: &[usize]) -> Result<(), String> {
        let mut seen = Vec::new();
        for &s in members {
            let a = self.reported(s).ok_or_else(|| format!("member n{s} reports nothing"))?;
            seen.push((s, a));
        }
        let n = members.len() as u32;
        if let Some((s, a)) = seen.iter().find(|(_, a)| a.total != n || a.epoch != seen[0].1.epoch) {
            return Err(format!("member n{s} reports {a:?}, others {:?}", seen[0].1));
        }
        let mut idx: Vec<u32> = seen.iter().map(|(_, a)| a.index).collect();
        idx.sort_unstable();
        if idx != (0..n).collect::<Vec<u32>>() {
            return Err(format!("indexes {idx:?}"));
        }
        Ok(())
    }
}
