//! One test per FSM transition, each asserting the outputs.

use super::*;
use crate::wire::open::Capabilities;

fn cfg() -> SessionConfig {
    SessionConfig {
        local_as: 64512,
        remote_as: 65001,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry: Duration::from_secs(1),
        passive: false,
        families: vec![Afi::Ipv4, Afi::Ipv6],
        graceful_restart: Some((120, false)),
        idle_hold_min: Duration::from_secs(1),
        idle_hold_max: Duration::from_secs(8),
    }
}

fn ibgp_cfg() -> SessionConfig {
    SessionConfig {
        remote_as: 64512,
        ..cfg()
    }
}

fn peer_open(asn: u32, id: [u8; 4], hold: u16) -> Open {
    Open {
        version: 4,
        my_as: if asn > 65535 { AS_TRANS } else { asn as u16 },
        hold_time: hold,
        router_id: Ipv4Addr::from(id),
        caps: Capabilities {
            multiprotocol: vec![(1, 1)],
            route_refresh: true,
            four_octet_as: Some(asn),
            ..Capabilities::default()
        },
    }
}

fn msg(m: Message) -> Input {
    Input::Message { message: m }
}

fn timer(t: TimerKind) -> Input {
    Input::TimerExpired { timer: t }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The connection we dialled was refused.
fn refuse(s: &mut Session, now: Instant) -> Vec<Output> {
    s.handle(
        Input::TcpConnectFailed {
            error: "Connection refused".into(),
        },
        now,
    )
}

fn open_sent(c: SessionConfig) -> (Session, Instant) {
    let now = Instant::now();
    let mut s = Session::new(c);
    s.handle(Input::Start, now);
    s.handle(Input::TcpConnected { inbound: false }, now);
    assert_eq!(s.state(), State::OpenSent);
    (s, now)
}

fn open_confirm(c: SessionConfig, peer: Open) -> (Session, Instant) {
    let (mut s, now) = open_sent(c);
    s.handle(msg(Message::Open(peer)), now);
    assert_eq!(s.state(), State::OpenConfirm);
    (s, now)
}

fn established_with(peer: Open) -> (Session, Instant) {
    let (mut s, now) = open_confirm(cfg(), peer);
    s.handle(msg(Message::Keepalive), now);
    assert_eq!(s.state(), State::Established);
    (s, now)
}

fn established() -> (Session, Instant) {
    established_with(peer_open(65001, [10, 0, 0, 2], 90))
}

fn with_gr(mut o: Open) -> Open {
    o.caps.graceful_restart = Some(GracefulRestartCap {
        restart_time: 120,
        restarting: false,
        notification: false,
        families: vec![(Afi::Ipv4, true)],
    });
    o
}

fn sent_notification(out: &[Output]) -> Option<(u8, u8)> {
    out.iter().find_map(|o| match o {
        Output::Send(Outgoing::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

// ----- Idle -----

#[test]
fn start_in_idle_arms_connect_retry_connects_and_goes_connect() {
    let mut s = Session::new(cfg());
    let out = s.handle(Input::Start, Instant::now());
    assert_eq!(
        out,
        vec![
            Output::ArmTimer(TimerKind::ConnectRetry, secs(1)),
            Output::Connect
        ]
    );
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn passive_start_in_idle_waits_in_active_without_connecting() {
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let out = s.handle(Input::Start, Instant::now());
    assert!(out.is_empty());
    assert_eq!(s.state(), State::Active);
}

#[test]
fn inbound_connection_in_idle_before_start_is_refused() {
    let mut s = Session::new(cfg());
    let out = s.handle(Input::TcpConnected { inbound: true }, Instant::now());
    assert_eq!(out, vec![Output::Disconnect]);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn inbound_connection_during_the_idle_hold_back_off_is_accepted() {
    let (mut s, now) = open_sent(cfg());
    s.handle(timer(TimerKind::Hold), now);
    assert_eq!(s.state(), State::Idle);
    let out = s.handle(Input::TcpConnected { inbound: true }, now);
    assert_eq!(out[0], Output::StopTimer(TimerKind::IdleHold));
    assert!(matches!(out[2], Output::Send(Outgoing::Open(_))));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn idle_hold_expiry_after_a_failure_starts_again() {
    let (mut s, now) = established();
    s.handle(
        Input::TcpClosed {
            error: "Connection reset by peer".into(),
        },
        now,
    );
    assert_eq!(s.state(), State::Idle);
    let out = s.handle(timer(TimerKind::IdleHold), now);
    assert_eq!(
        out,
        vec![
            Output::ArmTimer(TimerKind::ConnectRetry, secs(1)),
            Output::Connect
        ]
    );
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn idle_hold_expiry_after_a_manual_stop_stays_idle() {
    let (mut s, now) = established();
    s.handle(
        Input::Stop {
            notification: Notification::admin_shutdown(None),
        },
        now,
    );
    assert!(s.handle(timer(TimerKind::IdleHold), now).is_empty());
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn stop_in_idle_cancels_the_idle_hold_timer() {
    let mut s = Session::new(cfg());
    let out = s.handle(
        Input::Stop {
            notification: Notification::admin_shutdown(None),
        },
        Instant::now(),
    );
    assert_eq!(out, vec![Output::StopTimer(TimerKind::IdleHold)]);
}

// ----- Connect -----

#[test]
fn outbound_connection_in_connect_sends_open_and_arms_the_large_hold_timer() {
    let mut s = Session::new(cfg());
    let now = Instant::now();
    s.handle(Input::Start, now);
    let out = s.handle(Input::TcpConnected { inbound: false }, now);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Output::StopTimer(TimerKind::ConnectRetry));
    let Output::Send(Outgoing::Open(p)) = &out[1] else {
        panic!("expected OPEN, got {out:?}")
    };
    assert_eq!((p.asn, p.hold_time), (64512, 9));
    assert_eq!(p.graceful_restart, Some((120, false)));
    assert_eq!(out[2], Output::ArmTimer(TimerKind::Hold, OPEN_SENT_HOLD));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn connection_refused_in_connect_goes_active_with_a_socket_error() {
    let mut s = Session::new(cfg());
    let now = Instant::now();
    s.handle(Input::Start, now);
    let out = refuse(&mut s, now);
    assert_eq!(
        out,
        vec![Output::ArmTimer(TimerKind::ConnectRetry, ms(100))]
    );
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.last_error(), Some("Socket: Connection refused"));
}

#[test]
fn refused_connections_are_redialled_quickly_then_at_the_connect_retry_pace() {
    let mut s = Session::new(cfg());
    let now = Instant::now();
    s.handle(Input::Start, now);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let out = refuse(&mut s, now);
        let [Output::ArmTimer(TimerKind::ConnectRetry, wait)] = out.as_slice() else {
            panic!("{out:?}");
        };
        waits.push(wait.as_millis());
        let redial = s.handle(timer(TimerKind::ConnectRetry), now);
        assert!(redial.contains(&Output::Connect), "{redial:?}");
    }
    // ConnectRetryTime is 1 s in cfg().
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    // Closed before the peer's OPEN counts as refused too; a peer that sent its OPEN
    // starts the count again.
    s.handle(Input::TcpConnected { inbound: false }, now);
    let out = s.handle(Input::TcpClosed { error: "x".into() }, now);
    assert!(
        out.contains(&Output::ArmTimer(TimerKind::ConnectRetry, secs(1))),
        "{out:?}"
    );
    s.handle(timer(TimerKind::ConnectRetry), now);
    s.handle(Input::TcpConnected { inbound: false }, now);
    s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 90))), now);
    assert_eq!(s.state(), State::OpenConfirm);
    s.handle(timer(TimerKind::Hold), now);
    s.handle(timer(TimerKind::IdleHold), now);
    assert_eq!(s.state(), State::Connect);
    let out = refuse(&mut s, now);
    assert_eq!(
        out,
        vec![Output::ArmTimer(TimerKind::ConnectRetry, ms(100))]
    );
}

#[test]
fn connect_retry_expiry_in_connect_restarts_the_attempt() {
    let mut s = Session::new(cfg());
    let now = Instant::now();
    s.handle(Input::Start, now);
    let out = s.handle(timer(TimerKind::ConnectRetry), now);
    assert_eq!(
        out,
        vec![
            Output::ArmTimer(TimerKind::ConnectRetry, secs(1)),
            Output::Connect
        ]
    );
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn stop_in_connect_aborts_the_attempt_and_goes_idle() {
    let mut s = Session::new(cfg());
    let now = Instant::now();
    s.handle(Input::Start, now);
    let out = s.handle(
        Input::Stop {
            notification: Notification::admin_shutdown(None),
        },
        now,
    );
    assert_eq!(
        out,
        vec![
            Output::Disconnect,
            Output::StopTimer(TimerKind::ConnectRetry)
        ]
    );
    assert_eq!(s.state(), State::Idle);
}

// ----- Active -----

#[test]
fn connect_retry_expiry_in_active_connects_again() {
    let mut s = Session::new(cfg());
    let now = Instant::now();
    s.handle(Input::Start, now);
    s.handle(Input::TcpConnectFailed { error: "x".into() }, now);
    let out = s.handle(timer(TimerKind::ConnectRetry), now);
    assert_eq!(
        out,
        vec![
            Output::ArmTimer(TimerKind::ConnectRetry, secs(1)),
            Output::Connect
        ]
    );
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn inbound_connection_in_active_sends_open_and_goes_open_sent() {
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let now = Instant::now();
    s.handle(Input::Start, now);
    let out = s.handle(Input::TcpConnected { inbound: true }, now);
    assert!(matches!(out[1], Output::Send(Outgoing::Open(_))));
    assert_eq!(s.state(), State::OpenSent);
    assert!(s.is_inbound());
}

#[test]
fn passive_peer_ignores_connect_retry_expiry_in_active() {
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let now = Instant::now();
    s.handle(Input::Start, now);
    assert!(s.handle(timer(TimerKind::ConnectRetry), now).is_empty());
    assert_eq!(s.state(), State::Active);
}

// ----- OpenSent -----

#[test]
fn valid_open_in_open_sent_sends_keepalive_and_goes_open_confirm() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 90))), now);
    assert_eq!(
        out,
        vec![
            Output::Send(Outgoing::Keepalive),
            Output::ArmTimer(TimerKind::Keepalive, secs(3)),
            Output::ArmTimer(TimerKind::Hold, secs(9)),
        ]
    );
    assert_eq!(s.state(), State::OpenConfirm);
    let n = s.negotiated().expect("negotiated");
    assert_eq!(n.families, vec![Afi::Ipv4], "only what both offered");
}

#[test]
fn hold_time_is_the_smaller_proposal_and_keepalive_at_most_a_third() {
    let (mut s, now) = open_sent(SessionConfig {
        hold_time: 90,
        keepalive_time: 30,
        ..cfg()
    });
    let out = s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 6))), now);
    assert!(out.contains(&Output::ArmTimer(TimerKind::Hold, secs(6))));
    assert!(out.contains(&Output::ArmTimer(TimerKind::Keepalive, secs(2))));
}

#[test]
fn hold_time_zero_disables_the_hold_and_keepalive_timers() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 0))), now);
    assert_eq!(
        out,
        vec![
            Output::Send(Outgoing::Keepalive),
            Output::StopTimer(TimerKind::Hold)
        ]
    );
    assert_eq!(s.negotiated().map(|n| n.hold_time), Some(0));
}

#[test]
fn open_with_the_wrong_as_sends_bad_peer_as_and_goes_idle() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(msg(Message::Open(peer_open(65099, [10, 0, 0, 2], 90))), now);
    assert_eq!(sent_notification(&out), Some((2, 2)));
    assert!(out.contains(&Output::Disconnect));
    assert!(out.contains(&Output::ArmTimer(TimerKind::IdleHold, secs(1))));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.last_error(), Some("BGP Error: Bad peer AS"));
}

#[test]
fn open_without_4_octet_as_capability_is_refused_with_unsupported_capability() {
    let (mut s, now) = open_sent(cfg());
    let mut o = peer_open(65001, [10, 0, 0, 2], 90);
    o.caps.four_octet_as = None;
    let out = s.handle(msg(Message::Open(o)), now);
    let Some(Output::Send(Outgoing::Notification(n))) = out.first() else {
        panic!("expected a NOTIFICATION: {out:?}")
    };
    assert_eq!((n.code, n.subcode), (2, 7));
    assert_eq!(&n.data[..2], &[65, 4]);
    assert_eq!(s.state(), State::Idle);
    assert!(s.last_error().is_some_and(|e| e.contains("4-octet AS")));
}

#[test]
fn open_with_hold_time_2_sends_unacceptable_hold_time() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 2))), now);
    assert_eq!(sent_notification(&out), Some((2, 6)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn ibgp_open_with_our_router_id_sends_bad_bgp_identifier() {
    let (mut s, now) = open_sent(ibgp_cfg());
    let out = s.handle(msg(Message::Open(peer_open(64512, [10, 0, 0, 1], 90))), now);
    assert_eq!(sent_notification(&out), Some((2, 3)));
    assert_eq!(s.last_error(), Some("BGP Error: Bad BGP identifier"));
}

#[test]
fn ebgp_open_with_our_router_id_is_accepted() {
    let (mut s, now) = open_sent(cfg());
    s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 1], 90))), now);
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn open_with_router_id_zero_sends_bad_bgp_identifier() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(msg(Message::Open(peer_open(65001, [0, 0, 0, 0], 90))), now);
    assert_eq!(sent_notification(&out), Some((2, 3)));
}

#[test]
fn keepalive_in_open_sent_is_an_fsm_error_in_open_sent() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(msg(Message::Keepalive), now);
    assert_eq!(sent_notification(&out), Some((5, 1)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn hold_timer_expiry_in_open_sent_sends_hold_timer_expired() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(timer(TimerKind::Hold), now);
    assert_eq!(sent_notification(&out), Some((4, 0)));
    assert!(out.contains(&Output::Disconnect));
    assert_eq!(s.last_error(), Some("BGP Error: Hold timer expired"));
}

#[test]
fn tcp_close_of_our_connection_in_open_sent_goes_active_and_redials_soon() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(
        Input::TcpClosed {
            error: "Connection reset by peer".into(),
        },
        now,
    );
    assert_eq!(
        out,
        vec![
            Output::Disconnect,
            Output::StopTimer(TimerKind::Hold),
            Output::StopTimer(TimerKind::Keepalive),
            Output::ArmTimer(TimerKind::ConnectRetry, ms(100)),
        ]
    );
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.last_error(), Some("Socket: Connection reset by peer"));
    let out = s.handle(timer(TimerKind::ConnectRetry), now);
    assert!(out.contains(&Output::Connect), "{out:?}");
}

#[test]
fn tcp_close_of_the_peers_connection_in_open_sent_goes_idle_and_backs_off() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    s.handle(Input::Start, now);
    s.handle(Input::TcpConnected { inbound: true }, now);
    assert_eq!(s.state(), State::OpenSent);
    let out = s.handle(
        Input::TcpClosed {
            error: "Connection reset by peer".into(),
        },
        now,
    );
    assert_eq!(
        out,
        vec![
            Output::Disconnect,
            Output::StopTimer(TimerKind::Hold),
            Output::StopTimer(TimerKind::Keepalive),
            Output::ArmTimer(TimerKind::IdleHold, secs(1)),
        ]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn notification_in_open_sent_goes_idle_with_the_received_text() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(
        msg(Message::Notification(Notification::open(2, vec![]))),
        now,
    );
    assert_eq!(sent_notification(&out), None);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.last_error(), Some("Received: Bad peer AS"));
}

#[test]
fn decode_error_in_open_sent_sends_that_notification() {
    let (mut s, now) = open_sent(cfg());
    let out = s.handle(
        Input::DecodeError {
            notification: Notification::new(1, 2, vec![0, 18]),
        },
        now,
    );
    assert_eq!(sent_notification(&out), Some((1, 2)));
    assert_eq!(s.state(), State::Idle);
}

// ----- OpenConfirm -----

#[test]
fn keepalive_in_open_confirm_establishes_and_restarts_hold() {
    let (mut s, now) = open_confirm(cfg(), peer_open(65001, [10, 0, 0, 2], 90));
    let out = s.handle(msg(Message::Keepalive), now);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], Output::ArmTimer(TimerKind::Hold, secs(9)));
    let Output::Established(n) = &out[1] else {
        panic!("expected Established: {out:?}")
    };
    assert_eq!((n.peer_as, n.hold_time, n.keepalive_time), (65001, 9, 3));
    assert_eq!(s.state(), State::Established);
}

#[test]
fn update_in_open_confirm_is_an_fsm_error_in_open_confirm() {
    let (mut s, now) = open_confirm(cfg(), peer_open(65001, [10, 0, 0, 2], 90));
    let out = s.handle(msg(Message::Update(Box::default())), now);
    assert_eq!(sent_notification(&out), Some((5, 2)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn keepalive_timer_in_open_confirm_sends_keepalive_and_rearms() {
    let (mut s, now) = open_confirm(cfg(), peer_open(65001, [10, 0, 0, 2], 90));
    let out = s.handle(timer(TimerKind::Keepalive), now);
    assert_eq!(
        out,
        vec![
            Output::Send(Outgoing::Keepalive),
            Output::ArmTimer(TimerKind::Keepalive, secs(3))
        ]
    );
}

#[test]
fn collision_dump_in_open_confirm_sends_cease_collision_and_goes_idle() {
    let (mut s, now) = open_confirm(cfg(), peer_open(65001, [10, 0, 0, 2], 90));
    let out = s.handle(Input::CollisionDump, now);
    assert_eq!(sent_notification(&out), Some((6, 7)));
    assert!(out.contains(&Output::Disconnect));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.last_error(), None, "a lost collision is not an error");
}

#[test]
fn hold_timer_expiry_in_open_confirm_sends_hold_timer_expired() {
    let (mut s, now) = open_confirm(cfg(), peer_open(65001, [10, 0, 0, 2], 90));
    let out = s.handle(timer(TimerKind::Hold), now);
    assert_eq!(sent_notification(&out), Some((4, 0)));
    assert_eq!(s.state(), State::Idle);
}

// ----- Established -----

#[test]
fn update_in_established_goes_to_the_rib_and_restarts_hold() {
    let (mut s, now) = established();
    let out = s.handle(msg(Message::Update(Box::default())), now);
    assert_eq!(
        out,
        vec![
            Output::ArmTimer(TimerKind::Hold, secs(9)),
            Output::Update(Box::default())
        ]
    );
}

#[test]
fn keepalive_in_established_restarts_hold() {
    let (mut s, now) = established();
    let out = s.handle(msg(Message::Keepalive), now);
    assert_eq!(out, vec![Output::ArmTimer(TimerKind::Hold, secs(9))]);
}

#[test]
fn keepalive_timer_in_established_sends_keepalive_and_rearms() {
    let (mut s, now) = established();
    let out = s.handle(timer(TimerKind::Keepalive), now);
    assert_eq!(
        out,
        vec![
            Output::Send(Outgoing::Keepalive),
            Output::ArmTimer(TimerKind::Keepalive, secs(3))
        ]
    );
}

#[test]
fn hold_timer_expiry_in_established_sends_4_0_and_reports_down() {
    let (mut s, now) = established();
    let out = s.handle(timer(TimerKind::Hold), now);
    assert_eq!(sent_notification(&out), Some((4, 0)));
    let down = out.iter().find_map(|o| match o {
        Output::Down(d) => Some(d.clone()),
        _ => None,
    });
    let down = down.expect("down reported");
    assert_eq!(down.reason, "BGP Error: Hold timer expired");
    assert!(!down.graceful, "peer has no graceful restart");
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn hold_timer_expiry_with_a_graceful_restart_peer_is_a_graceful_down() {
    let (mut s, now) = established_with(with_gr(peer_open(65001, [10, 0, 0, 2], 90)));
    let out = s.handle(timer(TimerKind::Hold), now);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Down(d) if d.graceful))
    );
}

#[test]
fn tcp_close_in_established_with_a_graceful_restart_peer_is_a_graceful_down() {
    let (mut s, now) = established_with(with_gr(peer_open(65001, [10, 0, 0, 2], 90)));
    let out = s.handle(
        Input::TcpClosed {
            error: "Connection reset by peer".into(),
        },
        now,
    );
    assert_eq!(
        out[..4],
        [
            Output::Disconnect,
            Output::StopTimer(TimerKind::Hold),
            Output::StopTimer(TimerKind::Keepalive),
            Output::Down(DownInfo {
                reason: "Socket: Connection reset by peer".into(),
                notification: None,
                graceful: true
            }),
        ]
    );
    assert_eq!(out[4], Output::ArmTimer(TimerKind::IdleHold, secs(1)));
}

#[test]
fn notification_in_established_reports_a_non_graceful_down() {
    let (mut s, now) = established_with(with_gr(peer_open(65001, [10, 0, 0, 2], 90)));
    let n = Notification::admin_shutdown(Some("bye"));
    let out = s.handle(msg(Message::Notification(n.clone())), now);
    assert!(out.contains(&Output::Down(DownInfo {
        reason: "Received: Administrative shutdown: \"bye\"".into(),
        notification: Some(n),
        graceful: false,
    })));
    assert_eq!(sent_notification(&out), None);
}

#[test]
fn open_in_established_is_an_fsm_error_in_established() {
    let (mut s, now) = established();
    let out = s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 90))), now);
    assert_eq!(sent_notification(&out), Some((5, 3)));
    assert!(out.iter().any(|o| matches!(o, Output::Down(_))));
}

#[test]
fn decode_error_in_established_sends_that_notification_and_reports_down() {
    let (mut s, now) = established();
    let out = s.handle(
        Input::DecodeError {
            notification: Notification::update(10, vec![]),
        },
        now,
    );
    assert_eq!(sent_notification(&out), Some((3, 10)));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Down(d) if !d.graceful))
    );
}

#[test]
fn stop_in_established_sends_admin_shutdown_with_its_text_and_does_not_restart() {
    let (mut s, now) = established();
    let out = s.handle(
        Input::Stop {
            notification: Notification::admin_shutdown(Some("maintenance")),
        },
        now,
    );
    let Some(Output::Send(Outgoing::Notification(n))) = out.first() else {
        panic!("expected a NOTIFICATION: {out:?}")
    };
    assert_eq!(n.shutdown_message().as_deref(), Some("maintenance"));
    assert!(out.contains(&Output::Disconnect));
    assert!(!out.iter().any(|o| matches!(o, Output::ArmTimer(..))));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn route_refresh_for_a_negotiated_family_asks_for_our_routes_again() {
    let (mut s, now) = established();
    let out = s.handle(
        msg(Message::RouteRefresh {
            afi: Some(Afi::Ipv4),
        }),
        now,
    );
    assert_eq!(
        out,
        vec![
            Output::ArmTimer(TimerKind::Hold, secs(9)),
            Output::RouteRefresh(Afi::Ipv4)
        ]
    );
    let out = s.handle(
        msg(Message::RouteRefresh {
            afi: Some(Afi::Ipv6),
        }),
        now,
    );
    assert_eq!(out, vec![Output::ArmTimer(TimerKind::Hold, secs(9))]);
}

#[test]
fn second_connection_while_established_is_left_to_the_owner() {
    let (mut s, now) = established();
    assert!(
        s.handle(Input::TcpConnected { inbound: true }, now)
            .is_empty()
    );
    assert_eq!(s.state(), State::Established);
}

// ----- back-off and collisions -----

#[test]
fn repeated_failures_double_the_idle_hold_up_to_the_max() {
    let (mut s, now) = open_sent(cfg());
    let mut holds = Vec::new();
    for _ in 0..6 {
        let out = s.handle(timer(TimerKind::Hold), now);
        holds.extend(out.iter().filter_map(|o| match o {
            Output::ArmTimer(TimerKind::IdleHold, d) => Some(d.as_secs()),
            _ => None,
        }));
        s.handle(timer(TimerKind::IdleHold), now);
        s.handle(Input::TcpConnected { inbound: false }, now);
    }
    assert_eq!(holds, vec![1, 2, 4, 8, 8, 8]);
}

#[test]
fn a_session_established_longer_than_the_max_back_off_resets_it() {
    let (mut s, now) = open_sent(cfg());
    for _ in 0..3 {
        s.handle(timer(TimerKind::Hold), now);
        s.handle(timer(TimerKind::IdleHold), now);
        s.handle(Input::TcpConnected { inbound: false }, now);
    }
    assert_eq!(s.failures(), 3);
    s.handle(msg(Message::Open(peer_open(65001, [10, 0, 0, 2], 90))), now);
    s.handle(msg(Message::Keepalive), now);
    let later = now + secs(60);
    let out = s.handle(timer(TimerKind::Hold), later);
    assert!(out.contains(&Output::ArmTimer(TimerKind::IdleHold, secs(1))));
}

#[test]
fn inputs_and_outputs_serialise_for_replay() {
    let (mut s, now) = established();
    let out = s.handle(timer(TimerKind::Keepalive), now);
    let json = serde_json::to_string(&out).expect("serialises");
    let back: Vec<Output> = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, out);
}
