//! A node's IPIP / VXLAN tunnel addresses (calico-node's `allocateip`): one address per
//! kind under handle `ipip-tunnel-addr-<node>` / `vxlan-tunnel-addr-<node>` /
//! `vxlan-v6-tunnel-addr-<node>`, from a pool of the kind's family with that
//! encapsulation that allows `Tunnel` and selects the node, so usually the node's own
//! affine block.

use std::collections::BTreeMap;
use std::net::IpAddr;

use datastore::model::ipam::attr;
use datastore::model::{IpFamily, Tunnel};

use crate::assign::AutoAssignArgs;
use crate::claim::now_rfc3339;
use crate::client::Ipam;
use crate::error::{Error, Result};
use crate::pool::{AllowedUse, candidate_pools};

/// Which tunnel device the address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// `tunl0`, from a pool with ipipMode Always/CrossSubnet.
    Ipip,
    /// `vxlan.calico`, from an IPv4 pool with vxlanMode Always/CrossSubnet.
    Vxlan,
    /// `vxlan-v6.calico`, from an IPv6 pool with vxlanMode Always/CrossSubnet.
    VxlanV6,
}

impl TunnelKind {
    /// The pool encapsulation the address serves.
    pub fn tunnel(self) -> Tunnel {
        match self {
            TunnelKind::Ipip => Tunnel::Ipip,
            TunnelKind::Vxlan | TunnelKind::VxlanV6 => Tunnel::Vxlan,
        }
    }

    /// The family of the address (and of the pools it comes from): IPIP is IPv4-only.
    pub fn family(self) -> IpFamily {
        match self {
            TunnelKind::Ipip | TunnelKind::Vxlan => IpFamily::V4,
            TunnelKind::VxlanV6 => IpFamily::V6,
        }
    }

    /// Every kind, IPv4 ones first.
    pub const ALL: [TunnelKind; 3] = [TunnelKind::Ipip, TunnelKind::Vxlan, TunnelKind::VxlanV6];

    /// The IPAM handle: `ipip-tunnel-addr-<node>` / `vxlan-tunnel-addr-<node>` /
    /// `vxlan-v6-tunnel-addr-<node>`.
    pub fn handle(self, node: &str) -> String {
        match self {
            TunnelKind::Ipip => format!("ipip-tunnel-addr-{node}"),
            TunnelKind::Vxlan => format!("vxlan-tunnel-addr-{node}"),
            TunnelKind::VxlanV6 => format!("vxlan-v6-tunnel-addr-{node}"),
        }
    }

    /// The `type` attribute: `ipipTunnelAddress` / `vxlanTunnelAddress` /
    /// `vxlanV6TunnelAddress`.
    pub fn attr_type(self) -> &'static str {
        match self {
            TunnelKind::Ipip => attr::TYPE_IPIP,
            TunnelKind::Vxlan => attr::TYPE_VXLAN,
            TunnelKind::VxlanV6 => attr::TYPE_VXLAN_V6,
        }
    }
}

/// Whether `handle` is a tunnel address's handle (of any node).
pub fn is_tunnel_handle(handle: &str) -> bool {
    TunnelKind::ALL
        .iter()
        .any(|k| handle.starts_with(&k.handle("")))
}

// ===== impl Ipam =====

impl Ipam {
    /// The node's tunnel address of `kind`: the one it already has, else a new one from
    /// the first usable pool with that encapsulation.
    pub async fn assign_tunnel_address(&self, node: &str, kind: TunnelKind) -> Result<IpAddr> {
        let handle = kind.handle(node);
        if let Some(ip) = self.ips_by_handle(&handle).await?.first() {
            return Ok(*ip);
        }
        let labels = self.node_labels(node).await?;
        let all = self.pools().await?;
        let family = kind.family();
        let usable = candidate_pools(&all, family, &[], node, &labels, AllowedUse::Tunnel)?;
        let with_encap: Vec<String> = usable
            .iter()
            .filter(|p| p.uses(kind.tunnel()))
            .map(|p| p.name.clone())
            .collect();
        if with_encap.is_empty() {
            return Err(Error::NoUsablePools {
                family,
                node: node.to_string(),
                usage: AllowedUse::Tunnel,
                considered: usable.iter().map(|p| p.name.clone()).collect(),
            });
        }
        let attrs: BTreeMap<String, String> = [
            (attr::NODE.to_string(), node.to_string()),
            (attr::TYPE.to_string(), kind.attr_type().to_string()),
            (attr::TIMESTAMP.to_string(), now_rfc3339()),
        ]
        .into();
        let args = AutoAssignArgs {
            num: 1,
            family,
            handle,
            attrs,
            node: node.to_string(),
            pools: with_encap,
            usage: AllowedUse::Tunnel,
            max_blocks_per_host: None,
        };
        let got = self.auto_assign(&args).await?;
        got.first().map(|a| a.ip).ok_or_else(|| Error::Exhausted {
            family,
            requested: 1,
            allocated: 0,
            pools: args.pools.clone(),
        })
    }

    /// Releases the node's tunnel address of `kind` (none is fine).
    pub async fn release_tunnel_address(
        &self,
        node: &str,
        kind: TunnelKind,
    ) -> Result<Vec<IpAddr>> {
        self.release_by_handle(&kind.handle(node)).await
    }
}
