//! The tunnel-address task (calico-node's `allocateip`): while a pool selecting this node
//! uses IPIP (or VXLAN), the node holds one tunnel address from it, recorded in
//! `spec.bgp.ipv4IPIPTunnelAddr` (or `spec.ipv4VXLANTunnelAddr` with the VTEP MAC in
//! `vxlanTunnelMACAddr`); when no pool needs it any more, the address is released and the
//! field cleared. Runs on every cluster-state change, so `calicoctl apply` of a pool's
//! mode takes effect live.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use datastore::Client;
use datastore::model::Node;
use datastore::selector::Selector;
use ipam::{Ipam, TunnelKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::calc::tunnels::derived_vtep_mac;
use crate::dataplane::types::format_mac;
use crate::startup::modify_node;
use crate::state::ClusterState;
use crate::tasks::liveness::Heartbeat;

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
            && !p.spec.disabled
            && Selector::parse(&p.spec.node_selector)
                .map(|s| p.spec.node_selector.is_empty() || s.matches(&node.metadata.labels))
                .unwrap_or(false)
    })
}

fn recorded(node: &Node, kind: TunnelKind) -> Option<IpAddr> {
    let text = match kind {
        TunnelKind::Ipip => node.spec.bgp.as_ref()?.ipv4_ipip_tunnel_addr.as_deref(),
        TunnelKind::Vxlan => node.spec.ipv4_vxlan_tunnel_addr.as_deref(),
    }?;
    text.parse().ok()
}

/// True when `ip` is allocated in some block under the node's tunnel handle.
fn allocated_to_handle(state: &ClusterState, ip: IpAddr, handle: &str) -> bool {
    state.blocks.values().any(|b| {
        if !b.cidr.contains(&ip) {
            return false;
        }
        let offset = match (b.cidr.network(), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip).wrapping_sub(u32::from(net)) as usize
            }
            _ => return false,
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
    let have = recorded(node, kind);
    match (wanted, have) {
        (true, None) => TunnelPlan::Assign,
        (true, Some(ip)) if !allocated_to_handle(state, ip, &kind.handle(node_name)) => {
            TunnelPlan::Assign
        }
        (true, Some(ip))
            if kind == TunnelKind::Vxlan && node.spec.vxlan_tunnel_mac_addr.is_none() =>
        {
            let _ = ip;
            TunnelPlan::Assign
        }
        (false, Some(_)) => TunnelPlan::Release,
        _ => TunnelPlan::Keep,
    }
}

/// Writes (or clears) the tunnel fields of the Node; true when they changed.
async fn record(
    client: &Client,
    node: &str,
    kind: TunnelKind,
    ip: Option<IpAddr>,
) -> datastore::Result<bool> {
    let mac = format_mac(&derived_vtep_mac(node));
    let mut changed = false;
    modify_node(client, node, false, |n| {
        let before = n.spec.clone();
        set_tunnel_fields(n, kind, ip, &mac);
        changed = n.spec != before;
    })
    .await?;
    Ok(changed)
}

fn set_tunnel_fields(n: &mut Node, kind: TunnelKind, ip: Option<IpAddr>, mac: &str) {
    match kind {
        TunnelKind::Ipip => {
            if let Some(bgp) = n.spec.bgp.as_mut() {
                bgp.ipv4_ipip_tunnel_addr = ip.map(|a| a.to_string());
            }
        }
        TunnelKind::Vxlan => {
            n.spec.ipv4_vxlan_tunnel_addr = ip.map(|a| a.to_string());
            n.spec.vxlan_tunnel_mac_addr = match ip {
                Some(_) => n
                    .spec
                    .vxlan_tunnel_mac_addr
                    .clone()
                    .or_else(|| Some(mac.to_string())),
                None => None,
            };
        }
    }
}

async fn act(
    client: &Client,
    ipam: &Ipam,
    node: &str,
    kind: TunnelKind,
    plan: TunnelPlan,
) -> Result<(), String> {
    match plan {
        TunnelPlan::Keep => Ok(()),
        TunnelPlan::Assign => {
            let ip = ipam
                .assign_tunnel_address(node, kind)
                .await
                .map_err(|e| e.to_string())?;
            if record(client, node, kind, Some(ip))
                .await
                .map_err(|e| e.to_string())?
            {
                info!(?kind, %ip, "tunnel address assigned");
            }
            Ok(())
        }
        TunnelPlan::Release => {
            let _ = record(client, node, kind, None)
                .await
                .map_err(|e| e.to_string())?;
            ipam.release_tunnel_address(node, kind)
                .await
                .map_err(|e| e.to_string())?;
            info!(
                ?kind,
                "tunnel address released: no pool uses this encapsulation"
            );
            Ok(())
        }
    }
}

/// Runs until the cluster-state channel closes.
pub async fn run(
    client: Client,
    ipam: Ipam,
    node: String,
    mut state: watch::Receiver<Arc<ClusterState>>,
    mut heartbeat: Heartbeat,
) {
    loop {
        heartbeat.beat();
        // Planned from a borrow, not a held snapshot: the syncer updates the state in place
        // unless a consumer still holds the previous one.
        let plans = {
            let snapshot = state.borrow_and_update();
            [TunnelKind::Ipip, TunnelKind::Vxlan].map(|kind| (kind, plan(&snapshot, &node, kind)))
        };
        let mut failed = false;
        for (kind, p) in plans {
            if let Err(e) = act(&client, &ipam, &node, kind, p).await {
                warn!(?kind, error = %e, "tunnel address not settled; will retry");
                failed = true;
            }
        }
        let mut retry = std::pin::pin!(async move {
            match failed {
                true => tokio::time::sleep(Duration::from_secs(2)).await,
                false => std::future::pending().await,
            }
        });
        loop {
            tokio::select! {
                () = heartbeat.tick() => continue,
                changed = state.changed() => if changed.is_err() { return },
                () = &mut retry => {}
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::{Always, Never};

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
}
