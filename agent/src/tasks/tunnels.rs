//! The tunnel-address task (calico-node's `allocateip`): while a pool selecting this node
//! uses IPIP (or VXLAN), the node holds one tunnel address from it, recorded in
//! `spec.bgp.ipv4IPIPTunnelAddr` (or `spec.ipv4VXLANTunnelAddr` with the VTEP MAC in
//! `vxlanTunnelMACAddr`, and for IPv6 VXLAN pools `ipv6VXLANTunnelAddr` with
//! `vxlanTunnelMACAddrV6`); when no pool needs it any more, the address is released and
//! the field cleared. Runs on every cluster-state change, so `calicoctl apply` of a pool's
//! mode takes effect live.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use datastore::Client;
use datastore::model::Node;
use ipam::{Ipam, TunnelKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::calc::tunnel_addrs::{TunnelPlan, plan};
use crate::calc::tunnels::derived_vtep_mac;
use crate::dataplane::types::format_mac;
use crate::liveness::Heartbeat;
use crate::startup::modify_node;
use crate::state::ClusterState;

/// Writes (or clears) the tunnel fields of the Node; true when they changed.
async fn record(
    client: &Client,
    node: &str,
    kind: TunnelKind,
    ip: Option<IpAddr>,
) -> datastore::Result<bool> {
    let mac = format_mac(&derived_vtep_mac(node, kind.family()));
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
        TunnelKind::Vxlan | TunnelKind::VxlanV6 => n.spec.set_vxlan_tunnel(kind.family(), ip, mac),
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
            TunnelKind::ALL.map(|kind| (kind, plan(&snapshot, &node, kind)))
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
