//! Lab plumbing for the interop tests: a fabric namespace with a bridge and one namespace
//! per node (10.0.0.N/24, fd00::N/64 on eth0), our speaker running in-process inside a node
//! namespace (a thread that entered it), and event helpers. Everything is removed on drop,
//! pass or fail; nothing touches the root namespace.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bgp::{OriginAttrs, PeerConfig, PeerStatus, Policy, RouteEvent, Speaker, SpeakerConfig, State};
use ipnet::IpNet;
use lab::{Netns, veth};
use tokio::sync::mpsc::UnboundedReceiver;

static CLEAN: Once = Once::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fabric bridge and `n` node namespaces on it.
pub struct Lab {
    pub nodes: Vec<Netns>,
    pub dir: tempfile::TempDir,
    _fabric: Netns,
}

impl Lab {
    pub fn new(n: usize) -> Result<Lab> {
        CLEAN.call_once(lab::remove_leftovers);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let fabric = Netns::create(&format!("b{id}f"))?;
        fabric.ip(&["link", "add", "br0", "type", "bridge"])?;
        fabric.ip(&["link", "set", "br0", "up"])?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let node = Netns::create(&format!("b{id}n{i}"))?;
            let p = format!("p{i}");
            veth(&fabric, &p, &node, "eth0")?;
            fabric.ip(&["link", "set", &p, "master", "br0"])?;
            node.ip(&[
                "addr",
                "add",
                &format!("10.0.0.{}/24", i + 1),
                "dev",
                "eth0",
            ])?;
            node.ip(&[
                "addr",
                "add",
                &format!("fd00::{}/64", i + 1),
                "dev",
                "eth0",
                "nodad",
            ])?;
            nodes.push(node);
        }
        Ok(Lab {
            nodes,
            dir: tempfile::tempdir()?,
            _fabric: fabric,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

pub fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

/// Our speaker, running on a thread inside a node namespace.
pub struct NsSpeaker {
    pub speaker: Speaker,
    events: UnboundedReceiver<RouteEvent>,
    /// Every event received so far.
    pub log: Vec<RouteEvent>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NsSpeaker {
    pub fn start(ns: &Netns, cfg: SpeakerConfig) -> Result<NsSpeaker> {
        let path = ns.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let setup = || -> Result<tokio::runtime::Runtime> {
                let f = File::open(&path).context("opening the namespace")?;
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("entering the namespace")?;
                Ok(tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?)
            };
            let rt = match setup() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match Speaker::start(cfg) {
                    Ok((s, ev)) => {
                        let _ = tx.send(Ok((s.clone(), ev)));
                        let _ = stop_rx.await;
                        let _ = s.shutdown(Some("test done".into())).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!(e)));
                    }
                }
            });
        });
        let (speaker, events) = rx.recv().context("speaker thread")??;
        Ok(NsSpeaker {
            speaker,
            events,
            log: Vec::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn add_peer(&self, p: PeerConfig) -> Result<()> {
        Ok(self.block_on(self.speaker.add_peer(p))?)
    }

    pub fn update_peer(&self, p: PeerConfig) -> Result<()> {
        Ok(self.block_on(self.speaker.update_peer(p))?)
    }

    pub fn originate(&self, nets: &[&str]) -> Result<()> {
        Ok(self.speaker.originate(
            nets.iter()
                .map(|n| (net(n), OriginAttrs::default()))
                .collect(),
        )?)
    }

    pub fn withdraw(&self, nets: &[&str]) -> Result<()> {
        Ok(self
            .speaker
            .withdraw(nets.iter().map(|n| net(n)).collect())?)
    }

    pub fn status(&self, addr: IpAddr) -> Option<PeerStatus> {
        self.block_on(self.speaker.peer_status())
            .ok()?
            .into_iter()
            .find(|p| p.address == addr)
    }

    /// Waits for an event matching `f` (logging every event); `None` on timeout.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        f: impl Fn(&RouteEvent) -> bool,
    ) -> Option<RouteEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let events = &mut self.events;
            let ev = self
                .rt
                .block_on(async move { tokio::time::timeout(left, events.recv()).await })
                .ok()??;
            self.log.push(ev.clone());
            if f(&ev) {
                return Some(ev);
            }
        }
    }

    /// Collects whatever events arrive in the next `d`.
    pub fn drain_for(&mut self, d: Duration) {
        let _ = self.wait_for(d, |_| false);
    }

    /// The latest event received about `prefix`.
    fn latest(&self, p: IpNet) -> Option<&RouteEvent> {
        self.log.iter().rev().find(|e| {
            matches!(e, RouteEvent::Best { prefix, .. } | RouteEvent::Withdrawn { prefix } if *prefix == p)
        })
    }

    /// Waits until the latest event about `prefix` satisfies `ok`.
    fn expect_latest(
        &mut self,
        prefix: &str,
        ok: impl Fn(&RouteEvent) -> bool,
    ) -> Result<RouteEvent> {
        let p = net(prefix);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.latest(p).filter(|e| ok(e)) {
                return Ok(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{prefix}: latest event {:?}; all events: {:?}",
                    self.latest(p),
                    self.log
                );
            }
            self.wait_for(left, |e| {
                matches!(e, RouteEvent::Best { prefix, .. } | RouteEvent::Withdrawn { prefix } if *prefix == p)
            });
        }
    }

    pub fn expect_best(&mut self, prefix: &str, next_hop: IpAddr, as_path: &[u32]) -> Result<()> {
        self.expect_latest(prefix, |e| {
            matches!(e, RouteEvent::Best { next_hop: nh, as_path: path, .. }
                if *nh == next_hop && &**path == as_path)
        })
        .map(|_| ())
    }

    pub fn expect_withdrawn(&mut self, prefix: &str) -> Result<()> {
        self.expect_latest(prefix, |e| matches!(e, RouteEvent::Withdrawn { .. }))
            .map(|_| ())
    }

    pub fn withdrawn_ever(&self, prefix: &str) -> bool {
        let p = net(prefix);
        self.log
            .iter()
            .any(|e| matches!(e, RouteEvent::Withdrawn { prefix } if *prefix == p))
    }

    pub fn wait_state(&mut self, addr: IpAddr, st: State, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.status(addr).is_some_and(|s| s.state == st) {
                return Ok(());
            }
            self.drain_for(Duration::from_millis(50));
        }
        bail!("peer {addr} not {st:?}: {:?}", self.status(addr))
    }
}

impl Drop for NsSpeaker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Our speaker's configuration in the labs: AS `asn`, id and address 10.0.0.`last`.
pub fn speaker_config(asn: u32, last: u8) -> SpeakerConfig {
    SpeakerConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 0, 0, last),
        listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 179)),
        ..SpeakerConfig::default()
    }
}

/// A peer with lab timers (hold 9 / keepalive 3 / connect retry 1) and accept-all policies.
pub fn lab_peer(last: u8, asn: u32, me: u8) -> PeerConfig {
    PeerConfig {
        hold_time: 9,
        keepalive_time: 3,
        connect_retry_time: 1,
        error_wait_time: (1, 2),
        next_hop_v6: Some(format!("fd00::{me}").parse().expect("v6")),
        import: Some(Policy::accept_all()),
        export: Some(Policy::accept_all()),
        ..PeerConfig::new(format!("lab{last}"), v4(last), asn)
    }
}

/// Polls `check` until it holds; a failure names what it was waiting for.
pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    if lab::wait_until(timeout, &mut check) {
        Ok(())
    } else {
        bail!("timed out waiting for {what}")
    }
}
