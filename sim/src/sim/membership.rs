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
