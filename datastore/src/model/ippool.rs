//! IPPool: a range of pod addresses, cut into blocks by IPAM. Written by calicoctl and by
//! calico-node at first start (the default pool); read by IPAM, the BGP exporter and the
//! dataplane (encapsulation modes).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::IpFamily;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::string_enum;
use crate::selector::Selector;

/// A pool of addresses. `IPPool = Object<IPPoolSpec>`.
pub type IPPool = Object<IPPoolSpec>;

string_enum! {
    /// `ipipMode` / `vxlanMode`: when to encapsulate traffic to other nodes.
    EncapMode {
        /// Always encapsulate.
        Always = "Always",
        /// Only towards nodes on another subnet.
        CrossSubnet = "CrossSubnet",
        /// Never (the default).
        Never = "Never",
    }
}

impl Default for EncapMode {
    #[allow(clippy::derivable_impls)]
    fn default() -> EncapMode {
        EncapMode::Never
    }
}

impl EncapMode {
    /// Whether the mode encapsulates towards some node (`Always` or `CrossSubnet`).
    pub fn encapsulates(self) -> bool {
        self != EncapMode::Never
    }

    /// Whether the mode encapsulates towards a node on our subnet (`same_subnet`) or not.
    pub fn towards(self, same_subnet: bool) -> bool {
        match self {
            EncapMode::Always => true,
            EncapMode::CrossSubnet => !same_subnet,
            EncapMode::Never => false,
        }
    }
}

/// The encapsulations a pool can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// IPIP over `tunl0` (`ipipMode`).
    Ipip,
    /// VXLAN over `vxlan.calico` (`vxlanMode`).
    Vxlan,
}

string_enum! {
    /// `allowedUses`: what IPAM may allocate from the pool.
    AllowedUse {
        Workload = "Workload",
        Tunnel = "Tunnel",
        LoadBalancer = "LoadBalancer",
    }
}

string_enum! {
    /// `assignmentMode` (Calico v3.30+).
    AssignmentMode {
        Automatic = "Automatic",
        Manual = "Manual",
    }
}

/// IPPool spec, with Calico's field names and defaults (blockSize 26 / 122, modes Never,
/// nodeSelector `all()`, allowedUses `[Workload, Tunnel]`, persisted on write).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    /// The pool range, e.g. `10.1.0.0/16`. Kept as text so a bad value gets Calico's
    /// message; use [`IPPoolSpec::network`] once validated.
    #[serde(default)]
    pub cidr: String,
    #[serde(default)]
    pub vxlan_mode: EncapMode,
    #[serde(default, rename = "ipipMode")]
    pub ipip_mode: EncapMode,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(default, rename = "disableBGPExport", skip_serializing_if = "is_false")]
    pub disable_bgp_export: bool,
    /// Prefix length of the pool's blocks; 0 = unset (defaulted to 26 or 122).
    #[serde(default)]
    pub block_size: u8,
    #[serde(default)]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

impl IPPoolSpec {
    /// The pool's mode for `tunnel`.
    pub fn mode(&self, tunnel: Tunnel) -> EncapMode {
        match tunnel {
            Tunnel::Ipip => self.ipip_mode,
            Tunnel::Vxlan => self.vxlan_mode,
        }
    }

    /// Whether the pool encapsulates with `tunnel` towards some node.
    pub fn uses(&self, tunnel: Tunnel) -> bool {
        self.mode(tunnel).encapsulates()
    }

    /// How traffic to a remote node in the pool travels: the tunnel, or `None` for
    /// plain routing. VXLAN first (validation refuses a pool asking for both).
    pub fn encap_towards(&self, same_subnet: bool) -> Option<Tunnel> {
        [Tunnel::Vxlan, Tunnel::Ipip]
            .into_iter()
            .find(|t| self.mode(*t).towards(same_subnet))
    }

    /// A pool spec for `cidr` with every other field at Calico's default.
    pub fn with_cidr(cidr: impl Into<String>) -> IPPoolSpec {
        let mut spec = IPPoolSpec {
            cidr: cidr.into(),
            ..IPPoolSpec::default()
        };
        spec.set_defaults(&ObjectMeta::default());
        spec
    }

    /// The parsed CIDR (always `Ok` for a validated, stored pool).
    pub fn network(&self) -> Result<IpNet> {
        self.cidr.parse::<IpNet>().map_err(|_| {
            Error::invalid(
                "IPPool.Spec.CIDR",
                &self.cidr,
                "IPPool CIDR must be a valid subnet",
            )
        })
    }

    /// The parsed node selector (`all()` when empty).
    pub fn node_selector(&self) -> Result<Selector> {
        Selector::parse(&self.node_selector).map_err(|e| {
            Error::invalid(
                "IPPool.Spec.NodeSelector",
                &self.node_selector,
                e.to_string(),
            )
        })
    }

    /// The pool's address family (`None` for a CIDR that does not parse, which a stored,
    /// validated pool never has).
    pub fn family(&self) -> Option<IpFamily> {
        self.network().ok().map(|n| IpFamily::of_net(&n))
    }

    /// The block size in effect (26 for IPv4 / 122 for IPv6 when unset).
    pub fn effective_block_size(&self) -> u8 {
        match (self.block_size, self.network()) {
            (0, Ok(IpNet::V6(_))) => 122,
            (0, _) => 26,
            (b, _) => b,
        }
    }

    /// Whether IPAM may allocate pod (`Workload`) or tunnel (`Tunnel`) addresses here.
    pub fn allows(&self, use_: AllowedUse) -> bool {
        if self.allowed_uses.is_empty() {
            return matches!(use_, AllowedUse::Workload | AllowedUse::Tunnel);
        }
        self.allowed_uses.contains(&use_)
    }
}

impl Spec for IPPoolSpec {
    const KIND: &'static str = "IPPool";
    const PLURAL: &'static str = "ippools";
    const CHECKS_OTHERS_ON_CREATE: bool = true;

    fn set_defaults(&mut self, _meta: &ObjectMeta) {
        if let Ok(net) = self.cidr.parse::<IpNet>() {
            // Calico normalises a strictly masked CIDR (e.g. `fd00:0::/48` -> `fd00::/48`).
            if net.trunc() == net {
                self.cidr = net.to_string();
            }
        }
        if self.block_size == 0 {
            self.block_size = self.effective_block_size();
        }
        if self.node_selector.trim().is_empty() {
            self.node_selector = "all()".to_string();
        }
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
        }
    }

    fn validate(&self, meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::ippool::validate(meta, self)
    }

    fn validate_update(&self, _meta: &ObjectMeta, old: &Self) -> Result<()> {
        crate::model::validation::ippool::validate_update(self, old)
    }

    fn validate_create(&self, meta: &ObjectMeta, others: &[IPPool]) -> Result<()> {
        crate::model::validation::ippool::validate_overlap(meta, self, others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_says_which_tunnel_carries_traffic_to_a_node() {
        let spec = |ipip, vxlan| IPPoolSpec {
            ipip_mode: ipip,
            vxlan_mode: vxlan,
            ..IPPoolSpec::with_cidr("10.244.0.0/16")
        };
        use EncapMode::{Always, CrossSubnet, Never};
        // (ipip, vxlan) -> (towards a same-subnet node, towards another subnet)
        for (ipip, vxlan, same, other) in [
            (Never, Never, None, None),
            (Always, Never, Some(Tunnel::Ipip), Some(Tunnel::Ipip)),
            (CrossSubnet, Never, None, Some(Tunnel::Ipip)),
            (Never, Always, Some(Tunnel::Vxlan), Some(Tunnel::Vxlan)),
            (Never, CrossSubnet, None, Some(Tunnel::Vxlan)),
        ] {
            let s = spec(ipip, vxlan);
            assert_eq!(s.encap_towards(true), same, "{ipip} {vxlan}");
            assert_eq!(s.encap_towards(false), other, "{ipip} {vxlan}");
            assert_eq!(s.uses(Tunnel::Ipip), ipip != Never);
            assert_eq!(s.uses(Tunnel::Vxlan), vxlan != Never);
        }
    }
}
