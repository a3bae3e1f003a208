//! Start-up as calico-node does it: settle the node address, register the Node resource,
//! create the default pool, refuse to run beside another node using the same address.

pub mod autodetect;

use datastore::Client;
use datastore::model::{
    AsNumber, ClusterInformation, ClusterInformationSpec, EncapMode, IPPool, IPPoolSpec, Node,
    NodeBgpSpec, NodeSpec, Object,
};
use thiserror::Error;
use tracing::info;

use crate::config::{NodeConfig, parse_bool, parse_encap_mode};
use crate::local::LocalNode;

/// Why start-up cannot go on.
#[derive(Debug, Error)]
pub enum StartupError {
    /// Another node is registered with our address (Calico #1628).
    #[error("Calico node '{other}' is already using the IPv4 address {ip}.")]
    AddressInUse { other: String, ip: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Datastore(#[from] datastore::Error),
}

/// How many times a read-modify-write of the Node is retried on conflict.
const NODE_RETRIES: usize = 20;

/// Reads the Node, lets `change` edit it, and writes it back by compare-and-swap, retrying
/// on conflict. Returns the stored node. Creates it when absent and `create` is set.
pub async fn modify_node(
    client: &Client,
    name: &str,
    create: bool,
    mut change: impl FnMut(&mut Node),
) -> Result<Node, datastore::Error> {
    let mut last = None;
    for _ in 0..NODE_RETRIES {
        match client.try_get::<Node>(name).await? {
            Some(current) => {
                let mut node = current.clone();
                change(&mut node);
                if node == current {
                    return Ok(current);
                }
                match client.update(node).await {
                    Ok(n) => return Ok(n),
                    Err(e @ datastore::Error::Conflict { .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            None if create => {
                let mut node: Node = Object::new(name, NodeSpec::default());
                change(&mut node);
                match client.create(node).await {
                    Ok(n) => return Ok(n),
                    Err(e @ datastore::Error::AlreadyExists { .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            None => {
                return Err(datastore::Error::NotFound {
                    key: format!("Node({name})"),
                });
            }
        }
    }
    Err(last.unwrap_or(datastore::Error::Backend(
        "node update kept conflicting".into(),
    )))
}

/// Registers this node: `spec.bgp.ipv4Address` with its prefix, the AS when given; other
/// fields (labels, tunnel addresses, route reflector id) are kept.
pub async fn register_node(
    client: &Client,
    local: &LocalNode,
    as_number: Option<AsNumber>,
) -> Result<Node, StartupError> {
    let ip = local.ip().to_string();
    for other in client.list::<Node>().await?.items {
        if other.name() == local.name {
            continue;
        }
        let theirs = other
            .spec
            .bgp
            .as_ref()
            .and_then(|b| b.ipv4_address.as_deref())
            .and_then(|a| a.split('/').next());
        if theirs == Some(ip.as_str()) {
            return Err(StartupError::AddressInUse {
                other: other.name().to_string(),
                ip,
            });
        }
    }
    let address = local.address.to_string();
    let node = modify_node(client, &local.name, true, |node| {
        let bgp = node.spec.bgp.get_or_insert_with(NodeBgpSpec::default);
        bgp.ipv4_address = Some(address.clone());
        if let Some(asn) = as_number {
            bgp.as_number = Some(asn);
        }
    })
    .await?;
    info!(node = %local.name, address = %local.address, interface = %local.interface, "registered node");
    Ok(node)
}

/// Creates `default-ipv4-ippool` from `CALICO_IPV4POOL_*` unless `NO_DEFAULT_POOLS` is set
/// or a pool already exists.
pub async fn ensure_default_pool(client: &Client, cfg: &NodeConfig) -> Result<(), StartupError> {
    if parse_bool("NO_DEFAULT_POOLS", &cfg.no_default_pools).map_err(StartupError::Config)? {
        return Ok(());
    }
    if !client.list::<IPPool>().await?.items.is_empty() {
        return Ok(());
    }
    let mode = |name: &str, value: &str| -> Result<EncapMode, StartupError> {
        parse_encap_mode(name, value).map_err(StartupError::Config)
    };
    let pool: IPPool = Object::new(
        "default-ipv4-ippool",
        IPPoolSpec {
            cidr: cfg.ipv4pool_cidr.clone(),
            block_size: cfg.ipv4pool_block_size,
            ipip_mode: mode("CALICO_IPV4POOL_IPIP", &cfg.ipv4pool_ipip)?,
            vxlan_mode: mode("CALICO_IPV4POOL_VXLAN", &cfg.ipv4pool_vxlan)?,
            nat_outgoing: parse_bool("CALICO_IPV4POOL_NAT_OUTGOING", &cfg.ipv4pool_nat_outgoing)
                .map_err(StartupError::Config)?,
            node_selector: cfg.ipv4pool_node_selector.clone(),
            ..IPPoolSpec::default()
        },
    );
    match client.create(pool).await {
        Ok(p) => {
            info!(cidr = %p.spec.cidr, "created the default IP pool");
            Ok(())
        }
        // Another node created it first.
        Err(datastore::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes sure ClusterInformation `default` exists (as calico-node does at start): a
/// cluster GUID (`calicoctl ipam release --from-report` checks reports against it), the
/// cluster type, this version, and the data store ready. An existing one keeps its GUID
/// and its lock (`datastoreReady`); only an outdated version or type is updated.
pub async fn ensure_cluster_information(
    client: &Client,
    cluster_type: &str,
) -> Result<(), StartupError> {
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    for _ in 0..10 {
        let result = match client.try_get::<ClusterInformation>("default").await? {
            None => {
                let spec = ClusterInformationSpec {
                    cluster_guid: uuid::Uuid::new_v4().simple().to_string(),
                    cluster_type: cluster_type.to_string(),
                    calico_version: version.clone(),
                    datastore_ready: Some(true),
                    ..ClusterInformationSpec::default()
                };
                client.create(Object::new("default", spec)).await.map(drop)
            }
            Some(info)
                if !info.spec.cluster_guid.is_empty()
                    && info.spec.calico_version == version
                    && info.spec.cluster_type == cluster_type =>
            {
                return Ok(());
            }
            Some(mut info) => {
                if info.spec.cluster_guid.is_empty() {
                    info.spec.cluster_guid = uuid::Uuid::new_v4().simple().to_string();
                }
                info.spec.calico_version = version.clone();
                info.spec.cluster_type = cluster_type.to_string();
                client.update(info).await.map(drop)
            }
        };
        match result {
            Ok(()) => return Ok(()),
            // Another node wrote it meanwhile: look again.
            Err(datastore::Error::AlreadyExists { .. } | datastore::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StartupError::Config(
        "ClusterInformation default changed under every one of 10 attempts to write it; giving up for now".into(),
    ))
}
