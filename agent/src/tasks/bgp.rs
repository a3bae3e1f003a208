//! BGP wiring: the embedded [`bgp::Speaker`] kept in step with the datastore. On every
//! cluster-state change the desired peers and exports are recomputed
//! ([`crate::calc::peers`], [`crate::calc::exports`]) and only the differences are applied
//! to the live speaker — no configuration file, no reload. Learned best paths are folded
//! into [`LearnedRoutes`] for the dataplane, and peer status into `node status` rows.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use bgp::Speaker;
use bgp::config::{ImportLimit, NextHopMode, OriginAttrs, PeerConfig, SpeakerConfig};
use bgp::events::{PeerStatus, RouteEvent};
use bgp::policy::Policy;
use datastore::model::{BgpPeerStatus, IpFamily, SecretKeyRef};
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::bfd_link::{BfdLink, BfdMetrics};
use crate::calc::LearnedRoutes;
use crate::calc::exports::{Export, ExportReads, desired_exports};
use crate::calc::peers::{DesiredPeer, PeerInput, desired_peers, listen_port, node_as};
use crate::calc::speaker_config::{export_policy, origin_attrs, peer_config};
use crate::config::NodeConfig;
use crate::liveness::Heartbeat;
use crate::local::LocalNode;
use crate::state::{ClusterState, Generations};

/// How often peer status is refreshed for `node status`.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Reads BGP passwords: Calico takes them from Kubernetes secrets; calico-rs from files
/// `<secrets dir>/<secret name>/<key>` (trailing newline ignored). A reference that is not
/// a Kubernetes name (it could leave the directory: `..`, `/`) is refused, and a missing,
/// unreadable or empty file is an error: the session stays down, it is never made
/// without the password.
fn secret_reader(dir: PathBuf) -> impl Fn(&SecretKeyRef) -> Result<String, String> {
    // Peers are recomputed on every datastore change: say once per problem.
    let reported = std::sync::Mutex::new(std::collections::BTreeSet::new());
    move |r: &SecretKeyRef| {
        let result = read_secret(&dir, r);
        if let Err(why) = &result {
            let mut seen = reported.lock().unwrap_or_else(|p| p.into_inner());
            if seen.insert(why.clone()) {
                warn!(
                    secret = r.name,
                    key = r.key,
                    reason = why,
                    "BGP password not available; the session stays down"
                );
            }
        }
        result
    }
}

/// The password in `<dir>/<name>/<key>`, or a short reason (it ends up in a `node
/// status` cell): `secret bgp/mesh: no such file`.
fn read_secret(dir: &std::path::Path, r: &SecretKeyRef) -> Result<String, String> {
    let what = format!("secret {}/{}", r.name, r.key);
    if let Err((field, _)) = r.validate() {
        return Err(format!(
            "{what}: refused, the {field} is not a Kubernetes secret {field}"
        ));
    }
    let path = dir.join(&r.name).join(&r.key);
    match fs::read_to_string(&path) {
        Ok(s) => match s.trim_end_matches(['\n', '\r']) {
            "" => Err(format!("{what}: empty")),
            password => Ok(password.to_string()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{what}: no such file")),
        Err(e) => Err(format!("{what}: {}", e.kind().to_string().to_lowercase())),
    }
}

/// Longest wait, after start, for BGP to re-learn routes before the dataplane may delete
/// routes nobody announces any more.
const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(30);
/// Quiet time (no learned-route change, every peer up) that counts as converged.
const CONVERGENCE_QUIET: Duration = Duration::from_secs(1);

/// The BGP part of `node status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpStatus {
    pub router_id: Option<Ipv4Addr>,
    pub as_number: u32,
    /// One row per session, in peer-address order.
    pub peers: Vec<BgpPeerStatus>,
}

/// What the wiring task publishes.
pub struct Outputs {
    /// Best learned routes, for the dataplane.
    pub learned: watch::Sender<Arc<LearnedRoutes>>,
    /// `node status`: identity and sessions.
    pub status: watch::Sender<BgpStatus>,
    /// Becomes true once BGP has re-learned what it will after a start.
    pub converged: watch::Sender<bool>,
    /// BFD's counters, for `/metrics`.
    pub bfd_metrics: Arc<BfdMetrics>,
}

/// The BGP task: the wiring of a started speaker, to be run (supervised) by the caller.
pub struct BgpTask {
    wiring: Wiring,
    state: watch::Receiver<Arc<ClusterState>>,
    events: mpsc::UnboundedReceiver<Vec<RouteEvent>>,
    outputs: Outputs,
}

impl BgpTask {
    /// Keeps the speaker in step until the cluster state is no longer published; fails
    /// when the speaker stops (its events end).
    pub async fn run(self, heartbeat: Heartbeat) -> Result<()> {
        self.wiring
            .run(self.state, self.events, self.outputs, heartbeat)
            .await
    }
}

/// Starts the speaker; returns the wiring task. The speaker listens on the
/// BGPConfiguration `listenPort` (179) of the node's address.
pub async fn start(
    cfg: &NodeConfig,
    local: &LocalNode,
    mut state: watch::Receiver<Arc<ClusterState>>,
    outputs: Outputs,
) -> Result<BgpTask> {
    // Wait for the first full state, so the AS and listen port are the configured ones.
    let snapshot = loop {
        let s = state.borrow_and_update().clone();
        if s.nodes.contains_key(&local.name) {
            break s;
        }
        state
            .changed()
            .await
            .context("datastore sync stopped before the node appeared")?;
    };
    let identity = Identity::of(&snapshot, &local.name);
    let router_id =
        crate::calc::router_id::router_id(cfg.router_id.as_deref(), &local.name, local.ip())
            .map_err(|e| anyhow::anyhow!(e))?;
    // BIRD6 listens on the node's IPv6 address next to BIRD on its IPv4 one.
    let ipv6 = snapshot
        .nodes
        .get(&local.name)
        .and_then(|n| n.spec.address_of(IpFamily::V6))
        .and_then(|ip| match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        });
    let listen = (local.ip(), ipv6);
    let (speaker, events) = identity.start_speaker(router_id, listen)?;
    let wiring = Wiring {
        speaker,
        node: local.name.clone(),
        router_id,
        listen,
        secrets: Box::new(secret_reader(cfg.secrets_dir.clone())),
        peers: BTreeMap::new(),
        held: BTreeMap::new(),
        import_limit: crate::config::import_limit(
            cfg.bgp_import_limit,
            &cfg.bgp_import_limit_action,
        )
        .map_err(|e| anyhow::anyhow!(e))?,
        exports: BTreeMap::new(),
        identity,
        subnet: local.address,
        interface: local.interface.clone(),
        bfd: BfdLink::new(bfd_address(local), outputs.bfd_metrics.clone()),
        applied: None,
    };
    Ok(BgpTask {
        wiring,
        state,
        events,
        outputs,
    })
}

/// What the speaker itself is configured with; a change restarts it (as Calico restarts
/// BIRD's protocols when the node's AS or reflector role changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    local_as: u32,
    cluster_id: Option<Ipv4Addr>,
    port: u16,
}

impl Identity {
    fn of(state: &ClusterState, node: &str) -> Identity {
        let me = state.nodes.get(node);
        Identity {
            local_as: me.map_or_else(
                || crate::calc::peers::global_as(state),
                |n| node_as(state, n),
            ),
            cluster_id: me
                .and_then(|n| n.spec.bgp.as_ref())
                .and_then(|b| b.route_reflector_cluster_id.as_deref())
                .and_then(|c| c.parse::<Ipv4Addr>().ok()),
            port: listen_port(state, node),
        }
    }

    /// Starts the speaker with `router_id`, listening on the node's IPv4 address and, when
    /// it has one that can be bound, its IPv6 address (on an IPv6-only node, that one or
    /// nothing: sessions are then dialled by us).
    fn start_speaker(
        &self,
        router_id: Ipv4Addr,
        (v4, v6): Listen,
    ) -> Result<(Speaker, mpsc::UnboundedReceiver<Vec<RouteEvent>>)> {
        if let Some(v6) = v6 {
            match self.start_speaker_on(router_id, v4, Some(v6)) {
                Ok(started) => return Ok(started),
                Err(e) => warn!(
                    address = %v6,
                    error = format!("{e:#}"),
                    "cannot listen on the node's IPv6 address; IPv6 sessions must be dialled by us"
                ),
            }
        }
        self.start_speaker_on(router_id, v4, None)
    }

    fn start_speaker_on(
        &self,
        router_id: Ipv4Addr,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    ) -> Result<(Speaker, mpsc::UnboundedReceiver<Vec<RouteEvent>>)> {
        let v4 = v4.map(|a| SocketAddr::new(IpAddr::V4(a), self.port));
        let v6 = v6.map(|a| SocketAddr::new(IpAddr::V6(a), self.port));
        // The speaker's main listener is the IPv4 one, the IPv6 one when there is none.
        let (listen, listen_other_family) = if v4.is_some() { (v4, v6) } else { (v6, None) };
        let cfg = SpeakerConfig {
            local_as: self.local_as,
            router_id,
            listen,
            listen_other_family,
            cluster_id: self.cluster_id,
            graceful_restart_time: 120,
            // We may be restarting with routes in the kernel: ask peers to keep ours.
            restarting: true,
            ebgp_requires_policy: true,
            ..SpeakerConfig::default()
        };
        let started = Speaker::start_batched(cfg).context("starting the BGP speaker")?;
        info!(asn = self.local_as, %router_id, port = self.port, cluster_id = ?self.cluster_id, "BGP speaker started");
        Ok(started)
    }
}

/// The node's IPv4 and IPv6 addresses the speaker listens on.
type Listen = (Option<Ipv4Addr>, Option<Ipv6Addr>);

/// The address BFD binds: the node's IPv4 one. BFD sessions are IPv4 only, so an
/// IPv6-only node never wants one (`calc::bfd`) and never binds this placeholder.
fn bfd_address(local: &LocalNode) -> IpAddr {
    IpAddr::V4(local.ip().unwrap_or(Ipv4Addr::UNSPECIFIED))
}

/// Resolves a password reference to its value, or says why it cannot.
type SecretReader = Box<dyn Fn(&SecretKeyRef) -> Result<String, String> + Send + Sync>;

/// The wiring task's state: what was last applied to the speaker.
struct Wiring {
    speaker: Speaker,
    node: String,
    secrets: SecretReader,
    peers: BTreeMap<SocketAddr, (DesiredPeer, PeerConfig)>,
    /// Desired sessions kept down (their password is unavailable), since when.
    held: BTreeMap<SocketAddr, (DesiredPeer, SystemTime)>,
    /// The import limit every session gets.
    import_limit: Option<ImportLimit>,
    exports: BTreeMap<IpNet, Export>,
    router_id: Ipv4Addr,
    /// The node's addresses, where the speaker listens.
    listen: Listen,
    identity: Identity,
    /// The node's IPv4 subnet and interface: peers on it are one hop away (BFD single hop).
    subnet: Option<Ipv4Net>,
    interface: String,
    bfd: BfdLink,
    /// What the peers and exports were last computed from (none yet).
    applied: Option<Applied>,
}

/// The counters of the state the peers and the exports were last computed from.
#[derive(Clone, Copy)]
struct Applied {
    generations: Generations,
    exports: ExportReads,
}

/// What one [`Wiring::sync`] did.
#[derive(Default)]
struct Synced {
    /// The speaker was restarted: its new event stream.
    restarted: Option<mpsc::UnboundedReceiver<Vec<RouteEvent>>>,
    /// The peers were computed again (their status may have changed).
    peers: bool,
}

impl Wiring {
    async fn run(
        mut self,
        mut state: watch::Receiver<Arc<ClusterState>>,
        mut events: mpsc::UnboundedReceiver<Vec<RouteEvent>>,
        outputs: Outputs,
        heartbeat: Heartbeat,
    ) -> Result<()> {
        let Outputs {
            learned: learned_tx,
            status: peers_out,
            converged,
            bfd_metrics: _,
        } = outputs;
        let started = std::time::Instant::now();
        let mut last_change = started;
        let mut learned = LearnedRoutes::new();
        let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
        let first = state.borrow_and_update().clone();
        if let Some(new) = self.sync(&first).await.restarted {
            events = new;
        }
        loop {
            // The status tick wakes the loop every second: a beat per pass is enough.
            heartbeat.beat();
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() { return Ok(()); }
                    let s = state.borrow_and_update().clone();
                    let synced = self.sync(&s).await;
                    if let Some(new) = synced.restarted {
                        // A new speaker re-learns everything from scratch.
                        events = new;
                        learned.clear();
                        learned_tx.send_replace(Arc::new(learned.clone()));
                    }
                    if synced.peers {
                        self.publish_status(&peers_out).await;
                    }
                }
                batch = events.recv() => {
                    let Some(batch) = batch else {
                        anyhow::bail!("the BGP speaker stopped");
                    };
                    let mut change = Change::default();
                    for event in batch {
                        change = change.merge(apply_event(&mut learned, event));
                    }
                    // Drain whatever else is queued before publishing once.
                    while let Ok(more) = events.try_recv() {
                        for event in more {
                            change = change.merge(apply_event(&mut learned, event));
                        }
                    }
                    if change.routes {
                        last_change = std::time::Instant::now();
                        learned_tx.send_replace(Arc::new(learned.clone()));
                    }
                    if change.sessions {
                        self.publish_status(&peers_out).await;
                    }
                }
                ev = self.bfd.next() => {
                    self.bfd.apply(ev?, &self.speaker);
                    self.publish_status(&peers_out).await;
                }
                _ = status_tick.tick() => {
                    if !self.held.is_empty() {
                        // A secret file may have appeared: nothing in the datastore says so.
                        let s = state.borrow().clone();
                        if let Some(new) = self.sync(&s).await.restarted {
                            events = new;
                            learned.clear();
                            learned_tx.send_replace(Arc::new(learned.clone()));
                        }
                    }
                    self.publish_status(&peers_out).await;
                    if !*converged.borrow() {
                        let rows = peers_out.borrow();
                        let all_up = rows.peers.iter().all(|r| r.state == "up");
                        let quiet = last_change.elapsed() >= CONVERGENCE_QUIET;
                        if (all_up && quiet) || started.elapsed() >= CONVERGENCE_DEADLINE {
                            info!(after = ?started.elapsed(), "BGP routes converged; stale kernel routes may now be removed");
                            drop(rows);
                            converged.send_replace(true);
                        }
                    }
                }
            }
        }
    }

    /// Refreshes the `node status` rows from the speaker.
    async fn publish_status(&self, out: &watch::Sender<BgpStatus>) {
        if let Ok(status) = self.speaker.peer_status().await {
            let mut peers = status_rows(&self.peers, &self.held, &status, self.identity.cluster_id);
            let bfd = self.bfd.status().await;
            for row in &mut peers {
                row.bfd = row
                    .peer_address
                    .parse::<IpAddr>()
                    .ok()
                    .and_then(|a| bfd.get(&a).cloned());
            }
            let now = BgpStatus {
                router_id: Some(self.router_id),
                as_number: self.identity.local_as,
                peers,
            };
            out.send_if_modified(|cur| {
                let changed = *cur != now;
                *cur = now;
                changed
            });
        }
    }

    /// Applies the difference between desired and current peers and exports, each only
    /// when a part of the state it is computed from changed (every node hears every IPAM
    /// write and endpoint in the cluster; none of them changes a peer).
    async fn sync(&mut self, state: &ClusterState) -> Synced {
        if !state.nodes.contains_key(&self.node) {
            return Synced::default();
        }
        let now = Applied {
            generations: state.generations,
            exports: ExportReads::of(state, &self.node),
        };
        let last = self.applied.replace(now);
        let peers_due = !self.held.is_empty()
            || last.is_none_or(|l| {
                l.generations.nodes != now.generations.nodes
                    || l.generations.config != now.generations.config
            });
        let exports_due = last.is_none_or(|l| l.exports != now.exports);
        let mut synced = Synced::default();
        if peers_due {
            synced.restarted = self.sync_peers(state).await;
            synced.peers = true;
            if self.applied.is_none() {
                // The speaker could not be restarted: nothing more to apply to it.
                return synced;
            }
        }
        if exports_due || synced.restarted.is_some() {
            self.sync_exports(state);
        }
        synced
    }

    /// The speaker's identity, peers and BFD sessions. Returns the new event stream when
    /// the speaker had to be restarted.
    async fn sync_peers(
        &mut self,
        state: &ClusterState,
    ) -> Option<mpsc::UnboundedReceiver<Vec<RouteEvent>>> {
        let mut restarted = None;
        let identity = Identity::of(state, &self.node);
        if identity != self.identity {
            info!(old = ?self.identity, new = ?identity, "node AS, listen port or route-reflector role changed; restarting the BGP speaker");
            let _ = self
                .speaker
                .shutdown(Some("BGP configuration changed".to_string()))
                .await;
            // The old speaker's listener may take a moment to close after shutdown.
            let mut attempt = identity.start_speaker(self.router_id, self.listen);
            for _ in 0..50 {
                if attempt.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                attempt = identity.start_speaker(self.router_id, self.listen);
            }
            match attempt {
                Ok((speaker, events)) => {
                    self.speaker = speaker;
                    self.identity = identity;
                    self.peers.clear();
                    self.exports.clear();
                    restarted = Some(events);
                }
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "BGP speaker did not restart; will retry on the next change"
                    );
                    // Nothing of this state is applied: the next change tries it all again.
                    self.applied = None;
                    return None;
                }
            }
        }
        let secrets = &self.secrets;
        let desired = desired_peers(&PeerInput {
            state,
            node: &self.node,
            secrets: &|r: &SecretKeyRef| secrets(r),
        });
        let export = export_policy(state);
        self.held
            .retain(|addr, _| desired.get(addr).is_some_and(|d| d.held_down.is_some()));
        for addr in self.peers.keys().copied().collect::<Vec<_>>() {
            let keep = desired.get(&addr).is_some_and(|d| d.held_down.is_none());
            if !keep {
                if let Err(e) = self.speaker.remove_peer(addr).await {
                    warn!(peer = %addr, error = %e, "removing BGP peer");
                }
                info!(peer = %addr, "BGP peer removed");
                self.peers.remove(&addr);
            }
        }
        for (addr, want) in desired {
            if let Some(why) = &want.held_down {
                if !self.held.contains_key(&addr) {
                    warn!(peer = %addr, name = %want.name, reason = why, "BGP session kept down");
                }
                let since = self.held.get(&addr).map_or_else(SystemTime::now, |h| h.1);
                self.held.insert(addr, (want, since));
                continue;
            }
            let pc = peer_config(&want, state, &export, self.import_limit);
            match self.peers.get(&addr) {
                Some((_, have)) if *have == pc => {}
                Some(_) => {
                    if let Err(e) = self.speaker.update_peer(pc.clone()).await {
                        warn!(peer = %addr, error = %e, "updating BGP peer");
                    }
                    self.peers.insert(addr, (want, pc));
                }
                None => {
                    info!(peer = %addr, name = %want.name, remote_as = want.remote_as, passive = want.passive, "BGP peer added");
                    if let Err(e) = self.speaker.add_peer(pc.clone()).await {
                        warn!(peer = %addr, error = %e, "adding BGP peer");
                    }
                    self.peers.insert(addr, (want, pc));
                }
            }
        }

        let bfd = crate::calc::bfd::desired_bfd(
            state,
            &self.node,
            self.subnet,
            &self.interface,
            self.peers.keys().map(SocketAddr::ip),
        );
        if let Err(e) = self.bfd.sync(bfd, &self.speaker) {
            warn!(error = format!("{e:#}"), "BFD sessions not set up");
        }
        if restarted.is_some() {
            // The new speaker's peers start fresh: the paths BFD knows are down stay down.
            self.bfd.reapply(&self.speaker);
        }
        restarted
    }

    /// Announces what this node should and withdraws what it should no longer.
    fn sync_exports(&mut self, state: &ClusterState) {
        let exports = desired_exports(state, &self.node);
        let gone: Vec<IpNet> = self
            .exports
            .keys()
            .filter(|p| !exports.contains_key(p))
            .copied()
            .collect();
        let new: Vec<(IpNet, OriginAttrs)> = exports
            .iter()
            .filter(|(p, e)| self.exports.get(p) != Some(e))
            .map(|(p, e)| (*p, origin_attrs(e)))
            .collect();
        if !gone.is_empty() {
            info!(prefixes = ?gone, "withdrawing");
            if let Err(e) = self.speaker.withdraw(gone) {
                warn!(error = %e, "withdrawing routes");
            }
        }
        if !new.is_empty() {
            info!(prefixes = ?new.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(), "announcing");
            if let Err(e) = self.speaker.originate(new) {
                warn!(error = %e, "announcing routes");
            }
        }
        self.exports = exports;
    }
}

/// What a batch of speaker events changed.
#[derive(Debug, Clone, Copy, Default)]
struct Change {
    routes: bool,
    sessions: bool,
}

impl Change {
    fn merge(self, other: Change) -> Change {
        Change {
            routes: self.routes || other.routes,
            sessions: self.sessions || other.sessions,
        }
    }
}

/// Folds one speaker event into the learned-route table.
fn apply_event(learned: &mut LearnedRoutes, event: RouteEvent) -> Change {
    let routes = |changed: bool| Change {
        routes: changed,
        sessions: false,
    };
    match event {
        RouteEvent::Best {
            prefix, next_hop, ..
        } => routes(learned.insert(prefix, next_hop) != Some(next_hop)),
        RouteEvent::Withdrawn { prefix } => routes(learned.remove(&prefix).is_some()),
        RouteEvent::PeerUp { peer, name } => {
            info!(%peer, %name, "BGP session established");
            Change {
                routes: false,
                sessions: true,
            }
        }
        RouteEvent::PeerDown {
            peer,
            name,
            reason,
            graceful,
        } => {
            info!(%peer, %name, %reason, graceful, "BGP session down");
            Change {
                routes: false,
                sessions: true,
            }
        }
        _ => Change::default(),
    }
}

/// `node status` rows: the speaker's sessions, and the sessions held down (BIRD's `down`
/// state with the reason as info), in peer-address order.
fn status_rows(
    peers: &BTreeMap<SocketAddr, (DesiredPeer, PeerConfig)>,
    held: &BTreeMap<SocketAddr, (DesiredPeer, SystemTime)>,
    status: &[PeerStatus],
    cluster_id: Option<Ipv4Addr>,
) -> Vec<BgpPeerStatus> {
    let mut rows: Vec<BgpPeerStatus> = status
        .iter()
        .filter_map(|s| {
            let (desired, config) = peers.get(&SocketAddr::new(s.address, s.port))?;
            Some(BgpPeerStatus {
                state: s.bird_state().to_string(),
                since: since_text(s.since),
                since_time: rfc3339(s.since),
                info: s.bird_info(),
                received_prefixes: s.prefixes_received,
                accepted_prefixes: s.prefixes_accepted,
                exported_prefixes: s.prefixes_advertised,
                ..describe(desired, config, cluster_id)
            })
        })
        .collect();
    rows.extend(held.values().map(|(desired, since)| {
        // Never handed to the speaker: the settings it would have had.
        // (Policies do not show in the row: no cluster state needed for them.)
        let config = peer_config(
            desired,
            &ClusterState::default(),
            &Policy::accept_all(),
            None,
        );
        BgpPeerStatus {
            state: "down".to_string(),
            since: since_text(*since),
            since_time: rfc3339(*since),
            info: desired.held_down.clone().unwrap_or_default(),
            ..describe(desired, &config, cluster_id)
        }
    }));
    rows.sort_by(|a, b| {
        let key = |r: &BgpPeerStatus| (r.peer_address.parse::<IpAddr>().ok(), r.port);
        key(a).cmp(&key(b))
    });
    rows
}

/// What a session is configured with, as `node status -o json` shows it; the state
/// fields are left empty.
fn describe(
    desired: &DesiredPeer,
    config: &PeerConfig,
    cluster_id: Option<Ipv4Addr>,
) -> BgpPeerStatus {
    let family = match desired.address.ip() {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    };
    BgpPeerStatus {
        peer_address: desired.address.ip().to_string(),
        peer_type: desired.kind.label().to_string(),
        name: desired.name.clone(),
        family: family.to_string(),
        port: desired.address.port(),
        as_number: desired.remote_as,
        local_as_number: desired.local_as,
        source_address: desired.source.map(|a| a.to_string()).unwrap_or_default(),
        passive: desired.passive,
        route_reflector_client: desired.rr_client,
        route_reflector_cluster_id: cluster_id
            .filter(|_| desired.rr_client)
            .map(|c| c.to_string())
            .unwrap_or_default(),
        ttl_security_hops: desired.ttl_security.unwrap_or(0),
        next_hop_mode: match config.next_hop {
            NextHopMode::Auto => "Auto",
            NextHopMode::SelfAddress => "Self",
            NextHopMode::Keep => "Keep",
        }
        .to_string(),
        graceful_restart_time: config.graceful_restart_time.map_or(0, u32::from),
        keepalive_time: u32::from(config.keepalive_time),
        hold_time: u32::from(config.hold_time),
        // A held-down session's password is configured, only unreadable.
        password_set: desired.password.is_some() || desired.held_down.is_some(),
        num_allowed_local_as_numbers: desired.num_allowed_local_as,
        import_filters: desired.import_filters.clone(),
        export_filters: desired.export_filters.clone(),
        filter_notes: desired.filter_notes.clone(),
        ..BgpPeerStatus::default()
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// BIRD's "since": `HH:MM:SS` (UTC) within the last day, else the date.
fn since_text(t: SystemTime) -> String {
    let stamp = rfc3339(t); // 2024-05-01T10:00:00Z
    let recent = SystemTime::now()
        .duration_since(t)
        .is_ok_and(|age| age.as_secs() < 86_400);
    if recent {
        stamp.get(11..19).unwrap_or(&stamp).to_string()
    } else {
        stamp.get(..10).unwrap_or(&stamp).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn secrets_are_files_under_the_secrets_dir_and_nothing_outside_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = dir.path().join("secrets");
        fs::create_dir_all(secrets.join("tor-auth")).expect("mkdir");
        fs::write(secrets.join("tor-auth").join("password"), "s3cret\n").expect("write");
        fs::create_dir_all(secrets.join("blank")).expect("mkdir");
        fs::write(secrets.join("blank").join("password"), "\n").expect("write");
        fs::write(dir.path().join("outside"), "not a secret").expect("write");
        let read = |name: &str, key: &str| read_secret(&secrets, &secret(name, key));

        assert_eq!(read("tor-auth", "password"), Ok("s3cret".to_string()));
        for (name, key) in [
            ("..", "outside"),
            ("tor-auth", "../../outside"),
            ("/etc", "passwd"),
            ("tor-auth", ".."),
        ] {
            let got = read(name, key);
            assert!(
                got.as_ref().is_err_and(|e| e.contains("refused")),
                "{name}/{key}: {got:?}"
            );
        }
        assert_eq!(
            read("missing", "password"),
            Err("secret missing/password: no such file".to_string())
        );
        assert_eq!(
            read("blank", "password"),
            Err("secret blank/password: empty".to_string())
        );
    }

    #[test]
    fn since_is_a_time_today_and_a_date_before() {
        let recent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(since_text(recent), "2023-11-14");
        let now = since_text(SystemTime::now());
        assert_eq!(now.len(), 8);
        assert_eq!(&now[2..3], ":");
    }
}
