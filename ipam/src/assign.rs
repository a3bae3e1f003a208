//! Allocation (Calico's `AutoAssign` and `AssignIP`): the node's own confirmed blocks
//! first, then a newly claimed block (up to the per-host limit, if `autoAllocateBlocks`),
//! and only when no free block is left anywhere an address borrowed from another node's
//! block (unless `strictAffinity`).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use datastore::model::IpFamily;
use datastore::model::ipam::{
    AffinityState, AllocationBlock, BlockAffinity, IpamConfig, IpamHandle,
};
use datastore::{Expect, Listing, PrefixRead, Put, PutAll, keys};
use ipnet::IpNet;
use tracing::{debug, info, warn};

use crate::block::{self, AssignOrdinalError, BlockOrder};
use crate::claim::{Claim, ClaimedBlock, FirstTake, FreeClaim};
use crate::client::{Ipam, valid_key_segment};
use crate::error::{Error, Result};
use crate::handle;
use crate::pool::{AllowedUse, Pool, candidate_pools};
use crate::store::{self, ReadBack, Retry, Versioned};

/// How a search for a new block ended.
enum NewBlock<'p> {
    /// A block of `pool` was claimed for the node (as this call wrote it, with the
    /// addresses taken in it, when it did).
    Claimed {
        pool: &'p Pool,
        written: Option<Box<ClaimedBlock>>,
    },
    /// Another process of the same node claimed one meanwhile: use it first.
    SiblingClaimed,
    /// Every block of every pool exists.
    NoneFree,
}

/// A request for addresses of one family (Calico's `AutoAssignArgs` asks for `Num4` and
/// `Num6` at once; a dual-stack caller makes one request per family).
#[derive(Debug, Clone)]
pub struct AutoAssignArgs {
    /// How many addresses (a pod wants 1).
    pub num: usize,
    /// IPv4 or IPv6: only pools of this family are used.
    pub family: IpFamily,
    /// The owner: `<network>.<containerID>` for a pod, `ipip-tunnel-addr-<node>`, ...
    pub handle: String,
    /// Secondary attributes stored with the allocation (`pod`, `namespace`, `node`,
    /// `timestamp`, `type`).
    pub attrs: BTreeMap<String, String>,
    /// The node the addresses are for: its blocks are used first.
    pub node: String,
    /// Pools to restrict to, by name or CIDR (CNI `ipam.ipv4_pools` / `ipv6_pools`); empty
    /// = all of the family.
    pub pools: Vec<String>,
    /// Workload or Tunnel: the pool's `allowedUses` must contain it.
    pub usage: AllowedUse,
    /// A per-request cap on the node's block count, below the configured one.
    pub max_blocks_per_host: Option<u32>,
}

impl AutoAssignArgs {
    /// One IPv4 workload address for `handle` on `node` from any usable pool.
    pub fn one(handle: &str, node: &str) -> AutoAssignArgs {
        AutoAssignArgs {
            num: 1,
            family: IpFamily::V4,
            handle: handle.to_string(),
            attrs: BTreeMap::new(),
            node: node.to_string(),
            pools: Vec::new(),
            usage: AllowedUse::Workload,
            max_blocks_per_host: None,
        }
    }
}

/// The reads an allocation starts from ([`Ipam::read_for_assign`]).
#[derive(Debug, Clone)]
pub struct AssignReads {
    config: IpamConfig,
    labels: BTreeMap<String, String>,
    pools: Vec<Pool>,
    affinities: Vec<(IpNet, AffinityState)>,
}

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub ip: IpAddr,
    /// The block it came from (block-masked, as Calico's AutoAssign returns it).
    pub block: IpNet,
    /// The pool the block belongs to.
    pub pool: String,
    /// True when the block is affine to another node (the node must advertise a /32).
    pub borrowed: bool,
}

/// A request for one specific address (Calico's `AssignIPArgs`).
#[derive(Debug, Clone)]
pub struct AssignIpArgs {
    pub ip: IpAddr,
    pub handle: String,
    pub attrs: BTreeMap<String, String>,
    /// The node that claims the block if it does not exist yet.
    pub node: String,
}

// ===== impl Ipam =====

impl Ipam {
    /// Allocates `args.num` addresses (Calico's AutoAssign). All or nothing: on failure
    /// whatever was taken is released again.
    pub async fn auto_assign(&self, args: &AutoAssignArgs) -> Result<Vec<Assigned>> {
        let read = self.read_for_assign(&args.node).await?;
        self.auto_assign_from(args, &read).await
    }

    /// What an allocation for `node` starts from, read independently in one round trip's
    /// time: a caller with other reads to make (a CNI ADD's lock and handle) makes them
    /// at the same time and passes this to [`auto_assign_from`](Self::auto_assign_from).
    pub async fn read_for_assign(&self, node: &str) -> Result<AssignReads> {
        if !valid_key_segment(node) {
            return Err(Error::InvalidNode(node.to_string()));
        }
        let (config, labels, pools, affinities) = tokio::try_join!(
            self.config(),
            self.node_labels(node),
            self.pools(),
            self.host_affinities(node)
        )?;
        Ok(AssignReads {
            config,
            labels,
            pools,
            affinities,
        })
    }

    /// [`auto_assign`](Self::auto_assign) from reads made for `args.node` since this
    /// process took the host's IPAM lock (the node's affinities in them are then current).
    /// Requests of both families may start from the same reads: each uses the affinities
    /// of its own family only.
    pub async fn auto_assign_from(
        &self,
        args: &AutoAssignArgs,
        read: &AssignReads,
    ) -> Result<Vec<Assigned>> {
        if !valid_key_segment(&args.handle) {
            return Err(Error::InvalidHandle(args.handle.clone()));
        }
        let pools = candidate_pools(
            &read.pools,
            args.family,
            &args.pools,
            &args.node,
            &read.labels,
            args.usage,
        )?;
        let mut got = Vec::new();
        match self
            .assign_into(args, &pools, read.config, read.affinities.clone(), &mut got)
            .await
        {
            Ok(()) if got.len() >= args.num => Ok(got),
            Ok(()) => {
                let allocated = got.len();
                self.roll_back(&args.handle, &got).await;
                Err(Error::Exhausted {
                    family: args.family,
                    requested: args.num,
                    allocated,
                    pools: pools.iter().map(|p| p.cidr.to_string()).collect(),
                })
            }
            Err(e) => {
                self.roll_back(&args.handle, &got).await;
                Err(e)
            }
        }
    }

    async fn roll_back(&self, handle: &str, got: &[Assigned]) {
        for a in got {
            if let Err(e) = self.release_ip(a.ip, None).await {
                warn!(ip = %a.ip, handle, error = %e, "could not roll back a partial allocation");
            }
        }
    }

    async fn assign_into(
        &self,
        args: &AutoAssignArgs,
        pools: &[Pool],
        config: IpamConfig,
        affinities: Vec<(IpNet, AffinityState)>,
        got: &mut Vec<Assigned>,
    ) -> Result<()> {
        let in_pools = |cidr: &IpNet| pools.iter().find(|p| p.cidr.contains(&cidr.network()));

        // 1 and 2: the node's own blocks in address order, then a new block, and again
        // (re-reading the affinities each round, so a block a sibling process of the same
        // node just claimed is used rather than a third one claimed).
        let limit = match args.max_blocks_per_host {
            Some(cap) if cap > 0 => cap.min(config.block_limit()),
            _ => config.block_limit(),
        };
        let mut tried: HashSet<IpNet> = HashSet::new();
        // The affinities when known without a read: with the configuration, or after this
        // call's own claim (with the block as it wrote it: neither is read back, two round
        // trips of a claiming ADD).
        let mut known = Some(affinities);
        let mut written: Option<Versioned<AllocationBlock>> = None;
        loop {
            let mut affinities = match known.take() {
                Some(affinities) => affinities,
                None => self.host_affinities(&args.node).await?,
            };
            let mut untried = Vec::new();
            for (cidr, state) in &affinities {
                if tried.insert(*cidr)
                    && let Some(pool) = in_pools(cidr)
                {
                    untried.push((cidr, *state, pool));
                }
            }
            // Their blocks read (and repaired) together: one round trip's time however
            // many blocks the node holds, most of them full on a busy node.
            let blocks = futures::future::try_join_all(untried.iter().map(|(cidr, state, _)| {
                let as_written = written.take_if(|b| b.value.cidr == **cidr);
                async move {
                    match as_written {
                        Some(block) => Ok(Some(block)),
                        None => self.repair_affinity(&args.node, cidr, *state).await,
                    }
                }
            }))
            .await?;
            for ((cidr, _, pool), block) in untried.into_iter().zip(blocks) {
                if got.len() >= args.num {
                    return Ok(());
                }
                let Some(block) = block else {
                    continue;
                };
                let ips = self
                    .assign_from_block(
                        cidr,
                        args.num - got.len(),
                        args,
                        Some(&args.node),
                        Some(block),
                    )
                    .await?;
                got.extend(ips.into_iter().map(|ip| Assigned {
                    ip,
                    block: *cidr,
                    pool: pool.name.clone(),
                    borrowed: false,
                }));
            }
            if got.len() >= args.num || !config.auto_allocate_blocks {
                break;
            }
            // The limit is per family, as Calico counts the affine blocks of one version.
            let owned = affinities
                .iter()
                .filter(|(cidr, _)| IpFamily::of_net(cidr) == args.family)
                .count();
            if owned >= limit as usize {
                warn!(
                    node = args.node,
                    owned, limit, "unable to allocate a new IPAM block: per host block limit"
                );
                return Err(Error::BlockLimit);
            }
            let take = FirstTake {
                num: args.num - got.len(),
                handle: &args.handle,
                attrs: &args.attrs,
            };
            match self
                .claim_new_block(&args.node, pools, &tried, take)
                .await?
            {
                NewBlock::Claimed {
                    pool,
                    written: Some(claimed),
                } => {
                    let cidr = claimed.block.value.cidr;
                    got.extend(claimed.taken.iter().map(|ip| Assigned {
                        ip: *ip,
                        block: cidr,
                        pool: pool.name.clone(),
                        borrowed: false,
                    }));
                    if got.len() >= args.num {
                        return Ok(());
                    }
                    affinities.push((cidr, AffinityState::Confirmed));
                    affinities.sort_by_key(|(cidr, _)| *cidr);
                    known = Some(affinities);
                    written = Some(claimed.block);
                }
                NewBlock::Claimed { written: None, .. } | NewBlock::SiblingClaimed => {}
                NewBlock::NoneFree => {
                    debug!(node = args.node, "no free block left in the pools");
                    break;
                }
            }
        }

        // 3. Borrow from any block that is not ours.
        if got.len() < args.num && !config.strict_affinity {
            let existing = self.existing_blocks().await?;
            for pool in pools {
                for cidr in BlockOrder::new(pool.cidr, pool.block_size, &args.node) {
                    if got.len() >= args.num {
                        return Ok(());
                    }
                    if !existing.contains(&cidr) {
                        continue;
                    }
                    let ips = self
                        .assign_from_block(&cidr, args.num - got.len(), args, None, None)
                        .await?;
                    for ip in ips {
                        info!(node = args.node, %ip, block = %cidr, "borrowed an address");
                        got.push(Assigned {
                            ip,
                            block: cidr,
                            pool: pool.name.clone(),
                            borrowed: true,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Every affinity of `node` (any state), sorted by block.
    pub(crate) async fn host_affinities(&self, node: &str) -> Result<Vec<(IpNet, AffinityState)>> {
        let listing = self.ds.list(&keys::host_affinities_prefix(node)).await?;
        affinities_in(&listing, node)
    }

    /// CIDRs of every existing block (keys only: the blocks themselves stay in the store).
    pub(crate) async fn existing_blocks(&self) -> Result<HashSet<IpNet>> {
        let prefix = keys::blocks_prefix();
        let read = PrefixRead {
            prefix: &prefix,
            keys_only: true,
        };
        let listings = self.ds.list_at_once(&[read]).await?;
        Ok(listings.first().map(block_cidrs).unwrap_or_default())
    }

    /// [`existing_blocks`](Self::existing_blocks) and [`host_affinities`](Self::host_affinities)
    /// in one read, the blocks listed first (at one revision on etcd).
    async fn blocks_and_affinities(
        &self,
        node: &str,
    ) -> Result<(HashSet<IpNet>, Vec<(IpNet, AffinityState)>)> {
        let (blocks, affinities) = (keys::blocks_prefix(), keys::host_affinities_prefix(node));
        let reads = [
            PrefixRead {
                prefix: &blocks,
                keys_only: true,
            },
            PrefixRead {
                prefix: &affinities,
                keys_only: false,
            },
        ];
        match self.ds.list_at_once(&reads).await?.as_slice() {
            [blocks, affinities] => Ok((block_cidrs(blocks), affinities_in(affinities, node)?)),
            other => Err(Error::Datastore(datastore::Error::Backend(format!(
                "{} listings for 2 prefixes",
                other.len()
            )))),
        }
    }

    /// Finds a block no one holds, walking each pool in the node's order, and claims it.
    /// The first block of the order the node does not hold is claimed blind first: a
    /// node's blocks sit together and other nodes start elsewhere, so it is usually free,
    /// and the claim then needs no listing of every block in the cluster (a refused guess
    /// costs that one write). Otherwise gives up the walk when an affinity of the node
    /// appeared that the caller has not tried yet (a sibling process of the same node just
    /// claimed a block, the same guess: use that one rather than claim another).
    async fn claim_new_block<'p>(
        &self,
        node: &str,
        pools: &'p [Pool],
        tried: &HashSet<IpNet>,
        take: FirstTake<'_>,
    ) -> Result<NewBlock<'p>> {
        let guess = pools.first().and_then(|pool| {
            BlockOrder::new(pool.cidr, pool.block_size, node)
                .find(|cidr| !tried.contains(cidr))
                .map(|cidr| (pool, cidr))
        });
        if let Some((pool, cidr)) = guess
            && let FreeClaim::Written(claimed) = self.claim_if_free(node, &cidr, take).await?
        {
            return Ok(NewBlock::Claimed {
                pool,
                written: Some(claimed),
            });
        }
        // Blocks first, affinities second (or both at one revision): a sibling's block
        // missing from this listing is either found by the claim (AlreadyExists, ours) or
        // its affinity is in the second.
        let (mut existing, affinities) = self.blocks_and_affinities(node).await?;
        let fresh = affinities
            .iter()
            .any(|(cidr, state)| *state != AffinityState::PendingDeletion && !tried.contains(cidr));
        if fresh {
            return Ok(NewBlock::SiblingClaimed);
        }
        for pool in pools {
            for cidr in BlockOrder::new(pool.cidr, pool.block_size, node) {
                if existing.contains(&cidr) {
                    continue;
                }
                // The guess was refused as it is: only the two-phase claim can settle it
                // (an affinity left without its block).
                let take = (guess.map(|(_, c)| c) != Some(cidr)).then_some(take);
                match self.claim_block(node, &cidr, take).await? {
                    Claim::Ours(written) => return Ok(NewBlock::Claimed { pool, written }),
                    Claim::Lost => {
                        existing.insert(cidr);
                    }
                }
            }
        }
        Ok(NewBlock::NoneFree)
    }

    /// Takes up to `num` addresses from one block; with `only_for`, only while the block is
    /// still affine to that node. `read`: the block as the caller just read it (a stale copy
    /// only costs a refused write and the fresh block it brings back).
    async fn assign_from_block(
        &self,
        cidr: &IpNet,
        num: usize,
        args: &AutoAssignArgs,
        only_for: Option<&str>,
        read: Option<Versioned<AllocationBlock>>,
    ) -> Result<Vec<IpAddr>> {
        let taken = self
            .allocate_in_block(cidr, &args.handle, read, |block| {
                if only_for.is_some() && block.host() != only_for {
                    return Ok(Vec::new());
                }
                Ok(block::assign(block, num, Some(&args.handle), &args.attrs))
            })
            .await?;
        Ok(taken.unwrap_or_default())
    }

    /// Takes addresses from the block at `cidr` (`take` changes the block and says which
    /// it took; none = nothing to write) and counts them on handle `handle`, both in one
    /// atomic write, so an allocation never exists without its handle and a lost race
    /// leaves nothing to undo. A refused write brings the block and the handle back as
    /// they are: the next attempt needs no read. `None`: the block does not exist.
    async fn allocate_in_block(
        &self,
        cidr: &IpNet,
        handle: &str,
        read: Option<Versioned<AllocationBlock>>,
        mut take: impl FnMut(&mut AllocationBlock) -> Result<Vec<IpAddr>>,
    ) -> Result<Option<Vec<IpAddr>>> {
        let key = keys::block(cidr);
        let handle_key = keys::handle(handle);
        let mut retry = Retry::new(&key);
        let mut current = read;
        // A pod's first address finds no handle: assumed absent until a write says not.
        let mut handle_now: Option<Versioned<IpamHandle>> = None;
        let mut block_moved = false;
        loop {
            if block_moved {
                retry.next().await?;
            } else {
                retry.next_without_pause()?;
            }
            let b = match current.take() {
                Some(b) => b,
                None => match store::get_block(self.ds.as_ref(), cidr).await? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            };
            let mut value = b.value;
            let ips = take(&mut value)?;
            if ips.is_empty() {
                return Ok(Some(ips));
            }
            let counted =
                handle::counted_up(handle_now.as_ref().map(|h| &h.value), cidr, ips.len());
            let puts = vec![
                Put {
                    value: store::encode(&key, &value)?,
                    key: key.clone(),
                    expect: Expect::At(b.revision),
                },
                Put {
                    value: store::encode(&handle_key, &counted)?,
                    key: handle_key.clone(),
                    expect: handle_now
                        .as_ref()
                        .map_or(Expect::Absent, |h| Expect::At(h.revision)),
                },
            ];
            match self.ds.put_all(puts).await {
                Ok(PutAll::Written(_)) => return Ok(Some(ips)),
                Ok(PutAll::Refused(now)) => {
                    let [block_kv, handle_kv] = now.as_slice() else {
                        return Err(Error::Datastore(datastore::Error::Backend(format!(
                            "{} keys read back for a write of 2",
                            now.len()
                        ))));
                    };
                    let Some(block_kv) = block_kv else {
                        return Ok(None);
                    };
                    block_moved = block_kv.mod_revision != b.revision;
                    current = Some(store::decode_block(block_kv)?);
                    handle_now = handle_kv.as_ref().map(store::decode).transpose()?;
                }
                Err(e) if store::may_have_applied(&e) => {
                    match self.read_back_assigned(cidr, &ips, handle).await {
                        ReadBack::Applied(_) => return Ok(Some(ips)),
                        // The handle is as it was: the next write's refusal will say so
                        // if the guess is wrong.
                        ReadBack::NotApplied => block_moved = true,
                        ReadBack::Unknown(read) => {
                            return Err(Error::Ambiguous {
                                key,
                                write: e.to_string(),
                                read: read.to_string(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After a block write of unknown outcome: are `ips` allocated to `handle` now?
    pub(crate) async fn read_back_assigned(
        &self,
        cidr: &IpNet,
        ips: &[IpAddr],
        handle: &str,
    ) -> ReadBack<Option<store::Versioned<AllocationBlock>>> {
        let applied = |b: Option<&store::Versioned<AllocationBlock>>| {
            b.is_some_and(|b| {
                ips.iter().all(|ip| {
                    block::ordinal_of(cidr, *ip)
                        .and_then(|o| block::attribute_of(&b.value, o))
                        .and_then(|a| a.handle_id.as_deref())
                        == Some(handle)
                })
            })
        };
        let result = store::read_back(self.ds.as_ref(), &keys::block(cidr), applied).await;
        if let ReadBack::Applied(_) = &result {
            info!(block = %cidr, handle, "a block write that reported an error had been saved");
        }
        result
    }

    /// Allocates one specific address (Calico's AssignIP). The block is claimed for
    /// `args.node` if it does not exist yet.
    pub async fn assign_ip(&self, args: &AssignIpArgs) -> Result<()> {
        if !valid_key_segment(&args.handle) {
            return Err(Error::InvalidHandle(args.handle.clone()));
        }
        let pools = self.pools().await?;
        let pool = pools
            .iter()
            .find(|p| p.cidr.contains(&args.ip))
            .ok_or(Error::NotInPool(args.ip))?;
        let cidr =
            block::block_containing(args.ip, pool.block_size).ok_or(Error::NotInPool(args.ip))?;
        if store::get_block(self.ds.as_ref(), &cidr).await?.is_none() {
            if !valid_key_segment(&args.node) {
                return Err(Error::InvalidNode(args.node.clone()));
            }
            // Losing the claim is fine: the block exists then, and we allocate from it.
            self.claim_block(&args.node, &cidr, None).await?;
        }
        let taken = self
            .allocate_in_block(
                &cidr,
                &args.handle,
                None,
                |block| match block::assign_ordinal(block, args.ip, Some(&args.handle), &args.attrs)
                {
                    Ok(()) => Ok(vec![args.ip]),
                    Err(AssignOrdinalError::InUse) => Err(Error::AlreadyAssigned(args.ip)),
                    Err(AssignOrdinalError::NotInBlock) => Err(Error::NotInPool(args.ip)),
                },
            )
            .await?;
        match taken {
            Some(_) => Ok(()),
            None => Err(Error::NotInPool(args.ip)),
        }
    }
}

/// Every affinity of `node` in a listing of its affinities, sorted by block.
fn affinities_in(listing: &Listing, node: &str) -> Result<Vec<(IpNet, AffinityState)>> {
    let mut out = Vec::new();
    for kv in &listing.items {
        let Some((n, cidr)) = keys::parse_affinity(&kv.key) else {
            continue;
        };
        if n != node {
            continue;
        }
        let aff: BlockAffinity = store::decode(kv)?.value;
        out.push((cidr, aff.state));
    }
    out.sort_by_key(|(cidr, _)| *cidr);
    Ok(out)
}

/// The CIDRs of the blocks in a listing of the blocks (read by key alone).
fn block_cidrs(listing: &Listing) -> HashSet<IpNet> {
    listing
        .items
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next().and_then(keys::cidr_from_key_part))
        .collect()
}
