//! Sessions that outlive connections, as the node runs them (see
//! [`crate::resume`]): the session part of Hellos, the resume decision,
//! suspension, resume, expiry and the end of a session with its report.

use super::Node;
use crate::event::{CloseReason, Event, PeerInfo};
use crate::id::{ConnId, NodeId};
use crate::resume::{LossReason, SessionEvent};
use crate::session::Phase;
use crate::time::Timestamp;
use crate::wire::{Capabilities, HelloSession, ResumeClaim};

/// What a peer's Hello means for the session with it.
#[derive(Debug)]
pub(super) enum Decision {
    /// Both ends hold this session: resume it; the peer expects this next.
    Resume { their_next: u64 },
    /// The session held with the peer cannot resume: it ends first.
    EndOld(LossReason),
    /// No session to resume or end: as without resumption.
    Normal,
    /// The Hellos cannot tell whether the peer holds the suspended session:
    /// the dialer claimed a session with another incarnation of the
    /// acceptor (its address now reaches a new process of the peer's, or
    /// another node). This connection closes and the session stays
    /// suspended; the dialer, which now knows whom the address reaches,
    /// dials again with the right claim.
    Inconclusive,
}

/// How many peers' unknown claims are remembered (then they are forgotten
/// all at once: a stale connection is then taken as a simultaneous dial, as
/// before the claims were remembered).
const MAX_UNKNOWN_CLAIMS: usize = 1024;

impl Node {
    /// True if `conn`, whose Hello from `id` was just read, began the
    /// session `id` claimed on a later connection and this node did not
    /// hold: the peer has moved on from it (this node answered that claim
    /// with a new session), so what it carries belongs to no session here.
    /// It arrives only now when this node was slow to read it (paused).
    pub(super) fn began_unknown_claim(&self, conn: ConnId, id: NodeId) -> bool {
        let sid = self.session.conns.get(&conn).map_or(0, |c| c.new_sid());
        sid != 0 && self.unknown_claims.get(&id) == Some(&sid) && self.session_live(id)
    }

    /// True if this node announces `RESUME`.
    pub(super) fn resumption(&self) -> bool {
        self.me.caps.contains(Capabilities::RESUME)
    }

    /// The session part of this node's Hello on `conn`. A dialer claims the
    /// session it holds with the peer its target reached last; an acceptor
    /// sends its Hello only after the dialer's, claiming the session the
    /// dialer claimed if it holds it too (so both ends decide alike).
    pub(super) fn hello_session(&mut self, conn: ConnId) -> Option<HelloSession> {
        if !self.resumption() {
            return None;
        }
        let nonce = self.rng.next_u64() | 1;
        let c = self.session.conns.get_mut(&conn)?;
        if c.nonce == 0 {
            c.nonce = nonce;
        }
        if let (Some(t), None) = (c.target, c.claim) {
            let listening_there = |(p, l): (&NodeId, &(String, u16))| {
                self.dialer.addr(t).is_some_and(|a| a.host == l.0 && a.port == l.1).then_some(*p)
            };
            // The peer the target reached last, if a session with it is
            // held; else a peer holding a session that announced it listens
            // there (the process at the address may have changed).
            let held = |p: &NodeId| self.session.peers.get(p).is_some_and(|e| e.sid != 0);
            let peer = self
                .target_peers
                .get(&t)
                .copied()
                .filter(held)
                .or_else(|| self.peer_listen.iter().filter(|(p, _)| held(p)).find_map(listening_there));
            // A dial that opened before the session it finds live began was
            // not made to resume it: both ends dialed at once. Were it
            // claimed, a peer that reads this Hello before the one this node
            // sent on the session's own connection (a paused reader) holds
            // no such session yet: it would begin a new one here, then close
            // the session's connection as belonging to a session left behind
            // (`began_unknown_claim`), losing what was sent on it. Unclaimed,
            // the two connections open side by side and the ids are settled
            // (`settle_session_id`). A later dial claims a live session: the
            // peer may have lost it before this node noticed; so does one
            // crossing a resume (the peer claims the session on both
            // connections, and resumes it on whichever it reads first).
            let opened_at = c.opened_at;
            let crossed = |e: &crate::session::PeerEntry| {
                e.suspended.is_none()
                    && e.resumed_at.is_none()
                    && self.session.conns.get(&e.primary).is_some_and(|p| opened_at <= p.hello_at)
            };
            let entry = peer.and_then(|p| self.session.peers.get(&p)).filter(|e| e.sid != 0 && !crossed(e));
            if let (Some(p), Some(e)) = (peer, entry) {
                let claim = ResumeClaim {
                    your_incarnation: e.inc,
                    session: e.sid,
                    next_expected: self.pubsub.next_expected(p),
                };
                let c = self.session.conns.get_mut(&conn)?;
                c.claim = Some((p, claim));
            }
        }
        let c = self.session.conns.get(&conn)?;
        Some(HelloSession { incarnation: self.session.incarnation, nonce: c.nonce, resume: c.claim.map(|(_, x)| x) })
    }

    /// Decides, on the peer's Hello, whether the session with `id` resumes
    /// on `conn`. Both ends apply the same rule to the same two Hellos:
    /// resume iff each Hello claims the same session, naming the other's
    /// incarnation. An acceptor's claim (its Hello follows) is made here.
    pub(super) fn resume_decision(&mut self, conn: ConnId, id: NodeId, theirs: Option<HelloSession>) -> Decision {
        let nonce = self.rng.next_u64() | 1;
        let entry = self.session.peers.get(&id).map(|e| (e.inc, e.sid, e.suspended.is_some()));
        let Some(c) = self.session.conns.get_mut(&conn) else { return Decision::Normal };
        if c.nonce == 0 {
            c.nonce = nonce;
        }
        let Some(theirs) = theirs.filter(|_| self.me.caps.contains(Capabilities::RESUME)) else {
            // The peer does not resume (an older build, or resumption off).
            return match entry {
                Some((_, sid, true)) if sid != 0 => Decision::EndOld(LossReason::NotResumed),
                _ => Decision::Normal,
            };
        };
        c.peer_inc = theirs.incarnation;
        c.peer_nonce = theirs.nonce;
        let accepted = c.target.is_none();
        if accepted {
            // Claim what the dialer claims, if this node holds it too.
            let holds = |t: &ResumeClaim| self.holds_claim(id, theirs.incarnation, t);
            let mine = theirs.resume.filter(holds).map(|t| ResumeClaim {
                your_incarnation: theirs.incarnation,
                session: t.session,
                next_expected: 0,
            });
            let c = self.session.conns.get_mut(&conn).expect("present above");
            c.claim = mine.map(|m| (id, ResumeClaim { next_expected: self.pubsub.next_expected(id), ..m }));
            c.control.hello = true;
            self.session.ready.insert(conn);
        }
        let c = self.session.conns.get(&conn).expect("present above");
        // Both ends see the dialer's claim and the acceptor's incarnation.
        let (dialer_claim, acceptor_inc) = match accepted {
            true => (theirs.resume, self.session.incarnation),
            false => (c.claim.map(|(_, x)| x), theirs.incarnation),
        };
        let misdirected = dialer_claim.is_some_and(|d| d.your_incarnation != acceptor_inc);
        if misdirected && matches!(entry, Some((inc, sid, true)) if sid != 0 && inc == theirs.incarnation) {
            return Decision::Inconclusive;
        }
        let mine = c.claim.filter(|(p, _)| *p == id).map(|(_, m)| m);
        if let (Some(m), Some(t)) = (mine, theirs.resume) {
            if m.session == t.session && self.holds_claim(id, theirs.incarnation, &t) {
                return Decision::Resume { their_next: t.next_expected };
            }
        }
        if let Some(t) = theirs.resume {
            if t.your_incarnation == self.session.incarnation && !self.holds_claim(id, theirs.incarnation, &t) {
                if self.unknown_claims.len() >= MAX_UNKNOWN_CLAIMS {
                    self.unknown_claims.clear();
                }
                self.unknown_claims.insert(id, t.session);
            }
        }
        match entry {
            Some((inc, sid, _)) if sid != 0 && inc != theirs.incarnation => Decision::EndOld(LossReason::PeerRestarted),
            Some((_, sid, true)) if sid != 0 => Decision::EndOld(LossReason::NotResumed),
            _ => Decision::Normal,
        }
    }

    /// True if `claim`, in a Hello of peer `id` running incarnation
    /// `their_inc`, names this node's incarnation and the session this node
    /// holds with that incarnation of the peer.
    pub(super) fn holds_claim(&self, id: NodeId, their_inc: u64, claim: &ResumeClaim) -> bool {
        claim.your_incarnation == self.session.incarnation
            && self.session.peers.get(&id).is_some_and(|e| e.sid != 0 && e.sid == claim.session && e.inc == their_inc)
    }

    /// True if losing `conn` suspends `peer`'s session instead of ending it.
    pub(super) fn may_suspend(&self, peer: NodeId, conn: ConnId, reason: &CloseReason) -> bool {
        let lost = matches!(
            reason,
            CloseReason::Io(_)
                | CloseReason::LivenessTimeout
                | CloseReason::Duplicate
                | CloseReason::Protocol(crate::event::ProtocolError::DecryptFailed(_))
        );
        lost && !self.closing
            && self
                .session
                .peers
                .get(&peer)
                .is_some_and(|e| e.sid != 0 && e.suspended.is_none() && e.conns.contains(&conn))
    }

    /// `conn` carrying `info`'s session was lost: the session is suspended.
    /// Returns its other connections (they close without ending it).
    pub(super) fn suspend_session(&mut self, info: &PeerInfo, conn: ConnId, reason: CloseReason) -> Vec<ConnId> {
        let until = self.now + self.cfg.session.resume_window;
        let Some(others) = self.session.suspend(info.id, conn, until) else { return Vec::new() };
        self.session_stats.suspended += 1;
        self.pubsub.suspend(info.id);
        self.planes_suspend(info.id);
        self.events.push(Event::Session(SessionEvent::Suspended { peer: info.clone(), reason }));
        self.unpark_targets(info.id);
        others
    }

    /// The session with `peer` was lost: targets parked on it dial again.
    pub(super) fn unpark_targets(&mut self, peer: NodeId) {
        for (t, _) in self.target_peers.iter().filter(|(_, p)| **p == peer) {
            self.dialer.unpark(*t, self.now, &mut self.rng);
        }
    }

    /// The session with `peer` is suspended. Streams whose frames are
    /// logged wait for the resume; transfers pause (they resume from the
    /// receiver's offset when the peer is back, or fail after
    /// `peer_timeout`); membership waits for the peer's next Join (its
    /// lease decides).
    fn planes_suspend(&mut self, peer: NodeId) {
        self.streams.on_suspend(peer, &mut self.events);
        self.planes_gone(peer);
    }

    /// The session with `peer` ended while connected: every plane forgets
    /// the peer.
    fn planes_down(&mut self, peer: NodeId) {
        self.streams.on_peer_down(peer, &mut self.events);
        self.planes_gone(peer);
    }

    /// What suspending and ending a session do alike to the planes other
    /// than pub/sub and streams.
    fn planes_gone(&mut self, peer: NodeId) {
        self.membership.on_peer_down(peer);
        self.wake_pubsub_conns();
        self.discovery_touch();
        self.transfer.on_peer_down(peer, self.now);
    }

    /// The session with `info` ended: `PeerDown`, the report of what may be
    /// lost (with sequence numbers), and every plane forgets the peer
    /// (`suspended`: all but the streams did when it was suspended).
    pub(super) fn session_ended(&mut self, info: &PeerInfo, reason: CloseReason, loss: LossReason, suspended: bool) {
        let report = self.pubsub.end_session(info.id, &mut self.events);
        let resumable = self.pubsub.is_resumable(info.id);
        self.events.push(Event::PeerDown { peer: info.clone(), reason });
        if resumable {
            self.events.push(Event::Session(SessionEvent::Ended {
                peer: info.clone(),
                reason: loss,
                unacked: report.unacked,
                unsent: report.unsent,
                received: report.received,
            }));
        }
        self.pubsub.on_peer_down(info.id, &mut self.events);
        self.peer_listen.remove(&info.id);
        match suspended {
            true => self.streams.on_peer_down(info.id, &mut self.events),
            false => self.planes_down(info.id),
        }
        self.unpark_targets(info.id);
    }

    /// A suspended session with `id` ends without resuming.
    pub(super) fn end_suspended(&mut self, id: NodeId, loss: LossReason) {
        let Some(e) = self.session.forget(id) else { return };
        self.session_stats.not_resumed += 1;
        let suspended = e.suspended.is_some();
        if !suspended {
            // A live session (the peer restarted): its connections close.
            for c in e.conns {
                self.remove_conn(c, CloseReason::Duplicate);
            }
        }
        self.session_ended(&e.info, CloseReason::Session(loss), loss, suspended);
    }

    /// Resume windows that passed.
    pub(super) fn expire_sessions(&mut self, now: Timestamp) {
        while let Some(id) = self.session.expiry.pop_due(now) {
            // Not while a connection's Hello claims it: the peer may be
            // resuming it right now.
            let claimed = self.session.conns.values().any(|c| !c.is_open() && c.claim.is_some_and(|(p, _)| p == id));
            if claimed {
                self.session.expiry.set(id, now + self.cfg.session.handshake_timeout);
                continue;
            }
            self.end_suspended(id, LossReason::Expired);
        }
    }

    /// The session with `info` resumes on `conn` (already open in the
    /// session table); the peer expects message `their_next` next.
    pub(super) fn resume_session(&mut self, conn: ConnId, info: &PeerInfo, their_next: u64) {
        let live =
            self.session.peers.get(&info.id).filter(|e| e.suspended.is_none()).map(|e| (e.primary, e.resumed_at));
        if let Some((current, resumed_at)) = live {
            // Both ends dialed at once: each resumes on the connection whose
            // Hello it read first, then reads the other's. Both must keep
            // the same one, or each closes the other's and the cycle repeats:
            // a second resume within a handshake time of the first keeps
            // whichever connection ranks higher (`resume_rank`).
            let recent = resumed_at.is_some_and(|t| self.now < t + self.cfg.session.handshake_timeout);
            if recent && self.resume_rank(current, info.id) > self.resume_rank(conn, info.id) {
                if let Some(e) = self.session.peers.get_mut(&info.id) {
                    e.conns.remove(&conn);
                }
                self.remove_conn(conn, CloseReason::Duplicate);
                return;
            }
            // The peer lost the connection before this node noticed.
            let old: Vec<ConnId> = self
                .session
                .peers
                .get(&info.id)
                .map(|e| e.conns.iter().copied().filter(|c| *c != conn).collect())
                .unwrap_or_default();
            self.pubsub.suspend(info.id);
            self.planes_suspend(info.id);
            // `conn` alone first, so closing the old ones does not end it.
            self.session.resume_on(info.id, conn, self.now);
            for o in old {
                self.remove_conn(o, CloseReason::Duplicate);
            }
        } else {
            self.session.resume_on(info.id, conn, self.now);
        }
        let resent = match self.pubsub.resume(info, conn, their_next, &mut self.events) {
            Ok(n) => n,
            Err(e) => {
                self.violation(conn, e);
                return;
            }
        };
        self.session_stats.resumed += 1;
        self.events.push(Event::Session(SessionEvent::Resumed { peer: info.clone(), resent }));
        self.planes_up(conn, info);
    }

    /// The capabilities both ends of open `conn` announced (`NONE` if it is
    /// not open).
    pub(super) fn open_caps(&self, conn: ConnId) -> Capabilities {
        match self.session.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Open(o)) => o.caps,
            _ => Capabilities::NONE,
        }
    }

    /// How `conn` to `peer` ranks among concurrent resumes, alike at both
    /// ends: a connection the larger id dialed first, then the dialer's
    /// Hello nonce (both ends know both nonces).
    fn resume_rank(&self, conn: ConnId, peer: NodeId) -> (bool, u64) {
        let Some(c) = self.session.conns.get(&conn) else { return (false, 0) };
        let dialed = c.target.is_some();
        (dialed == (self.me.id > peer), if dialed { c.nonce } else { c.peer_nonce })
    }

    /// The planes other than pub/sub start with the peer on `conn` (a new
    /// session, or again after a resume).
    pub(super) fn planes_up(&mut self, conn: ConnId, info: &PeerInfo) {
        let caps = self.open_caps(conn);
        if caps.contains(Capabilities::STREAMS) {
            let logged = caps.contains(Capabilities::STREAM_RESUME) && self.pubsub.is_resumable(info.id);
            self.streams.on_peer_up(info, conn, logged, self.now);
        }
        self.discovery_touch();
        self.transfer.on_peer_up(info, conn, caps.contains(Capabilities::TRANSFER));
        self.transfer_wake();
        self.wake_pubsub_conns();
        self.session.ready.insert(conn);
    }

    /// A goodbye from `info` on `conn`, the connection of its session: the
    /// session ends now; the last ack (if owed) and a goodbye answer it, so
    /// the peer knows what this node took. Returns false if there is no ack
    /// to send (the caller closes the connection at once).
    pub(super) fn answer_goodbye(&mut self, conn: ConnId, info: &PeerInfo, reason: CloseReason) -> bool {
        let Some(next) = self.pubsub.final_ack(info.id) else { return false };
        if !self.session.peers.get(&info.id).is_some_and(|e| e.conns.contains(&conn)) {
            return false;
        }
        let others = self.session.detach(info.id, conn).unwrap_or_default();
        self.session_ended(info, reason.clone(), LossReason::Closed, false);
        if let Some(c) = self.session.conns.get_mut(&conn) {
            c.final_ack = Some(next);
            c.control.heartbeat = false;
            c.control.goodbye = true;
            c.closing = Some(crate::session::Closing::Goodbye(reason.clone()));
            c.rx.clear();
            self.session.ready.insert(conn);
        }
        for o in others {
            self.remove_conn(o, reason.clone());
        }
        true
    }
}
