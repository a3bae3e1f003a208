//! A route monitor inside a lab namespace: a thread that joins the namespace, subscribes to
//! the kernel's IPv4 route notifications (rtnetlink multicast, what `ip monitor route`
//! reads) and timestamps each message as it arrives, so a benchmark measures when a route
//! reached a kernel rather than when a polling loop noticed it.

use std::collections::VecDeque;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ipnet::Ipv4Net;
use lab::Netns;
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{MsgFlags, recv, setsockopt, sockopt};
use nix::sys::time::TimeVal;

const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTN_BLACKHOLE: u8 = 6;
const RT_TABLE_MAIN: u8 = 254;
const AF_INET: u8 = 2;

/// One change of a main-table IPv4 route, as the kernel announced it.
#[derive(Debug, Clone)]
pub struct RouteEvent {
    /// When the notification was read (CLOCK_MONOTONIC, like every `Instant`).
    pub at: Instant,
    /// `RTM_NEWROUTE` (true) or `RTM_DELROUTE`.
    pub added: bool,
    pub dst: Ipv4Net,
    pub blackhole: bool,
    pub gateway: Option<Ipv4Addr>,
}

/// The monitor of one namespace; its thread stops when this drops.
pub struct RouteMonitor {
    rx: mpsc::Receiver<RouteEvent>,
    backlog: VecDeque<RouteEvent>,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RouteMonitor {
    /// Starts monitoring `ns`; returns once the subscription is active, so nothing that
    /// happens afterwards is missed.
    pub fn start(ns: &Netns) -> Result<RouteMonitor> {
        let file = File::open(ns.path()).with_context(|| format!("opening {}", ns.path()))?;
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU64::new(0));
        let (stop2, lost2) = (stop.clone(), lost.clone());
        let thread = std::thread::Builder::new()
            .name(format!("mon-{}", ns.name()))
            .spawn(move || {
                // setns moves only this thread; the rest of the process stays put.
                let socket = setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))
                    .and_then(|()| subscribe().map_err(|e| format!("{e:#}")));
                match socket {
                    Ok(fd) => {
                        realtime();
                        let _ = ready_tx.send(Ok(()));
                        read_loop(&fd, &tx, &stop2, &lost2);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let monitor = RouteMonitor {
            rx,
            backlog: VecDeque::new(),
            stop,
            lost,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(monitor),
            Ok(Err(e)) => Err(anyhow!("route monitor in {}: {e}", ns.name())),
            Err(_) => Err(anyhow!("route monitor in {} did not start", ns.name())),
        }
    }

    /// Forgets every event received so far.
    pub fn clear(&mut self) {
        self.backlog.clear();
        while self.rx.try_recv().is_ok() {}
    }

    /// The first event (received so far or within `timeout`) that `want` accepts; events
    /// before it are consumed.
    pub fn wait(
        &mut self,
        timeout: Duration,
        want: impl Fn(&RouteEvent) -> bool,
    ) -> Option<RouteEvent> {
        while let Some(e) = self.backlog.pop_front() {
            if want(&e) {
                return Some(e);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(e) if want(&e) => return Some(e),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Notifications the kernel dropped (socket buffer overrun), which would bias figures.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves this thread to SCHED_FIFO (with `chrt`, no unsafe code) so that on a busy machine
/// it still reads a notification the moment it arrives; the timestamps are only as good as
/// that. On failure the figures stay valid but noisier, and a warning says so.
pub fn realtime() {
    let tid = nix::unistd::gettid().to_string();
    let ok = std::process::Command::new("chrt")
        .args(["-f", "-p", "50", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("warning: cannot make route monitor thread {tid} real-time; timestamps may lag");
    }
}

/// A netlink socket subscribed to IPv4 route changes, with a short receive timeout so the
/// thread notices a stop request.
fn subscribe() -> Result<OwnedFd> {
    lab::netlink::route_socket(RTMGRP_IPV4_ROUTE, |fd| {
        setsockopt(fd, sockopt::RcvBuf, &(4 << 20))?;
        setsockopt(fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000))?;
        Ok(())
    })
}

fn read_loop(fd: &OwnedFd, tx: &mpsc::Sender<RouteEvent>, stop: &AtomicBool, lost: &AtomicU64) {
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => {
                let at = Instant::now();
                for e in parse(&buf[..n], at) {
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            }
            Err(Errno::ENOBUFS) => {
                lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn ipv4_at(b: &[u8], off: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// The main-table IPv4 route messages in one datagram.
fn parse(buf: &[u8], at: Instant) -> Vec<RouteEvent> {
    lab::netlink::messages(buf)
        .map_while(Result::ok)
        .filter(|m| m.kind == RTM_NEWROUTE || m.kind == RTM_DELROUTE)
        .filter_map(|m| parse_route(m.payload, m.kind == RTM_NEWROUTE, at))
        .collect()
}

/// One `rtmsg` and its attributes.
fn parse_route(msg: &[u8], added: bool, at: Instant) -> Option<RouteEvent> {
    let (family, dst_len, table, kind) = (msg.first()?, msg.get(1)?, msg.get(4)?, msg.get(7)?);
    if *family != AF_INET || *table != RT_TABLE_MAIN {
        return None;
    }
    let (mut dst, mut gateway) = (Ipv4Addr::UNSPECIFIED, None);
    let mut off = 12;
    while let (Some(len), Some(ty)) = (u16_at(msg, off), u16_at(msg, off + 2)) {
        let len = usize::from(len);
        if len < 4 || off + len > msg.len() {
            break;
        }
        match ty {
            RTA_DST => dst = ipv4_at(msg, off + 4)?,
            RTA_GATEWAY => gateway = ipv4_at(msg, off + 4),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Some(RouteEvent {
        at,
        added,
        dst: Ipv4Net::new(dst, *dst_len).ok()?,
        blackhole: *kind == RTN_BLACKHOLE,
        gateway,
    })
}
