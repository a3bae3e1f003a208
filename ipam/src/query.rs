//! Read-side views for the agent (affine blocks to blackhole and advertise, borrowed /32s)
//! and calicoctl (`ipam show`): blocks with their affinity and usage, every allocation
//! with its owner, one address's owner.

use std::collections::BTreeMap;
use std::net::IpAddr;

use datastore::keys;
use datastore::model::ipam::{AffinityState, AllocationBlock, BlockAffinity};
use ipnet::IpNet;

use crate::block;
use crate::client::Ipam;
use crate::error::Result;
use crate::store;

/// One block as `calicoctl ipam show --show-blocks` and the agent see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub cidr: IpNet,
    /// The node in the block's `affinity: host:<node>`, if any.
    pub host: Option<String>,
    /// That node's affinity state, if its affinity key exists.
    pub affinity_state: Option<AffinityState>,
    pub size: usize,
    pub in_use: usize,
}

/// One host affinity (`/calico/ipam/v2/host/<node>/ipv4/block/<cidr>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub node: String,
    pub cidr: IpNet,
    pub state: AffinityState,
}

/// One allocated address and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub block: IpNet,
    /// The node the block is affine to.
    pub block_host: Option<String>,
    pub handle: Option<String>,
    /// `pod`, `namespace`, `node`, `timestamp`, `type`.
    pub attrs: BTreeMap<String, String>,
    /// The sequence number stamped on the allocation (pass it to a guarded release).
    pub sequence: u64,
}

impl Allocation {
    /// The node the address is used on (its `node` attribute).
    pub fn node(&self) -> Option<&str> {
        self.attrs
            .get(datastore::model::ipam::attr::NODE)
            .map(String::as_str)
    }

    /// True when the address is used on a node other than its block's: that node must
    /// advertise it as a /32.
    pub fn is_borrowed(&self) -> bool {
        match (self.node(), self.block_host.as_deref()) {
            (Some(n), Some(h)) => n != h,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

fn allocations_of(b: &AllocationBlock) -> Vec<Allocation> {
    (0..b.allocations.len())
        .filter_map(|o| {
            let attr = block::attribute_of(b, o)?;
            Some(Allocation {
                ip: block::ip_at(&b.cidr, o),
                block: b.cidr,
                block_host: b.host().map(str::to_string),
                handle: attr.handle_id.clone(),
                attrs: attr.secondary.clone(),
                sequence: block::sequence_of(b, o).unwrap_or(0),
            })
        })
        .collect()
}

// ===== impl Ipam =====

impl Ipam {
    /// Every block (decoded), in key order.
    pub async fn all_blocks(&self) -> Result<Vec<AllocationBlock>> {
        let listing = self.ds.list(&keys::blocks_prefix()).await?;
        listing
            .items
            .iter()
            .map(|kv| store::decode_block(kv).map(|v| v.value))
            .collect()
    }

    /// Every host affinity of every node.
    pub async fn affinities(&self) -> Result<Vec<Affinity>> {
        let listing = self.ds.list(&keys::affinities_prefix()).await?;
        let mut out = Vec::new();
        for kv in &listing.items {
            let Some((node, cidr)) = keys::parse_affinity(&kv.key) else {
                continue;
            };
            let aff: BlockAffinity = store::decode(kv)?.value;
            out.push(Affinity {
                node,
                cidr,
                state: aff.state,
            });
        }
        Ok(out)
    }

    /// Every block with its affinity and usage, sorted by CIDR.
    pub async fn blocks(&self) -> Result<Vec<BlockInfo>> {
        let affinities = self.affinities().await?;
        let mut out: Vec<BlockInfo> = self
            .all_blocks()
            .await?
            .iter()
            .map(|b| {
                let host = b.host().map(str::to_string);
                let affinity_state = affinities
                    .iter()
                    .find(|a| Some(&a.node) == host.as_ref() && a.cidr == b.cidr)
                    .map(|a| a.state);
                BlockInfo {
                    cidr: b.cidr,
                    host,
                    affinity_state,
                    size: b.size(),
                    in_use: b.in_use(),
                }
            })
            .collect();
        out.sort_by_key(|b| b.cidr);
        Ok(out)
    }

    /// The blocks `node` holds with a **confirmed** affinity (pending and pendingDeletion
    /// claims count as absent, Calico #6867/#4471): what the node blackholes and advertises.
    pub async fn affine_blocks(&self, node: &str) -> Result<Vec<IpNet>> {
        Ok(self
            .host_affinities(node)
            .await?
            .into_iter()
            .filter(|(_, s)| *s == AffinityState::Confirmed)
            .map(|(c, _)| c)
            .collect())
    }

    /// Every allocated address, in block then address order.
    pub async fn allocations(&self) -> Result<Vec<Allocation>> {
        Ok(self
            .all_blocks()
            .await?
            .iter()
            .flat_map(allocations_of)
            .collect())
    }

    /// Addresses used on a node other than the one their block is affine to; restricted
    /// to those used on `node` when given (the /32s that node must advertise).
    pub async fn borrowed_ips(&self, node: Option<&str>) -> Result<Vec<Allocation>> {
        Ok(self
            .allocations()
            .await?
            .into_iter()
            .filter(|a| a.is_borrowed() && node.is_none_or(|n| a.node() == Some(n)))
            .collect())
    }

    /// The allocation of one address, if it is allocated.
    pub async fn ip_info(&self, ip: IpAddr) -> Result<Option<Allocation>> {
        let Some(cidr) = self.block_for_ip(ip).await? else {
            return Ok(None);
        };
        let Some(b) = store::get_block(self.ds.as_ref(), &cidr).await? else {
            return Ok(None);
        };
        Ok(allocations_of(&b.value).into_iter().find(|a| a.ip == ip))
    }
}
