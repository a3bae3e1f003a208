//! IPAM objects in Calico's etcdv3 storage form (libcalico-go `model/block.go`,
//! `block_affinity.go`, `ipam_handle.go`, `ipam_config.go`): the JSON an operator sees with
//! `etcdctl get --prefix /calico/ipam/v2/`. The `ipam` crate owns the algorithm; these types
//! only carry the data.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Secondary attribute keys Calico sets on allocations.
pub mod attr {
    pub const POD: &str = "pod";
    pub const NAMESPACE: &str = "namespace";
    pub const NODE: &str = "node";
    pub const TYPE: &str = "type";
    pub const TIMESTAMP: &str = "timestamp";
    pub const TYPE_IPIP: &str = "ipipTunnelAddress";
    pub const TYPE_VXLAN: &str = "vxlanTunnelAddress";
    pub const TYPE_VXLAN_V6: &str = "vxlanV6TunnelAddress";
}

/// One allocation block (`/calico/ipam/v2/assignment/ipv4/block/<a.b.c.d>-<len>`).
/// Written by the IPAM of whichever node allocates from it, always by compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationBlock {
    pub cidr: IpNet,
    /// `host:<node>` when the block is affine to a node, else null.
    pub affinity: Option<String>,
    /// When the affinity was claimed (RFC 3339); absent on blocks written by old Calico.
    #[serde(
        rename = "affinityClaimTime",
        alias = "affinity_claim_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub affinity_claim_time: Option<String>,
    /// One slot per address: `None` = free, `Some(i)` = index into `attributes`.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, oldest-freed first: allocation takes from the front, release
    /// appends to the back, so the address freed longest ago is reused first.
    pub unallocated: Vec<usize>,
    pub attributes: Vec<AllocationAttribute>,
    /// Bumped on every write; stamped per allocation to protect releases from ABA races.
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    #[serde(rename = "sequenceNumberForAllocation", default)]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    /// Deprecated in Calico; kept so blocks written by Calico round-trip.
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
}

/// The owner of one or more allocations in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AllocationAttribute {
    /// The handle the allocation was made under (`<network>.<containerID>`, ...).
    #[serde(rename = "handle_id", default)]
    pub handle_id: Option<String>,
    /// `pod`, `namespace`, `node`, `timestamp`, `type`.
    #[serde(default)]
    pub secondary: BTreeMap<String, String>,
}

impl AllocationBlock {
    /// A fresh, empty block, affine to `node` when given.
    pub fn new(cidr: IpNet, node: Option<&str>, claim_time: Option<String>) -> AllocationBlock {
        let size = block_size(&cidr);
        AllocationBlock {
            cidr,
            affinity: node.map(|n| format!("host:{n}")),
            affinity_claim_time: claim_time,
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            strict_affinity: false,
        }
    }

    /// The node this block is affine to (`host:<node>`), if any.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> usize {
        self.allocations.len()
    }

    /// Number of addresses in use.
    pub fn in_use(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// True when no address is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// Checks what the IPAM code relies on when it indexes a block read from the store:
    /// one slot per address, free ordinals inside the block, free and unique and really
    /// free, attribute indexes that exist. A block failing it is corrupt (hand-edited,
    /// truncated, written by a buggy client) and is refused with this reason instead of
    /// panicking whoever reads it.
    pub fn validate(&self) -> Result<(), String> {
        let cidr = self.cidr;
        if cidr.trunc() != cidr {
            return Err(format!("cidr {cidr} is not a network address"));
        }
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        if host_bits > 16 {
            return Err(format!(
                "cidr {cidr} is larger than any block (65536 addresses)"
            ));
        }
        let size = block_size(&cidr);
        if self.allocations.len() != size {
            return Err(format!(
                "allocations has {} entries, the block has {size} addresses",
                self.allocations.len()
            ));
        }
        let mut seen = vec![false; size];
        for &o in &self.unallocated {
            if o >= size {
                return Err(format!(
                    "unallocated ordinal {o} is outside the block's {size} addresses"
                ));
            }
            if std::mem::replace(&mut seen[o], true) {
                return Err(format!("unallocated lists ordinal {o} twice"));
            }
            if self.allocations[o].is_some() {
                return Err(format!("ordinal {o} is both allocated and unallocated"));
            }
        }
        if let Some((o, i)) = self
            .allocations
            .iter()
            .enumerate()
            .find_map(|(o, a)| a.filter(|i| *i >= self.attributes.len()).map(|i| (o, i)))
        {
            return Err(format!(
                "ordinal {o} points at attribute {i}, the block has {}",
                self.attributes.len()
            ));
        }
        Ok(())
    }
}

/// Number of addresses in a block CIDR, capped so an absurd IPv6 block cannot allocate
/// a huge vector (Calico's v6 blocks are /116../128: at most 4096).
pub fn block_size(cidr: &IpNet) -> usize {
    let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
    1usize << host_bits.min(16)
}

/// State of a host's claim on a block (`/calico/ipam/v2/host/<node>/ipv4/block/<cidr>`).
/// `pending` and `pendingDeletion` claims must be treated as absent for routing
/// (Calico #6867, #4471).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AffinityState {
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "confirmed")]
    Confirmed,
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

/// The value stored at an affinity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAffinity {
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
}

/// Secondary index from a handle to the blocks holding its addresses
/// (`/calico/ipam/v2/handle/<id>`): `{"block":{"10.244.1.0/26":1},"deleted":false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpamHandle {
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    #[serde(default)]
    pub deleted: bool,
}

/// IPAM settings (`/calico/ipam/v2/config`), in libcalico's storage form. Absent = defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfig {
    #[serde(rename = "strict_affinity", default)]
    pub strict_affinity: bool,
    #[serde(rename = "auto_allocate_blocks", default = "default_true")]
    pub auto_allocate_blocks: bool,
    /// 0 means Calico's default of 20.
    #[serde(rename = "maxBlocksPerHost", default)]
    pub max_blocks_per_host: u32,
}

fn default_true() -> bool {
    true
}

impl Default for IpamConfig {
    fn default() -> IpamConfig {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

impl IpamConfig {
    /// The effective per-host block limit (0 = 20, as Calico).
    pub fn block_limit(&self) -> u32 {
        if self.max_blocks_per_host == 0 {
            20
        } else {
            self.max_blocks_per_host
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_json_matches_calico_storage_form() {
        let raw = r#"{"cidr":"10.244.1.0/26","affinity":"host:node1","allocations":[0,null,1],
            "unallocated":[1],"attributes":[{"handle_id":"k8s-pod-network.abc","secondary":
            {"namespace":"default","node":"node1","pod":"nginx"}},{"handle_id":"ipip-tunnel-addr-node1",
            "secondary":{"node":"node1","type":"ipipTunnelAddress"}}],"sequenceNumber":7,
            "sequenceNumberForAllocation":{"0":3,"2":6},"deleted":false}"#;
        let block: AllocationBlock = serde_json::from_str(raw).expect("decodes");
        assert_eq!(block.host(), Some("node1"));
        assert_eq!(block.allocations, vec![Some(0), None, Some(1)]);
        assert_eq!(block.in_use(), 2);
        let json = serde_json::to_value(&block).expect("encodes");
        assert_eq!(json["attributes"][0]["handle_id"], "k8s-pod-network.abc");
        assert_eq!(json["sequenceNumberForAllocation"]["2"], 6);
        assert!(json["allocations"][1].is_null());
    }

    #[test]
    fn affinity_and_handle_json_match_calico_storage_form() {
        let aff = BlockAffinity {
            state: AffinityState::Confirmed,
            deleted: false,
        };
        assert_eq!(
            serde_json::to_string(&aff).expect("encodes"),
            r#"{"state":"confirmed","deleted":false}"#
        );
        let mut handle = IpamHandle::default();
        handle.block.insert("10.244.1.0/26".into(), 1);
        assert_eq!(
            serde_json::to_string(&handle).expect("encodes"),
            r#"{"block":{"10.244.1.0/26":1},"deleted":false}"#
        );
    }

    #[test]
    fn new_block_has_every_ordinal_free_in_order() {
        let block = AllocationBlock::new("10.0.0.0/30".parse().expect("cidr"), Some("n1"), None);
        assert_eq!(block.unallocated, vec![0, 1, 2, 3]);
        assert!(block.is_empty());
        assert_eq!(IpamConfig::default().block_limit(), 20);
    }
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    fn block() -> AllocationBlock {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().expect("cidr"), Some("n1"), None);
        b.allocations[1] = Some(0);
        b.unallocated = vec![0, 2, 3];
        b.attributes.push(AllocationAttribute::default());
        b
    }

    #[test]
    fn a_consistent_block_is_valid() {
        assert_eq!(block().validate(), Ok(()));
    }

    #[test]
    fn each_kind_of_corruption_is_named() {
        type Corruption = fn(&mut AllocationBlock);
        let cases: Vec<(Corruption, &str)> = vec![
            (
                |b| b.unallocated.push(7),
                "unallocated ordinal 7 is outside the block's 4 addresses",
            ),
            (
                |b| b.unallocated.push(2),
                "unallocated lists ordinal 2 twice",
            ),
            (
                |b| b.unallocated.push(1),
                "ordinal 1 is both allocated and unallocated",
            ),
            (
                |b| b.allocations[1] = Some(5),
                "ordinal 1 points at attribute 5, the block has 1",
            ),
            (
                |b| b.allocations.truncate(2),
                "allocations has 2 entries, the block has 4 addresses",
            ),
            (
                |b| b.cidr = "10.0.0.1/30".parse().expect("cidr"),
                "cidr 10.0.0.1/30 is not a network address",
            ),
            (
                |b| b.cidr = "10.0.0.0/8".parse().expect("cidr"),
                "cidr 10.0.0.0/8 is larger than any block",
            ),
        ];
        for (corrupt, reason) in cases {
            let mut b = block();
            corrupt(&mut b);
            let got = b.validate();
            assert!(
                got.as_ref().is_err_and(|e| e.starts_with(reason)),
                "{got:?} vs {reason}"
            );
        }
    }
}
