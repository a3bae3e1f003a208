//! The speaker task's timers: a deadline per id, ordered, so the task sleeps until the
//! earliest one. Re-arming (the hold timer on every UPDATE) is two B-tree operations.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::fsm::TimerKind;

/// Which timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerId {
    /// A session FSM timer; `second` is the colliding inbound session.
    Session {
        peer: u16,
        second: bool,
        kind: TimerKind,
    },
    /// Graceful restart: the peer's Restart Time since its session went down.
    GrRestart(u16),
    /// Graceful restart: longest wait for End-of-RIB after the peer came back.
    StalePath(u16),
    /// A ROUTE-REFRESH held back by the rate limit is due.
    RouteRefresh(u16),
    /// A session reset by its import limit (action restart) starts again.
    LimitRestart(u16),
}

impl TimerId {
    pub fn peer(&self) -> u16 {
        match *self {
            TimerId::Session { peer, .. }
            | TimerId::GrRestart(peer)
            | TimerId::StalePath(peer)
            | TimerId::RouteRefresh(peer)
            | TimerId::LimitRestart(peer) => peer,
        }
    }
}

#[derive(Default)]
pub(crate) struct Timers {
    by_time: BTreeSet<(Instant, TimerId)>,
    by_id: HashMap<TimerId, Instant>,
}

impl Timers {
    pub fn arm(&mut self, id: TimerId, at: Instant) {
        if let Some(old) = self.by_id.insert(id, at) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((at, id));
    }

    pub fn cancel(&mut self, id: TimerId) {
        if let Some(old) = self.by_id.remove(&id) {
            self.by_time.remove(&(old, id));
        }
    }

    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.by_id.get(&id).copied()
    }

    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _)| *t)
    }

    pub fn pop_due(&mut self, now: Instant) -> Vec<TimerId> {
        let mut due = Vec::new();
        while let Some(&(t, id)) = self.by_time.first() {
            if t > now {
                break;
            }
            self.by_time.remove(&(t, id));
            self.by_id.remove(&id);
            due.push(id);
        }
        due
    }

    pub fn cancel_peer(&mut self, peer: u16) {
        let ids: Vec<TimerId> = self
            .by_id
            .keys()
            .filter(|id| id.peer() == peer)
            .copied()
            .collect();
        for id in ids {
            self.cancel(id);
        }
    }
}
