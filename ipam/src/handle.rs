//! The IPAMHandle index (`/calico/ipam/v2/handle/<id>`): handle -> {block CIDR: count},
//! kept in step with the blocks. It is written *before* a block allocation and undone if
//! the block write loses, so an allocation never exists without its handle.

use std::net::IpAddr;

use datastore::model::ipam::IpamHandle;
use datastore::{CreateOrGet, keys};
use ipnet::IpNet;

use crate::block;
use crate::client::Ipam;
use crate::error::Result;
use crate::store::{self, Retry, Versioned};

// ===== impl Ipam =====

impl Ipam {
    /// Adds `n` addresses in `cidr` to handle `id`, creating the handle if needed.
    pub(crate) async fn increment_handle(&self, id: &str, cidr: &IpNet, n: u32) -> Result<()> {
        let key = keys::handle(id);
        let mut retry = Retry::new(&key);
        let mut fresh = IpamHandle::default();
        fresh.block.insert(cidr.to_string(), n);
        let fresh = store::encode(&key, &fresh)?;
        loop {
            retry.next().await?;
            // A pod's first address creates its handle in one round trip; an existing
            // handle comes back from the same request and is counted up.
            let result = match self.ds.create_or_get(&key, fresh.clone()).await {
                Ok(CreateOrGet::Created(_)) => return Ok(()),
                Ok(CreateOrGet::Exists(kv)) => {
                    let mut v: Versioned<IpamHandle> = store::decode(&kv)?;
                    *v.value.block.entry(cidr.to_string()).or_default() += n;
                    let value = store::encode(&key, &v.value)?;
                    self.ds.update(&key, value, v.revision, None).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Removes `n` addresses in `cidr` from handle `id` (`None` = the whole entry); the
    /// handle is deleted when no block is left. A missing handle is fine.
    pub(crate) async fn decrement_handle(
        &self,
        id: &str,
        cidr: &IpNet,
        n: Option<u32>,
    ) -> Result<()> {
        let key = keys::handle(id);
        let block_key = cidr.to_string();
        let mut retry = Retry::new(&key);
        loop {
            retry.next().await?;
            let Some(mut v) = store::get_handle(self.ds.as_ref(), id).await? else {
                return Ok(());
            };
            let Some(count) = v.value.block.get(&block_key).copied() else {
                return Ok(());
            };
            let left = n.map_or(0, |n| count.saturating_sub(n));
            if left == 0 {
                v.value.block.remove(&block_key);
            } else {
                v.value.block.insert(block_key.clone(), left);
            }
            let result = if v.value.block.is_empty() {
                self.ds.delete(&key, Some(v.revision)).await.map(|_| 0)
            } else {
                let value = store::encode(&key, &v.value)?;
                self.ds.update(&key, value, v.revision, None).await
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The addresses allocated under handle `id`, in block then address order.
    pub async fn ips_by_handle(&self, id: &str) -> Result<Vec<IpAddr>> {
        let Some(h) = store::get_handle(self.ds.as_ref(), id).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for cidr in h.value.block.keys().filter_map(|c| c.parse::<IpNet>().ok()) {
            if let Some(b) = store::get_block(self.ds.as_ref(), &cidr).await? {
                out.extend(
                    block::ordinals_of_handle(&b.value, id)
                        .into_iter()
                        .map(|o| block::ip_at(&cidr, o)),
                );
            }
        }
        Ok(out)
    }
}
