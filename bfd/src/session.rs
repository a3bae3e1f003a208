//! One BFD session as a pure state machine (RFC 5880 §6.8): packets in, packets and state
//! changes out, time passed in by the caller. No sockets, no clock: the driver (or a test)
//! calls [`Session::receive`] for every packet of this session and [`Session::poll`] at
//! [`Session::next_deadline`].
//!
//! Timers as §6.8.2-6.8.4 say: the transmit interval is the larger of our desired TX and
//! the peer's required RX, jittered 75-100 % (75-90 % with a multiplier of 1); the
//! detection time is the peer's multiplier times the larger of our required RX and its
//! desired TX. While not Up we send no faster than once a second (§6.8.3); the change to
//! the configured interval on Up, and any configuration change while Up, runs a poll
//! sequence, and a larger TX interval takes effect only once it ends.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::packet::{ControlPacket, Diag, State};

/// §6.8.3: no faster than this while the session is not Up.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// A session's timers, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval while Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult (1-255).
    pub detect_mult: u8,
    /// The TX interval while not Up (at least [`SLOW_TX`]).
    pub idle_tx: Duration,
}

impl Default for SessionConfig {
    /// 100 ms x 3, the intervals the tests and the README use.
    fn default() -> SessionConfig {
        SessionConfig {
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            detect_mult: 3,
            idle_tx: SLOW_TX,
        }
    }
}

/// A change of the session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub diag: Diag,
}

/// Why a packet that passed the packet checks is still not this session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("your discriminator {got} is not this session's {ours}")]
    WrongDiscriminator { got: u32, ours: u32 },
    #[error("the session is administratively down")]
    AdminDown,
}

/// What a call hands back: packets to send now, and the state changes it made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    pub send: Vec<ControlPacket>,
    pub transitions: Vec<Transition>,
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    local_disc: u32,
    local_diag: Diag,
    remote_disc: u32,
    remote_state: State,
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    /// The desired TX and required RX our packets advertise.
    adv_tx: Duration,
    adv_rx: Duration,
    /// The desired TX the transmit interval uses (lags `adv_tx` on an increase while Up).
    tx_in_use: Duration,
    /// The required RX the detection time uses (lags `adv_rx` on a decrease while Up).
    rx_in_use: Duration,
    /// A poll sequence is running: our packets carry P until one with F comes back.
    polling: bool,
    /// The peer polled: the next packet carries F, sent at once.
    final_owed: bool,
    next_tx: Instant,
    detect_at: Option<Instant>,
    rng: SmallRng,
}

impl Session {
    /// A session in Down, with `local_disc` (non-zero, unique on this system).
    pub fn new(local_disc: u32, cfg: SessionConfig, now: Instant) -> Session {
        let idle = cfg.idle_tx.max(SLOW_TX);
        Session {
            cfg,
            state: State::Down,
            local_disc,
            local_diag: Diag::None,
            remote_disc: 0,
            remote_state: State::Down,
            // §6.8.1: 1 µs, so the first packet goes at once.
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            adv_tx: idle,
            adv_rx: cfg.required_min_rx,
            tx_in_use: idle,
            rx_in_use: cfg.required_min_rx,
            polling: false,
            final_owed: false,
            next_tx: now,
            detect_at: None,
            rng: SmallRng::seed_from_u64(u64::from(local_disc)),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_disc
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_disc
    }

    pub fn config(&self) -> SessionConfig {
        self.cfg
    }

    /// The interval between our periodic packets, before jitter (None: none are sent).
    pub fn tx_interval(&self) -> Option<Duration> {
        (!self.remote_min_rx.is_zero()).then(|| self.tx_in_use.max(self.remote_min_rx))
    }

    /// How long the peer may stay silent before the session goes Down (§6.8.4).
    pub fn detection_time(&self) -> Duration {
        self.rx_in_use.max(self.remote_desired_min_tx) * u32::from(self.remote_detect_mult)
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        if self.final_owed {
            return now;
        }
        let tx = self.tx_interval().map(|_| self.next_tx);
        let detect = self
            .detect_at
            .filter(|_| matches!(self.state, State::Init | State::Up));
        match (tx, detect) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            // Nothing is due; look again in a while.
            (None, None) => now + SLOW_TX,
        }
    }

    /// Takes a packet of this session (decoded and checked by [`ControlPacket::decode`]).
    pub fn receive(&mut self, pkt: &ControlPacket, now: Instant) -> Result<Output, Refused> {
        if pkt.your_discriminator != 0 && pkt.your_discriminator != self.local_disc {
            return Err(Refused::WrongDiscriminator {
                got: pkt.your_discriminator,
                ours: self.local_disc,
            });
        }
        self.remote_disc = pkt.my_discriminator;
        self.remote_state = pkt.state;
        self.remote_desired_min_tx = pkt.desired_min_tx;
        self.remote_detect_mult = pkt.detect_mult;
        let old_interval = self.tx_interval();
        self.remote_min_rx = pkt.required_min_rx;
        if pkt.final_ && self.polling {
            self.end_poll();
        }
        // A faster peer (or one that starts to listen) is served without waiting out the
        // old interval.
        if let Some(interval) = self.tx_interval()
            && old_interval.is_none_or(|old| interval < old)
        {
            self.next_tx = self.next_tx.min(now + interval);
        }
        self.detect_at = Some(now + self.detection_time());
        if self.state == State::AdminDown {
            return Err(Refused::AdminDown);
        }
        if pkt.poll {
            self.final_owed = true;
        }
        let mut out = Output::default();
        // §6.8.6's state table.
        let next = if pkt.state == State::AdminDown {
            (self.state != State::Down).then_some((State::Down, Diag::NeighborSignaledDown))
        } else {
            match (self.state, pkt.state) {
                (State::Down, State::Down) => Some((State::Init, Diag::None)),
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    Some((State::Up, Diag::None))
                }
                (State::Up, State::Down) => Some((State::Down, Diag::NeighborSignaledDown)),
                _ => None,
            }
        };
        if let Some((to, diag)) = next {
            self.go(to, diag, now, &mut out);
        }
        self.transmit_due(now, &mut out);
        Ok(out)
    }

    /// Runs the timers: the detection time, and the packets due by `now`.
    pub fn poll(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if matches!(self.state, State::Init | State::Up)
            && self.detect_at.is_some_and(|at| now >= at)
        {
            self.remote_disc = 0;
            self.remote_state = State::Down;
            self.go(State::Down, Diag::DetectionTimeExpired, now, &mut out);
        }
        self.transmit_due(now, &mut out);
        out
    }

    /// Takes the session administratively down (`true`) or lets it come back (`false`).
    pub fn set_admin_down(&mut self, down: bool, now: Instant) -> Output {
        let mut out = Output::default();
        match (down, self.state) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => {}
            (true, _) => self.go(State::AdminDown, Diag::AdministrativelyDown, now, &mut out),
            (false, State::AdminDown) => self.go(State::Down, Diag::None, now, &mut out),
        }
        self.transmit_due(now, &mut out);
        out
    }

    /// Applies new timers; while Up, through a poll sequence (§6.8.3).
    pub fn set_config(&mut self, cfg: SessionConfig, now: Instant) -> Output {
        self.cfg = cfg;
        self.retime(now);
        let mut out = Output::default();
        self.transmit_due(now, &mut out);
        out
    }

    fn go(&mut self, to: State, diag: Diag, now: Instant, out: &mut Output) {
        out.transitions.push(Transition {
            from: self.state,
            to,
            diag,
        });
        self.state = to;
        self.local_diag = diag;
        if to != State::Up {
            self.polling = false;
        }
        self.retime(now);
        // Tell the peer at once: the three-way handshake and a Down both go faster.
        self.next_tx = now;
    }

    /// Sets what we advertise for the current state; a change while Up starts a poll.
    fn retime(&mut self, now: Instant) {
        let tx = if self.state == State::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.idle_tx.max(SLOW_TX)
        };
        let rx = self.cfg.required_min_rx;
        if (tx, rx) == (self.adv_tx, self.adv_rx) {
            return;
        }
        if self.state == State::Up {
            // A faster TX and a slower RX are safe at once; the others wait for the poll.
            if tx < self.tx_in_use {
                self.tx_in_use = tx;
            }
            if rx > self.rx_in_use {
                self.rx_in_use = rx;
            }
            self.polling = true;
            self.next_tx = self.next_tx.min(now);
        } else {
            self.tx_in_use = tx;
            self.rx_in_use = rx;
        }
        self.adv_tx = tx;
        self.adv_rx = rx;
    }

    fn end_poll(&mut self) {
        self.polling = false;
        self.tx_in_use = self.adv_tx;
        self.rx_in_use = self.adv_rx;
    }

    fn packet(&self, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.cfg.detect_mult.max(1),
            my_discriminator: self.local_disc,
            your_discriminator: self.remote_disc,
            desired_min_tx: self.adv_tx,
            required_min_rx: self.adv_rx,
            required_min_echo_rx: Duration::ZERO,
        }
    }

    fn transmit_due(&mut self, now: Instant, out: &mut Output) {
        if self.final_owed {
            self.final_owed = false;
            out.send.push(self.packet(false, true));
        }
        let Some(interval) = self.tx_interval() else {
            return;
        };
        if now < self.next_tx {
            return;
        }
        out.send.push(self.packet(self.polling, false));
        // §6.8.7: 0-25 % less, 10-25 % less with a multiplier of 1.
        let top = if self.cfg.detect_mult <= 1 { 0.9 } else { 1.0 };
        let factor = self.rng.random_range(0.75..top);
        self.next_tx = now + interval.mul_f64(factor);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
