//! Desired BGP peers of this node: Calico's BIRD template (`bird.cfg.template`) as a typed
//! function. Node-to-node mesh, global and node-specific BGPPeers, peerSelector peers and
//! route-reflector clients; BIRD's protocol names (`Mesh_`, `Global_`, `Node_`), its
//! unidirectional mesh (passive towards higher addresses) and its defaults.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use datastore::model::{
    BGPPeer, BGPPeerSpec, BgpPassword, DEFAULT_AS_NUMBER, DEFAULT_LISTEN_PORT, FilterDirection,
    IpFamily, NextHopMode, Node, ReversePeering, SecretKeyRef, SourceAddress,
};
use datastore::selector::Selector;

use crate::calc::filters;
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
    /// `Auto` (BIRD's default: self towards eBGP), `Self` or `Keep`.
    pub next_hop: NextHopMode,
    pub ttl_security: Option<u8>,
    pub num_allowed_local_as: u32,
    pub restart_time: Duration,
    /// Source address of the session (the node IP unless `sourceAddress: None`).
    pub source: Option<IpAddr>,
    /// The Calico node at the other end, when it is one.
    pub calico_node: Option<String>,
    /// The BGPFilters the session runs on import and on export, in order: those its
    /// BGPPeer names that exist and have rules for its family.
    pub import_filters: Vec<String>,
    pub export_filters: Vec<String>,
    /// What is wrong with the BGPFilters its BGPPeer names ([`filters::notes`]).
    pub filter_notes: Vec<String>,
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

/// A node's BGP address in one family: `spec.bgp.ipv4Address` or `ipv6Address`.
fn node_addr(node: &Node, v6: bool) -> Option<IpAddr> {
    let family = if v6 { IpFamily::V6 } else { IpFamily::V4 };
    node.spec.address_of(family)
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

/// Splits `IP`, `IP:port` or `[IPv6]:port` into the address and the port (0: none given).
fn split_peer_ip(text: &str) -> Option<(IpAddr, u16)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, 0));
    }
    text.parse::<SocketAddr>().ok().map(|a| (a.ip(), a.port()))
}

pub(crate) fn selector_matches(source: &str, node: &Node) -> bool {
    match Selector::parse(source) {
        Ok(sel) => sel.matches(&node.metadata.labels),
        Err(_) => false, // validation rejects bad selectors on write
    }
}

/// Whether a BGPPeer applies to `node` (its `node`, its `nodeSelector`, else every node).
fn selects(spec: &BGPPeerSpec, node: &Node) -> bool {
    if !spec.node.is_empty() {
        spec.node == node.name()
    } else if !spec.node_selector.is_empty() {
        selector_matches(&spec.node_selector, node)
    } else {
        true
    }
}

/// Where Calico files a peering: for every node (`Global_`) or for one node (`Node_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Global,
    Node,
}

/// One peering as Calico's confd derives it from a BGPPeer before rendering it
/// (`updatePeersV1` in `confd/pkg/backends/calico/client.go`).
struct Peering<'a> {
    resource: &'a BGPPeer,
    ip: IpAddr,
    /// 0 when neither the BGPPeer nor the remote node's listen port gives one.
    port: u16,
    remote_as: Option<u32>,
    /// Only a `peerIP` peering carries its `localASNumber` and `numAllowedLocalASNumbers`.
    local_as: Option<u32>,
    num_allowed_local_as: u32,
    /// The `peerIP` is a Calico node's address (Calico's `CalicoNode`).
    to_calico_node: bool,
    /// The remote node's cluster ID, for peerings made from a node (selectors, reverse).
    rr_cluster_id: Option<String>,
}

/// Listen ports as Calico's peer computation sees them: per node, and the global one.
struct ListenPorts {
    per_node: BTreeMap<String, u16>,
    global: u16,
}

impl ListenPorts {
    fn of(state: &ClusterState) -> ListenPorts {
        let per_node = state
            .bgp_configs
            .iter()
            .filter_map(|(name, c)| Some((name.strip_prefix("node.")?.to_string(), c)))
            .filter_map(|(node, c)| Some((node, c.spec.listen_port.filter(|p| *p != 0)?)))
            .collect();
        let global = state
            .bgp_default()
            .and_then(|c| c.spec.listen_port)
            .unwrap_or(0);
        ListenPorts { per_node, global }
    }

    /// The port to reach `node` on; 0 for the default.
    fn of_node(&self, node: &str) -> u16 {
        self.per_node.get(node).copied().unwrap_or(self.global)
    }
}

/// The Calico nodes at `ip` in AS `asn` (the global AS when unset) listening on `port`
/// (any when 0): the nodes a `peerIP` peering points at (`nodesWithIPPortAndAS`).
fn nodes_at<'s>(
    state: &'s ClusterState,
    ports: &ListenPorts,
    ip: IpAddr,
    asn: Option<u32>,
    port: u16,
) -> Vec<&'s Node> {
    let want_as = asn.unwrap_or_else(|| global_as(state));
    state
        .nodes
        .values()
        .filter(|n| node_addr(n, false) == Some(ip) || node_addr(n, true) == Some(ip))
        .filter(|n| node_as(state, n) == want_as)
        .filter(|n| {
            // Calico's check, including its quirk: a node-specific port that matches is
            // still refused when a different global port is set.
            port == 0
                || !(ports.per_node.get(n.name()).is_some_and(|p| *p != port)
                    || (ports.global != 0 && ports.global != port))
        })
        .collect()
}

/// The peerings towards `node`'s addresses in the chosen families (`nodeAsBGPPeers`).
fn peerings_to_node<'a>(
    state: &ClusterState,
    ports: &ListenPorts,
    node: &Node,
    families: [bool; 2],
    resource: &'a BGPPeer,
) -> Vec<Peering<'a>> {
    [false, true]
        .into_iter()
        .filter(|v6| families[usize::from(*v6)])
        .filter_map(|v6| node_addr(node, v6))
        .map(|ip| Peering {
            resource,
            ip,
            port: ports.of_node(node.name()),
            remote_as: Some(node_as(state, node)),
            local_as: None,
            num_allowed_local_as: 0,
            to_calico_node: false,
            rr_cluster_id: cluster_id(node).map(str::to_string),
        })
        .collect()
}

/// The peering a `peerIP` BGPPeer makes.
fn peering_to_ip<'a>(
    state: &ClusterState,
    ports: &ListenPorts,
    resource: &'a BGPPeer,
) -> Option<Peering<'a>> {
    let spec = &resource.spec;
    let (ip, mut port) = split_peer_ip(&spec.peer_ip)?;
    let remote_as = spec.as_number.map(|a| a.0);
    if port == 0
        && let Some(node) = nodes_at(state, ports, ip, remote_as, 0).first()
    {
        port = ports.of_node(node.name());
    }
    let to_calico_node = state
        .nodes
        .values()
        .any(|n| node_addr(n, false) == Some(ip) || node_addr(n, true) == Some(ip));
    Some(Peering {
        resource,
        ip,
        port,
        remote_as,
        local_as: spec.local_as_number.map(|a| a.0),
        num_allowed_local_as: spec.num_allowed_local_as_numbers.unwrap_or(0),
        to_calico_node,
        rr_cluster_id: None,
    })
}

/// Files a peering unless one to the same (address, port) is already filed in its scope or
/// globally.
fn emit<'a>(out: &mut Vec<(Scope, Peering<'a>)>, scope: Scope, p: Peering<'a>) {
    let taken = out
        .iter()
        .any(|(s, q)| q.ip == p.ip && q.port == p.port && (*s == scope || *s == Scope::Global));
    if !taken {
        out.push((scope, p));
    }
}

/// The BGPPeer-made peerings of node `me`, in Calico's order and with its precedence: the
/// first peering to an (address, port) wins, a global one over a node-specific one, and
/// reverse peerings only fill what is left.
fn bgp_peer_peerings<'a>(state: &'a ClusterState, me: &Node) -> Vec<(Scope, Peering<'a>)> {
    let ports = ListenPorts::of(state);
    let mut out: Vec<(Scope, Peering<'a>)> = Vec::new();
    let all_families = [true, true];
    for global_pass in [true, false] {
        for r in state.bgp_peers.values() {
            let spec = &r.spec;
            if global_pass != (spec.node.is_empty() && spec.node_selector.is_empty()) {
                continue;
            }
            if !global_pass && !selects(spec, me) {
                continue;
            }
            let scope = if global_pass {
                Scope::Global
            } else {
                Scope::Node
            };
            if !spec.peer_selector.is_empty() {
                for n in state.nodes.values() {
                    if selector_matches(&spec.peer_selector, n) {
                        for p in peerings_to_node(state, &ports, n, all_families, r) {
                            emit(&mut out, scope, p);
                        }
                    }
                }
            } else if let Some(p) = peering_to_ip(state, &ports, r) {
                emit(&mut out, scope, p);
            }
        }
    }
    // Reverse peerings: the nodes a BGPPeer points at peer back with the nodes it
    // applies to, unless it says `reversePeering: Manual`.
    for r in state.bgp_peers.values() {
        let spec = &r.spec;
        if spec.reverse_peering == Some(ReversePeering::Manual) {
            continue;
        }
        let (points_at_me, families) = if !spec.peer_selector.is_empty() {
            (selector_matches(&spec.peer_selector, me), all_families)
        } else if let Some((ip, port)) = split_peer_ip(&spec.peer_ip) {
            let at = nodes_at(state, &ports, ip, spec.as_number.map(|a| a.0), port);
            (
                at.iter().any(|n| n.name() == me.name()),
                [ip.is_ipv4(), ip.is_ipv6()],
            )
        } else {
            continue;
        };
        if !points_at_me {
            continue;
        }
        for n in state.nodes.values().filter(|n| selects(spec, n)) {
            for p in peerings_to_node(state, &ports, n, families, r) {
                emit(&mut out, Scope::Node, p);
            }
        }
    }
    out
}

/// Computes the sessions of `input.node`, keyed by remote address and port: Calico's
/// mesh, then its BGPPeer peerings. Two BGPPeers naming one address on two ports are two
/// sessions, as in Calico; of a mesh and an explicit peering to one address calico-node
/// keeps one: node-specific over global over mesh, the first of equals.
pub fn desired_peers(input: &PeerInput<'_>) -> BTreeMap<SocketAddr, DesiredPeer> {
    let state = input.state;
    let mut out: BTreeMap<SocketAddr, DesiredPeer> = BTreeMap::new();
    let Some(me) = state.nodes.get(input.node) else {
        return out;
    };
    if node_addr(me, false).is_none() && node_addr(me, true).is_none() {
        return out; // a policy-only node (no spec.bgp address) runs no BGP
    }
    let my_addr = |ip: IpAddr| node_addr(me, ip.is_ipv6());
    let my_as = node_as(state, me);
    let my_cluster = cluster_id(me);
    let bgp_default = state.bgp_default();
    // Sessions are per address and port (as BIRD's protocols: two BGPPeers may name one
    // address on two ports). Between kinds the address decides: node-specific beats
    // global beats mesh; of equals at one address and port the first stays.
    let mut add = |peer: DesiredPeer| {
        let ip = peer.address.ip();
        if out.iter().any(|(a, p)| a.ip() == ip && p.kind > peer.kind) {
            return;
        }
        out.retain(|a, p| a.ip() != ip || p.kind >= peer.kind);
        out.entry(peer.address).or_insert(peer);
    };

    if mesh_enabled(state) && my_cluster.is_none() {
        let restart = bgp_default
            .and_then(|c| c.spec.node_mesh_max_restart_time)
            .map_or(DEFAULT_RESTART_TIME, |d| d.0);
        let password = resolve_password(
            input,
            bgp_default.and_then(|c| c.spec.node_mesh_password.as_ref()),
        );
        let ports = ListenPorts::of(state);
        for other in state.nodes.values() {
            if other.name() == input.node || cluster_id(other).is_some() {
                continue;
            }
            for v6 in [false, true] {
                let (Some(ip), Some(mine)) = (node_addr(other, v6), node_addr(me, v6)) else {
                    continue;
                };
                if ip == mine {
                    continue;
                }
                let port = ports.of_node(other.name());
                add(DesiredPeer {
                    name: protocol_name(PeerKind::Mesh, ip),
                    kind: PeerKind::Mesh,
                    address: SocketAddr::new(
                        ip,
                        if port == 0 { DEFAULT_LISTEN_PORT } else { port },
                    ),
                    remote_as: node_as(state, other),
                    local_as: my_as,
                    // Unidirectional, as Calico: the higher address dials (string order,
                    // so mixed Calico/calico-rs clusters agree on who dials).
                    passive: ip.to_string() > mine.to_string(),
                    password: None,
                    held_down: None,
                    rr_client: false,
                    next_hop: NextHopMode::Auto,
                    ttl_security: None,
                    num_allowed_local_as: 0,
                    restart_time: restart,
                    source: Some(mine),
                    calico_node: Some(other.name().to_string()),
                    import_filters: Vec::new(),
                    export_filters: Vec::new(),
                    filter_notes: Vec::new(),
                }
                .with_password(&password));
            }
        }
    }

    for (scope, p) in bgp_peer_peerings(state, me) {
        let Some(mine) = my_addr(p.ip) else {
            continue; // no address of that family here
        };
        if p.ip == mine {
            continue; // a peering that names ourselves (an RR peering with RRs)
        }
        let spec = &p.resource.spec;
        let kind = match scope {
            Scope::Global => PeerKind::Global,
            Scope::Node => PeerKind::NodeSpecific,
        };
        let local_as = p.local_as.unwrap_or(my_as);
        let remote_as = p.remote_as.unwrap_or(local_as);
        let mut name = protocol_name(kind, p.ip);
        if p.port != 0 {
            name = format!("{name}_port_{}", p.port);
        }
        let next_hop = match spec.next_hop_mode {
            Some(mode) => mode,
            // The deprecated field keeps the next hop towards eBGP peers only.
            None if spec.keep_original_next_hop == Some(true) && remote_as != local_as => {
                NextHopMode::Keep
            }
            None => NextHopMode::Auto,
        };
        let calico_node = state
            .nodes
            .values()
            .find(|n| node_addr(n, p.ip.is_ipv6()) == Some(p.ip))
            .map(|n| n.name().to_string());
        add(DesiredPeer {
            name,
            kind,
            address: SocketAddr::new(
                p.ip,
                if p.port == 0 {
                    DEFAULT_LISTEN_PORT
                } else {
                    p.port
                },
            ),
            remote_as,
            local_as,
            // Calico makes only global peerings to Calico nodes unidirectional.
            passive: kind == PeerKind::Global
                && p.to_calico_node
                && p.ip.to_string() > mine.to_string(),
            password: None,
            held_down: None,
            rr_client: remote_as == local_as
                && my_cluster.is_some()
                && p.rr_cluster_id.as_deref() != my_cluster,
            next_hop,
            ttl_security: spec.ttl_security.filter(|t| *t > 0),
            num_allowed_local_as: p.num_allowed_local_as,
            restart_time: spec.max_restart_time.map_or(DEFAULT_RESTART_TIME, |d| {
                Duration::from_secs_f64(d.0.as_secs_f64().round())
            }),
            source: match spec.source_address {
                Some(SourceAddress::None) => None,
                _ => Some(mine),
            },
            calico_node,
            import_filters: filter_names(state, &spec.filters, FilterDirection::Import, p.ip),
            export_filters: filter_names(state, &spec.filters, FilterDirection::Export, p.ip),
            filter_notes: filters::notes(state, &spec.filters, p.ip.is_ipv6()),
        }
        .with_password(&resolve_password(input, spec.password.as_ref())));
    }
    out
}

fn filter_names(
    state: &ClusterState,
    names: &[String],
    direction: FilterDirection,
    ip: IpAddr,
) -> Vec<String> {
    filters::applied(state, names, direction, ip.is_ipv6())
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;
