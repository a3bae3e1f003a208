//! BFD tied to BGP: the BFD task runs (started the first time a session is wanted, so
//! port 3784 is only bound where BFDConfiguration asks for it) with one session per
//! protected peer; when a session that was Up goes Down the BGP session to that peer is
//! closed at once and kept closed (RFC 5882 §4.3: no graceful restart for a path that is
//! gone), and started again when BFD is Up again. A peer taking its session
//! administratively down is not a failure (RFC 5882 §3.2). A session removed from the
//! configuration releases its peer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use bfd::driver::DriverError;
use bfd::{Bfd, BfdEvent, SessionConfig, SessionStatus, State};
use bgp::Speaker;
use datastore::model::BfdSessionStatus;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The BFD driver, spawned; its end (or panic) is seen by [`BfdLink::next`], which makes
/// the BGP task, and so calico-node, fail.
type DriverTask = tokio::task::JoinHandle<Result<(), DriverError>>;

/// The runtime BFD runs on: its own thread, so its timers (tens of milliseconds) never
/// wait behind the agent's other work on the agent's runtime (decoding a relist of a
/// large datastore is a long stretch of CPU). Started with the first BFD session.
fn bfd_runtime() -> Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::Mutex<Option<tokio::runtime::Handle>> = std::sync::Mutex::new(None);
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the BFD runtime")?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("bfd".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .context("starting the BFD thread")?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Counts for the Prometheus metrics (sessions by state come from `node status`), and
/// the running BFD task's handle, for the AdminDown calico-node sends before it exits.
#[derive(Debug, Default)]
pub struct BfdMetrics {
    pub state_changes: AtomicU64,
    pub running: std::sync::Mutex<Option<Bfd>>,
}

/// Takes every BFD session AdminDown (bounded to 300 ms): called before calico-node exits,
/// so that a restart is not taken for a dead node by peers that run BFD.
pub async fn admin_down_before_exit(metrics: &BfdMetrics) {
    let running = metrics.running.lock().ok().and_then(|g| g.clone());
    if let Some(bfd) = running {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), async {
            bfd.admin_down_all().await;
            // The task sends the repeats meanwhile.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        })
        .await;
        info!("BFD sessions taken administratively down before exit");
    }
}

/// The running BFD task and what it protects.
pub struct BfdLink {
    local: IpAddr,
    running: Option<(Bfd, DriverTask, mpsc::UnboundedReceiver<BfdEvent>)>,
    sessions: BTreeMap<IpAddr, SessionConfig>,
    /// Peers whose BGP session BFD holds down.
    path_down: BTreeSet<IpAddr>,
    metrics: Arc<BfdMetrics>,
}

impl BfdLink {
    /// Nothing runs until a session is wanted.
    pub fn new(local: IpAddr, metrics: Arc<BfdMetrics>) -> BfdLink {
        BfdLink {
            local,
            running: None,
            sessions: BTreeMap::new(),
            path_down: BTreeSet::new(),
            metrics,
        }
    }

    /// Makes the sessions `wanted`; a peer whose session goes is released.
    pub fn sync(
        &mut self,
        wanted: BTreeMap<IpAddr, SessionConfig>,
        speaker: &Speaker,
    ) -> Result<()> {
        if wanted == self.sessions {
            return Ok(());
        }
        if self.running.is_none() && !wanted.is_empty() {
            let (tx, rx) = mpsc::unbounded_channel();
            let runtime = bfd_runtime()?;
            // The sockets belong to the runtime they are made on.
            let started = {
                let _on_bfd_runtime = runtime.enter();
                Bfd::start(self.local, tx)
            };
            let (handle, task) =
                started.with_context(|| format!("starting BFD on {}", self.local))?;
            info!(address = %self.local, "BFD started");
            if let Ok(mut r) = self.metrics.running.lock() {
                *r = Some(handle.clone());
            }
            self.running = Some((handle, runtime.spawn(task), rx));
        }
        let Some((handle, _, _)) = &self.running else {
            return Ok(());
        };
        for peer in self.sessions.keys().filter(|p| !wanted.contains_key(p)) {
            handle.remove(*peer);
            if self.path_down.remove(peer) {
                let _ = speaker.set_path(*peer, true);
            }
        }
        for (peer, cfg) in &wanted {
            handle.set(*peer, *cfg);
        }
        self.sessions = wanted;
        Ok(())
    }

    /// The next session change; fails when the BFD task ends (it never should), pending
    /// while BFD is not running.
    pub async fn next(&mut self) -> Result<BfdEvent> {
        let Some((_, task, events)) = &mut self.running else {
            return std::future::pending().await;
        };
        tokio::select! {
            ended = task => match ended {
                Ok(Ok(())) => anyhow::bail!("the BFD task ended"),
                Ok(Err(e)) => Err(e).context("the BFD task failed"),
                Err(e) => Err(e).context("the BFD task panicked"),
            },
            ev = events.recv() => ev.context("the BFD task ended"),
        }
    }

    /// Takes a session change to BGP.
    pub fn apply(&mut self, ev: BfdEvent, speaker: &Speaker) {
        self.metrics.state_changes.fetch_add(1, Ordering::Relaxed);
        if !self.sessions.contains_key(&ev.peer) {
            return;
        }
        if ev.to == State::Up {
            if self.path_down.remove(&ev.peer) {
                let _ = speaker.set_path(ev.peer, true);
            }
        } else if ev.from == State::Up {
            if ev.remote == State::AdminDown {
                // RFC 5882 §3.2: the peer stopped BFD on purpose (its configuration went),
                // the path is fine.
                info!(peer = %ev.peer, "BFD: the peer took the session administratively down; BGP left as it is");
                return;
            }
            warn!(peer = %ev.peer, diag = %ev.diag, "BFD: session down; closing the BGP session");
            self.path_down.insert(ev.peer);
            let _ = speaker.set_path(ev.peer, false);
        }
    }

    /// Tells a new speaker which paths are down.
    pub fn reapply(&self, speaker: &Speaker) {
        for peer in &self.path_down {
            let _ = speaker.set_path(*peer, false);
        }
    }

    /// Every session, for `node status`.
    pub async fn status(&self) -> BTreeMap<IpAddr, BfdSessionStatus> {
        let Some((handle, _, _)) = &self.running else {
            return BTreeMap::new();
        };
        handle
            .status()
            .await
            .into_iter()
            .map(|s| (s.peer, view(&s)))
            .collect()
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn view(s: &SessionStatus) -> BfdSessionStatus {
    let since = SystemTime::now()
        .checked_sub(Instant::now().saturating_duration_since(s.since))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    BfdSessionStatus {
        state: s.state.to_string(),
        remote_state: s.remote_state.to_string(),
        diagnostic: s.diag.to_string(),
        since_time: humantime::format_rfc3339_seconds(since).to_string(),
        minimum_send_interval_ms: millis(s.config.desired_min_tx),
        minimum_recv_interval_ms: millis(s.config.required_min_rx),
        multiplier: s.config.detect_mult,
        tx_interval_ms: s.tx_interval.map_or(0, millis),
        detection_time_ms: millis(s.detection_time),
    }
}
