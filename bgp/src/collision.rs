//! What to do when a peer has two connections at once: RFC 4271 §6.8 connection collisions,
//! and RFC 4724 §4.2's "a new connection from an Established graceful-restart peer means
//! it restarted". One pure decision, taken by the speaker after every input to either
//! session; the speaker carries it out.
//!
//! The rule that keeps the two ends agreeing: an Established connection is never given up
//! for one that is not, except when the peer has evidently restarted. The second
//! (inbound) connection may reach Established while the main one still waits for the
//! peer's OPEN (OpenSent, where §6.8 cannot decide): it then wins, exactly as the peer,
//! which sees that connection Established too, will decide.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::fsm::State;

/// A new connection arriving sooner than this after the main one came up is taken for a
/// collision (both ends dialled at once), not for a restarted peer: no speaker restarts
/// and reconnects within a second of opening a session, while colliding OPENs arrive
/// within a round trip.
pub const RESTART_DETECTION_AFTER: Duration = Duration::from_secs(1);

/// The two sessions of one peer, as far as the decision needs them.
#[derive(Debug, Clone, Copy)]
pub struct Sessions {
    pub main: State,
    /// The main connection was opened by the peer.
    pub main_inbound: bool,
    /// How long the main session has been Established.
    pub main_up_for: Option<Duration>,
    /// The peer announced graceful restart on the main session.
    pub main_peer_gr: bool,
    /// The second, inbound, connection's session.
    pub second: State,
    /// The BGP Identifier in the OPEN received on the second connection.
    pub second_remote_id: Option<Ipv4Addr>,
    pub local_id: Ipv4Addr,
}

/// What the speaker does with the two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing yet: the next message on either connection settles it.
    Wait,
    /// The main session has no connection: the second one takes its place.
    Promote,
    /// The main connection stays; the second one gets Cease / collision resolution.
    KeepMain,
    /// The second connection stays; the main one gets Cease / collision resolution.
    KeepSecond,
    /// The peer restarted (RFC 4724 §4.2): the main session ends as if its connection had
    /// been lost (its routes kept as stale), the second one takes its place.
    PeerRestarted,
}

/// RFC 4271 §6.8: with both connections' OPENs known, the connection initiated by the
/// speaker with the higher BGP Identifier survives. Returns true when the inbound
/// connection (initiated by the peer) is kept.
pub fn collision_keeps_inbound(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) < u32::from(remote_id)
}

/// The decision for the current states of the two sessions.
pub fn decide(s: &Sessions) -> Verdict {
    match (s.main, s.second) {
        // An Idle second session is dropped by the owner.
        (_, State::Idle) => Verdict::Wait,
        (State::Idle | State::Connect | State::Active, _) => Verdict::Promote,
        (State::Established, State::OpenConfirm) => {
            let settled = s.main_up_for.is_some_and(|d| d >= RESTART_DETECTION_AFTER);
            if s.main_peer_gr && settled {
                Verdict::PeerRestarted
            } else {
                Verdict::KeepMain
            }
        }
        // Cannot happen (the second is settled at OpenConfirm); the older one stays.
        (State::Established, State::Established) => Verdict::KeepMain,
        (State::Established, _) => Verdict::Wait,
        (_, State::Established) => Verdict::KeepSecond,
        (State::OpenConfirm, State::OpenConfirm) => {
            let Some(remote) = s.second_remote_id else {
                return Verdict::Wait;
            };
            // Two inbound connections: the newer replaces the older.
            if s.main_inbound || collision_keeps_inbound(s.local_id, remote) {
                Verdict::KeepSecond
            } else {
                Verdict::KeepMain
            }
        }
        // OpenSent: the peer's identifier on the main connection is not known yet.
        _ => Verdict::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const HIGH: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn sessions(main: State, second: State) -> Sessions {
        Sessions {
            main,
            main_inbound: false,
            main_up_for: None,
            main_peer_gr: true,
            second,
            second_remote_id: Some(HIGH),
            local_id: LOW,
        }
    }

    #[test]
    fn the_connection_opened_by_the_higher_router_id_survives() {
        assert!(collision_keeps_inbound(LOW, HIGH));
        assert!(!collision_keeps_inbound(HIGH, LOW));
        let mut s = sessions(State::OpenConfirm, State::OpenConfirm);
        assert_eq!(decide(&s), Verdict::KeepSecond);
        s.local_id = Ipv4Addr::new(10, 0, 0, 3);
        assert_eq!(decide(&s), Verdict::KeepMain);
        s.main_inbound = true;
        assert_eq!(
            decide(&s),
            Verdict::KeepSecond,
            "newer inbound replaces older"
        );
    }

    #[test]
    fn a_second_connection_established_first_wins_over_one_still_in_open_sent() {
        // The peer saw this connection Established too: keeping the other one would make
        // each end close the connection the other kept.
        assert_eq!(
            decide(&sessions(State::OpenSent, State::OpenConfirm)),
            Verdict::Wait
        );
        assert_eq!(
            decide(&sessions(State::OpenSent, State::Established)),
            Verdict::KeepSecond
        );
        assert_eq!(
            decide(&sessions(State::OpenConfirm, State::Established)),
            Verdict::KeepSecond
        );
    }

    #[test]
    fn an_established_session_stays_against_a_colliding_connection() {
        let mut s = sessions(State::Established, State::OpenConfirm);
        s.main_up_for = Some(Duration::from_millis(5));
        assert_eq!(decide(&s), Verdict::KeepMain, "collision, not a restart");
        s.main_up_for = Some(RESTART_DETECTION_AFTER);
        s.main_peer_gr = false;
        assert_eq!(decide(&s), Verdict::KeepMain, "no graceful restart");
        assert_eq!(
            decide(&sessions(State::Established, State::OpenSent)),
            Verdict::Wait
        );
    }

    #[test]
    fn a_graceful_restart_peer_reconnecting_to_a_settled_session_has_restarted() {
        let mut s = sessions(State::Established, State::OpenConfirm);
        s.main_up_for = Some(Duration::from_secs(30));
        assert_eq!(decide(&s), Verdict::PeerRestarted);
    }

    #[test]
    fn a_main_session_without_a_connection_hands_over() {
        for main in [State::Idle, State::Connect, State::Active] {
            assert_eq!(decide(&sessions(main, State::OpenSent)), Verdict::Promote);
        }
        assert_eq!(
            decide(&sessions(State::Established, State::Idle)),
            Verdict::Wait
        );
    }
}
