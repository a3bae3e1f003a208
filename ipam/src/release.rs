//! Release by handle (CNI DEL) and by address (`calicoctl ipam release`, GC), both
//! idempotent. A freed ordinal goes to the tail of the block's FIFO; a block left empty
//! with no affinity is deleted; the handle index is decremented after the block write.

use std::net::IpAddr;

use datastore::keys;
use ipnet::IpNet;
use tracing::debug;

use crate::block;
use crate::client::{Ipam, valid_key_segment};
use crate::error::{Error, Result};
use crate::store::{self, Retry};

/// What [`Ipam::release_if_still_leaked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakRelease {
    Released,
    /// Not allocated any more.
    AlreadyFree,
    /// Released and allocated again since the report (another handle or sequence).
    Reallocated,
    /// A workload or node uses it now.
    InUse,
}

// ===== impl Ipam =====

impl Ipam {
    /// Releases every address of handle `id`; returns them. A handle that does not exist
    /// releases nothing and is not an error (DEL twice succeeds).
    pub async fn release_by_handle(&self, id: &str) -> Result<Vec<IpAddr>> {
        if !valid_key_segment(id) {
            return Err(Error::InvalidHandle(id.to_string()));
        }
        let Some(handle) = store::get_handle(self.ds.as_ref(), id).await? else {
            return Ok(Vec::new());
        };
        let mut released = Vec::new();
        for cidr_text in handle.value.block.keys() {
            let Ok(cidr) = cidr_text.parse::<IpNet>() else {
                continue;
            };
            let ips = self
                .release_in_block(&cidr, |b| block::ordinals_of_handle(b, id))
                .await?;
            // Drop the whole entry when the block had nothing left for this handle: the
            // index is then simply stale.
            let n = if ips.is_empty() {
                None
            } else {
                Some(u32::try_from(ips.len()).unwrap_or(u32::MAX))
            };
            self.decrement_handle(id, &cidr, n).await?;
            released.extend(ips);
        }
        debug!(handle = id, released = released.len(), "released by handle");
        Ok(released)
    }

    /// Releases one address. With `sequence`, only if the allocation still carries that
    /// sequence number (it was not released and handed out again since it was read:
    /// [`Error::BadSequenceNumber`] otherwise). Returns false when it was not allocated.
    pub async fn release_ip(&self, ip: IpAddr, sequence: Option<u64>) -> Result<bool> {
        let Some(cidr) = self.block_for_ip(ip).await? else {
            return Ok(false);
        };
        let Some(ordinal) = block::ordinal_of(&cidr, ip) else {
            return Ok(false);
        };
        let key = keys::block(&cidr);
        let mut retry = Retry::new(&key);
        let handle = loop {
            retry.next().await?;
            let Some(b) = store::get_block(self.ds.as_ref(), &cidr).await? else {
                return Ok(false);
            };
            let Some(attr) = block::attribute_of(&b.value, ordinal) else {
                return Ok(false);
            };
            let handle = attr.handle_id.clone();
            if let Some(expected) = sequence {
                let actual = block::sequence_of(&b.value, ordinal).unwrap_or(0);
                if actual != expected {
                    return Err(Error::BadSequenceNumber {
                        ip,
                        expected,
                        actual,
                    });
                }
            }
            let mut value = b.value;
            block::release(&mut value, &[ordinal]);
            match self.write_released(&cidr, value, b.revision).await {
                Ok(()) => break handle,
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(h) = handle {
            self.decrement_handle(&h, &cidr, Some(1)).await?;
        }
        debug!(%ip, "released");
        Ok(true)
    }

    /// Releases `ip` only if it is still the allocation a leak report saw: same handle and
    /// sequence number (not released and handed out again since), and not used by a
    /// workload or as a node's tunnel address now. Never frees an address in use.
    pub async fn release_if_still_leaked(
        &self,
        ip: IpAddr,
        handle: Option<&str>,
        sequence: Option<u64>,
    ) -> Result<LeakRelease> {
        if self.in_use_now(ip).await? {
            return Ok(LeakRelease::InUse);
        }
        let Some(current) = self.ip_info(ip).await? else {
            return Ok(LeakRelease::AlreadyFree);
        };
        let same_handle = handle.is_none_or(|h| current.handle.as_deref() == Some(h));
        let same_sequence = sequence.is_none_or(|s| s == current.sequence);
        if !same_handle || !same_sequence {
            return Ok(LeakRelease::Reallocated);
        }
        match self.release_ip(ip, Some(current.sequence)).await {
            Ok(true) => Ok(LeakRelease::Released),
            Ok(false) => Ok(LeakRelease::AlreadyFree),
            Err(Error::BadSequenceNumber { .. }) => Ok(LeakRelease::Reallocated),
            Err(e) => Err(e),
        }
    }

    /// Whether a WorkloadEndpoint or a Node (tunnel address) uses `ip` now (an error when
    /// one of them cannot be read).
    async fn in_use_now(&self, ip: IpAddr) -> Result<bool> {
        self.usage().await?.uses(ip)
    }

    /// Deletes handle `id` only if it is still at `revision` (unchanged since the report)
    /// and none of its blocks holds an address for it.
    pub async fn release_handle_if_unchanged(
        &self,
        id: &str,
        revision: datastore::Revision,
    ) -> Result<bool> {
        if !valid_key_segment(id) {
            return Err(Error::InvalidHandle(id.to_string()));
        }
        if !self.ips_by_handle(id).await?.is_empty() {
            return Ok(false);
        }
        match self.ds.delete(&keys::handle(id), Some(revision)).await {
            Ok(_) => Ok(true),
            Err(datastore::Error::NotFound { .. } | datastore::Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases each address; returns those that were not allocated.
    pub async fn release_ips(&self, ips: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let mut unallocated = Vec::new();
        for &ip in ips {
            if !self.release_ip(ip, None).await? {
                unallocated.push(ip);
            }
        }
        Ok(unallocated)
    }

    /// Frees the ordinals `pick` chooses in one block (compare-and-swap, retried);
    /// returns the addresses freed.
    async fn release_in_block(
        &self,
        cidr: &IpNet,
        pick: impl Fn(&datastore::model::ipam::AllocationBlock) -> Vec<usize>,
    ) -> Result<Vec<IpAddr>> {
        let key = keys::block(cidr);
        let mut retry = Retry::new(&key);
        loop {
            retry.next().await?;
            let Some(b) = store::get_block(self.ds.as_ref(), cidr).await? else {
                return Ok(Vec::new());
            };
            let ordinals = pick(&b.value);
            if ordinals.is_empty() {
                return Ok(Vec::new());
            }
            let mut value = b.value;
            block::release(&mut value, &ordinals);
            match self.write_released(cidr, value, b.revision).await {
                Ok(()) => return Ok(ordinals.iter().map(|&o| block::ip_at(cidr, o)).collect()),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes a block after a release: deleted when empty and affine to no one, else
    /// updated; both conditional on `revision`.
    async fn write_released(
        &self,
        cidr: &IpNet,
        value: datastore::model::ipam::AllocationBlock,
        revision: datastore::Revision,
    ) -> Result<(), datastore::Error> {
        let key = keys::block(cidr);
        if value.is_empty() && value.affinity.is_none() {
            debug!(block = %cidr, "deleting empty block with no affinity");
            return self.ds.delete(&key, Some(revision)).await.map(|_| ());
        }
        let encoded = serde_json::to_vec(&value).map_err(|e| datastore::Error::Decode {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        self.ds
            .update(&key, encoded, revision, None)
            .await
            .map(|_| ())
    }
}
