//! The IPAMHandle index (`/calico/ipam/v2/handle/<id>`): handle -> {block CIDR: count},
//! kept in step with the blocks. An allocation writes it in the same atomic write as the
//! block, so an allocation never exists without its handle.

use std::net::IpAddr;

use datastore::keys;
use datastore::model::ipam::IpamHandle;
use ipnet::IpNet;

use crate::block;
use crate::client::Ipam;
use crate::error::Result;
use crate::store::{self, Retry};

/// Handle `current` (`None`: a new one) with `n` more addresses in `cidr`.
pub(crate) fn counted_up(current: Option<&IpamHandle>, cidr: &IpNet, n: usize) -> IpamHandle {
    let mut handle = current.cloned().unwrap_or_default();
    let count = handle.block.entry(cidr.to_string()).or_default();
    *count = count.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    handle
}

// ===== impl Ipam =====

impl Ipam {
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
