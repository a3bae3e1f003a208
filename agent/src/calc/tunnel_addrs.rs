//! What a node's tunnel addresses should be (pure, so it is tested without a datastore):
//! an address is wanted for IPIP / VXLAN while a pool that selects the node uses that
//! encapsulation, and a recorded one is kept only while IPAM holds it under the node's
//! tunnel handle. The tunnel task carries the plan out.

use std::net::IpAddr;

use datastore::model::Node;
use datastore::selector::Selector;
use ipam::TunnelKind;
use ipam::block::ordinal_of;

use crate::state::ClusterState;

/// What the node should hold for one tunnel kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelPlan {
    /// Nothing to do.
    Keep,
    /// Allocate (or look up) an address and record it.
    Assign,
    /// Release the address and clear the field.
    Release,
}

fn pool_wants(state: &ClusterState, node: &Node, kind: TunnelKind) -> bool {
    state.pools.values().any(|p| {
        p.spec.uses(kind.tunnel())
            && p.spec.family() == Some(kind.family())
            && !p.spec.disabled
            && Selector::parse(&p.spec.node_selector)
                .map(|s| p.spec.node_selector.is_empty() || s.matches(&node.metadata.labels))
                .unwrap_or(false)
    })
}

/// The address the node records for `kind`, and whether a MAC goes with it and is
/// missing (VXLAN records the VTEP MAC next to the address).
fn recorded(node: &Node, kind: TunnelKind) -> (Option<IpAddr>, bool) {
    match kind {
        TunnelKind::Ipip => (
            node.spec
                .bgp
                .as_ref()
                .and_then(|b| b.ipip_tunnel_addr())
                .map(IpAddr::V4),
            false,
        ),
        TunnelKind::Vxlan | TunnelKind::VxlanV6 => (
            node.spec.vxlan_tunnel_addr_of(kind.family()),
            node.spec.vxlan_mac_of(kind.family()).is_none(),
        ),
    }
}

/// True when `ip` is allocated in some block under the node's tunnel handle.
fn allocated_to_handle(state: &ClusterState, ip: IpAddr, handle: &str) -> bool {
    state.blocks.values().any(|b| {
        let Some(offset) = ordinal_of(&b.cidr, ip) else {
            return false;
        };
        b.allocations
            .get(offset)
            .copied()
            .flatten()
            .and_then(|i| b.attributes.get(i))
            .and_then(|a| a.handle_id.as_deref())
            == Some(handle)
    })
}

/// Decides what to do for `kind` on `node` (pure, so it is tested without a datastore).
pub fn plan(state: &ClusterState, node_name: &str, kind: TunnelKind) -> TunnelPlan {
    let Some(node) = state.nodes.get(node_name) else {
        return TunnelPlan::Keep;
    };
    let wanted = pool_wants(state, node, kind);
    let (have, mac_missing) = recorded(node, kind);
    match (wanted, have) {
        (true, None) => TunnelPlan::Assign,
        (true, Some(ip)) if !allocated_to_handle(state, ip, &kind.handle(node_name)) => {
            TunnelPlan::Assign
        }
        (true, Some(_)) if mac_missing => TunnelPlan::Assign,
        (false, Some(_)) => TunnelPlan::Release,
        _ => TunnelPlan::Keep,
    }
}

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::{Always, Never};
    use datastore::model::IpFamily;
    use datastore::model::ipam::{AffinityState, AllocationAttribute};

    use super::*;
    use crate::calc::fixtures::*;

    #[test]
    fn a_vxlan_pool_asks_for_an_address_and_its_removal_releases_it() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Always)],
        );
        assert_eq!(plan(&s, "n1", TunnelKind::Vxlan), TunnelPlan::Assign);
        assert_eq!(plan(&s, "n1", TunnelKind::Ipip), TunnelPlan::Keep);
        s.nodes
            .get_mut("n1")
            .expect("n1")
            .spec
            .ipv4_vxlan_tunnel_addr = Some("10.244.1.0".into());
        s.pools.get_mut("p").expect("p").spec.vxlan_mode = Never;
        assert_eq!(plan(&s, "n1", TunnelKind::Vxlan), TunnelPlan::Release);
    }

    #[test]
    fn a_recorded_address_not_held_by_our_handle_is_reassigned() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Always, Never)],
        );
        s.nodes
            .get_mut("n1")
            .and_then(|n| n.spec.bgp.as_mut())
            .expect("bgp")
            .ipv4_ipip_tunnel_addr = Some("10.244.1.0".into());
        // No block holds it: stale (e.g. the pool was recreated).
        assert_eq!(plan(&s, "n1", TunnelKind::Ipip), TunnelPlan::Assign);
    }

    #[test]
    fn an_ipv6_vxlan_pool_asks_for_an_ipv6_tunnel_address_only() {
        let mut p6 = pool("p6", "fd00:100::/48", Never, Always);
        p6.spec.block_size = 122;
        let mut s = cluster(vec![node("n1", "10.0.0.1/24")], vec![p6]);
        assert_eq!(plan(&s, "n1", TunnelKind::VxlanV6), TunnelPlan::Assign);
        assert_eq!(plan(&s, "n1", TunnelKind::Vxlan), TunnelPlan::Keep);
        // Recorded, held under the node's handle, with its MAC: nothing to do.
        claim(&mut s, "n1", "fd00:100::/122", AffinityState::Confirmed);
        let block = s.blocks.get_mut(&cidr("fd00:100::/122")).expect("block");
        block.attributes.push(AllocationAttribute {
            handle_id: Some(TunnelKind::VxlanV6.handle("n1")),
            secondary: Default::default(),
        });
        block.allocations[0] = Some(0);
        let n1 = s.nodes.get_mut("n1").expect("n1");
        n1.spec.set_vxlan_tunnel(
            IpFamily::V6,
            Some("fd00:100::".parse().expect("ip")),
            "66:00:00:00:00:01",
        );
        assert_eq!(plan(&s, "n1", TunnelKind::VxlanV6), TunnelPlan::Keep);
        s.pools.get_mut("p6").expect("p6").spec.vxlan_mode = Never;
        assert_eq!(plan(&s, "n1", TunnelKind::VxlanV6), TunnelPlan::Release);
    }
}
