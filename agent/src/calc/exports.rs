//! What this node announces over BGP (Calico's BIRD and BIRD6 export filters): each
//! confirmed affine block as one aggregate, a /32 (/128) for each address this node uses
//! from someone else's block (borrowed), the configured service CIDRs, and nothing from
//! pools with `disableBGPExport`. Pending and pendingDeletion claims are never announced.
//! Both families: the speaker sends each over the sessions of its family.

use std::collections::{BTreeMap, BTreeSet};

use datastore::model::ipam::attr;
use ipnet::IpNet;

use crate::state::ClusterState;

/// One prefix to originate and the communities to tag it with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Export {
    pub prefix: IpNet,
    /// Standard (`aa:nn`) and large (`aa:nn:mm`) communities from `prefixAdvertisements`.
    pub communities: Vec<String>,
}

fn export_disabled(state: &ClusterState, net: &IpNet) -> bool {
    state
        .pool_containing(net)
        .is_some_and(|p| p.spec.disable_bgp_export)
}

/// The counters of the parts of the cluster state [`desired_exports`] reads for a node:
/// the configuration and the IPAM writes that concern the node (not other nodes' claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportReads {
    config: u64,
    ipam: u64,
}

impl ExportReads {
    pub fn of(state: &ClusterState, node: &str) -> ExportReads {
        ExportReads {
            config: state.generations.config,
            ipam: state.ipam_generation_of(node),
        }
    }
}

/// The prefixes `node` announces, keyed by prefix.
pub fn desired_exports(state: &ClusterState, node: &str) -> BTreeMap<IpNet, Export> {
    let mut prefixes: BTreeSet<IpNet> = state.confirmed_blocks_of(node).collect();

    // Addresses used here from blocks affine elsewhere: advertised as /32 (/128) so
    // traffic for them comes here rather than to the block's owner.
    for block in state.blocks.values() {
        let cidr = block.cidr;
        if block.host() == Some(node) {
            continue;
        }
        for (ordinal, slot) in block.allocations.iter().enumerate() {
            let Some(index) = slot else { continue };
            let here = block
                .attributes
                .get(*index)
                .and_then(|a| a.secondary.get(attr::NODE))
                .is_some_and(|h| h == node);
            if here {
                let ip = ipam::block::ip_at(&cidr, ordinal);
                if let Ok(net) = IpNet::new(ip, cidr.max_prefix_len()) {
                    prefixes.insert(net);
                }
            }
        }
    }

    if let Some(config) = state.bgp_default() {
        for svc in config.spec.advertised_service_cidrs() {
            if let Ok(net) = svc.cidr.parse::<IpNet>() {
                prefixes.insert(net.trunc());
            }
        }
    }

    let advertisements = prefix_advertisements(state, node);
    prefixes
        .into_iter()
        .filter(|p| !export_disabled(state, p))
        .map(|prefix| {
            let communities = advertisements
                .iter()
                .filter(|(cidr, _)| cidr.contains(&prefix))
                .flat_map(|(_, c)| c.iter().cloned())
                .collect();
            (
                prefix,
                Export {
                    prefix,
                    communities,
                },
            )
        })
        .collect()
}

/// `prefixAdvertisements` of the node's BGPConfiguration (else `default`), with community
/// names resolved to values.
fn prefix_advertisements(state: &ClusterState, node: &str) -> Vec<(IpNet, Vec<String>)> {
    let config = state
        .bgp_configs
        .get(&format!("node.{node}"))
        .filter(|c| !c.spec.prefix_advertisements.is_empty())
        .or_else(|| state.bgp_default());
    let Some(config) = config else {
        return Vec::new();
    };
    let named: BTreeMap<&str, &str> = state
        .bgp_default()
        .map(|d| {
            d.spec
                .communities
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_str()))
                .collect()
        })
        .unwrap_or_default();
    config
        .spec
        .prefix_advertisements
        .iter()
        .filter_map(|adv| {
            let cidr = adv.cidr.parse::<IpNet>().ok()?;
            let values = adv
                .communities
                .iter()
                .map(|c| {
                    named
                        .get(c.as_str())
                        .map_or(c.clone(), |v| (*v).to_string())
                })
                .collect();
            Some((cidr, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::Never;
    use datastore::model::ipam::AffinityState;
    use datastore::model::{
        Community, PrefixAdvertisement, ServiceCidr, ServiceLoadBalancerAggregation,
    };

    use super::super::fixtures::*;
    use super::*;

    fn prefixes(state: &ClusterState, node: &str) -> Vec<String> {
        desired_exports(state, node)
            .keys()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn confirmed_blocks_and_borrowed_addresses_are_announced() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        claim(&mut s, "n1", "10.244.1.64/26", AffinityState::Pending);
        claim(&mut s, "n2", "10.244.2.0/26", AffinityState::Confirmed);
        allocate(&mut s, "10.244.2.0/26", 7, "n1");
        allocate(&mut s, "10.244.2.0/26", 8, "n2");
        assert_eq!(prefixes(&s, "n1"), vec!["10.244.1.0/26", "10.244.2.7/32"]);
        assert_eq!(prefixes(&s, "n2"), vec!["10.244.2.0/26"]);
    }

    #[test]
    fn ipv6_blocks_and_borrowed_ipv6_addresses_are_announced_beside_ipv4_ones() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")],
            vec![
                pool("p", "10.244.0.0/16", Never, Never),
                pool_v6("p6", "fd00:244::/48"),
            ],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        claim(&mut s, "n1", "fd00:244::/122", AffinityState::Confirmed);
        claim(&mut s, "n2", "fd00:244::40/122", AffinityState::Confirmed);
        allocate(&mut s, "fd00:244::40/122", 5, "n1");
        assert_eq!(
            prefixes(&s, "n1"),
            ["10.244.1.0/26", "fd00:244::/122", "fd00:244::45/128"]
        );
        assert_eq!(prefixes(&s, "n2"), ["fd00:244::40/122"]);
    }

    #[test]
    fn service_cidrs_are_announced_and_load_balancer_ones_only_when_aggregated() {
        let mut s = cluster(vec![node("n1", "10.0.0.1/24")], vec![]);
        let mut config = bgp_config(true, None);
        let cidr = |c: &str| ServiceCidr { cidr: c.into() };
        config.spec.service_cluster_ips = vec![cidr("10.96.0.0/12")];
        config.spec.service_external_ips = vec![cidr("192.0.2.0/24")];
        config.spec.service_load_balancer_ips = vec![cidr("198.51.100.0/24")];
        s.bgp_configs.insert("default".into(), config.clone());
        assert_eq!(
            prefixes(&s, "n1"),
            ["10.96.0.0/12", "192.0.2.0/24", "198.51.100.0/24"]
        );
        config.spec.service_load_balancer_aggregation =
            Some(ServiceLoadBalancerAggregation::Disabled);
        s.bgp_configs.insert("default".into(), config);
        assert_eq!(prefixes(&s, "n1"), ["10.96.0.0/12", "192.0.2.0/24"]);
    }

    #[test]
    fn pools_with_bgp_export_disabled_are_not_announced() {
        let mut p = pool("p", "10.244.0.0/16", Never, Never);
        p.spec.disable_bgp_export = true;
        let mut s = cluster(vec![node("n1", "10.0.0.1/24")], vec![p]);
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        assert!(prefixes(&s, "n1").is_empty());
    }

    #[test]
    fn prefix_advertisements_attach_named_communities() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        let mut config = bgp_config(true, None);
        config.spec.communities = vec![Community {
            name: "big".into(),
            value: "63400:300:100".into(),
        }];
        config.spec.prefix_advertisements = vec![PrefixAdvertisement {
            cidr: "10.244.0.0/16".into(),
            communities: vec!["big".into(), "63400:120".into()],
        }];
        s.bgp_configs.insert("default".into(), config);
        let exports = desired_exports(&s, "n1");
        let e = exports.values().next().expect("one export");
        assert_eq!(e.communities, vec!["63400:300:100", "63400:120"]);
    }
}
