//! The speaker task: owns every peer's session and connection, the RIB and the timers;
//! consumes API commands, I/O events and timer expiries; batches UPDATE processing (the RIB
//! decides and encodes once per drained batch) and flushes one buffer per peer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use super::conn::{self, Conn, ConnEvent, SendLimits};
use super::peer::{Peer, session_config};
use super::socket;
use super::timers::{TimerId, Timers};
use super::{Command, EventSink};
use crate::collision::{self, Sessions, Verdict};
use crate::config::{LimitAction, SpeakerConfig};
use crate::events::RouteEvent;
use crate::fsm::{DownInfo, Input, Negotiated, Outgoing, Output, Session, State, TimerKind};
use crate::graceful::Promise;
use crate::prefix::Afi;
use crate::rib::{PeerUp, Rib, RibConfig};
use crate::wire::encode;
use crate::wire::notification::{Notification, code, subcode};
use crate::{Error, PeerConfig};

/// Prefixes queued for the decision process before a batch is cut short.
const MAX_PENDING: usize = 1 << 14;

pub(crate) struct Task {
    cfg: SpeakerConfig,
    rib: Rib,
    peers: Vec<Option<Peer>>,
    /// Peers by address and port (two sessions may share an address).
    by_addr: HashMap<SocketAddr, u16>,
    timers: Timers,
    events: EventSink,
    conn_tx: mpsc::Sender<ConnEvent>,
    conn_rx: Option<mpsc::Receiver<ConnEvent>>,
    /// The listening sockets (at most one per address family) and their accept tasks.
    listeners: Vec<(Arc<TcpListener>, bool, AbortHandle)>,
    next_id: u64,
    closing: Vec<JoinHandle<()>>,
    rng: u64,
    /// Connections whose send queue overflowed in this pass: (peer, second, conn id,
    /// bytes it would have held); reset at the end of the pass.
    overflowed: Vec<(u16, bool, u64, usize)>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

impl Task {
    pub fn new(cfg: SpeakerConfig, events: EventSink) -> Result<Task, Error> {
        let (conn_tx, conn_rx) = mpsc::channel(16);
        let rib = Rib::new(RibConfig {
            local_as: cfg.local_as,
            router_id: cfg.router_id,
            cluster_id: cfg.cluster_id,
            ebgp_requires_policy: cfg.ebgp_requires_policy,
        });
        let mut t = Task {
            cfg,
            rib,
            peers: vec![None],
            by_addr: HashMap::new(),
            timers: Timers::default(),
            events,
            conn_tx,
            conn_rx: Some(conn_rx),
            listeners: Vec::new(),
            next_id: 1,
            closing: Vec::new(),
            rng: 0,
            overflowed: Vec::new(),
        };
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((u32::from(t.cfg.router_id) as u64) << 32)
            ^ std::process::id() as u64;
        t.rng = seed | 1;
        for addr in [t.cfg.listen, t.cfg.listen_other_family]
            .into_iter()
            .flatten()
        {
            let l = socket::listen(addr).map_err(|e| Error::io(format!("listen on {addr}"), e))?;
            let l = Arc::new(l);
            let task = conn::spawn_listener(l.clone(), t.conn_tx.clone());
            t.listeners.push((l, addr.is_ipv6(), task));
        }
        Ok(t)
    }

    pub async fn run(mut self, mut api: mpsc::UnboundedReceiver<Command>) {
        let Some(mut conn_rx) = self.conn_rx.take() else {
            return;
        };
        loop {
            let next = self.timers.next();
            let sleep = async move {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = api.recv() => match cmd {
                    None => {
                        self.shutdown(None).await;
                        return;
                    }
                    Some(Command::Shutdown(m, tx)) => {
                        self.shutdown(m).await;
                        let _ = tx.send(());
                        return;
                    }
                    Some(c) => self.command(c),
                },
                _ = sleep => self.fire_timers(),
                ev = conn_rx.recv() => {
                    if let Some(ev) = ev {
                        self.conn_event(ev);
                    }
                    let mut n = 1;
                    while n < self.cfg.batch_updates.max(1) && self.rib.pending() < MAX_PENDING {
                        match conn_rx.try_recv() {
                            Ok(ev) => self.conn_event(ev),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
            }
            self.flush();
            self.reset_overflowed();
        }
    }

    /// Queues `bytes` on peer `idx`'s connection (main, or the colliding second one); a
    /// queue past its bound gets the connection reset at the end of the pass.
    fn send_on(&mut self, idx: u16, second: bool, bytes: Vec<u8>) {
        let Some(c) = self.conn_of(idx, second) else {
            return;
        };
        let len = bytes.len();
        if !c.send(bytes) {
            let (id, queued) = (c.id, c.queued() + len);
            self.overflowed.push((idx, second, id, queued));
        }
    }

    /// Resets the connections whose peer stopped reading (see [`Task::send_on`]).
    fn reset_overflowed(&mut self) {
        for (idx, second, id, queued) in std::mem::take(&mut self.overflowed) {
            let error = format!(
                "send queue full: {} KiB for a peer that does not read (limit {} KiB)",
                queued / 1024,
                self.cfg.max_send_queue / 1024
            );
            let Some(p) = self.peer_mut(idx) else {
                continue;
            };
            if !second {
                match p.main_conn.take() {
                    Some(c) if c.id == id => c.abort(),
                    other => {
                        p.main_conn = other;
                        continue;
                    }
                }
            }
            tracing::warn!(peer = %p.cfg.address, "{error}: resetting the session");
            self.feed(idx, second, Input::TcpClosed { error });
        }
    }

    fn peer(&self, idx: u16) -> Option<&Peer> {
        self.peers.get(idx as usize).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, idx: u16) -> Option<&mut Peer> {
        self.peers.get_mut(idx as usize).and_then(Option::as_mut)
    }

    // ===== API commands =====

    fn command(&mut self, c: Command) {
        match c {
            Command::AddPeer(cfg, tx) => {
                let _ = tx.send(self.add_peer(cfg));
            }
            Command::UpdatePeer(cfg, tx) => {
                let _ = tx.send(self.update_peer(cfg));
            }
            Command::RemovePeer(addr, tx) => {
                let _ = tx.send(self.remove_peer(addr));
            }
            Command::Originate(routes) => self.rib.originate(routes),
            Command::Withdraw(nets) => self.rib.withdraw_local(nets),
            Command::Path(addr, up) => self.set_path(addr, up),
            Command::Status(tx) => {
                let v = self
                    .peers
                    .iter()
                    .flatten()
                    .map(|p| p.status(&self.rib))
                    .collect();
                let _ = tx.send(v);
            }
            Command::Learned(tx) => {
                if self.rib.pending() > 0 {
                    self.flush();
                }
                let _ = tx.send(self.rib.learned_routes());
            }
            Command::Explain(net, tx) => {
                if self.rib.pending() > 0 {
                    self.flush();
                }
                let _ = tx.send(self.rib.explain(net));
            }
            Command::Shutdown(..) => {}
        }
    }

    fn set_listener_md5(&self, addr: IpAddr, password: Option<&str>) {
        // The key goes on the listener of the peer's family.
        let Some((l, v6, _)) = self
            .listeners
            .iter()
            .find(|(_, v6, _)| *v6 == addr.is_ipv6())
        else {
            return;
        };
        let v6 = *v6;
        if let Err(e) = socket::set_md5(l.as_raw_fd(), v6, addr, password.map(str::as_bytes)) {
            // Removing a key that was never set fails harmlessly.
            if password.is_some() {
                tracing::warn!(peer = %addr, "TCP MD5 key on the listener: {e}");
            }
        }
    }

    fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), Error> {
        if self.by_addr.contains_key(&cfg.key()) {
            return Err(Error::PeerExists(cfg.key()));
        }
        let idx = self.rib.add_peer(&cfg);
        if let Some(pw) = &cfg.password {
            self.set_listener_md5(cfg.address, Some(pw));
        }
        self.by_addr.insert(cfg.key(), idx);
        let peer = Peer::new(idx, cfg, &self.cfg);
        if self.peers.len() <= idx as usize {
            self.peers.resize_with(idx as usize + 1, || None);
        }
        self.peers[idx as usize] = Some(peer);
        self.feed(idx, false, Input::Start);
        Ok(())
    }

    /// The peers at `ip`, whatever their port, in index order.
    fn peers_at(&self, ip: IpAddr) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .by_addr
            .iter()
            .filter(|(a, _)| a.ip() == ip)
            .map(|(_, &i)| i)
            .collect();
        out.sort_unstable();
        out
    }

    /// BFD's verdict on the path to `ip`, for every session to it.
    fn set_path(&mut self, addr: IpAddr, up: bool) {
        for idx in self.peers_at(addr) {
            self.set_path_of(idx, addr, up);
        }
    }

    fn set_path_of(&mut self, idx: u16, addr: IpAddr, up: bool) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        if p.path_down != up {
            return;
        }
        p.path_down = !up;
        if up {
            tracing::info!(peer = %addr, "BFD: the path is back; starting the session");
            self.feed(idx, false, Input::Start);
        } else {
            tracing::warn!(peer = %addr, "BFD: the path is down; session closed (Cease, BFD Down), its routes withdrawn");
            let n = Notification::new(code::CEASE, subcode::cease::BFD_DOWN, Vec::new());
            self.stop_peer(idx, n);
        }
    }

    fn update_peer(&mut self, cfg: PeerConfig) -> Result<(), Error> {
        let idx = *self
            .by_addr
            .get(&cfg.key())
            .ok_or(Error::NoSuchPeer(cfg.key()))?;
        let Some(peer) = self.peer_mut(idx) else {
            return Err(Error::NoSuchPeer(cfg.key()));
        };
        let old = peer.cfg.clone();
        let was_disabled = std::mem::take(&mut peer.disabled);
        if was_disabled || old.needs_reset(&cfg) {
            let n = Notification::new(code::CEASE, subcode::cease::CONFIG_CHANGE, Vec::new());
            self.stop_peer(idx, n);
            if old.password != cfg.password {
                self.set_listener_md5(cfg.address, cfg.password.as_deref());
            }
            self.rib.configure_peer(idx, &cfg);
            let sc = session_config(&self.cfg, &cfg);
            if let Some(peer) = self.peer_mut(idx) {
                peer.cfg = cfg;
                peer.main.reconfigure(sc);
            }
            if self.peer(idx).is_some_and(|p| !p.path_down) {
                self.feed(idx, false, Input::Start);
            }
            return Ok(());
        }
        let (import_changed, _) = self.rib.configure_peer(idx, &cfg);
        let Some(peer) = self.peer_mut(idx) else {
            return Ok(());
        };
        peer.cfg = cfg;
        let established = peer.main.state() == State::Established;
        if import_changed && established {
            if peer.route_refresh {
                // Ask for everything again; the new import policy applies as it arrives.
                let fams = peer
                    .main
                    .negotiated()
                    .map(|n| n.families.clone())
                    .unwrap_or_default();
                let mut out = Vec::new();
                for afi in fams {
                    encode::push_route_refresh(&mut out, afi);
                }
                self.send_on(idx, false, out);
            } else {
                let n = Notification::new(code::CEASE, subcode::cease::CONFIG_CHANGE, Vec::new());
                self.stop_peer(idx, n);
                self.feed(idx, false, Input::Start);
            }
        }
        Ok(())
    }

    fn stop_peer(&mut self, idx: u16, n: Notification) {
        if self.peer(idx).is_some_and(|p| p.second.is_some()) {
            self.feed(
                idx,
                true,
                Input::Stop {
                    notification: n.clone(),
                },
            );
        }
        self.feed(idx, false, Input::Stop { notification: n });
    }

    fn remove_peer(&mut self, key: SocketAddr) -> Result<(), Error> {
        let idx = self.by_addr.remove(&key).ok_or(Error::NoSuchPeer(key))?;
        let addr = key.ip();
        let n = Notification::new(code::CEASE, subcode::cease::PEER_DECONFIGURED, Vec::new());
        self.stop_peer(idx, n);
        if let Some(mut p) = self.peers.get_mut(idx as usize).and_then(Option::take) {
            if let Some((_, h)) = p.attempt.take() {
                h.abort();
            }
            if let Some((_, c)) = p.second.take() {
                self.closing.extend(c.close());
            }
            if let Some(c) = p.main_conn.take() {
                self.closing.extend(c.close());
            }
            if p.cfg.password.is_some() {
                // The listener's key is per address: another session to it keeps its own.
                let other = self.peers_at(addr).into_iter().find_map(|i| {
                    let p = self.peers.get(i as usize)?.as_ref()?;
                    p.cfg.password.clone()
                });
                self.set_listener_md5(addr, other.as_deref());
            }
        }
        self.timers.cancel_peer(idx);
        self.rib.remove_peer(idx);
        Ok(())
    }

    async fn shutdown(&mut self, message: Option<String>) {
        let n = Notification::admin_shutdown(message.as_deref());
        let idxs: Vec<u16> = self.peers.iter().flatten().map(|p| p.idx).collect();
        for idx in idxs {
            self.stop_peer(idx, n.clone());
            if let Some(p) = self.peer_mut(idx) {
                if let Some((_, h)) = p.attempt.take() {
                    h.abort();
                }
            }
        }
        self.flush();
        for (_, _, task) in self.listeners.drain(..) {
            task.abort();
        }
        let writers = std::mem::take(&mut self.closing);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for w in writers {
                let _ = w.await;
            }
        })
        .await;
    }

    // ===== I/O events =====

    fn conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Accepted { stream, remote } => self.accepted(stream, canonical(remote.ip())),
            ConnEvent::Connected {
                peer,
                attempt,
                stream,
            } => {
                let Some(p) = self.peer_mut(peer) else {
                    return;
                };
                if p.attempt.as_ref().map(|a| a.0) != Some(attempt) {
                    return;
                }
                p.attempt = None;
                if p.main.state() != State::Connect {
                    return;
                }
                if self.attach(peer, false, stream).is_some() {
                    self.feed(peer, false, Input::TcpConnected { inbound: false });
                }
            }
            ConnEvent::ConnectFailed {
                peer,
                attempt,
                error,
            } => {
                let Some(p) = self.peer_mut(peer) else {
                    return;
                };
                if p.attempt.as_ref().map(|a| a.0) != Some(attempt) {
                    return;
                }
                p.attempt = None;
                tracing::debug!(peer = %p.cfg.address, "connect: {error}");
                self.feed(peer, false, Input::TcpConnectFailed { error });
            }
            ConnEvent::Messages { peer, conn, msgs } => {
                for m in msgs {
                    let Some(second) = self.which(peer, conn) else {
                        return;
                    };
                    let input = match m {
                        Ok(message) => Input::Message { message },
                        Err(notification) => Input::DecodeError { notification },
                    };
                    self.feed(peer, second, input);
                }
            }
            ConnEvent::Closed { peer, conn, error } => {
                if let Some(second) = self.which(peer, conn) {
                    self.feed(peer, second, Input::TcpClosed { error });
                }
            }
        }
    }

    /// Is connection `conn` of `peer` the main session's (false) or the second's (true)?
    fn which(&self, peer: u16, conn: u64) -> Option<bool> {
        let p = self.peer(peer)?;
        if p.main_conn.as_ref().is_some_and(|c| c.id == conn) {
            Some(false)
        } else if p.second.as_ref().is_some_and(|(_, c)| c.id == conn) {
            Some(true)
        } else {
            None
        }
    }

    /// Wraps `stream` in a connection for peer `idx` (main or second); returns its id.
    fn attach(&mut self, idx: u16, second: bool, stream: TcpStream) -> Option<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let ctx = self.peer(idx)?.update_ctx(&self.cfg);
        let limits = SendLimits {
            send_hold: (self.cfg.send_hold_time > 0)
                .then(|| Duration::from_secs(u64::from(self.cfg.send_hold_time))),
            max_queue: self.cfg.max_send_queue,
        };
        let conn = match Conn::spawn(stream, idx, id, ctx, self.conn_tx.clone(), limits) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("connection setup: {e}");
                return None;
            }
        };
        let p = self.peer_mut(idx)?;
        if second {
            let mut s = Session::new(crate::fsm::SessionConfig {
                passive: true,
                ..p.main.config().clone()
            });
            s.handle(Input::Start, Instant::now());
            if let Some((_, old)) = p.second.replace((s, conn)) {
                drop(old);
            }
        } else if let Some(old) = p.main_conn.replace(conn) {
            drop(old);
        }
        Some(id)
    }

    fn accepted(&mut self, stream: TcpStream, ip: IpAddr) {
        // An inbound connection names no port of ours to tell sessions to one address
        // apart: it goes to the first of them waiting for one (as BIRD), else the first.
        let candidates = self.peers_at(ip);
        let waiting = candidates.iter().copied().find(|&i| {
            self.peers
                .get(i as usize)
                .and_then(Option::as_ref)
                .is_some_and(|p| {
                    matches!(p.main.state(), State::Idle | State::Connect | State::Active)
                })
        });
        let Some(idx) = waiting.or(candidates.first().copied()) else {
            tracing::info!(peer = %ip, "connection from an unknown address refused");
            return;
        };
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        if let Some(h) = p.cfg.ttl_security {
            let v6 = stream.local_addr().is_ok_and(|a| a.is_ipv6());
            if let Err(e) = socket::set_gtsm(stream.as_raw_fd(), v6, h) {
                tracing::warn!(peer = %ip, "GTSM on an accepted connection: {e}");
            }
        }
        match p.main.state() {
            // The FSM accepts it during the back-off and refuses it when stopped.
            State::Idle | State::Connect | State::Active => {
                if let Some((_, h)) = p.attempt.take() {
                    h.abort();
                }
                if self.attach(idx, false, stream).is_some() {
                    self.feed(idx, false, Input::TcpConnected { inbound: true });
                }
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                if self.attach(idx, true, stream).is_some() {
                    self.feed(idx, true, Input::TcpConnected { inbound: true });
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        for id in self.timers.pop_due(now) {
            match id {
                TimerId::Session { peer, second, kind } => {
                    self.feed(peer, second, Input::TimerExpired { timer: kind })
                }
                TimerId::GrRestart(peer) | TimerId::StalePath(peer) => {
                    if let Some(p) = self.peer(peer) {
                        tracing::info!(peer = %p.cfg.address, "graceful restart: stale routes flushed ({id:?})");
                    }
                    self.rib.flush_stale(peer, None);
                }
                TimerId::RouteRefresh(peer) => self.due_refreshes(peer, now),
                TimerId::LimitRestart(peer) => {
                    if self.peer(peer).is_some_and(|p| !p.path_down) {
                        self.feed(peer, false, Input::Start);
                    }
                }
            }
        }
    }

    // ===== FSM plumbing =====

    /// Feeds one input to a peer's main (or second) session and carries out the outputs.
    fn feed(&mut self, idx: u16, second: bool, input: Input) {
        let now = Instant::now();
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        let addr = p.cfg.address;
        let _span = tracing::info_span!("bgp", peer = %addr).entered();
        tracing::trace!(second, "input {:?}", input_name(&input));
        let outs = if second {
            match &mut p.second {
                Some((s, _)) => s.handle(input, now),
                None => return,
            }
        } else {
            p.main.handle(input, now)
        };
        // Only the main session speaks for the peer (RIB, events): a second one that
        // comes up first has won the collision and becomes the main before it reports.
        let second = if second && outs.iter().any(|o| matches!(o, Output::Established(_))) {
            self.resolve_collision(idx);
            self.peer(idx).is_some_and(|p| p.second.is_some())
        } else {
            second
        };
        for o in outs {
            self.output(idx, second, o, now);
        }
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        if second
            && p.second
                .as_ref()
                .is_some_and(|(s, _)| s.state() == State::Idle)
        {
            if let Some((_, c)) = p.second.take() {
                self.closing.extend(c.close());
            }
            for kind in ALL_KINDS {
                self.timers.cancel(TimerId::Session {
                    peer: idx,
                    second: true,
                    kind,
                });
            }
        }
        self.resolve_collision(idx);
        if let Some(p) = self.peer_mut(idx) {
            let st = p.main.state();
            if st != p.shown {
                tracing::debug!("{} -> {}", p.shown.name(), st.name());
                p.shown = st;
                p.since = SystemTime::now();
                let ev = RouteEvent::PeerState {
                    peer: p.cfg.address,
                    name: p.cfg.name.clone(),
                    state: st,
                    last_error: p.main.last_error().map(str::to_owned),
                };
                self.events.send(ev);
            }
        }
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64; quality does not matter, only that two speakers differ.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let f = 0.75 + 0.25 * ((x >> 11) as f64 / (1u64 << 53) as f64);
        d.mul_f64(f)
    }

    fn conn_of(&self, idx: u16, second: bool) -> Option<&Conn> {
        let p = self.peer(idx)?;
        if second {
            p.second.as_ref().map(|(_, c)| c)
        } else {
            p.main_conn.as_ref()
        }
    }

    fn output(&mut self, idx: u16, second: bool, o: Output, now: Instant) {
        match o {
            Output::Connect => {
                let Some(p) = self.peer_mut(idx) else {
                    return;
                };
                if let Some((_, h)) = p.attempt.take() {
                    h.abort();
                }
                let params = p.connect_params();
                let id = self.next_id;
                self.next_id += 1;
                let h = conn::spawn_connect(idx, id, params, self.conn_tx.clone());
                if let Some(p) = self.peer_mut(idx) {
                    p.attempt = Some((id, h));
                }
            }
            Output::Send(m) => {
                let mut out = Vec::new();
                match m {
                    Outgoing::Open(params) => match crate::wire::encode_open(&params) {
                        Ok(b) => out = b,
                        Err(e) => tracing::error!("cannot encode OPEN: {e}"),
                    },
                    Outgoing::Keepalive => encode::push_keepalive(&mut out),
                    Outgoing::Notification(n) => {
                        tracing::info!(
                            second,
                            conn = ?self.conn_of(idx, second).map(|c| c.id),
                            "sending NOTIFICATION {n}"
                        );
                        encode::push_notification(&mut out, &n);
                    }
                }
                self.send_on(idx, second, out);
            }
            Output::ArmTimer(kind, d) => {
                // RFC 4271 §10: jitter (0.75–1.0) on the retry timers so two speakers
                // with equal timers do not keep missing each other.
                let d = match kind {
                    TimerKind::ConnectRetry | TimerKind::IdleHold => self.jitter(d),
                    _ => d,
                };
                self.timers.arm(
                    TimerId::Session {
                        peer: idx,
                        second,
                        kind,
                    },
                    now + d,
                )
            }
            Output::StopTimer(kind) => self.timers.cancel(TimerId::Session {
                peer: idx,
                second,
                kind,
            }),
            Output::Disconnect => {
                let Some(p) = self.peer_mut(idx) else {
                    return;
                };
                if second {
                    // The second session is dropped as soon as it is Idle (see `feed`).
                    return;
                }
                if let Some((_, h)) = p.attempt.take() {
                    h.abort();
                }
                if let Some(c) = p.main_conn.take() {
                    self.closing.extend(c.close());
                }
                self.closing.retain(|h| !h.is_finished());
            }
            // A second session that is not promoted never held the peer's routes.
            Output::Established(_) | Output::Down(_) if second => {}
            Output::Established(n) => self.established(idx, n, now),
            Output::Down(info) => self.down(idx, info, now),
            Output::Update(u) => {
                for e in &u.errors {
                    tracing::warn!(
                        "UPDATE error (RFC 7606 {:?}, attribute {}): {}",
                        e.action,
                        e.type_code,
                        e.reason
                    );
                }
                self.rib.apply_update(idx, *u);
                for peer in self.rib.take_limit_trips() {
                    self.import_limit_reached(peer);
                }
            }
            Output::RouteRefresh(afi) => self.route_refresh(idx, afi, now),
        }
    }

    /// Takes the import limit's action for a peer whose accepted routes reached it.
    fn import_limit_reached(&mut self, idx: u16) {
        let Some(p) = self.peer(idx) else {
            return;
        };
        let Some(limit) = p.cfg.import_limit else {
            return;
        };
        let accepted = self.rib.peer(idx).map_or(0, |r| r.counters.accepted);
        let addr = p.cfg.address;
        let max = limit.max;
        match limit.action {
            LimitAction::Warn => {
                tracing::warn!(peer = %addr, max, accepted, "import limit exceeded");
            }
            LimitAction::Block => {
                tracing::warn!(peer = %addr, max, "import limit reached: further routes from the peer are refused");
            }
            LimitAction::Restart | LimitAction::Disable => {
                let disable = limit.action == LimitAction::Disable;
                tracing::warn!(peer = %addr, max, accepted, disable, "import limit exceeded: resetting the session (Cease, Maximum Number of Prefixes Reached)");
                let n = Notification::new(code::CEASE, subcode::cease::MAX_PREFIXES, Vec::new());
                self.stop_peer(idx, n);
                let Some(p) = self.peer_mut(idx) else {
                    return;
                };
                p.disabled = disable;
                if !disable {
                    // Not at once: the peer would resend the same table and trip it again.
                    let wait = Duration::from_secs(u64::from(p.cfg.error_wait_time.1.max(1)));
                    self.timers
                        .arm(TimerId::LimitRestart(idx), Instant::now() + wait);
                }
            }
        }
    }

    /// A peer's ROUTE-REFRESH: the whole Adj-RIB-Out of the family is re-encoded, so one
    /// per family per `route_refresh_min_interval_ms` at most; those arriving faster are
    /// coalesced into one at the end of the interval.
    fn route_refresh(&mut self, idx: u16, afi: Afi, now: Instant) {
        let interval = Duration::from_millis(self.cfg.route_refresh_min_interval_ms);
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        let last = p.refreshed.iter().find(|(a, _)| *a == afi).map(|(_, t)| *t);
        match last {
            Some(t) if now < t + interval => {
                if !p.refresh_due.contains(&afi) {
                    p.refresh_due.push(afi);
                }
                tracing::debug!(?afi, "ROUTE-REFRESH coalesced (rate limit)");
                let due = t + interval;
                if self
                    .timers
                    .deadline(TimerId::RouteRefresh(idx))
                    .is_none_or(|d| d > due)
                {
                    self.timers.arm(TimerId::RouteRefresh(idx), due);
                }
            }
            _ => {
                p.refreshed.retain(|(a, _)| *a != afi);
                p.refreshed.push((afi, now));
                self.rib.route_refresh(idx, afi);
            }
        }
    }

    /// The refreshes held back by the rate limit whose time has come.
    fn due_refreshes(&mut self, idx: u16, now: Instant) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        let due = std::mem::take(&mut p.refresh_due);
        for afi in due {
            self.route_refresh(idx, afi, now);
        }
    }

    fn established(&mut self, idx: u16, n: Negotiated, now: Instant) {
        let stale_wait = Duration::from_secs(self.cfg.stale_path_time as u64);
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        p.graceful = Promise::of(n.peer_graceful_restart.as_ref(), &n.families);
        p.route_refresh = n.route_refresh;
        let local = p.main_conn.as_ref().map(|c| canonical(c.local.ip()));
        let name = p.cfg.name.clone();
        let addr = p.cfg.address;
        tracing::info!(
            "session established (AS {}, id {}, hold {} s, families {:?})",
            n.peer_as,
            n.peer_router_id,
            n.hold_time,
            n.families
        );
        self.timers.cancel(TimerId::GrRestart(idx));
        self.rib.peer_up(
            idx,
            PeerUp {
                router_id: n.peer_router_id,
                families: n.families,
                local_addr: local,
                graceful_restart: n.peer_graceful_restart,
            },
        );
        if self.rib.has_stale(idx) {
            self.timers.arm(TimerId::StalePath(idx), now + stale_wait);
        }
        self.events.send(RouteEvent::PeerUp { peer: addr, name });
    }

    fn down(&mut self, idx: u16, info: DownInfo, now: Instant) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        let retention = p.graceful.on_down(info.graceful);
        // Refreshes held back for the old session mean nothing to the next one.
        p.refresh_due.clear();
        self.timers.cancel(TimerId::RouteRefresh(idx));
        let Some(p) = self.peer(idx) else {
            return;
        };
        let name = p.cfg.name.clone();
        let addr = p.cfg.address;
        tracing::info!("session down: {}", info.reason);
        self.timers.cancel(TimerId::StalePath(idx));
        let kept = retention.as_ref().map_or(&[][..], |r| &r.families[..]);
        self.rib.peer_down(idx, kept);
        if let Some(r) = &retention {
            tracing::info!(
                "graceful restart: keeping routes for up to {} s",
                r.restart_time.as_secs()
            );
            self.timers
                .arm(TimerId::GrRestart(idx), now + r.restart_time);
        }
        self.events.send(RouteEvent::PeerDown {
            peer: addr,
            name,
            reason: info.reason,
            graceful: retention.is_some(),
        });
    }

    /// Carries out [`collision::decide`] for a peer with a second connection.
    fn resolve_collision(&mut self, idx: u16) {
        let now = Instant::now();
        let Some(p) = self.peer(idx) else {
            return;
        };
        let Some((sec, _)) = &p.second else {
            return;
        };
        let sessions = Sessions {
            main: p.main.state(),
            main_inbound: p.main.is_inbound(),
            main_up_for: p.main.established_for(now),
            main_peer_gr: p
                .main
                .negotiated()
                .is_some_and(|n| n.peer_graceful_restart.is_some()),
            second: sec.state(),
            second_remote_id: sec.peer_open().map(|o| o.router_id),
            local_id: self.cfg.router_id,
        };
        let verdict = collision::decide(&sessions);
        if !matches!(verdict, Verdict::Wait | Verdict::Promote) {
            tracing::info!(
                main = ?sessions.main,
                second = ?sessions.second,
                main_inbound = sessions.main_inbound,
                remote = ?sessions.second_remote_id,
                "connection collision: {verdict:?}"
            );
        }
        match verdict {
            Verdict::Wait => {}
            Verdict::Promote => self.promote(idx),
            Verdict::KeepMain => self.feed(idx, true, Input::CollisionDump),
            Verdict::KeepSecond => {
                self.feed(idx, false, Input::CollisionDump);
                self.promote(idx);
            }
            Verdict::PeerRestarted => {
                self.feed(
                    idx,
                    false,
                    Input::TcpClosed {
                        error: "peer restarted (new connection)".into(),
                    },
                );
                self.promote(idx);
            }
        }
    }

    /// The second session replaces the main one.
    fn promote(&mut self, idx: u16) {
        let sc = {
            let Some(p) = self.peer(idx) else {
                return;
            };
            session_config(&self.cfg, &p.cfg)
        };
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        let Some((mut s, c)) = p.second.take() else {
            return;
        };
        if let Some((_, h)) = p.attempt.take() {
            h.abort();
        }
        s.reconfigure(sc);
        p.main = s;
        let old = p.main_conn.replace(c);
        if let Some(old) = old {
            self.closing.extend(old.close());
        }
        for kind in ALL_KINDS {
            let from = TimerId::Session {
                peer: idx,
                second: true,
                kind,
            };
            let to = TimerId::Session {
                peer: idx,
                second: false,
                kind,
            };
            match self.timers.deadline(from) {
                Some(t) => {
                    self.timers.cancel(from);
                    self.timers.arm(to, t);
                }
                None => self.timers.cancel(to),
            }
        }
    }

    /// After a batch: decide, report, and hand each peer its encoded UPDATEs.
    fn flush(&mut self) {
        if self.rib.pending() > 0 {
            self.rib.process();
        }
        if self.rib.emit_events {
            let evs = self.rib.take_events();
            if !self.events.send_all(evs) {
                self.rib.emit_events = false;
            }
        }
        for idx in self.rib.peers_with_wire() {
            let bytes = self.rib.take_wire(idx);
            if self
                .peer(idx)
                .is_some_and(|p| p.main.state() == State::Established)
            {
                self.send_on(idx, false, bytes);
            }
        }
    }
}

const ALL_KINDS: [TimerKind; 4] = [
    TimerKind::ConnectRetry,
    TimerKind::Hold,
    TimerKind::Keepalive,
    TimerKind::IdleHold,
];

fn input_name(i: &Input) -> String {
    match i {
        Input::Message { message } => match message {
            crate::wire::Message::Open(_) => "OPEN".into(),
            crate::wire::Message::Update(_) => "UPDATE".into(),
            crate::wire::Message::Keepalive => "KEEPALIVE".into(),
            crate::wire::Message::Notification(n) => format!("NOTIFICATION {n}"),
            crate::wire::Message::RouteRefresh { .. } => "ROUTE-REFRESH".into(),
        },
        other => format!("{other:?}"),
    }
}
