//! The tokio side: one task owns the sessions of a node, a receive socket on UDP 3784 and a
//! send socket with a source port in 49152-65535, both bound to the node's address
//! (RFC 5881 §4). Packets go out with TTL 255 and only packets that arrive with TTL 255
//! are taken (§5: nothing from beyond the link). A packet is matched to its session by
//! its Your Discriminator, or while that is 0 by its source address; a packet for no
//! configured session is dropped. Session changes go out as [`BfdEvent`]s.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use crate::packet::{ControlPacket, Diag, State};
use crate::session::{Output, Session, SessionConfig};

/// RFC 5881 §4: single-hop control packets go to this port.
pub const CONTROL_PORT: u16 = 3784;

/// How far apart the AdminDown packets of a removed session go.
const RETELL_EVERY: Duration = Duration::from_millis(40);

/// RFC 5881 §4: the source port range.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// A session's change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdEvent {
    pub peer: IpAddr,
    pub from: State,
    pub to: State,
    pub diag: Diag,
    /// The peer's state as it last said: AdminDown means it stopped BFD on purpose,
    /// which is no failure of the path (RFC 5882 §3.2).
    pub remote: State,
}

/// One session as `calicoctl node status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub peer: IpAddr,
    pub state: State,
    pub remote_state: State,
    pub diag: Diag,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub config: SessionConfig,
    /// Our periodic interval as negotiated (None: the peer asks for none).
    pub tx_interval: Option<Duration>,
    /// How long the peer may be silent.
    pub detection_time: Duration,
    /// When it last changed state.
    pub since: Instant,
}

enum Command {
    Set(IpAddr, SessionConfig),
    Remove(IpAddr),
    AdminDownAll(oneshot::Sender<()>),
    Status(oneshot::Sender<Vec<SessionStatus>>),
}

/// The handle of a running BFD task; the task ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct Bfd {
    commands: mpsc::UnboundedSender<Command>,
}

/// Why the task could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: io::Error,
    },
    #[error("BFD on {0}: only IPv4 sessions are supported")]
    Ipv6(IpAddr),
    #[error("BFD socket: {0}")]
    Socket(String),
}

impl Bfd {
    /// Binds the sockets on `local` and returns the handle and the task to run.
    pub fn start(
        local: IpAddr,
        events: mpsc::UnboundedSender<BfdEvent>,
    ) -> Result<
        (
            Bfd,
            impl std::future::Future<Output = Result<(), DriverError>> + Send + 'static,
        ),
        DriverError,
    > {
        let IpAddr::V4(local) = local else {
            return Err(DriverError::Ipv6(local));
        };
        let (rx, tx) = bind(local)?;
        let (commands, rx_commands) = mpsc::unbounded_channel();
        let task = Driver {
            rx,
            tx,
            sessions: BTreeMap::new(),
            events,
            retelling: Vec::new(),
        }
        .run(rx_commands);
        Ok((Bfd { commands }, task))
    }

    /// Adds a session to `peer`, or applies `cfg` to the one there is.
    pub fn set(&self, peer: IpAddr, cfg: SessionConfig) {
        let _ = self.commands.send(Command::Set(peer, cfg));
    }

    /// Removes the session to `peer` (the peer sees it time out, or go AdminDown first).
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.commands.send(Command::Remove(peer));
    }

    /// Takes every session AdminDown and tells the peers (three times, [`RETELL_EVERY`]
    /// apart: keep the task running that long), as calico-node does before it exits: a
    /// restart is not a dead path, and peers that follow RFC 5882 §3.2 keep BGP (and its
    /// graceful restart) instead of dropping the node's routes.
    pub async fn admin_down_all(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::AdminDownAll(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Every session, by peer; empty when the task has ended.
    pub async fn status(&self) -> Vec<SessionStatus> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Status(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

fn sock_err(what: &'static str, addr: impl ToString) -> impl FnOnce(io::Error) -> DriverError {
    let addr = addr.to_string();
    move |source| DriverError::Bind { what, addr, source }
}

fn bind(local: Ipv4Addr) -> Result<(UdpSocket, UdpSocket), DriverError> {
    let rx_addr = SocketAddrV4::new(local, CONTROL_PORT);
    let rx = StdUdpSocket::bind(rx_addr).map_err(sock_err("the BFD port", rx_addr))?;
    setsockopt(&rx, sockopt::Ipv4RecvTtl, &true)
        .map_err(|e| DriverError::Socket(format!("IP_RECVTTL: {e}")))?;
    let mut tx = None;
    let mut last = None;
    for port in SOURCE_PORTS {
        match StdUdpSocket::bind(SocketAddrV4::new(local, port)) {
            Ok(s) => {
                tx = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tx = tx.ok_or_else(|| {
        sock_err("a BFD source port", local)(
            last.unwrap_or_else(|| io::Error::other("no port free in 49152-65535")),
        )
    })?;
    setsockopt(&tx, sockopt::Ipv4Ttl, &255)
        .map_err(|e| DriverError::Socket(format!("IP_TTL: {e}")))?;
    let tokio_socket = |s: StdUdpSocket, what| {
        s.set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(s))
            .map_err(sock_err(what, local))
    };
    Ok((
        tokio_socket(rx, "the BFD port")?,
        tokio_socket(tx, "a BFD source port")?,
    ))
}

/// One session and its peer.
struct Entry {
    session: Session,
    since: Instant,
}

struct Driver {
    rx: UdpSocket,
    tx: UdpSocket,
    sessions: BTreeMap<IpAddr, Entry>,
    events: mpsc::UnboundedSender<BfdEvent>,
    /// Removed sessions' AdminDown packets still to send: peer, packets, times left, when.
    retelling: Vec<(IpAddr, Vec<[u8; crate::packet::MIN_LEN]>, u8, Instant)>,
}

/// One received datagram: source, TTL, length.
type Received = (Option<Ipv4Addr>, Option<i32>, usize);

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), DriverError> {
        let mut buf = [0u8; 512];
        loop {
            let now = Instant::now();
            let next = self
                .sessions
                .values()
                .map(|e| e.session.next_deadline(now))
                .chain(self.retelling.iter().map(|r| r.3))
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return Ok(()),
                },
                ready = self.rx.readable() => {
                    if let Err(e) = ready {
                        return Err(DriverError::Socket(e.to_string()));
                    }
                    let fd = self.rx.as_raw_fd();
                    match self.rx.try_io(Interest::READABLE, || receive(fd, &mut buf)) {
                        Ok((src, ttl, n)) => self.packet(src, ttl, &buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => debug!(error = %e, "BFD receive failed"),
                    }
                }
                () = tokio::time::sleep_until(next.into()) => {}
            }
            self.run_timers(Instant::now());
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Set(peer, cfg) => {
                if let Some(e) = self.sessions.get_mut(&peer) {
                    if e.session.config() != cfg {
                        let out = e.session.set_config(cfg, now);
                        self.emit(peer, out);
                    }
                    return;
                }
                let disc = self.new_discriminator();
                info!(%peer, discriminator = disc, tx = ?cfg.desired_min_tx, rx = ?cfg.required_min_rx, multiplier = cfg.detect_mult, "BFD session added");
                self.sessions.insert(
                    peer,
                    Entry {
                        session: Session::new(disc, cfg, now),
                        since: now,
                    },
                );
            }
            Command::AdminDownAll(reply) => {
                let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
                for peer in peers {
                    self.command(Command::Remove(peer));
                }
                let _ = reply.send(());
            }
            Command::Remove(peer) => {
                if let Some(mut e) = self.sessions.remove(&peer) {
                    // Tell the peer why it goes quiet (RFC 5882 §3.2: AdminDown is not a
                    // failure), three times over one of its detection times, so that one
                    // lost packet does not look like a dead path.
                    let out = e.session.set_admin_down(true, now);
                    self.send(peer, &out);
                    let retell: Vec<[u8; crate::packet::MIN_LEN]> =
                        out.send.iter().map(ControlPacket::encode).collect();
                    self.retelling.push((peer, retell, 2, now + RETELL_EVERY));
                    info!(%peer, "BFD session removed");
                }
            }
            Command::Status(reply) => {
                let all = self
                    .sessions
                    .iter()
                    .map(|(peer, e)| SessionStatus {
                        peer: *peer,
                        state: e.session.state(),
                        remote_state: e.session.remote_state(),
                        diag: e.session.local_diag(),
                        local_discriminator: e.session.local_discriminator(),
                        remote_discriminator: e.session.remote_discriminator(),
                        config: e.session.config(),
                        tx_interval: e.session.tx_interval(),
                        detection_time: e.session.detection_time(),
                        since: e.since,
                    })
                    .collect();
                let _ = reply.send(all);
            }
        }
    }

    fn new_discriminator(&self) -> u32 {
        loop {
            let d: u32 = rand::random();
            if d != 0
                && !self
                    .sessions
                    .values()
                    .any(|e| e.session.local_discriminator() == d)
            {
                return d;
            }
        }
    }

    fn packet(&mut self, src: Option<Ipv4Addr>, ttl: Option<i32>, bytes: &[u8]) {
        let Some(src) = src else { return };
        if ttl != Some(255) {
            debug!(%src, ?ttl, "BFD packet dropped: TTL is not 255");
            return;
        }
        let pkt = match ControlPacket::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                debug!(%src, error = %e, "BFD packet dropped");
                return;
            }
        };
        let peer = if pkt.your_discriminator != 0 {
            self.sessions
                .iter()
                .find(|(_, e)| e.session.local_discriminator() == pkt.your_discriminator)
                .map(|(p, _)| *p)
        } else {
            Some(IpAddr::V4(src)).filter(|p| self.sessions.contains_key(p))
        };
        let Some(peer) = peer.filter(|p| *p == IpAddr::V4(src)) else {
            debug!(%src, your = pkt.your_discriminator, "BFD packet dropped: no such session");
            return;
        };
        let now = Instant::now();
        let Some(e) = self.sessions.get_mut(&peer) else {
            return;
        };
        match e.session.receive(&pkt, now) {
            Ok(out) => self.emit(peer, out),
            Err(refused) => debug!(%peer, %refused, "BFD packet not taken"),
        }
    }

    fn run_timers(&mut self, now: Instant) {
        for (peer, packets, left, at) in &mut self.retelling {
            if *at <= now {
                let to = SocketAddr::new(*peer, CONTROL_PORT);
                for p in packets.iter() {
                    let _ = self.tx.try_send_to(p, to);
                }
                *left = left.saturating_sub(1);
                *at = now + RETELL_EVERY;
            }
        }
        self.retelling.retain(|r| r.2 > 0);
        let due: Vec<IpAddr> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.session.next_deadline(now) <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if let Some(e) = self.sessions.get_mut(&peer) {
                let out = e.session.poll(now);
                self.emit(peer, out);
            }
        }
    }

    fn emit(&mut self, peer: IpAddr, out: Output) {
        self.send(peer, &out);
        for t in out.transitions {
            let mut remote = State::Down;
            if let Some(e) = self.sessions.get_mut(&peer) {
                e.since = Instant::now();
                remote = e.session.remote_state();
            }
            info!(%peer, from = %t.from, to = %t.to, diag = %t.diag, "BFD session changed");
            let _ = self.events.send(BfdEvent {
                peer,
                from: t.from,
                to: t.to,
                diag: t.diag,
                remote,
            });
        }
    }

    fn send(&self, peer: IpAddr, out: &Output) {
        let to = SocketAddr::new(peer, CONTROL_PORT);
        for p in &out.send {
            // A full socket buffer loses one packet; the next interval sends another.
            if let Err(e) = self.tx.try_send_to(&p.encode(), to) {
                debug!(%peer, error = %e, "BFD send failed");
            }
        }
    }
}

/// One `recvmsg` with the TTL the packet arrived with.
fn receive(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(i32);
    let msg = recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(io::Error::from)?;
    let ttl = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::Ipv4Ttl(t) => Some(t),
            _ => None,
        })
    });
    let src = msg.address.map(|a| a.ip());
    Ok((src, ttl, msg.bytes))
}
