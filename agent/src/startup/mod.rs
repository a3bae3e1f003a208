//! Start-up as calico-node does it: settle the node address, register the Node resource,
//! create the default pool, refuse to run beside another node using the same address.

pub mod autodetect;

use datastore::Client;
use datastore::model::{
    AsNumber, ClusterInformation, ClusterInformationSpec, EncapMode, IPPool, IPPoolSpec, IpFamily,
    Node, NodeBgpSpec, NodeSpec, Object,
};
use ipnet::IpNet;
use thiserror::Error;
use tracing::info;

use crate::config::{NodeConfig, parse_bool, parse_encap_mode};
use crate::local::LocalNode;

/// Why start-up cannot go on.
#[derive(Debug, Error)]
pub enum StartupError {
    /// Another node is registered with our address (Calico #1628).
    #[error("Calico node '{other}' is already using the {family} address {ip}.")]
    AddressInUse {
        other: String,
        family: IpFamily,
        ip: String,
    },
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

/// The address of a family (without its prefix) a Node is registered with.
fn registered_address(node: &Node, family: IpFamily) -> Option<&str> {
    let bgp = node.spec.bgp.as_ref()?;
    let text = match family {
        IpFamily::V4 => bgp.ipv4_address.as_deref()?,
        IpFamily::V6 => bgp.ipv6_address.as_deref()?,
    };
    text.split('/').next()
}

/// Registers this node: the `spec.bgp.ipv4Address` and `ipv6Address` it has, with their
/// prefixes, the AS when given; other fields (labels, tunnel addresses, route reflector
/// id, an address this start does not set) are kept, as calico-node does.
pub async fn register_node(
    client: &Client,
    local: &LocalNode,
    as_number: Option<AsNumber>,
) -> Result<Node, StartupError> {
    let mine: Vec<(IpFamily, String)> = local
        .families()
        .filter_map(|f| Some((f, local.address_of(f)?.to_string())))
        .collect();
    for other in client.list::<Node>().await?.items {
        if other.name() == local.name {
            continue;
        }
        for (family, ip) in &mine {
            if registered_address(&other, *family) == Some(ip.as_str()) {
                return Err(StartupError::AddressInUse {
                    other: other.name().to_string(),
                    family: *family,
                    ip: ip.clone(),
                });
            }
        }
    }
    let address = local.address.map(|a| a.to_string());
    let address_v6 = local.ipv6.as_ref().map(|v6| v6.address.to_string());
    let node = modify_node(client, &local.name, true, |node| {
        let bgp = node.spec.bgp.get_or_insert_with(NodeBgpSpec::default);
        if let Some(v4) = &address {
            bgp.ipv4_address = Some(v4.clone());
        }
        if let Some(v6) = &address_v6 {
            bgp.ipv6_address = Some(v6.clone());
        }
        if let Some(asn) = as_number {
            bgp.as_number = Some(asn);
        }
    })
    .await?;
    info!(node = %local.name, address = ?address, ipv6 = ?address_v6, interface = %local.interface, "registered node");
    Ok(node)
}

/// Creates `default-ipv4-ippool` from `CALICO_IPV4POOL_*` when no IPv4 pool exists and,
/// when this node has IPv6, `default-ipv6-ippool` from `CALICO_IPV6POOL_*` when no IPv6
/// pool exists; neither under `NO_DEFAULT_POOLS`, nor a family whose CIDR is `none`.
/// (calico-node creates the IPv6 pool whenever the kernel has IPv6 and
/// `FELIX_IPV6SUPPORT` is not false, which Calico's manifests set; here it follows the
/// node's own IPv6, so an IPv4 cluster gets no IPv6 pool it did not ask for.)
pub async fn ensure_default_pools(
    client: &Client,
    cfg: &NodeConfig,
    local: &LocalNode,
) -> Result<(), StartupError> {
    let config = |r: Result<bool, String>| r.map_err(StartupError::Config);
    if config(parse_bool("NO_DEFAULT_POOLS", &cfg.no_default_pools))? {
        return Ok(());
    }
    let mode = |name: &str, value: &str| -> Result<EncapMode, StartupError> {
        parse_encap_mode(name, value).map_err(StartupError::Config)
    };
    let mut wanted = Vec::new();
    if cfg.ipv4pool_cidr != "none" {
        wanted.push(Object::new(
            "default-ipv4-ippool",
            IPPoolSpec {
                cidr: cfg.ipv4pool_cidr.clone(),
                block_size: cfg.ipv4pool_block_size,
                ipip_mode: mode("CALICO_IPV4POOL_IPIP", &cfg.ipv4pool_ipip)?,
                vxlan_mode: mode("CALICO_IPV4POOL_VXLAN", &cfg.ipv4pool_vxlan)?,
                nat_outgoing: config(parse_bool(
                    "CALICO_IPV4POOL_NAT_OUTGOING",
                    &cfg.ipv4pool_nat_outgoing,
                ))?,
                node_selector: cfg.ipv4pool_node_selector.clone(),
                ..IPPoolSpec::default()
            },
        ));
    }
    if local.ipv6.is_some() && cfg.ipv6pool_cidr != "none" {
        let vxlan = mode("CALICO_IPV6POOL_VXLAN", &cfg.ipv6pool_vxlan)?;
        let cidr = if cfg.ipv6pool_cidr.is_empty() {
            random_ula_prefix()
        } else {
            cfg.ipv6pool_cidr.clone()
        };
        wanted.push(Object::new(
            "default-ipv6-ippool",
            IPPoolSpec {
                cidr,
                block_size: cfg.ipv6pool_block_size,
                vxlan_mode: vxlan,
                nat_outgoing: config(parse_bool(
                    "CALICO_IPV6POOL_NAT_OUTGOING",
                    &cfg.ipv6pool_nat_outgoing,
                ))?,
                node_selector: cfg.ipv6pool_node_selector.clone(),
                ..IPPoolSpec::default()
            },
        ));
    }
    let existing = client.list::<IPPool>().await?.items;
    let family_of = |p: &IPPool| {
        p.spec
            .cidr
            .parse::<IpNet>()
            .ok()
            .map(|n| IpFamily::of_net(&n))
    };
    for pool in wanted {
        let pool: IPPool = pool;
        let family = family_of(&pool).ok_or_else(|| {
            StartupError::Config(format!(
                "the default pool's CIDR '{}' is not an IP network",
                pool.spec.cidr
            ))
        })?;
        if existing.iter().any(|p| family_of(p) == Some(family)) {
            continue;
        }
        match client.create(pool).await {
            Ok(p) => info!(cidr = %p.spec.cidr, "created the default {family} pool"),
            // Another node created it first.
            Err(datastore::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A random unique local IPv6 /48 (RFC 4193: fd + 40 random bits), as calico-node picks
/// for its default IPv6 pool.
fn random_ula_prefix() -> String {
    let random = uuid::Uuid::new_v4().into_bytes();
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&random[..5]);
    format!("{}/48", std::net::Ipv6Addr::from(octets))
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
