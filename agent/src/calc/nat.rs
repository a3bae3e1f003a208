//! natOutgoing (Felix's `masq_mgr`): which source and destination networks are
//! masqueraded, per address family. Traffic from a pool with `natOutgoing: true` to
//! anything outside every pool of its family leaves with the node's address; traffic
//! between pools (pod to pod, on any node) keeps its source. A pure function of the pools
//! and Felix's `natOutgoingAddress`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use datastore::model::IpFamily;
use ipnet::IpNet;

use super::tunnels::felix_setting;
use crate::dataplane::types::NatOutgoing;
use crate::state::ClusterState;

/// The natOutgoing rules this node wants in `family`, or `None` when no pool of the
/// family asks for NAT (then nothing is programmed and whatever was is removed).
///
/// As in Felix, every pool of the family counts, disabled ones included: a disabled pool
/// keeps the addresses already handed out, and those pods keep their NAT.
pub fn desired_nat(state: &ClusterState, node: &str, family: IpFamily) -> Option<NatOutgoing> {
    let mut masq_pools = BTreeSet::new();
    let mut all_pools = BTreeSet::new();
    for pool in state.pools.values() {
        let Ok(cidr) = pool.spec.cidr.parse::<IpNet>() else {
            continue;
        };
        if IpFamily::of_net(&cidr) != family {
            continue;
        }
        let cidr = cidr.trunc();
        all_pools.insert(cidr);
        if pool.spec.nat_outgoing {
            masq_pools.insert(cidr);
        }
    }
    if masq_pools.is_empty() {
        return None;
    }
    // natOutgoingAddress applies to the family of the address given.
    let snat_to = felix_setting(state, node, |f| {
        f.spec
            .nat_outgoing_address
            .as_deref()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .filter(|a| IpFamily::of_addr(a) == family)
    });
    Some(NatOutgoing {
        masq_pools,
        all_pools,
        snat_to,
    })
}

/// Adds `extra`'s natOutgoing networks (another backend's: flannel's `FLANNELD_IP_MASQ`)
/// to `into` (the pools' own, if any).
pub fn merge(into: &mut Option<NatOutgoing>, extra: Option<&NatOutgoing>) {
    let Some(extra) = extra else {
        return;
    };
    match into {
        Some(nat) => {
            nat.masq_pools.extend(extra.masq_pools.iter().copied());
            nat.all_pools.extend(extra.all_pools.iter().copied());
        }
        None => *into = Some(extra.clone()),
    }
}

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::Never;
    use datastore::model::{FelixConfigurationSpec, Object};

    use super::*;
    use crate::calc::fixtures::{cluster, node, pool};

    fn nets(list: &[&str]) -> BTreeSet<IpNet> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    #[test]
    fn no_pool_with_nat_outgoing_wants_nothing() {
        let s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        assert_eq!(desired_nat(&s, "n1", IpFamily::V4), None);
    }

    #[test]
    fn nat_pools_are_masqueraded_towards_anything_outside_every_pool() {
        let mut nat = pool("nat", "10.244.0.0/16", Never, Never);
        nat.spec.nat_outgoing = true;
        let mut disabled = pool("old", "10.10.0.0/16", Never, Never);
        disabled.spec.nat_outgoing = true;
        disabled.spec.disabled = true;
        let plain = pool("plain", "10.99.0.0/16", Never, Never);
        let v6 = pool("v6", "fd00::/48", Never, Never);
        let s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![nat, disabled, plain, v6],
        );
        let want = desired_nat(&s, "n1", IpFamily::V4).expect("NAT wanted");
        assert_eq!(want.masq_pools, nets(&["10.10.0.0/16", "10.244.0.0/16"]));
        assert_eq!(
            want.all_pools,
            nets(&["10.10.0.0/16", "10.244.0.0/16", "10.99.0.0/16"])
        );
        assert_eq!(want.snat_to, None);
        // The IPv6 pool has no natOutgoing: no IPv6 NAT.
        assert_eq!(desired_nat(&s, "n1", IpFamily::V6), None);
    }

    #[test]
    fn ipv6_pools_get_their_own_nat_beside_ipv4_ones() {
        let mut v6 = pool("v6", "fd00:244::/48", Never, Never);
        v6.spec.nat_outgoing = true;
        let plain6 = pool("plain6", "fd00:99::/48", Never, Never);
        let v4 = pool("v4", "10.244.0.0/16", Never, Never);
        let s = cluster(vec![node("n1", "10.0.0.1/24")], vec![v6, plain6, v4]);
        let want = desired_nat(&s, "n1", IpFamily::V6).expect("IPv6 NAT wanted");
        assert_eq!(want.masq_pools, nets(&["fd00:244::/48"]));
        assert_eq!(want.all_pools, nets(&["fd00:244::/48", "fd00:99::/48"]));
        assert_eq!(desired_nat(&s, "n1", IpFamily::V4), None);
    }

    #[test]
    fn nat_outgoing_address_turns_masquerade_into_snat_per_node() {
        let mut nat = pool("nat", "10.244.0.0/16", Never, Never);
        nat.spec.nat_outgoing = true;
        let mut s = cluster(vec![node("n1", "10.0.0.1/24")], vec![nat]);
        let felix = |addr: &str| {
            Object::new(
                "x",
                FelixConfigurationSpec {
                    nat_outgoing_address: Some(addr.into()),
                    ..FelixConfigurationSpec::default()
                },
            )
        };
        s.felix_configs
            .insert("default".into(), felix("10.0.0.200"));
        s.felix_configs
            .insert("node.n2".into(), felix("10.0.0.202"));
        assert_eq!(
            desired_nat(&s, "n1", IpFamily::V4).and_then(|n| n.snat_to),
            Some("10.0.0.200".parse().expect("ip"))
        );
        assert_eq!(
            desired_nat(&s, "n2", IpFamily::V4).and_then(|n| n.snat_to),
            Some("10.0.0.202".parse().expect("ip"))
        );
    }
}
