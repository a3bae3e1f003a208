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
    /// IPv4 BGP sessions, one row each.
    #[serde(default)]
    pub peers_v4: Vec<BgpPeerStatus>,
    /// Problems worth a line in `node status` (e.g. "kernel has no ipip support").
    #[serde(default)]
    pub warnings: Vec<String>,
    /// `in-sync`, `waiting` or `reconnecting`.
    pub datastore: String,
    /// True while the dataplane is programmed and its last pass left nothing to retry.
    pub dataplane_ready: bool,
}

/// One BGP session, in BIRD's `show protocols` terms as calicoctl prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
}
