//! What the speaker tells the embedding program: best-path changes of learned routes (what
//! a kernel programmer consumes), peer up/down, and the shapes of snapshots and status.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::fsm::State;
use crate::wire::PathAttrs;

/// A change, sent on the speaker's event channel. Written by the speaker task.
///
/// `Best` / `Withdrawn` are about *learned* routes only: when the Loc-RIB best of a prefix
/// is a route we originate, the learned route is reported withdrawn. Routes a restarting
/// peer left stale (graceful restart) are not withdrawn until its End-of-RIB or restart
/// timer says so.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RouteEvent {
    /// The best learned path of `prefix` is new or changed.
    Best {
        /// The destination.
        prefix: IpNet,
        /// Where to forward.
        next_hop: IpAddr,
        /// AS_PATH, leftmost first (shared, cheap to clone).
        as_path: Arc<[u32]>,
        /// The peer it was learned from.
        from_peer: IpAddr,
        /// All attributes (shared).
        attrs: Arc<PathAttrs>,
    },
    /// No learned path for `prefix` any more.
    Withdrawn {
        /// The destination.
        prefix: IpNet,
    },
    /// The session state of a peer changed (every FSM transition of its main session).
    PeerState {
        /// Peer address.
        peer: IpAddr,
        /// Configured name.
        name: String,
        /// New state.
        state: State,
        /// The last error, BIRD style, if any.
        last_error: Option<String>,
    },
    /// A session reached Established.
    PeerUp {
        /// Peer address.
        peer: IpAddr,
        /// Configured name.
        name: String,
    },
    /// An Established session went down.
    PeerDown {
        /// Peer address.
        peer: IpAddr,
        /// Configured name.
        name: String,
        /// Why (BIRD style).
        reason: String,
        /// Its routes are kept as stale (graceful restart).
        graceful: bool,
    },
}

/// A learned best route, as in a [`RouteEvent::Best`]; returned by snapshots for resync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedRoute {
    /// The destination.
    pub prefix: IpNet,
    /// Where to forward.
    pub next_hop: IpAddr,
    /// AS_PATH.
    pub as_path: Arc<[u32]>,
    /// The peer it was learned from.
    pub from_peer: IpAddr,
    /// All attributes.
    pub attrs: Arc<PathAttrs>,
    /// Kept from a restarting peer (graceful restart), not yet refreshed.
    pub stale: bool,
}

/// One path of a destination with its standing in the decision process (`explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathInfo {
    /// The peer it came from; `None` for a locally originated route.
    pub from_peer: Option<IpAddr>,
    /// This is the Loc-RIB best.
    pub best: bool,
    /// Stale (graceful restart).
    pub stale: bool,
    /// Why it is not the best, or why import refused it.
    pub reason: RejectReason,
    /// Attributes.
    pub attrs: Arc<PathAttrs>,
}

/// One row of a `calicoctl node status` / `birdc show protocols` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Configured name.
    pub name: String,
    /// Peer address.
    pub address: IpAddr,
    /// Peer port (with the address, what identifies the session).
    pub port: u16,
    /// Peer AS.
    pub remote_as: u32,
    /// FSM state.
    pub state: State,
    /// When the state was entered.
    pub since: SystemTime,
    /// The last error, BIRD style ("Socket: Connection refused", "BGP Error: Hold timer
    /// expired", "Received: Administrative shutdown").
    pub last_error: Option<String>,
    /// The peer's BGP identifier, once known.
    pub peer_router_id: Option<Ipv4Addr>,
    /// Prefixes received (including refused ones).
    pub prefixes_received: u64,
    /// Prefixes accepted by import.
    pub prefixes_accepted: u64,
    /// Prefixes advertised to the peer.
    pub prefixes_advertised: u64,
    /// Stale prefixes kept for a restarting peer.
    pub prefixes_stale: u64,
    /// Something the operator should know beyond the state (an import limit reached).
    pub note: Option<String>,
}

impl PeerStatus {
    /// BIRD's protocol state column: `up` when Established, `start` while trying, `down`
    /// when stopped.
    pub fn bird_state(&self) -> &'static str {
        match self.state {
            State::Established => "up",
            State::Idle if self.last_error.is_none() => "down",
            _ => "start",
        }
    }

    /// BIRD's info column: "Established", "Active        Socket: Connection refused",
    /// "Idle          BGP Error: Bad BGP identifier".
    pub fn bird_info(&self) -> String {
        let info = match (&self.state, &self.last_error) {
            (State::Established, _) | (_, None) => self.state.name().to_owned(),
            (s, Some(e)) => format!("{:<13} {e}", s.name()),
        };
        match &self.note {
            Some(note) => format!("{info}, {note}"),
            None => info,
        }
    }
}

/// Why a path is not the best, or was refused on import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum RejectReason {
    /// Not rejected (the best, or not yet decided).
    None = 0,
    /// A locally originated route for the same prefix wins.
    LocalRoutePreferred = 1,
    /// Lower LOCAL_PREF.
    LocalPref = 2,
    /// Longer AS_PATH.
    AsPathLength = 3,
    /// Higher ORIGIN.
    Origin = 4,
    /// Higher MED than a route from the same neighbouring AS.
    Med = 5,
    /// iBGP route while an eBGP route exists.
    PeerType = 6,
    /// Higher BGP identifier (or ORIGINATOR_ID).
    RouterId = 7,
    /// Longer CLUSTER_LIST.
    ClusterListLength = 8,
    /// Higher peer address.
    PeerAddress = 9,
    /// Refused by the import policy.
    ImportPolicy = 16,
    /// eBGP peer without import policy (RFC 8212).
    NoImportPolicy = 17,
    /// Our AS in the AS_PATH more often than allowed.
    AsLoop = 18,
    /// ORIGINATOR_ID is our router id (RFC 4456 §8).
    OriginatorLoop = 19,
    /// CLUSTER_LIST contains our cluster id (RFC 4456 §8).
    ClusterLoop = 20,
    /// No usable next hop.
    NextHop = 21,
    /// The peer's import limit was reached (action block).
    ImportLimit = 22,
}

impl RejectReason {
    /// From the stored octet.
    pub fn from_u8(v: u8) -> RejectReason {
        use RejectReason::*;
        match v {
            1 => LocalRoutePreferred,
            2 => LocalPref,
            3 => AsPathLength,
            4 => Origin,
            5 => Med,
            6 => PeerType,
            7 => RouterId,
            8 => ClusterListLength,
            9 => PeerAddress,
            16 => ImportPolicy,
            17 => NoImportPolicy,
            18 => AsLoop,
            19 => OriginatorLoop,
            20 => ClusterLoop,
            21 => NextHop,
            22 => ImportLimit,
            _ => None,
        }
    }
}
