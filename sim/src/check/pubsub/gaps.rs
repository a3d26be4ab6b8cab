//! `FullQueuePolicy::DropOldest`: both ends of a session name the same gaps.

use super::PubSub;
use crate::check::Cx;
use crate::net::ProcId;
use crate::trace::fmt_time;

impl PubSub {
    /// Both ends name the same gaps: every `Skipped` a receiver reported
    /// matches one `Overwritten` its publisher reported (same count and
    /// marker sequence number, the latest such before it), each taken once.
    /// A publisher's gap may lack
    /// its `Skipped` only if the marker was lost with the session: either
    /// end saw `PeerDown` for the other after the gap, or one crashed.
    pub(super) fn match_gaps(&mut self, cx: &mut Cx<'_>) {
        self.accounting.overwritten = self.overwritten.values().flatten().map(|g| g.0).sum();
        for (p, from, count, seq, when) in std::mem::take(&mut self.skipped) {
            let me = cx.procs[p as usize].id;
            let senders: Vec<ProcId> =
                (0..cx.procs.len()).filter(|q| cx.procs[*q].id == from).map(|q| q as ProcId).collect();
            // The latest such gap before it, over every process that ran
            // with the sender's id (sequence numbers start again in each
            // session; a restarted sender's gaps come after its old
            // process's, whose unmatched gaps were lost with its crash:
            // sweep seed 7904 matched a new process's marker to one of those).
            let latest = senders
                .iter()
                .filter_map(|q| {
                    let list = self.overwritten.get(&(*q, me))?;
                    let i = list.iter().rposition(|g| (g.0, g.1) == (count, seq) && g.2 <= when)?;
                    Some((list[i].2, *q, i))
                })
                .max();
            let found = latest.and_then(|(_, q, i)| Some(self.overwritten.get_mut(&(q, me))?.remove(i)));
            if found.is_some() {
                self.accounting.overwritten_matched += count;
            } else {
                cx.fail(format!(
                    "{} reported {count} messages from {from:#} skipped (marker {seq:?}), but the publisher \
                     reported no such gap",
                    cx.who(p)
                ));
            }
        }
        for ((q, to), gaps) in &self.overwritten {
            let from = cx.procs[*q as usize].id;
            let receivers: Vec<ProcId> =
                (0..cx.procs.len()).filter(|r| cx.procs[*r].id == *to).map(|r| r as ProcId).collect();
            for (count, seq, at) in gaps {
                let crashed = |x: ProcId| cx.procs[x as usize].crashed.is_some();
                let down = self.downs(*q, *to).iter().any(|t| t >= at)
                    || receivers.iter().any(|r| self.downs(*r, from).iter().any(|t| t >= at) || crashed(*r))
                    || crashed(*q);
                if !down {
                    cx.fail(format!(
                        "{} reported {count} messages to {to:#} overwritten (marker {seq:?}) at {}, the session \
                         went on, and the receiver never reported the gap",
                        cx.who(*q),
                        fmt_time(*at)
                    ));
                }
            }
        }
    }
}
