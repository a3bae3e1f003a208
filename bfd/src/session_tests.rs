//! Replays of two sessions joined by a simulated link (1 ms each way, cut and restored at
//! will) on a virtual clock: every packet is encoded and decoded on the way.

use super::*;

const LATENCY: Duration = Duration::from_millis(1);

/// Which end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    A,
    B,
}

struct Link {
    a: Session,
    b: Session,
    start: Instant,
    now: Instant,
    cut: bool,
    in_flight: Vec<(Instant, End, ControlPacket)>,
    /// Every transition, with when and where.
    log: Vec<(Duration, End, Transition)>,
    /// Every packet sent, with when and by whom.
    sent: Vec<(Duration, End, ControlPacket)>,
}

impl Link {
    fn new(a: SessionConfig, b: SessionConfig) -> Link {
        let start = Instant::now();
        Link {
            a: Session::new(0x0a, a, start),
            b: Session::new(0x0b, b, start),
            start,
            now: start,
            cut: false,
            in_flight: Vec::new(),
            log: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn at(&self) -> Duration {
        self.now - self.start
    }

    fn session(&mut self, end: End) -> &mut Session {
        match end {
            End::A => &mut self.a,
            End::B => &mut self.b,
        }
    }

    fn emit(&mut self, from: End, out: Output) {
        let at = self.at();
        for t in out.transitions {
            self.log.push((at, from, t));
        }
        let to = match from {
            End::A => End::B,
            End::B => End::A,
        };
        for p in out.send {
            self.sent.push((at, from, p));
            if !self.cut {
                let wire = ControlPacket::decode(&p.encode()).expect("our packets decode");
                self.in_flight.push((self.now + LATENCY, to, wire));
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let arrival = self.in_flight.iter().map(|(t, _, _)| *t).min();
            let next = [
                Some(self.a.next_deadline(self.now)),
                Some(self.b.next_deadline(self.now)),
                arrival,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end)
            .max(self.now);
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(t, _, _)| *t <= now);
            self.in_flight = later;
            for (_, to, p) in due {
                if let Ok(out) = self.session(to).receive(&p, now) {
                    self.emit(to, out);
                }
            }
            for end in [End::A, End::B] {
                let out = self.session(end).poll(now);
                self.emit(end, out);
            }
        }
        panic!("the sessions never let time pass");
    }

    fn downs_of(&self, end: End, since: Duration) -> Vec<(Duration, Diag)> {
        self.log
            .iter()
            .filter(|(at, e, t)| *e == end && *at >= since && t.to == State::Down)
            .map(|(at, _, t)| (*at, t.diag))
            .collect()
    }

    fn sent_by(&self, end: End, from: Duration, to: Duration) -> usize {
        self.sent
            .iter()
            .filter(|(at, e, _)| *e == end && *at >= from && *at < to)
            .count()
    }
}

fn up_link() -> Link {
    let mut l = Link::new(SessionConfig::default(), SessionConfig::default());
    l.run_for(Duration::from_secs(4));
    assert_eq!((l.a.state(), l.b.state()), (State::Up, State::Up));
    l
}

#[test]
fn both_ends_come_up_at_once_and_then_send_at_the_configured_interval() {
    let mut l = Link::new(SessionConfig::default(), SessionConfig::default());
    l.run_for(Duration::from_secs(4));
    let up_at: Vec<Duration> = l
        .log
        .iter()
        .filter(|(_, _, t)| t.to == State::Up)
        .map(|(at, _, _)| *at)
        .collect();
    assert_eq!(up_at.len(), 2, "{:?}", l.log);
    assert!(
        up_at.iter().all(|t| *t < Duration::from_millis(50)),
        "{up_at:?}"
    );
    // 100 ms less up to 25 % jitter: 10 to 13.4 packets a second.
    let n = l.sent_by(End::A, Duration::from_secs(2), Duration::from_secs(4));
    assert!((20..=27).contains(&n), "{n} packets in 2 s");
    assert_eq!(l.a.tx_interval(), Some(Duration::from_millis(100)));
    assert_eq!(l.a.detection_time(), Duration::from_millis(300));
}

#[test]
fn a_cut_link_is_detected_within_the_detection_time_on_both_ends() {
    let mut l = up_link();
    let cut_at = l.at();
    l.cut = true;
    l.run_for(Duration::from_secs(2));
    for end in [End::A, End::B] {
        let downs = l.downs_of(end, cut_at);
        assert_eq!(downs.len(), 1, "{end:?}: {downs:?}");
        let (at, diag) = downs[0];
        let after = at - cut_at;
        assert_eq!(diag, Diag::DetectionTimeExpired);
        // The last packet came at most one interval before the cut.
        assert!(
            after >= Duration::from_millis(200) && after <= Duration::from_millis(301),
            "{end:?} detected after {after:?}"
        );
    }
    assert_eq!(l.a.remote_discriminator(), 0);
}

#[test]
fn a_flapping_link_comes_back_up_every_time_and_nothing_sticks() {
    let mut l = up_link();
    for round in 0..5 {
        l.cut = true;
        l.run_for(Duration::from_millis(700 + 100 * round));
        assert_eq!((l.a.state(), l.b.state()), (State::Down, State::Down));
        l.cut = false;
        l.run_for(Duration::from_secs(3));
        assert_eq!(
            (l.a.state(), l.b.state()),
            (State::Up, State::Up),
            "round {round}"
        );
        assert_eq!(l.a.tx_interval(), Some(Duration::from_millis(100)));
    }
}

#[test]
fn a_session_that_is_not_up_sends_no_faster_than_once_a_second() {
    let mut l = Link::new(SessionConfig::default(), SessionConfig::default());
    l.cut = true;
    l.run_for(Duration::from_secs(10));
    let n = l.sent_by(End::A, Duration::ZERO, Duration::from_secs(10));
    assert!((10..=14).contains(&n), "{n} packets in 10 s while Down");
    assert_eq!(l.a.state(), State::Down);
}

#[test]
fn the_peer_going_admin_down_takes_us_down_with_its_reason_and_back() {
    let mut l = up_link();
    let now = l.now;
    let out = l.b.set_admin_down(true, now);
    l.emit(End::B, out);
    let since = l.at();
    l.run_for(Duration::from_secs(3));
    assert_eq!(l.b.state(), State::AdminDown);
    assert_eq!(l.a.state(), State::Down, "AdminDown keeps the peer Down");
    assert_eq!(
        l.downs_of(End::A, since),
        vec![(since + LATENCY, Diag::NeighborSignaledDown)]
    );
    let now = l.now;
    let out = l.b.set_admin_down(false, now);
    l.emit(End::B, out);
    l.run_for(Duration::from_secs(3));
    assert_eq!((l.a.state(), l.b.state()), (State::Up, State::Up));
}

#[test]
fn the_detection_time_follows_the_peers_multiplier_and_interval() {
    let slow = SessionConfig {
        desired_min_tx: Duration::from_millis(300),
        required_min_rx: Duration::from_millis(300),
        detect_mult: 5,
        idle_tx: SLOW_TX,
    };
    let mut l = Link::new(SessionConfig::default(), slow);
    l.run_for(Duration::from_secs(4));
    assert_eq!((l.a.state(), l.b.state()), (State::Up, State::Up));
    // A: B's multiplier 5 x max(A's RX 100, B's TX 300); B: 3 x max(300, 100).
    assert_eq!(l.a.detection_time(), Duration::from_millis(1500));
    assert_eq!(l.b.detection_time(), Duration::from_millis(900));
    // A sends no faster than B can take.
    assert_eq!(l.a.tx_interval(), Some(Duration::from_millis(300)));
}

#[test]
fn a_slower_interval_while_up_waits_for_the_poll_sequence() {
    let mut l = up_link();
    let slower = SessionConfig {
        desired_min_tx: Duration::from_millis(250),
        ..SessionConfig::default()
    };
    let now = l.now;
    let out = l.a.set_config(slower, now);
    // The poll goes at once, carrying P and the new value; the old interval still runs.
    assert!(
        out.send
            .iter()
            .any(|p| p.poll && p.desired_min_tx == slower.desired_min_tx)
    );
    assert_eq!(l.a.tx_interval(), Some(Duration::from_millis(100)));
    l.emit(End::A, out);
    l.run_for(Duration::from_millis(50));
    assert!(
        l.sent.iter().any(|(_, e, p)| *e == End::B && p.final_),
        "B answered the poll with F"
    );
    assert_eq!(l.a.tx_interval(), Some(Duration::from_millis(250)));
    assert_eq!(l.b.detection_time(), Duration::from_millis(750));
    l.run_for(Duration::from_secs(2));
    assert_eq!((l.a.state(), l.b.state()), (State::Up, State::Up));
}

#[test]
fn a_packet_for_another_discriminator_is_refused_and_changes_nothing() {
    let mut l = up_link();
    let mut p = l.b.packet(false, false);
    p.your_discriminator = 0x99;
    p.state = State::Down;
    let now = l.now;
    assert_eq!(
        l.a.receive(&p, now),
        Err(Refused::WrongDiscriminator {
            got: 0x99,
            ours: 0x0a
        })
    );
    assert_eq!(l.a.state(), State::Up);
}

#[test]
fn an_admin_down_session_keeps_time_moving_and_sends_its_state() {
    let mut l = up_link();
    let now = l.now;
    let out = l.a.set_admin_down(true, now);
    l.emit(End::A, out);
    let since = l.at();
    l.run_for(Duration::from_secs(5));
    let n = l.sent_by(End::A, since, since + Duration::from_secs(5));
    assert!((4..=8).contains(&n), "{n} AdminDown packets in 5 s");
    assert!(
        l.sent
            .iter()
            .filter(|(at, e, _)| *e == End::A && *at > since)
            .all(|(_, _, p)| p.state == State::AdminDown)
    );
}
