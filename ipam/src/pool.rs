//! The IPAM view of an IP pool and the choice of candidate pools for a request: enabled,
//! selecting the node (`nodeSelector` against the Node's labels), allowing the use
//! (Workload / Tunnel), optionally restricted to the pools a CNI config names.

use std::collections::BTreeMap;

use datastore::model::IpFamily;
// What an address is for (a pool's `allowedUses` must contain it): the model's type; IPAM
// asks for `Workload` or `Tunnel`.
pub use datastore::model::ippool::AllowedUse;
use datastore::model::ippool::{EncapMode, IPPool, Tunnel};
use datastore::selector::Selector;
use ipnet::IpNet;

use crate::error::{Error, Result};

/// An IP pool as IPAM needs it: the fields of the v3 `IPPool` resource that decide where
/// addresses come from. Built from the stored resource by [`Pool::from_resource_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub disabled: bool,
    /// Calico selector over Node labels; empty = `all()`.
    pub node_selector: String,
    pub allowed_uses: Vec<AllowedUse>,
    /// `ipipMode`, for choosing a tunnel pool.
    pub ipip_mode: EncapMode,
    /// `vxlanMode`.
    pub vxlan_mode: EncapMode,
}

// ===== impl Pool =====

impl Pool {
    /// A pool with Calico's defaults: blockSize 26 (v4) / 122 (v6), `all()`, both uses.
    pub fn new(name: &str, cidr: IpNet) -> Pool {
        Pool {
            name: name.to_string(),
            cidr: cidr.trunc(),
            block_size: default_block_size(&cidr),
            disabled: false,
            node_selector: "all()".to_string(),
            allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::Never,
        }
    }

    /// Decodes a stored projectcalico.org/v3 IPPool (the JSON at
    /// `/calico/resources/v3/projectcalico.org/ippools/<name>`).
    pub fn from_resource_json(key: &str, raw: &[u8]) -> Result<Pool> {
        let corrupt = |reason: String| Error::Corrupt {
            key: key.to_string(),
            reason,
        };
        let res: IPPool = serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string()))?;
        Pool::from_resource(&res).map_err(|e| corrupt(e.to_string()))
    }

    /// The IPAM view of an IPPool resource.
    pub fn from_resource(res: &IPPool) -> std::result::Result<Pool, datastore::Error> {
        let spec = &res.spec;
        let cidr = spec.network()?.trunc();
        let allowed_uses = [AllowedUse::Workload, AllowedUse::Tunnel]
            .into_iter()
            .filter(|u| spec.allows(*u))
            .collect();
        Ok(Pool {
            name: res.metadata.name.clone(),
            cidr,
            block_size: spec.effective_block_size(),
            disabled: spec.disabled,
            node_selector: spec.node_selector.clone(),
            allowed_uses,
            ipip_mode: spec.ipip_mode,
            vxlan_mode: spec.vxlan_mode,
        })
    }

    /// True when `selector` (a pool name or a CIDR, as in CNI `ipv4_pools`) names this pool.
    pub fn is_named_by(&self, selector: &str) -> bool {
        self.name == selector
            || selector
                .parse::<IpNet>()
                .is_ok_and(|c| c.trunc() == self.cidr)
    }

    /// True when the pool's nodeSelector selects a node with `labels`.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> Result<bool> {
        let selector = Selector::parse(&self.node_selector).map_err(|e| Error::Corrupt {
            key: format!("IPPool {} nodeSelector", self.name),
            reason: e.to_string(),
        })?;
        Ok(selector.matches(labels))
    }

    /// True when the pool encapsulates with `tunnel` (the same rule as
    /// [`IPPoolSpec::uses`](datastore::model::IPPoolSpec::uses)).
    pub fn uses(&self, tunnel: Tunnel) -> bool {
        match tunnel {
            Tunnel::Ipip => self.ipip_mode,
            Tunnel::Vxlan => self.vxlan_mode,
        }
        .encapsulates()
    }
}

fn default_block_size(cidr: &IpNet) -> u8 {
    match cidr {
        IpNet::V4(_) => 26,
        IpNet::V6(_) => 122,
    }
}

/// Chooses the pools a request may use, in order: the requested pools (names or CIDRs,
/// unknown ones an error) or else every pool; then only the enabled ones of `family` that
/// select the node and allow `usage`.
pub fn candidate_pools(
    all: &[Pool],
    family: IpFamily,
    requested: &[String],
    node: &str,
    node_labels: &BTreeMap<String, String>,
    usage: AllowedUse,
) -> Result<Vec<Pool>> {
    let chosen: Vec<&Pool> = if requested.is_empty() {
        all.iter().collect()
    } else {
        let mut out = Vec::new();
        for want in requested {
            let pool = all
                .iter()
                .find(|p| p.is_named_by(want))
                .ok_or_else(|| Error::UnknownPool { pool: want.clone() })?;
            out.push(pool);
        }
        out
    };
    let mut usable = Vec::new();
    for pool in chosen {
        if pool.disabled || IpFamily::of_net(&pool.cidr) != family {
            continue;
        }
        if !pool.allowed_uses.contains(&usage) || !pool.selects_node(node_labels)? {
            continue;
        }
        usable.push(pool.clone());
    }
    if usable.is_empty() {
        return Err(Error::NoUsablePools {
            family,
            node: node.to_string(),
            usage,
            considered: if requested.is_empty() {
                all.iter().map(|p| p.name.clone()).collect()
            } else {
                requested.to_vec()
            },
        });
    }
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str) -> Pool {
        Pool::new(name, cidr.parse().expect("test CIDR"))
    }

    #[test]
    fn decodes_the_stored_v3_resource_with_calico_defaults() -> Result<()> {
        let raw = br#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool",
            "metadata":{"name":"rack1"},"spec":{"cidr":"10.1.0.0/16","nodeSelector":"rack == 'r1'",
            "ipipMode":"Always","allowedUses":["Workload"]}}"#;
        let p = Pool::from_resource_json("k", raw)?;
        assert_eq!(p.name, "rack1");
        assert_eq!(p.block_size, 26);
        assert_eq!(p.allowed_uses, vec![AllowedUse::Workload]);
        assert!(p.uses(Tunnel::Ipip));
        assert!(!p.uses(Tunnel::Vxlan));
        Ok(())
    }

    #[test]
    fn node_selector_picks_the_pools_of_a_node() -> Result<()> {
        let mut r1 = pool("rack1", "10.1.0.0/16");
        r1.node_selector = "rack == 'r1'".into();
        let mut r2 = pool("rack2", "10.2.0.0/16");
        r2.node_selector = "rack == 'r2'".into();
        let mut off = pool("off", "10.3.0.0/16");
        off.disabled = true;
        let all = vec![r1, r2, off];
        let labels: BTreeMap<String, String> = [("rack".to_string(), "r2".to_string())].into();
        let got = candidate_pools(&all, IpFamily::V4, &[], "n", &labels, AllowedUse::Workload)?;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "rack2");
        Ok(())
    }

    #[test]
    fn requested_pools_by_name_or_cidr_and_unknown_is_an_error() -> Result<()> {
        let all = vec![pool("a", "10.1.0.0/16"), pool("b", "10.2.0.0/16")];
        let none = BTreeMap::new();
        let got = candidate_pools(
            &all,
            IpFamily::V4,
            &["10.2.0.0/16".to_string(), "a".to_string()],
            "n",
            &none,
            AllowedUse::Workload,
        )?;
        assert_eq!(
            got.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let err = candidate_pools(
            &all,
            IpFamily::V4,
            &["nope".into()],
            "n",
            &none,
            AllowedUse::Workload,
        )
        .expect_err("unknown pool");
        assert!(matches!(err, Error::UnknownPool { .. }));
        Ok(())
    }

    #[test]
    fn each_family_draws_from_its_own_pools() -> Result<()> {
        let all = vec![pool("v4", "10.1.0.0/16"), pool("v6", "fd00:10::/48")];
        let none = BTreeMap::new();
        let v6 = candidate_pools(&all, IpFamily::V6, &[], "n", &none, AllowedUse::Workload)?;
        assert_eq!(v6.len(), 1);
        assert_eq!((v6[0].name.as_str(), v6[0].block_size), ("v6", 122));
        // A v4 pool asked for by name is no IPv6 pool.
        let err = candidate_pools(
            &all,
            IpFamily::V6,
            &["v4".into()],
            "n",
            &none,
            AllowedUse::Workload,
        )
        .expect_err("a v4 pool for a v6 request");
        assert!(err.to_string().starts_with("no IPv6 pool usable"), "{err}");
        Ok(())
    }

    #[test]
    fn allowed_uses_filter_tunnel_requests() {
        let mut w = pool("w", "10.1.0.0/16");
        w.allowed_uses = vec![AllowedUse::Workload];
        let err = candidate_pools(
            &[w],
            IpFamily::V4,
            &[],
            "n",
            &BTreeMap::new(),
            AllowedUse::Tunnel,
        )
        .expect_err("no tunnel pool");
        assert!(matches!(err, Error::NoUsablePools { .. }));
    }
}
