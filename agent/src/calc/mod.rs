//! Pure calculations: desired kernel state, desired BGP peers and the prefixes to
//! announce, each a function of the [`ClusterState`](crate::state::ClusterState), this
//! node's identity and (for routes) what BGP has learned. No I/O here: tested without
//! root, re-run in full whenever anything changes (the reconcilers make that cheap).

pub mod bfd;
pub mod exports;
pub mod filters;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod nat;
pub mod peers;
pub mod router_id;
pub mod routes;
pub mod speaker_config;
pub mod tunnel_addrs;
pub mod tunnels;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// What the BGP speaker has learned: best next hop per prefix.
pub type LearnedRoutes = BTreeMap<IpNet, IpAddr>;

/// `CALICO_NETWORKING_BACKEND`: who carries routes between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded BGP speaker (Calico's `bird`).
    Bgp,
    /// VXLAN routes computed from the datastore, no BGP.
    Vxlan,
    /// No inter-node routes at all (policy only).
    None,
    /// Flannel-style subnet leases.
    Flannel,
}

impl Backend {
    /// Parses Calico's spelling.
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "bird" | "bgp" => Some(Backend::Bgp),
            "vxlan" => Some(Backend::Vxlan),
            "none" => Some(Backend::None),
            "flannel" => Some(Backend::Flannel),
            _ => None,
        }
    }
}
