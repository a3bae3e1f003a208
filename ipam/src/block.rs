//! Block arithmetic and the pure operations on one [`AllocationBlock`]: which address an
//! ordinal is, which block holds an address, the per-host block order Calico walks a pool
//! in, and taking / freeing ordinals with the FIFO and sequence-number bookkeeping. Nothing
//! here touches the datastore.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use datastore::model::ipam::{AllocationAttribute, AllocationBlock};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An address as a number (IPv4 in the low 32 bits), for arithmetic on both families.
fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        // Callers only pass numbers inside an IPv4 network, so the cast cannot truncate.
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The address at `ordinal` in `block` (ordinal 0 is the network address).
pub fn ip_at(block: &IpNet, ordinal: usize) -> IpAddr {
    from_u128(
        matches!(block, IpNet::V4(_)),
        to_u128(block.network()) + ordinal as u128,
    )
}

/// The ordinal of `ip` in `block`, or `None` when the block does not contain it.
pub fn ordinal_of(block: &IpNet, ip: IpAddr) -> Option<usize> {
    if !block.contains(&ip) {
        return None;
    }
    usize::try_from(to_u128(ip) - to_u128(block.network())).ok()
}

/// The block of prefix length `block_size` that holds `ip`.
pub fn block_containing(ip: IpAddr, block_size: u8) -> Option<IpNet> {
    let net = match ip {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, block_size).ok()?),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new(v6, block_size).ok()?),
    };
    Some(net.trunc())
}

/// Number of blocks of prefix length `block_size` in `pool` (0 when the pool is smaller
/// than a block). Saturates for absurd IPv6 pools.
pub fn block_count(pool: &IpNet, block_size: u8) -> u128 {
    if block_size < pool.prefix_len() || block_size > pool.max_prefix_len() {
        return 0;
    }
    1u128
        .checked_shl(u32::from(block_size - pool.prefix_len()))
        .unwrap_or(u128::MAX)
}

/// The `index`-th block of `pool`, in address order.
pub fn nth_block(pool: &IpNet, block_size: u8, index: u128) -> Option<IpNet> {
    if index >= block_count(pool, block_size) {
        return None;
    }
    let host_bits = u32::from(pool.max_prefix_len() - block_size);
    let start = to_u128(pool.network()) + (index << host_bits);
    let v4 = matches!(pool, IpNet::V4(_));
    block_containing(from_u128(v4, start), block_size)
}

/// FNV-1 (32-bit), the hash Go's `hash/fnv.New32` computes; Calico seeds its per-host
/// block order with it.
fn fnv1_32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in data {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(*b);
    }
    hash
}

/// splitmix64: a small, well-mixed deterministic generator (we only need one draw).
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The blocks of a pool in the order a host tries to claim them: Calico's
/// `randomBlockGenerator`, a start index drawn from a generator seeded with the FNV hash of
/// the host name, then every block once in address order, wrapping around. Different hosts
/// start in different places (few claim races); one host always starts at the same place
/// (its blocks stay together).
#[derive(Debug, Clone)]
pub struct BlockOrder {
    pool: IpNet,
    block_size: u8,
    count: u128,
    next: u128,
    returned: u128,
}

// ===== impl BlockOrder =====

impl BlockOrder {
    /// The order for `host` over `pool` cut in blocks of `block_size`.
    pub fn new(pool: IpNet, block_size: u8, host: &str) -> BlockOrder {
        let count = block_count(&pool, block_size);
        let draw = splitmix64(u64::from(fnv1_32(host.as_bytes())));
        let start = if count == 0 {
            0
        } else {
            u128::from(draw) % count
        };
        BlockOrder {
            pool,
            block_size,
            count,
            next: start,
            returned: 0,
        }
    }
}

impl Iterator for BlockOrder {
    type Item = IpNet;

    fn next(&mut self) -> Option<IpNet> {
        if self.returned >= self.count {
            return None;
        }
        if self.next >= self.count {
            self.next = 0;
        }
        let block = nth_block(&self.pool, self.block_size, self.next);
        self.next += 1;
        self.returned += 1;
        block
    }
}

/// Takes up to `num` ordinals from the front of the block's free FIFO (the address freed
/// longest ago first) for `handle` with `attrs`. Stamps each with the block's sequence
/// number and bumps it. Returns the addresses taken.
pub fn assign(
    block: &mut AllocationBlock,
    num: usize,
    handle: Option<&str>,
    attrs: &BTreeMap<String, String>,
) -> Vec<IpAddr> {
    let n = num.min(block.unallocated.len());
    if n == 0 {
        return Vec::new();
    }
    let ordinals: Vec<usize> = block.unallocated.drain(..n).collect();
    let index = find_or_add_attribute(block, handle, attrs);
    for &o in &ordinals {
        block.allocations[o] = Some(index);
        block
            .sequence_number_for_allocation
            .insert(o.to_string(), block.sequence_number);
    }
    block.sequence_number += 1;
    ordinals.iter().map(|&o| ip_at(&block.cidr, o)).collect()
}

/// Why a specific address could not be taken in its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOrdinalError {
    /// The address is not inside the block.
    NotInBlock,
    /// The address is already allocated.
    InUse,
}

/// Takes the ordinal of `ip` for `handle` (a specific-address assignment).
pub fn assign_ordinal(
    block: &mut AllocationBlock,
    ip: IpAddr,
    handle: Option<&str>,
    attrs: &BTreeMap<String, String>,
) -> Result<(), AssignOrdinalError> {
    let ordinal = ordinal_of(&block.cidr, ip).ok_or(AssignOrdinalError::NotInBlock)?;
    if ordinal >= block.allocations.len() {
        return Err(AssignOrdinalError::NotInBlock);
    }
    if block.allocations[ordinal].is_some() {
        return Err(AssignOrdinalError::InUse);
    }
    block.unallocated.retain(|&o| o != ordinal);
    let index = find_or_add_attribute(block, handle, attrs);
    block.allocations[ordinal] = Some(index);
    block
        .sequence_number_for_allocation
        .insert(ordinal.to_string(), block.sequence_number);
    block.sequence_number += 1;
    Ok(())
}

fn find_or_add_attribute(
    block: &mut AllocationBlock,
    handle: Option<&str>,
    attrs: &BTreeMap<String, String>,
) -> usize {
    let wanted = AllocationAttribute {
        handle_id: handle.map(str::to_string),
        secondary: attrs.clone(),
    };
    if let Some(i) = block.attributes.iter().position(|a| *a == wanted) {
        return i;
    }
    block.attributes.push(wanted);
    block.attributes.len() - 1
}

/// The attribute (owner) of the allocation at `ordinal`, if it is allocated.
pub fn attribute_of(block: &AllocationBlock, ordinal: usize) -> Option<&AllocationAttribute> {
    let index = (*block.allocations.get(ordinal)?)?;
    block.attributes.get(index)
}

/// The sequence number stamped on the allocation at `ordinal`.
pub fn sequence_of(block: &AllocationBlock, ordinal: usize) -> Option<u64> {
    block
        .sequence_number_for_allocation
        .get(&ordinal.to_string())
        .copied()
}

/// Ordinals allocated to `handle`.
pub fn ordinals_of_handle(block: &AllocationBlock, handle: &str) -> Vec<usize> {
    (0..block.allocations.len())
        .filter(|&o| attribute_of(block, o).and_then(|a| a.handle_id.as_deref()) == Some(handle))
        .collect()
}

/// Frees `ordinals` (those allocated; others are ignored): each goes to the tail of the
/// FIFO, its sequence stamp is dropped, attributes nobody references any more are removed.
/// Returns, per handle, how many addresses were freed (`""` for handle-less allocations).
pub fn release(block: &mut AllocationBlock, ordinals: &[usize]) -> BTreeMap<String, u32> {
    let mut freed: BTreeMap<String, u32> = BTreeMap::new();
    for &o in ordinals {
        let Some(Some(index)) = block.allocations.get(o).copied() else {
            continue;
        };
        let handle = block
            .attributes
            .get(index)
            .and_then(|a| a.handle_id.clone())
            .unwrap_or_default();
        *freed.entry(handle).or_default() += 1;
        block.allocations[o] = None;
        block.unallocated.push(o);
        block.sequence_number_for_allocation.remove(&o.to_string());
    }
    if !freed.is_empty() {
        compact_attributes(block);
        block.sequence_number += 1;
    }
    freed
}

/// Drops attributes no allocation refers to and renumbers the references, as Calico's
/// `deleteAttributes` does, so a long-lived block does not accumulate dead owners.
fn compact_attributes(block: &mut AllocationBlock) {
    let mut used = vec![false; block.attributes.len()];
    for index in block.allocations.iter().flatten() {
        if let Some(u) = used.get_mut(*index) {
            *u = true;
        }
    }
    let mut remap = vec![None; block.attributes.len()];
    let mut kept = Vec::new();
    for (i, attr) in block.attributes.drain(..).enumerate() {
        if used[i] {
            remap[i] = Some(kept.len());
            kept.push(attr);
        }
    }
    block.attributes = kept;
    for slot in block.allocations.iter_mut() {
        if let Some(index) = *slot {
            *slot = remap.get(index).copied().flatten();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    #[test]
    fn ordinals_map_to_addresses_and_back() {
        let b = net("10.244.1.64/26");
        assert_eq!(ip_at(&b, 0), ip("10.244.1.64"));
        assert_eq!(ip_at(&b, 63), ip("10.244.1.127"));
        assert_eq!(ordinal_of(&b, ip("10.244.1.70")), Some(6));
        assert_eq!(ordinal_of(&b, ip("10.244.1.128")), None);
        let v6 = net("fd00::/122");
        assert_eq!(ip_at(&v6, 5), ip("fd00::5"));
        assert_eq!(ordinal_of(&v6, ip("fd00::3f")), Some(63));
    }

    #[test]
    fn block_containing_masks_to_block_size() {
        assert_eq!(
            block_containing(ip("192.168.7.200"), 26),
            Some(net("192.168.7.192/26"))
        );
        assert_eq!(
            block_containing(ip("192.168.7.200"), 32),
            Some(net("192.168.7.200/32"))
        );
        assert_eq!(block_containing(ip("192.168.7.200"), 33), None);
    }

    #[test]
    fn pool_is_cut_into_blocks_of_its_block_size() {
        let pool = net("192.168.0.0/16");
        assert_eq!(block_count(&pool, 26), 1024);
        assert_eq!(block_count(&pool, 16), 1);
        assert_eq!(block_count(&pool, 15), 0);
        assert_eq!(nth_block(&pool, 26, 0), Some(net("192.168.0.0/26")));
        assert_eq!(nth_block(&pool, 26, 5), Some(net("192.168.1.64/26")));
        assert_eq!(nth_block(&pool, 26, 1023), Some(net("192.168.255.192/26")));
        assert_eq!(nth_block(&pool, 26, 1024), None);
    }

    #[test]
    fn block_order_visits_every_block_once_from_a_host_seeded_start() {
        let pool = net("10.0.0.0/24");
        let order: Vec<IpNet> = BlockOrder::new(pool, 26, "node-a").collect();
        assert_eq!(order.len(), 4);
        let mut sorted = order.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        // Consecutive after the start, wrapping around.
        let again: Vec<IpNet> = BlockOrder::new(pool, 26, "node-a").collect();
        assert_eq!(order, again, "same host, same order");
        let starts: std::collections::BTreeSet<IpNet> = (0..32)
            .filter_map(|i| BlockOrder::new(net("10.0.0.0/16"), 26, &format!("n{i}")).next())
            .collect();
        assert!(starts.len() > 20, "hosts start in different places");
    }

    #[test]
    fn fnv1_matches_go_hash_fnv_new32() {
        // Go: fnv.New32(); h.Write([]byte("a")); h.Sum32() == 0x050c5d7e
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
        assert_eq!(fnv1_32(b""), 0x811c_9dc5);
    }

    #[test]
    fn assign_takes_from_fifo_front_and_release_appends_to_tail() {
        let mut b = AllocationBlock::new(net("10.0.0.0/30"), Some("n1"), None);
        let attrs = BTreeMap::new();
        assert_eq!(
            assign(&mut b, 2, Some("h1"), &attrs),
            vec![ip("10.0.0.0"), ip("10.0.0.1")]
        );
        assert_eq!(b.unallocated, vec![2, 3]);
        let freed = release(&mut b, &[0]);
        assert_eq!(freed.get("h1"), Some(&1));
        assert_eq!(b.unallocated, vec![2, 3, 0]);
        // The next allocations take 2, 3 and only then the freed 0.
        assert_eq!(
            assign(&mut b, 3, Some("h2"), &attrs),
            vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.0")]
        );
        assert!(b.unallocated.is_empty());
        assert!(assign(&mut b, 1, Some("h3"), &attrs).is_empty());
    }

    #[test]
    fn release_compacts_attributes_and_stamps_sequence_numbers() {
        let mut b = AllocationBlock::new(net("10.0.0.0/29"), None, None);
        let attrs = BTreeMap::new();
        assign(&mut b, 1, Some("a"), &attrs);
        assign(&mut b, 1, Some("b"), &attrs);
        assign(&mut b, 1, Some("b"), &attrs);
        assert_eq!(b.attributes.len(), 2, "same owner shares one attribute");
        assert_eq!(sequence_of(&b, 0), Some(0));
        assert_eq!(sequence_of(&b, 1), Some(1));
        assert_eq!(b.sequence_number, 3);
        release(&mut b, &[0]);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(
            attribute_of(&b, 1).and_then(|a| a.handle_id.as_deref()),
            Some("b")
        );
        assert_eq!(ordinals_of_handle(&b, "b"), vec![1, 2]);
        assert_eq!(sequence_of(&b, 0), None);
        assert!(
            release(&mut b, &[0]).is_empty(),
            "releasing twice is a no-op"
        );
    }

    #[test]
    fn assign_ordinal_takes_a_specific_free_address() {
        let mut b = AllocationBlock::new(net("10.0.0.0/29"), None, None);
        let attrs = BTreeMap::new();
        assert_eq!(
            assign_ordinal(&mut b, ip("10.0.0.5"), Some("x"), &attrs),
            Ok(())
        );
        assert!(!b.unallocated.contains(&5));
        assert_eq!(
            assign_ordinal(&mut b, ip("10.0.0.5"), Some("y"), &attrs),
            Err(AssignOrdinalError::InUse)
        );
        assert_eq!(
            assign_ordinal(&mut b, ip("10.0.0.9"), Some("y"), &attrs),
            Err(AssignOrdinalError::NotInBlock)
        );
    }
}
