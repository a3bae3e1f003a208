//! The BGP session finite state machine (RFC 4271 §8), sans-IO.
//!
//! [`Session::handle`] takes one [`Input`] (an RFC 4271 §8.1 event: start/stop, TCP
//! connected/failed/closed, a timer, a decoded message) and the current time, and returns the
//! [`Output`]s the caller must carry out: open or close a TCP connection, send a message, arm
//! or stop a timer, hand an UPDATE to the RIB, report the session up or down. It never
//! touches a socket or a clock; the speaker task (`speaker::task`) owns those and translates.
//!
//! One `Session` drives one peer through one connection at a time. Connection collisions
//! (§6.8) are detected by the owner, which runs a second `Session` for the colliding inbound
//! connection and feeds the loser [`Input::CollisionDump`]; [`crate::collision`] decides.
//!
//! Beyond the base FSM: DampPeerOscillations-style back-off (the IdleHoldTimer doubles after
//! each consecutive failure, from `idle_hold_min` to `idle_hold_max`), 4-octet AS required of
//! the peer (RFC 6793; refused with 2/7 Unsupported Capability), and BIRD-style error texts
//! for status tables.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::prefix::Afi;
use crate::wire::notification::{code, subcode};
use crate::wire::open::{AS_TRANS, GracefulRestartCap, cap};
use crate::wire::{Message, Notification, Open, OpenParams, Update};

/// The large hold time used in OpenSent (RFC 4271 §8.2.2: "suggested value 4 minutes").
pub const OPEN_SENT_HOLD: Duration = Duration::from_secs(240);

/// The first re-dial after a refused connection ([`Session::redial_after_refusal`]).
const REDIAL_FIRST: Duration = Duration::from_millis(100);

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Idle: refuses connections; waits for Start (or the IdleHoldTimer after an error).
    Idle,
    /// Connect: waiting for an outbound TCP connection to complete.
    Connect,
    /// Active: listening for the peer's connection (passive, or after a failed connect).
    Active,
    /// OpenSent: our OPEN is out, waiting for the peer's.
    OpenSent,
    /// OpenConfirm: OPENs exchanged, waiting for a KEEPALIVE.
    OpenConfirm,
    /// Established: UPDATEs flow.
    Established,
}

impl State {
    /// The name BIRD prints ("Established", "Active"...).
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// The session timers (RFC 4271 §8.1.3, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimerKind {
    /// ConnectRetryTimer (event 9: ConnectRetryTimer_Expires).
    ConnectRetry,
    /// HoldTimer (event 10: HoldTimer_Expires).
    Hold,
    /// KeepaliveTimer (event 11: KeepaliveTimer_Expires).
    Keepalive,
    /// IdleHoldTimer (event 13: IdleHoldTimer_Expires; DampPeerOscillations back-off).
    IdleHold,
}

/// What the session is configured with (a projection of [`crate::PeerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Our AS on this session.
    pub local_as: u32,
    /// The AS the peer must announce.
    pub remote_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time (0 = no keepalives, else at least 3).
    pub hold_time: u16,
    /// Keepalive interval wanted (capped at a third of the negotiated hold time).
    pub keepalive_time: u16,
    /// ConnectRetryTime.
    pub connect_retry: Duration,
    /// Never connect out; wait for the peer.
    pub passive: bool,
    /// Families we offer.
    pub families: Vec<Afi>,
    /// Our graceful-restart capability: (restart time, R bit), or none.
    pub graceful_restart: Option<(u16, bool)>,
    /// First IdleHoldTime after a failure.
    pub idle_hold_min: Duration,
    /// Longest IdleHoldTime after repeated failures.
    pub idle_hold_max: Duration,
}

/// What was agreed in the OPEN exchange, handed to the RIB with [`Output::Established`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    /// Peer AS (4-octet).
    pub peer_as: u32,
    /// Peer BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// Negotiated hold time (seconds; 0 = none).
    pub hold_time: u16,
    /// Keepalive interval in use (seconds; 0 = none).
    pub keepalive_time: u16,
    /// Families both sides offered.
    pub families: Vec<Afi>,
    /// The peer accepts ROUTE-REFRESH.
    pub route_refresh: bool,
    /// The peer's graceful-restart capability.
    pub peer_graceful_restart: Option<GracefulRestartCap>,
    /// We advertised graceful restart.
    pub local_graceful_restart: bool,
    /// The connection was opened by the peer.
    pub inbound: bool,
}

/// A message the session wants sent (the owner encodes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing {
    /// Our OPEN.
    Open(OpenParams),
    /// KEEPALIVE.
    Keepalive,
    /// NOTIFICATION.
    Notification(Notification),
}

/// Why an Established session went down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownInfo {
    /// Human text, BIRD style ("BGP Error: Hold timer expired").
    pub reason: String,
    /// The NOTIFICATION sent or received, if any.
    pub notification: Option<Notification>,
    /// The graceful-restart helper applies (RFC 4724 §4.2): the peer advertised GR and the
    /// session ended by TCP failure or hold timer expiry, so its routes are kept as stale.
    pub graceful: bool,
}

/// Inputs: the RFC 4271 §8.1 events this speaker uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Input {
    /// Events 1 / 3 / 4 / 5: ManualStart, AutomaticStart (passive variants by config).
    Start,
    /// Event 2: ManualStop, with the Cease NOTIFICATION to send (Administrative Shutdown
    /// with RFC 8203 text, Peer De-configured, Other Configuration Change...).
    Stop {
        /// Sent if a connection is open.
        notification: Notification,
    },
    /// Events 16 / 17: Tcp_CR_Acked (outbound) / TcpConnectionConfirmed (inbound).
    TcpConnected {
        /// The peer opened it.
        inbound: bool,
    },
    /// Event 18: TcpConnectionFails while connecting.
    TcpConnectFailed {
        /// OS error text ("Connection refused").
        error: String,
    },
    /// Event 18 on an open connection: closed or reset by the peer, or an I/O error.
    TcpClosed {
        /// OS error text ("Connection reset by peer").
        error: String,
    },
    /// Events 9–13.
    TimerExpired {
        /// Which timer.
        timer: TimerKind,
    },
    /// Events 19–28: a decoded message.
    Message {
        /// The message.
        message: Message,
    },
    /// Events 21 / 22 / 25 / 28: a message failed to decode; the NOTIFICATION to send.
    DecodeError {
        /// What to send.
        notification: Notification,
    },
    /// Event 23: OpenCollisionDump (§6.8: this connection lost the collision).
    CollisionDump,
}

/// Outputs the owner must carry out, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Start (or restart) an outbound TCP connection attempt.
    Connect,
    /// Send a message on the current connection.
    Send(Outgoing),
    /// Arm (or re-arm) a timer.
    ArmTimer(TimerKind, Duration),
    /// Stop a timer.
    StopTimer(TimerKind),
    /// Close the current connection (after anything already sent) or abort the attempt.
    Disconnect,
    /// The session reached Established.
    Established(Negotiated),
    /// An Established session went down.
    Down(DownInfo),
    /// An UPDATE for the RIB.
    Update(Box<Update>),
    /// The peer asks for our routes of a family again (RFC 2918).
    RouteRefresh(Afi),
}

/// One peer's session (see module docs).
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    peer_open: Option<Open>,
    inbound: bool,
    failures: u32,
    /// Connection attempts refused (or closed before the peer's OPEN) since the peer last
    /// sent an OPEN (drives the quick re-dial).
    refused: u32,
    last_error: Option<String>,
    established_at: Option<Instant>,
    /// Stopped by the operator: no automatic restart.
    stopped: bool,
}

// ===== impl Session =====

impl Session {
    /// A session in Idle; send [`Input::Start`] to bring it up.
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            state: State::Idle,
            negotiated: None,
            peer_open: None,
            inbound: false,
            failures: 0,
            refused: 0,
            last_error: None,
            established_at: None,
            stopped: true,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Replaces the configuration; takes effect from the next connection or start.
    pub fn reconfigure(&mut self, cfg: SessionConfig) {
        self.cfg = cfg;
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// What was negotiated, while OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's OPEN, once received on the current connection.
    pub fn peer_open(&self) -> Option<&Open> {
        self.peer_open.as_ref()
    }

    /// The last error, BIRD style ("Socket: Connection refused", "BGP Error: Bad peer AS",
    /// "Received: Administrative shutdown").
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Consecutive failures (drives the back-off).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long the session has been Established (None when it is not).
    pub fn established_for(&self, now: Instant) -> Option<Duration> {
        self.established_at
            .filter(|_| self.state == State::Established)
            .map(|t| now.saturating_duration_since(t))
    }

    /// True while the current connection was opened by the peer.
    pub fn is_inbound(&self) -> bool {
        self.inbound
    }

    fn open_params(&self) -> OpenParams {
        OpenParams {
            asn: self.cfg.local_as,
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            families: self.cfg.families.clone(),
            graceful_restart: self.cfg.graceful_restart,
        }
    }

    /// Our connection was refused (or closed before the peer's OPEN): wait in Active for
    /// the peer, and dial again soon ([`Self::redial_after_refusal`]).
    fn refused_by_peer(&mut self, error: &str, out: &mut Vec<Output>) {
        self.last_error = Some(format!("Socket: {error}"));
        self.state = State::Active;
        self.refused = self.refused.saturating_add(1);
        out.push(Output::ArmTimer(
            TimerKind::ConnectRetry,
            self.redial_after_refusal(),
        ));
    }

    /// How long to wait before dialling again after `refused` refusals in a row: 100 ms,
    /// doubling, never more than ConnectRetryTime. A refusal is a peer that is not
    /// listening yet (every node of a cluster starting at once): waiting the whole
    /// ConnectRetryTime, as BIRD does, makes a cold start last seconds; a peer that
    /// stays away is soon dialled at the usual pace again.
    fn redial_after_refusal(&self) -> Duration {
        let shift = self.refused.saturating_sub(1).min(16);
        REDIAL_FIRST
            .saturating_mul(1 << shift)
            .min(self.cfg.connect_retry)
    }

    fn idle_hold(&self) -> Duration {
        let shift = self.failures.saturating_sub(1).min(16);
        let d = self.cfg.idle_hold_min.saturating_mul(1 << shift);
        d.min(self.cfg.idle_hold_max).max(self.cfg.idle_hold_min)
    }

    /// Handles one event at time `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.on_start(&mut out),
            Input::Stop { notification } => self.on_stop(notification, &mut out),
            Input::TcpConnected { inbound } => self.on_connected(inbound, &mut out),
            Input::TcpConnectFailed { error } => {
                if self.state == State::Connect {
                    // BIRD's "Active Socket: Connection refused": wait in Active for the
                    // peer or for ConnectRetryTimer to try again.
                    self.refused_by_peer(&error, &mut out);
                }
            }
            Input::TcpClosed { error } => {
                if self.state == State::OpenSent && !self.inbound {
                    // The peer closed the connection we dialled without a word: it is not
                    // ready for us (it has not configured us yet, as when every node of a
                    // cluster starts at once). RFC 4271 §8.2.2 OpenSent, event 18: back to
                    // Active with ConnectRetryTimer restarted, here the quick re-dial of a
                    // refusal rather than the error back-off.
                    out.push(Output::Disconnect);
                    self.stop_timers(&mut out);
                    self.refused_by_peer(&error, &mut out);
                } else if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    let text = format!("Socket: {error}");
                    let graceful = self.peer_has_gr();
                    self.fail(text, None, graceful, now, &mut out);
                }
            }
            Input::TimerExpired { timer } => self.on_timer(timer, now, &mut out),
            Input::Message { message } => self.on_message(message, now, &mut out),
            Input::DecodeError { notification } => {
                if self.connected() {
                    self.send_error(notification, now, &mut out);
                }
            }
            Input::CollisionDump => {
                if self.connected() {
                    out.push(Output::Send(Outgoing::Notification(
                        Notification::collision(),
                    )));
                    out.push(Output::Disconnect);
                    self.stop_timers(&mut out);
                    if self.state == State::Established {
                        out.push(Output::Down(DownInfo {
                            reason: "Connection collision resolution".into(),
                            notification: Some(Notification::collision()),
                            graceful: false,
                        }));
                    }
                    self.enter_idle_quietly();
                }
            }
        }
        out
    }

    fn connected(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn peer_has_gr(&self) -> bool {
        self.state == State::Established
            && self
                .negotiated
                .as_ref()
                .is_some_and(|n| n.peer_graceful_restart.is_some())
    }

    /// Events 1/3/4/5 in Idle; also IdleHoldTimer expiry.
    fn on_start(&mut self, out: &mut Vec<Output>) {
        self.stopped = false;
        if self.state != State::Idle {
            return;
        }
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Output::ArmTimer(
                TimerKind::ConnectRetry,
                self.cfg.connect_retry,
            ));
            out.push(Output::Connect);
        }
    }

    fn on_stop(&mut self, n: Notification, out: &mut Vec<Output>) {
        self.stopped = true;
        match self.state {
            State::Idle => {
                out.push(Output::StopTimer(TimerKind::IdleHold));
            }
            State::Connect | State::Active => {
                out.push(Output::Disconnect);
                out.push(Output::StopTimer(TimerKind::ConnectRetry));
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                out.push(Output::Send(Outgoing::Notification(n.clone())));
                out.push(Output::Disconnect);
                self.stop_timers(out);
                if self.state == State::Established {
                    out.push(Output::Down(DownInfo {
                        reason: format!("Sent: {}", n.text()),
                        notification: Some(n),
                        graceful: false,
                    }));
                }
            }
        }
        self.failures = 0;
        self.enter_idle_quietly();
    }

    fn on_connected(&mut self, inbound: bool, out: &mut Vec<Output>) {
        match self.state {
            // RFC 4271 §8.2.2 Idle "refuses all incoming BGP connections" — when stopped.
            // During the automatic-restart back-off (IdleHoldTimer running) an inbound
            // connection is taken as AutomaticStart_with_PassiveTcpEstablishment (event 5):
            // refusing it makes two speakers with equal back-off keep missing each other
            // (each one's attempt lands in the other's hold-down).
            State::Idle if self.stopped => out.push(Output::Disconnect),
            State::Idle if !inbound => out.push(Output::Disconnect),
            State::Idle | State::Connect | State::Active => {
                if self.state == State::Idle {
                    out.push(Output::StopTimer(TimerKind::IdleHold));
                }
                self.inbound = inbound;
                self.peer_open = None;
                out.push(Output::StopTimer(TimerKind::ConnectRetry));
                out.push(Output::Send(Outgoing::Open(self.open_params())));
                out.push(Output::ArmTimer(TimerKind::Hold, OPEN_SENT_HOLD));
                self.state = State::OpenSent;
            }
            // A second connection while one is open is the owner's collision business.
            State::OpenSent | State::OpenConfirm | State::Established => {}
        }
    }

    fn on_timer(&mut self, timer: TimerKind, now: Instant, out: &mut Vec<Output>) {
        match (timer, self.state) {
            (TimerKind::IdleHold, State::Idle) if !self.stopped => self.on_start(out),
            (TimerKind::ConnectRetry, State::Connect | State::Active) => {
                if self.cfg.passive {
                    return;
                }
                self.state = State::Connect;
                out.push(Output::ArmTimer(
                    TimerKind::ConnectRetry,
                    self.cfg.connect_retry,
                ));
                out.push(Output::Connect);
            }
            (TimerKind::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                let graceful = self.peer_has_gr();
                let n = Notification::hold_timer_expired();
                out.push(Output::Send(Outgoing::Notification(n.clone())));
                self.fail(
                    format!("BGP Error: {}", n.text()),
                    Some(n),
                    graceful,
                    now,
                    out,
                );
            }
            (TimerKind::Keepalive, State::OpenConfirm | State::Established) => {
                out.push(Output::Send(Outgoing::Keepalive));
                if let Some(n) = &self.negotiated {
                    if n.keepalive_time > 0 {
                        out.push(Output::ArmTimer(
                            TimerKind::Keepalive,
                            Duration::from_secs(n.keepalive_time as u64),
                        ));
                    }
                }
            }
            // A timer that fired after its state was left: nothing to do.
            _ => {}
        }
    }

    fn restart_hold(&self, out: &mut Vec<Output>) {
        if let Some(n) = &self.negotiated {
            if n.hold_time > 0 {
                out.push(Output::ArmTimer(
                    TimerKind::Hold,
                    Duration::from_secs(n.hold_time as u64),
                ));
            }
        }
    }

    fn on_message(&mut self, m: Message, now: Instant, out: &mut Vec<Output>) {
        if let Message::Notification(n) = m {
            if self.connected() {
                self.fail(format!("Received: {}", n.text()), Some(n), false, now, out);
            }
            return;
        }
        match self.state {
            State::Idle | State::Connect | State::Active => {}
            State::OpenSent => match m {
                Message::Open(open) => self.on_open(open, now, out),
                _ => self.send_error(
                    Notification::new(code::FSM, subcode::fsm::IN_OPENSENT, Vec::new()),
                    now,
                    out,
                ),
            },
            State::OpenConfirm => match m {
                Message::Keepalive => {
                    self.state = State::Established;
                    self.established_at = Some(now);
                    self.last_error = None;
                    self.restart_hold(out);
                    if let Some(n) = &self.negotiated {
                        out.push(Output::Established(n.clone()));
                    }
                }
                _ => self.send_error(
                    Notification::new(code::FSM, subcode::fsm::IN_OPENCONFIRM, Vec::new()),
                    now,
                    out,
                ),
            },
            State::Established => match m {
                Message::Keepalive => self.restart_hold(out),
                Message::Update(u) => {
                    self.restart_hold(out);
                    out.push(Output::Update(u));
                }
                Message::RouteRefresh { afi } => {
                    self.restart_hold(out);
                    // RFC 2918: only for families negotiated; others are ignored.
                    if let Some(afi) = afi {
                        if self
                            .negotiated
                            .as_ref()
                            .is_some_and(|n| n.families.contains(&afi))
                        {
                            out.push(Output::RouteRefresh(afi));
                        }
                    }
                }
                _ => self.send_error(
                    Notification::new(code::FSM, subcode::fsm::IN_ESTABLISHED, Vec::new()),
                    now,
                    out,
                ),
            },
        }
    }

    /// OPEN validation (RFC 4271 §6.2, RFC 6793, RFC 6286) and hold-time negotiation
    /// (§4.2: the smaller of the two; 1 and 2 are unacceptable).
    fn on_open(&mut self, open: Open, now: Instant, out: &mut Vec<Output>) {
        let peer_as = open.asn();
        let err = if open.caps.four_octet_as.is_none() {
            // We require RFC 6793 (AS_PATH would otherwise need AS4_PATH handling that
            // zettabgp lacks). Data: the capability we require (RFC 5492 §3).
            let mut data = vec![cap::FOUR_OCTET_AS, 4];
            data.extend_from_slice(&self.cfg.local_as.to_be_bytes());
            Some(Notification::open(
                subcode::open::UNSUPPORTED_CAPABILITY,
                data,
            ))
        } else if peer_as == 0
            || peer_as != self.cfg.remote_as
            || (peer_as > 65535 && open.my_as != AS_TRANS)
        {
            Some(Notification::open(
                subcode::open::BAD_PEER_AS,
                open.my_as.to_be_bytes().to_vec(),
            ))
        } else if open.hold_time == 1 || open.hold_time == 2 {
            Some(Notification::open(
                subcode::open::UNACCEPTABLE_HOLD_TIME,
                Vec::new(),
            ))
        } else if open.router_id.is_unspecified()
            || (self.cfg.local_as == peer_as && open.router_id == self.cfg.router_id)
        {
            Some(Notification::open(subcode::open::BAD_BGP_ID, Vec::new()))
        } else {
            None
        };
        if let Some(n) = err {
            if open.caps.four_octet_as.is_none() {
                self.send_error(n, now, out);
                self.last_error =
                    Some("BGP Error: peer lacks 4-octet AS support (RFC 6793)".into());
            } else {
                self.send_error(n, now, out);
            }
            return;
        }
        let hold = self.cfg.hold_time.min(open.hold_time);
        let keepalive = if hold == 0 {
            0
        } else {
            self.cfg.keepalive_time.clamp(1, hold / 3)
        };
        let theirs = open.families();
        let families: Vec<Afi> = self
            .cfg
            .families
            .iter()
            .copied()
            .filter(|a| theirs.contains(a))
            .collect();
        let negotiated = Negotiated {
            peer_as,
            peer_router_id: open.router_id,
            hold_time: hold,
            keepalive_time: keepalive,
            families,
            route_refresh: open.caps.route_refresh,
            peer_graceful_restart: open.caps.graceful_restart.clone(),
            local_graceful_restart: self.cfg.graceful_restart.is_some(),
            inbound: self.inbound,
        };
        out.push(Output::Send(Outgoing::Keepalive));
        if hold > 0 {
            out.push(Output::ArmTimer(
                TimerKind::Keepalive,
                Duration::from_secs(keepalive as u64),
            ));
            out.push(Output::ArmTimer(
                TimerKind::Hold,
                Duration::from_secs(hold as u64),
            ));
        } else {
            out.push(Output::StopTimer(TimerKind::Hold));
        }
        self.negotiated = Some(negotiated);
        self.peer_open = Some(open);
        self.state = State::OpenConfirm;
        // The peer talks to us: a later refusal is dialled again quickly.
        self.refused = 0;
    }

    /// Sends `n`, closes and fails the session (errors we detected).
    fn send_error(&mut self, n: Notification, now: Instant, out: &mut Vec<Output>) {
        out.push(Output::Send(Outgoing::Notification(n.clone())));
        self.fail(format!("BGP Error: {}", n.text()), Some(n), false, now, out);
    }

    fn stop_timers(&self, out: &mut Vec<Output>) {
        out.push(Output::StopTimer(TimerKind::Hold));
        out.push(Output::StopTimer(TimerKind::Keepalive));
    }

    /// Any failure on an open connection: close, report Down if Established, back off.
    fn fail(
        &mut self,
        text: String,
        n: Option<Notification>,
        graceful: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Disconnect);
        self.stop_timers(out);
        if self.state == State::Established {
            // A session that stayed up longer than the longest back-off was healthy: start
            // the back-off afresh.
            if self
                .established_at
                .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.idle_hold_max)
            {
                self.failures = 0;
            }
            out.push(Output::Down(DownInfo {
                reason: text.clone(),
                notification: n,
                graceful,
            }));
        }
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(text);
        self.state = State::Idle;
        self.negotiated = None;
        self.established_at = None;
        if !self.stopped {
            out.push(Output::ArmTimer(TimerKind::IdleHold, self.idle_hold()));
        }
    }

    fn enter_idle_quietly(&mut self) {
        self.state = State::Idle;
        self.negotiated = None;
        self.established_at = None;
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
