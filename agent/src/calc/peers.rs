//! Desired BGP peers of this node: Calico's BIRD template (`bird.cfg.template`) as a typed
//! function. Node-to-node mesh, global and node-specific BGPPeers, peerSelector peers and
//! route-reflector clients; BIRD's protocol names (`Mesh_`, `Global_`, `Node_`), its
//! unidirectional mesh (passive towards higher addresses) and its defaults.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use datastore::model::{
    BGPPeer, BgpPassword, DEFAULT_AS_NUMBER, DEFAULT_LISTEN_PORT, NextHopMode, Node, SecretKeyRef,
    SourceAddress,
};
use datastore::selector::Selector;

use crate::state::ClusterState;

/// Graceful-restart time when none is configured (BIRD's and Calico's 120 s).
pub const DEFAULT_RESTART_TIME: Duration = Duration::from_secs(120);

/// Why a peer exists, shown as PEER TYPE in `calicoctl node status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    /// `node-to-node mesh` (`Mesh_<ip>`).
    Mesh,
    /// `global` (`Global_<ip>`).
    Global,
    /// `node specific` (`Node_<ip>`).
    NodeSpecific,
}

impl PeerKind {
    /// BIRD's protocol-name prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            PeerKind::Mesh => "Mesh",
            PeerKind::Global => "Global",
            PeerKind::NodeSpecific => "Node",
        }
    }

    /// The PEER TYPE column of `calicoctl node status`.
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::Global => "global",
            PeerKind::NodeSpecific => "node specific",
        }
    }
}

/// One BGP session this node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    /// BIRD-style name: `Mesh_10_0_0_2`.
    pub name: String,
    pub kind: PeerKind,
    pub address: SocketAddr,
    pub remote_as: u32,
    pub local_as: u32,
    /// Wait for the peer to connect (the mesh is unidirectional).
    pub passive: bool,
    pub password: Option<String>,
    /// Why the session must stay down: its password is configured but cannot be read
    /// (never peer without it: that would be a session the operator did not sign).
    pub held_down: Option<String>,
    /// We reflect routes to this peer as its route reflector.
    pub rr_client: bool,
    /// Keep the original next hop towards an eBGP peer.
    pub next_hop_keep: bool,
    pub ttl_security: Option<u8>,
    pub num_allowed_local_as: u32,
    pub restart_time: Duration,
    /// Source address of the session (the node IP unless `sourceAddress: None`).
    pub source: Option<IpAddr>,
    /// The Calico node at the other end, when it is one.
    pub calico_node: Option<String>,
}

/// Everything peer computation reads besides the cluster state.
pub struct PeerInput<'a> {
    pub state: &'a ClusterState,
    /// This node's name.
    pub node: &'a str,
    /// Resolves a BGPPeer or mesh password reference (Kubernetes secrets are files here,
    /// see the README); the reason when it cannot be read.
    pub secrets: &'a dyn Fn(&SecretKeyRef) -> Result<String, String>,
}

/// A password setting resolved: `Ok(None)` none configured, `Err` configured but not
/// readable.
type Resolved = Result<Option<String>, String>;

fn resolve_password(input: &PeerInput<'_>, password: Option<&BgpPassword>) -> Resolved {
    match password.and_then(|p| p.secret_key_ref.as_ref()) {
        None => Ok(None),
        Some(r) => (input.secrets)(r).map(Some),
    }
}

impl DesiredPeer {
    /// Signs the session with `password`, or holds it down when it is unavailable.
    fn with_password(mut self, password: &Resolved) -> DesiredPeer {
        match password {
            Ok(p) => {
                self.password = p.clone();
                self.held_down = None;
            }
            Err(why) => {
                self.password = None;
                self.held_down = Some(format!("password unavailable: {why}"));
            }
        }
        self
    }
}

/// The AS a node uses: its own, else BGPConfiguration `default`, else 64512.
pub fn node_as(state: &ClusterState, node: &Node) -> u32 {
    node.spec
        .bgp
        .as_ref()
        .and_then(|b| b.as_number)
        .map(|a| a.0)
        .unwrap_or_else(|| global_as(state))
}

/// The cluster-wide default AS.
pub fn global_as(state: &ClusterState) -> u32 {
    state
        .bgp_default()
        .and_then(|c| c.spec.as_number)
        .unwrap_or(DEFAULT_AS_NUMBER)
        .0
}

/// Whether the node-to-node mesh is on (default true).
pub fn mesh_enabled(state: &ClusterState) -> bool {
    state
        .bgp_default()
        .and_then(|c| c.spec.node_to_node_mesh_enabled)
        .unwrap_or(true)
}

/// The BGP port this node listens on: `node.<name>` BGPConfiguration, else `default`,
/// else 179.
pub fn listen_port(state: &ClusterState, node: &str) -> u16 {
    state
        .bgp_configs
        .get(&format!("node.{node}"))
        .and_then(|c| c.spec.listen_port)
        .or_else(|| state.bgp_default().and_then(|c| c.spec.listen_port))
        .unwrap_or(DEFAULT_LISTEN_PORT)
}

fn node_ip(node: &Node) -> Option<IpAddr> {
    super::routes::node_ip(node).map(IpAddr::V4)
}

fn cluster_id(node: &Node) -> Option<&str> {
    node.spec
        .bgp
        .as_ref()?
        .route_reflector_cluster_id
        .as_deref()
        .filter(|c| !c.is_empty())
}

/// BIRD's protocol name for a peer: `Mesh_10_0_0_2`.
pub fn protocol_name(kind: PeerKind, ip: IpAddr) -> String {
    let id = match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "_"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "_"),
    };
    format!("{}_{id}", kind.prefix())
}

/// Parses `IP`, `IP:port` or `[IPv6]:port`.
fn parse_peer_ip(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, default_port));
    }
    text.parse::<SocketAddr>().ok()
}

pub(crate) fn selector_matches(source: &str, node: &Node) -> bool {
    match Selector::parse(source) {
        Ok(sel) => sel.matches(&node.metadata.labels),
        Err(_) => false, // validation rejects bad selectors on write
    }
}

/// Computes the peers of `input.node`, keyed by remote address.
pub fn desired_peers(input: &PeerInput<'_>) -> BTreeMap<IpAddr, DesiredPeer> {
    let state = input.state;
    let mut out: BTreeMap<IpAddr, DesiredPeer> = BTreeMap::new();
    let Some(me) = state.nodes.get(input.node) else {
        return out;
    };
    let Some(my_ip) = node_ip(me) else {
        return out; // a policy-only node (no spec.bgp address) runs no BGP
    };
    let my_as = node_as(state, me);
    let my_cluster = cluster_id(me);
    let port = listen_port(state, input.node);
    let bgp_default = state.bgp_default();
    let mesh_restart = bgp_default
        .and_then(|c| c.spec.node_mesh_max_restart_time)
        .map_or(DEFAULT_RESTART_TIME, |d| d.0);
    let mesh_password = resolve_password(
        input,
        bgp_default.and_then(|c| c.spec.node_mesh_password.as_ref()),
    );

    // Peering with another Calico node: the mesh's rules for direction and reflection.
    let calico_peer = |kind: PeerKind, other: &Node, ip: IpAddr, restart: Duration| {
        let remote_as = node_as(state, other);
        DesiredPeer {
            name: protocol_name(kind, ip),
            kind,
            address: SocketAddr::new(ip, port),
            remote_as,
            local_as: my_as,
            // Unidirectional, as Calico: only the lower address connects (string order,
            // so mixed Calico/calico-rs clusters agree on who dials).
            passive: my_ip.to_string() < ip.to_string(),
            password: None,
            held_down: None,
            rr_client: remote_as == my_as
                && my_cluster.is_some()
                && cluster_id(other) != my_cluster,
            next_hop_keep: false,
            ttl_security: None,
            num_allowed_local_as: 0,
            restart_time: restart,
            source: Some(my_ip),
            calico_node: Some(other.name().to_string()),
        }
    };

    if mesh_enabled(state) && my_cluster.is_none() {
        for other in state.nodes.values() {
            if other.name() == input.node || cluster_id(other).is_some() {
                continue;
            }
            let Some(ip) = node_ip(other) else { continue };
            let peer = calico_peer(PeerKind::Mesh, other, ip, mesh_restart);
            out.insert(ip, peer.with_password(&mesh_password));
        }
    }

    for bgp_peer in state.bgp_peers.values() {
        let spec = &bgp_peer.spec;
        let selects_node = |n: &Node| {
            if !spec.node.is_empty() {
                spec.node == n.name()
            } else if !spec.node_selector.is_empty() {
                selector_matches(&spec.node_selector, n)
            } else {
                true
            }
        };
        // A peerSelector peering is symmetric, as in Calico: a node chosen by the
        // peerSelector peers back with every node the resource applies to (this is how a
        // route reflector learns its clients from one `peer-with-route-reflectors`).
        if !spec.peer_selector.is_empty() && selector_matches(&spec.peer_selector, me) {
            let restart = spec.max_restart_time.map_or(DEFAULT_RESTART_TIME, |d| d.0);
            for other in state.nodes.values() {
                if other.name() == input.node || !selects_node(other) {
                    continue;
                }
                let Some(ip) = node_ip(other) else { continue };
                if out
                    .get(&ip)
                    .is_some_and(|p| p.kind == PeerKind::NodeSpecific)
                {
                    continue;
                }
                let mut peer = calico_peer(PeerKind::NodeSpecific, other, ip, restart)
                    .with_password(&resolve_password(input, spec.password.as_ref()));
                apply_bgp_peer_options(bgp_peer, &mut peer);
                out.insert(ip, peer);
            }
        }
        if !selects_node(me) {
            continue;
        }
        let global = spec.node.is_empty() && spec.node_selector.is_empty();
        let restart = spec.max_restart_time.map_or(DEFAULT_RESTART_TIME, |d| d.0);
        let password = resolve_password(input, spec.password.as_ref());
        let source = match spec.source_address {
            Some(SourceAddress::None) => None,
            _ => Some(my_ip),
        };
        let local_as = spec.local_as_number.map_or(my_as, |a| a.0);
        if !spec.peer_selector.is_empty() {
            for other in state.nodes.values() {
                if other.name() == input.node || !selector_matches(&spec.peer_selector, other) {
                    continue;
                }
                let Some(ip) = node_ip(other) else { continue };
                let mut peer = calico_peer(PeerKind::NodeSpecific, other, ip, restart)
                    .with_password(&password);
                peer.source = source;
                apply_bgp_peer_options(bgp_peer, &mut peer);
                out.insert(ip, peer);
            }
            continue;
        }
        let Some(addr) = parse_peer_ip(&spec.peer_ip, DEFAULT_LISTEN_PORT) else {
            continue;
        };
        if addr.ip() == my_ip {
            continue; // a global peer list that names ourselves (an RR peering with RRs)
        }
        let kind = if global {
            PeerKind::Global
        } else {
            PeerKind::NodeSpecific
        };
        let remote_as = spec.as_number.map_or(my_as, |a| a.0);
        // The remote may be a Calico node given by address (RRs peering with each other).
        let other = state.nodes.values().find(|n| node_ip(n) == Some(addr.ip()));
        let mut peer = DesiredPeer {
            name: protocol_name(kind, addr.ip()),
            kind,
            address: addr,
            remote_as,
            local_as,
            passive: false,
            password: None,
            held_down: None,
            rr_client: remote_as == local_as
                && my_cluster.is_some()
                && other.and_then(cluster_id) != my_cluster,
            next_hop_keep: false,
            ttl_security: None,
            num_allowed_local_as: 0,
            restart_time: restart,
            source,
            calico_node: other.map(|n| n.name().to_string()),
        };
        if let Some(other) = other {
            peer.passive = my_ip.to_string() < addr.ip().to_string();
            peer.calico_node = Some(other.name().to_string());
        }
        let mut peer = peer.with_password(&password);
        apply_bgp_peer_options(bgp_peer, &mut peer);
        // An explicit peering wins over a mesh session to the same address; a
        // node-specific one over a global one.
        match out.get(&addr.ip()) {
            Some(existing) if existing.kind > peer.kind => {}
            _ => {
                out.insert(addr.ip(), peer);
            }
        }
    }
    out
}

fn apply_bgp_peer_options(bgp_peer: &BGPPeer, peer: &mut DesiredPeer) {
    let spec = &bgp_peer.spec;
    peer.next_hop_keep = spec.keep_original_next_hop.unwrap_or(false)
        || spec.next_hop_mode == Some(NextHopMode::Keep);
    peer.ttl_security = spec.ttl_security.filter(|t| *t > 0);
    peer.num_allowed_local_as = spec.num_allowed_local_as_numbers.unwrap_or(0);
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;
