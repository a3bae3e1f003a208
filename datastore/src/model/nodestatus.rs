//! What a running calico-node reports about itself over its local status socket
//! (`$CALICO_RUN_DIR/calico-node.sock`), and what `calicoctl node status` renders: the
//! information Calico's CalicoNodeStatus resource and BIRD's `show protocols` carry.

use serde::{Deserialize, Serialize};

/// File name of the status socket under `CALICO_RUN_DIR`.
pub const STATUS_SOCKET: &str = "calico-node.sock";

/// A node's report: identity, BGP sessions, dataplane and datastore health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatusReport {
    pub node: String,
    /// `bird` (BGP), `vxlan`, `none` or `flannel`.
    pub backend: String,
    pub version: String,
    /// The BGP router ID (the node's IPv4 address); empty without BGP.
    #[serde(default, rename = "routerID")]
    pub router_id: String,
    /// The node's AS number; 0 without BGP.
    #[serde(default)]
    pub as_number: u32,
    /// IPv4 BGP sessions, one row each.
    #[serde(default)]
    pub peers_v4: Vec<BgpPeerStatus>,
    /// IPv6 BGP sessions (BIRD6's), one row each.
    #[serde(default)]
    pub peers_v6: Vec<BgpPeerStatus>,
    /// Problems worth a line in `node status` (e.g. "kernel has no ipip support").
    #[serde(default)]
    pub warnings: Vec<String>,
    /// `in-sync`, `waiting` or `reconnecting`.
    pub datastore: String,
    /// True while the dataplane is programmed and its last pass left nothing to retry.
    pub dataplane_ready: bool,
}

impl NodeStatusReport {
    /// Every BGP session, IPv4 first.
    pub fn peers(&self) -> impl Iterator<Item = &BgpPeerStatus> {
        self.peers_v4.iter().chain(&self.peers_v6)
    }
}

/// One BGP session: BIRD's `show protocols` columns as calicoctl prints them, then what
/// the session is configured with (the settings of Calico's BIRD protocol for it) and how
/// many prefixes it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BgpPeerStatus {
    /// The peer's address (BIRD's protocol name with `_` turned back into `.`).
    pub peer_address: String,
    /// `node-to-node mesh`, `global` or `node specific`.
    pub peer_type: String,
    /// BIRD protocol state: `up`, `start` or `down`.
    pub state: String,
    /// `HH:MM:SS` today, else the date.
    pub since: String,
    /// BGP state plus detail: `Established`, `Active Socket: Connection refused`, ...
    pub info: String,
    /// BIRD's protocol name: `Mesh_10_0_0_2`, `Global_10_0_0_253`, `Node_10_0_0_1`.
    pub name: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
    pub port: u16,
    /// The peer's AS.
    pub as_number: u32,
    /// Our AS on this session.
    #[serde(rename = "localASNumber")]
    pub local_as_number: u32,
    /// Where our connections come from; empty when the kernel chooses.
    pub source_address: String,
    /// We wait for the peer to connect.
    pub passive: bool,
    /// The peer is our route-reflector client.
    pub route_reflector_client: bool,
    /// Our cluster ID towards a client; empty otherwise.
    #[serde(rename = "routeReflectorClusterID")]
    pub route_reflector_cluster_id: String,
    /// GTSM: the peer is at most this many hops away; 0 = off.
    pub ttl_security_hops: u8,
    /// `Auto`, `Self` or `Keep`.
    pub next_hop_mode: String,
    /// Seconds, as we advertise them (graceful restart).
    pub graceful_restart_time: u32,
    /// Seconds, as configured.
    pub keepalive_time: u32,
    /// Seconds, as configured.
    pub hold_time: u32,
    /// A password signs the session (the password itself is never reported).
    pub password_set: bool,
    /// How many times our own AS may appear in a path we accept (BIRD's `allow local as`).
    #[serde(rename = "numAllowedLocalASNumbers")]
    pub num_allowed_local_as_numbers: u32,
    /// BGPFilter names applied on import, in order.
    pub import_filters: Vec<String>,
    /// BGPFilter names applied on export, in order.
    pub export_filters: Vec<String>,
    /// What is wrong with the BGPFilters the session's BGPPeer names (missing, refused,
    /// a rule not applied); absent when nothing is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_notes: Vec<String>,
    /// When the session entered its state, RFC 3339.
    pub since_time: String,
    /// Prefixes the peer sent (including refused ones).
    pub received_prefixes: u64,
    /// Prefixes import accepted.
    pub accepted_prefixes: u64,
    /// Prefixes we advertise to the peer.
    pub exported_prefixes: u64,
    /// The BFD session protecting this one, when a BFDConfiguration asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSessionStatus>,
}

/// A BFD session as `node status` shows it (intervals in milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BfdSessionStatus {
    /// `Up`, `Init`, `Down` or `AdminDown`.
    pub state: String,
    /// The peer's state as it last said.
    pub remote_state: String,
    /// Why it last went down (RFC 5880's diagnostic), `no diagnostic` otherwise.
    pub diagnostic: String,
    /// When it entered its state, RFC 3339.
    pub since_time: String,
    /// Configured: desired TX, required RX, multiplier.
    pub minimum_send_interval_ms: u64,
    pub minimum_recv_interval_ms: u64,
    pub multiplier: u8,
    /// Negotiated: our TX interval (0 while the peer asks for none) and how long the
    /// peer may be silent.
    pub tx_interval_ms: u64,
    pub detection_time_ms: u64,
}
