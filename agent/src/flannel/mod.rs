//! The flannel-style backend (`CALICO_NETWORKING_BACKEND=flannel`): per-node subnet leases
//! in etcd in flannel's own layout, programmed as flannel's vxlan or host-gw backends.
//! See `README.md` next to this file for how to use it.
//!
//! - [`config`]: the network config at `<prefix>/config`, checked field by field;
//! - [`subnet`], [`lease`], [`subnet_env`]: flannel's keys, lease JSON and subnet.env;
//! - [`manager`]: taking, renewing and re-taking this node's lease;
//! - [`watcher`]: following every lease (list + watch, relist on errors);
//! - [`desired`]: the kernel state as a pure function of the leases;
//! - [`task`]: the task tying them together and publishing the desired state.

pub mod config;
pub mod desired;
pub mod lease;
pub mod manager;
pub mod subnet;
pub mod subnet_env;
pub mod task;
pub mod watcher;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use datastore::Datastore;
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tracing::info;

use self::desired::{Identity, vtep_mac_for};
use self::manager::LeaseTiming;
use self::task::FlannelTask;
use crate::calc::Backend;
use crate::config::{NodeConfig, parse_bool};
use crate::dataplane::kernel::LinkInfo;
use crate::dataplane::types::DesiredState;
use crate::local::LocalNode;
use crate::tasks::dataplane::ExtraState;
use crate::tasks::supervisor::Supervisor;

pub use self::config::{BackendType, NetworkConfig};
pub use self::lease::{LeaseAttrs, SubnetLease};
pub use self::manager::{LeaseError, LeaseManager, OwnLease};

/// This node's flannel identity: `FLANNELD_IFACE` (else the node's interface), its first
/// IPv4 address as `PublicIP`, its MTU.
pub fn identity(cfg: &NodeConfig, local: &LocalNode, links: &[LinkInfo]) -> Result<Identity> {
    let iface = cfg
        .flannel_iface
        .as_deref()
        .filter(|i| !i.is_empty())
        .unwrap_or(&local.interface);
    let (iface_net, iface_mtu) = match local.address {
        Some(address) if iface == local.interface => (address, local.host_mtu),
        _ => {
            let link = links.iter().find(|l| l.name == iface).ok_or_else(|| {
                anyhow!("FLANNELD_IFACE: no interface named '{iface}' on this host")
            })?;
            let (ip, len): (Ipv4Addr, u8) = *link.addresses.first().ok_or_else(|| {
                anyhow!(
                    "FLANNELD_IFACE: interface '{iface}' has no IPv4 address (flannel's backends run over IPv4)"
                )
            })?;
            (Ipv4Net::new(ip, len)?, link.mtu)
        }
    };
    if iface_mtu == 0 {
        bail!("FLANNELD_IFACE: interface '{iface}' reports MTU 0");
    }
    Ok(Identity {
        node: local.name.clone(),
        public_ip: iface_net.addr(),
        iface: iface.to_string(),
        iface_net,
        iface_mtu,
        vtep_mac: vtep_mac_for(&local.name),
    })
}

/// The lease timing from `FLANNELD_SUBNET_LEASE_TTL` / `_RENEW_MARGIN`.
pub fn timing(cfg: &NodeConfig) -> LeaseTiming {
    LeaseTiming {
        ttl: Duration::from_secs(cfg.flannel_subnet_lease_ttl.max(1)),
        renew_margin: Duration::from_secs(cfg.flannel_subnet_lease_renew_margin * 60),
        ..LeaseTiming::default()
    }
}

/// Starts the flannel backend when it is the configured one; returns the desired state it
/// publishes for the dataplane task to merge. Nothing is published before this node holds
/// a lease and the leases have been listed (see [`first_state`]).
pub async fn start(
    cfg: &NodeConfig,
    local: &LocalNode,
    links: &[LinkInfo],
    backend: Backend,
    store: Arc<dyn Datastore>,
    tasks: &mut Supervisor,
) -> Result<Option<ExtraState>> {
    if backend != Backend::Flannel {
        return Ok(None);
    }
    let identity = identity(cfg, local, links)?;
    let ip_masq = parse_bool("FLANNELD_IP_MASQ", &cfg.flannel_ip_masq).map_err(|e| anyhow!(e))?;
    let timing = timing(cfg);
    info!(
        prefix = cfg.flannel_etcd_prefix,
        iface = identity.iface,
        public_ip = %identity.public_ip,
        subnet_file = %cfg.flannel_subnet_file.display(),
        ttl = ?timing.ttl,
        ip_masq,
        "flannel backend"
    );
    let (tx, rx) = watch::channel(Arc::new(DesiredState::default()));
    let task = FlannelTask {
        store,
        prefix: cfg.flannel_etcd_prefix.clone(),
        identity,
        subnet_file: cfg.flannel_subnet_file.clone(),
        mtu_file: Some(cfg.mtu_file.clone()),
        ip_masq,
        timing,
        tx,
    };
    let heartbeat = tasks.liveness().heartbeat("flannel");
    tasks.spawn("flannel", task.run(heartbeat));
    Ok(Some(rx))
}

/// Waits until `extra` (if any) has published its first state: the dataplane task starts
/// after that, so a restart does not remove flannel's kernel state before the lease and
/// the other leases are known again.
pub async fn first_state(extra: Option<ExtraState>) {
    if let Some(mut rx) = extra {
        let _ = rx.changed().await;
    }
}
