//! [`Ipam`], the handle every caller (CNI plugin, agent, calicoctl) goes through, and the
//! lookups the operations share: pools, node labels, the IPAM configuration.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use datastore::model::ipam::IpamConfig;
use datastore::{Datastore, keys};
use ipnet::IpNet;
use serde::Deserialize;

use crate::block;
use crate::error::{Error, Result};
use crate::notice::ClaimObserver;
use crate::pool::Pool;
use crate::store::{self, Retry};

/// Calico IPAM on a [`Datastore`]. Cheap to clone; every method is safe to call from many
/// processes on many nodes at once (all writes are compare-and-swap, retried on conflict).
#[derive(Clone)]
pub struct Ipam {
    pub(crate) ds: Arc<dyn Datastore>,
    /// Told of each block claim committed in one write (the CNI plugin tells its agent).
    pub(crate) claims: Option<Arc<dyn ClaimObserver>>,
}

#[derive(Deserialize, Default)]
struct NodeResource {
    #[serde(default)]
    metadata: NodeMetadata,
}

#[derive(Deserialize, Default)]
struct NodeMetadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

// ===== impl Ipam =====

impl Ipam {
    /// IPAM over `ds`.
    pub fn new(ds: Arc<dyn Datastore>) -> Ipam {
        Ipam { ds, claims: None }
    }

    /// The same IPAM, telling `observer` of every block it claims in one write.
    pub fn with_claim_observer(self, observer: Arc<dyn ClaimObserver>) -> Ipam {
        Ipam {
            claims: Some(observer),
            ..self
        }
    }

    /// The datastore this IPAM works on.
    pub fn datastore(&self) -> &Arc<dyn Datastore> {
        &self.ds
    }

    /// Every IP pool, sorted by name (the stored v3 IPPool resources).
    pub async fn pools(&self) -> Result<Vec<Pool>> {
        let listing = self.ds.list(&keys::resource_prefix("ippools")).await?;
        listing
            .items
            .iter()
            .map(|kv| Pool::from_resource_json(&kv.key, &kv.value))
            .collect()
    }

    /// The labels of Node `node` (empty when the Node is not registered: only `all()`
    /// pools select it then).
    pub async fn node_labels(&self, node: &str) -> Result<BTreeMap<String, String>> {
        let key = keys::resource("nodes", node);
        let Some(kv) = self.ds.get(&key).await? else {
            return Ok(BTreeMap::new());
        };
        let res: NodeResource = serde_json::from_slice(&kv.value).map_err(|e| Error::Corrupt {
            key,
            reason: e.to_string(),
        })?;
        Ok(res.metadata.labels)
    }

    /// The IPAM configuration (`/calico/ipam/v2/config`), Calico's defaults when absent.
    pub async fn config(&self) -> Result<IpamConfig> {
        Ok(
            store::get::<IpamConfig>(self.ds.as_ref(), &keys::ipam_config())
                .await?
                .map(|v| v.value)
                .unwrap_or_default(),
        )
    }

    /// Writes the IPAM configuration, refusing what Calico refuses.
    pub async fn set_config(&self, config: &IpamConfig) -> Result<()> {
        if !config.strict_affinity && !config.auto_allocate_blocks {
            return Err(Error::InvalidConfig(
                "Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time"
                    .to_string(),
            ));
        }
        let key = keys::ipam_config();
        let value = store::encode(&key, config)?;
        let mut retry = Retry::new(&key);
        loop {
            retry.next().await?;
            let result = match self.ds.get(&key).await? {
                None => self.ds.create(&key, value.clone(), None).await,
                Some(kv) => {
                    self.ds
                        .update(&key, value.clone(), kv.mod_revision, None)
                        .await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The block holding `ip`: found through the pool containing it, else by looking for
    /// an existing block that contains it (a pool may have been deleted since).
    pub(crate) async fn block_for_ip(&self, ip: IpAddr) -> Result<Option<IpNet>> {
        if let Some(pool) = self.pools().await?.iter().find(|p| p.cidr.contains(&ip)) {
            return Ok(block::block_containing(ip, pool.block_size));
        }
        let listing = self.ds.list(&keys::blocks_prefix()).await?;
        Ok(listing
            .items
            .iter()
            .filter_map(|kv| kv.key.rsplit('/').next().and_then(keys::cidr_from_key_part))
            .find(|cidr| cidr.contains(&ip)))
    }
}

/// Checks a name that becomes one datastore key segment (a handle id or a node name).
pub(crate) fn valid_key_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.contains('/')
        && !s.chars().any(char::is_whitespace)
        && s != "."
        && s != ".."
}
