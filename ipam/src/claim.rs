//! Block affinity: the claim of a new block for a node (affinity and block in one atomic
//! write when neither exists, else Calico's two-phase claim: pending affinity, block created
//! if absent, affinity confirmed), the repair of a claim a crash cut short, and the
//! release of an empty affine block (confirmed -> pendingDeletion -> gone).

use std::collections::BTreeMap;
use std::net::IpAddr;

use datastore::model::ipam::{AffinityState, AllocationBlock, BlockAffinity, IpamHandle};
use datastore::{Expect, Put, PutAll, keys};
use ipnet::IpNet;
use tracing::{debug, info};

use crate::block;
use crate::client::Ipam;
use crate::error::{Error, Result};
use crate::handle;
use crate::notice::ClaimNotice;
use crate::store::{self, ReadBack, Retry, Versioned};

/// How a claim of one block ended.
#[derive(Debug, Clone)]
pub(crate) enum Claim {
    /// The block is now affine to the node (claimed by us or by a sibling process of the
    /// same node) and the affinity is confirmed; with the block as this claim wrote it
    /// when the claim was the one atomic write.
    Ours(Option<Box<ClaimedBlock>>),
    /// Another node got the block first; the pending affinity was removed.
    Lost,
}

/// A block as the one-write claim wrote it, at its revision, and the addresses the claim
/// took in it ([`FirstTake`]).
#[derive(Debug, Clone)]
pub(crate) struct ClaimedBlock {
    pub block: Versioned<AllocationBlock>,
    pub taken: Vec<IpAddr>,
}

/// How [`Ipam::claim_if_free`] ended.
#[derive(Debug)]
pub(crate) enum FreeClaim {
    /// Affinity, block and handle are stored.
    Written(Box<ClaimedBlock>),
    /// Nothing of it is stored: the block or its affinity exists, or a write of unknown
    /// outcome turned out not applied. The caller looks at what is there.
    Refused,
    /// A new block has no room for what was asked: nothing was written.
    NothingToTake,
}

/// Addresses to take in a new block in the claim's own write. Calico allocates right after
/// claiming; written together, the allocation costs no round trip of its own, every agent
/// in the cluster hears one write instead of two, and the block never exists empty.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FirstTake<'a> {
    pub num: usize,
    pub handle: &'a str,
    pub attrs: &'a BTreeMap<String, String>,
}

/// What [`Ipam::repair_stuck_claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckClaim {
    /// The affinity was not `pendingDeletion` (any more).
    NotStuck,
    /// The block holds addresses: the affinity is confirmed again.
    Restored,
    /// The block was empty: its release was finished.
    Released,
    /// The block is gone or another node's: the dangling affinity was removed.
    Removed,
}

/// Now in RFC 3339 (UTC, second precision), for `affinityClaimTime` and timestamps.
pub fn now_rfc3339() -> String {
    datastore::client::stamp::now_rfc3339()
}

/// The keys the two-phase claim ends in (affinity `confirmed`, the block affine to `node`),
/// for writing at once when neither exists: one round trip instead of three, and never a
/// half-made claim for a crash to leave behind.
fn affine_block(
    node: &str,
    cidr: &IpNet,
    block: &AllocationBlock,
) -> Result<Vec<(String, Vec<u8>)>> {
    let aff_key = keys::affinity(node, cidr);
    let confirmed = BlockAffinity {
        state: AffinityState::Confirmed,
        deleted: false,
    };
    let block_key = keys::block(cidr);
    Ok(vec![
        (aff_key.clone(), store::encode(&aff_key, &confirmed)?),
        (block_key.clone(), store::encode(&block_key, block)?),
    ])
}

// ===== impl Ipam =====

impl Ipam {
    /// Claims `cidr` for `node`: affinity and block in one write when neither exists, else
    /// Calico's two phases: (1) affinity `pending`, (2) the block created with `affinity:
    /// host:<node>` if absent, (3) affinity `confirmed`. A block that already exists affine
    /// to `node` (a sibling process won, or a crash left it) is ours too.
    /// With `take`, addresses are taken in the block in the same write when the one-write
    /// claim applies (the two-phase claim takes none: the caller allocates afterwards).
    pub(crate) async fn claim_block(
        &self,
        node: &str,
        cidr: &IpNet,
        take: Option<FirstTake<'_>>,
    ) -> Result<Claim> {
        if let Some(take) = take {
            match self.claim_if_free(node, cidr, take).await? {
                FreeClaim::Written(claimed) => return Ok(Claim::Ours(Some(claimed))),
                // A key exists (or the write did not apply): the same write without the
                // addresses would be refused too, so the two phases settle what is there.
                FreeClaim::Refused => return self.claim_in_two_phases(node, cidr).await,
                FreeClaim::NothingToTake => {}
            }
        }
        let block = AllocationBlock::new(*cidr, Some(node), Some(now_rfc3339()));
        let writes = affine_block(node, cidr, &block)?;
        // Kept for the notice only when someone listens.
        let noticed = self.claims.as_ref().map(|_| writes.clone());
        match self.ds.create_all(writes).await {
            Ok(revision) => {
                if let Some(writes) = noticed {
                    self.notify(revision, &writes);
                }
                info!(node, block = %cidr, "claimed block");
                return Ok(Claim::Ours(Some(Box::new(ClaimedBlock {
                    block: Versioned {
                        value: block,
                        revision,
                    },
                    taken: Vec::new(),
                }))));
            }
            // A key exists (a sibling, a race, a crash's leftovers), or the outcome is
            // unknown: the two-phase claim reads what is there and settles it.
            Err(datastore::Error::AlreadyExists { .. }) => {}
            Err(e) if store::may_have_applied(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.claim_in_two_phases(node, cidr).await
    }

    /// Calico's two phases for a block whose affinity or block may exist (a sibling, a
    /// race, a crash's leftovers, a write of unknown outcome): reads what is there and
    /// settles it.
    async fn claim_in_two_phases(&self, node: &str, cidr: &IpNet) -> Result<Claim> {
        let block = AllocationBlock::new(*cidr, Some(node), Some(now_rfc3339()));
        let aff_key = keys::affinity(node, cidr);
        let pending = BlockAffinity {
            state: AffinityState::Pending,
            deleted: false,
        };
        // The revision of the pending affinity we wrote: the confirmation can then update
        // it at once instead of reading it back first (one round trip fewer per claim).
        let ours = match self
            .ds
            .create(&aff_key, store::encode(&aff_key, &pending)?, None)
            .await
        {
            Ok(revision) => Some(revision),
            Err(datastore::Error::AlreadyExists { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let block_key = keys::block(cidr);
        match self
            .ds
            .create(&block_key, store::encode(&block_key, &block)?, None)
            .await
        {
            Ok(_) => debug!(node, block = %cidr, "created block"),
            Err(datastore::Error::AlreadyExists { .. }) => {
                let existing = store::get_block(self.ds.as_ref(), cidr).await?;
                if existing.as_ref().and_then(|b| b.value.host()) != Some(node) {
                    debug!(node, block = %cidr, "lost the claim race");
                    self.delete_pending_affinity(node, cidr).await?;
                    return Ok(Claim::Lost);
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.confirm_affinity(node, cidr, ours).await?;
        info!(node, block = %cidr, "claimed block");
        Ok(Claim::Ours(None))
    }

    /// The one-write claim of `cidr` holding `take`'s addresses, and nothing more.
    pub(crate) async fn claim_if_free(
        &self,
        node: &str,
        cidr: &IpNet,
        take: FirstTake<'_>,
    ) -> Result<FreeClaim> {
        let mut block = AllocationBlock::new(*cidr, Some(node), Some(now_rfc3339()));
        let taken = block::assign(&mut block, take.num, Some(take.handle), take.attrs);
        if taken.is_empty() {
            return Ok(FreeClaim::NothingToTake);
        }
        Ok(
            match self.claim_taking(node, block, taken, take.handle).await? {
                Some(claimed) => FreeClaim::Written(Box::new(claimed)),
                None => FreeClaim::Refused,
            },
        )
    }

    /// The one-write claim of `block` (holding `taken` for `handle`): affinity, block and
    /// handle in one write. `None` when nothing of it is stored (the affinity or the block
    /// exists, or a write of unknown outcome turned out not applied): the caller settles
    /// what is there.
    async fn claim_taking(
        &self,
        node: &str,
        block: AllocationBlock,
        taken: Vec<IpAddr>,
        handle: &str,
    ) -> Result<Option<ClaimedBlock>> {
        let cidr = block.cidr;
        let writes = affine_block(node, &cidr, &block)?;
        let handle_key = keys::handle(handle);
        // A pod's first address finds no handle: assumed absent until the write says not.
        let mut handle_now: Option<Versioned<IpamHandle>> = None;
        let mut retry = Retry::new(&handle_key);
        loop {
            retry.next_without_pause()?;
            let counted =
                handle::counted_up(handle_now.as_ref().map(|h| &h.value), &cidr, taken.len());
            let mut puts: Vec<Put> = writes
                .iter()
                .map(|(key, value)| Put {
                    key: key.clone(),
                    value: value.clone(),
                    expect: Expect::Absent,
                })
                .collect();
            puts.push(Put {
                value: store::encode(&handle_key, &counted)?,
                key: handle_key.clone(),
                expect: handle_now
                    .as_ref()
                    .map_or(Expect::Absent, |h| Expect::At(h.revision)),
            });
            let written = match self.ds.put_all(puts).await {
                Ok(PutAll::Written(revision)) => {
                    self.notify(revision, &writes);
                    Versioned {
                        value: block,
                        revision,
                    }
                }
                Ok(PutAll::Refused(now)) => match now.as_slice() {
                    [None, None, Some(h)] => {
                        handle_now = Some(store::decode(h)?);
                        continue;
                    }
                    [_, _, _] => return Ok(None),
                    other => {
                        return Err(Error::Datastore(datastore::Error::Backend(format!(
                            "{} keys read back for a write of 3",
                            other.len()
                        ))));
                    }
                },
                Err(e) if store::may_have_applied(&e) => {
                    match self.read_back_assigned(&cidr, &taken, handle).await {
                        ReadBack::Applied(Some(read)) => read,
                        ReadBack::Applied(None) | ReadBack::NotApplied => return Ok(None),
                        ReadBack::Unknown(read) => {
                            return Err(Error::Ambiguous {
                                key: keys::block(&cidr),
                                write: e.to_string(),
                                read: read.to_string(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            };
            info!(node, block = %cidr, addresses = taken.len(), "claimed block");
            return Ok(Some(ClaimedBlock {
                block: written,
                taken,
            }));
        }
    }

    /// Tells the observer (the node's agent) of a one-write claim of `writes` (affinity
    /// and block) at `revision`. First thing after the write: the agent's watch is racing it.
    fn notify(&self, revision: datastore::Revision, writes: &[(String, Vec<u8>)]) {
        if let Some(observer) = &self.claims
            && let Some(notice) = ClaimNotice::of(revision, writes)
        {
            observer.claimed(&notice);
        }
    }

    /// Sets the affinity of `node` to `cidr` confirmed (creating it if it vanished).
    /// `written`: the revision at which this process wrote it pending, tried first; if it
    /// moved since, the affinity is read and updated as it is.
    pub(crate) async fn confirm_affinity(
        &self,
        node: &str,
        cidr: &IpNet,
        written: Option<datastore::Revision>,
    ) -> Result<()> {
        let key = keys::affinity(node, cidr);
        let confirmed = BlockAffinity {
            state: AffinityState::Confirmed,
            deleted: false,
        };
        let value = store::encode(&key, &confirmed)?;
        if let Some(revision) = written {
            match self.ds.update(&key, value.clone(), revision, None).await {
                Ok(_) => return Ok(()),
                Err(e) if store::is_race(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut retry = Retry::new(&key);
        loop {
            retry.next().await?;
            let result = match store::get_affinity(self.ds.as_ref(), node, cidr).await? {
                None => self.ds.create(&key, value.clone(), None).await,
                Some(v) if v.value.state == AffinityState::Confirmed => return Ok(()),
                Some(v) => self.ds.update(&key, value.clone(), v.revision, None).await,
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Removes a `pending` affinity (a lost or abandoned claim); leaves others alone.
    pub(crate) async fn delete_pending_affinity(&self, node: &str, cidr: &IpNet) -> Result<()> {
        let key = keys::affinity(node, cidr);
        let mut retry = Retry::new(&key);
        loop {
            retry.next().await?;
            let Some(v) = store::get_affinity(self.ds.as_ref(), node, cidr).await? else {
                return Ok(());
            };
            if v.value.state != AffinityState::Pending {
                return Ok(());
            }
            match self.ds.delete(&key, Some(v.revision)).await {
                Ok(_) => return Ok(()),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Brings an affinity of `node` and its block back in step before allocating: a
    /// missing block is recreated (a crash between the two phases), a pending affinity
    /// over a block of ours is confirmed, one over another node's block is dropped.
    /// Returns the block as read when it is usable as `node`'s (the allocation starts
    /// from that copy instead of reading the block again), `None` when it is not.
    pub(crate) async fn repair_affinity(
        &self,
        node: &str,
        cidr: &IpNet,
        state: AffinityState,
    ) -> Result<Option<Versioned<AllocationBlock>>> {
        if state == AffinityState::PendingDeletion {
            return Ok(None);
        }
        match store::get_block(self.ds.as_ref(), cidr).await? {
            None => {
                info!(node, block = %cidr, "affinity without block: recreating the block");
                match self.claim_block(node, cidr, None).await? {
                    Claim::Ours(Some(claimed)) => Ok(Some(claimed.block)),
                    Claim::Ours(None) => store::get_block(self.ds.as_ref(), cidr).await,
                    Claim::Lost => Ok(None),
                }
            }
            Some(b) if b.value.host() == Some(node) => {
                if state == AffinityState::Pending {
                    self.confirm_affinity(node, cidr, None).await?;
                }
                Ok(Some(b))
            }
            Some(_) => {
                if state == AffinityState::Pending {
                    self.delete_pending_affinity(node, cidr).await?;
                }
                Ok(None)
            }
        }
    }

    /// Releases `node`'s affinity to `cidr` (Calico's `ReleaseBlockAffinity`): the affinity
    /// goes `pendingDeletion`, then the block is deleted if empty or else (when
    /// `must_be_empty` is false) loses its affinity, then the affinity is deleted. With
    /// `must_be_empty`, a block holding addresses is left as it was
    /// ([`Error::BlockNotEmpty`]).
    pub async fn release_block_affinity(
        &self,
        node: &str,
        cidr: &IpNet,
        must_be_empty: bool,
    ) -> Result<()> {
        let key = keys::affinity(node, cidr);
        let marked = BlockAffinity {
            state: AffinityState::PendingDeletion,
            deleted: false,
        };
        let marked = store::encode(&key, &marked)?;
        let mut retry = Retry::new(&key);
        let (prev_state, mut aff_rev) = loop {
            retry.next().await?;
            let Some(aff) = store::get_affinity(self.ds.as_ref(), node, cidr).await? else {
                return Err(Error::NoAffinity {
                    node: node.to_string(),
                    block: *cidr,
                });
            };
            match self
                .ds
                .update(&key, marked.clone(), aff.revision, None)
                .await
            {
                Ok(rev) => break (aff.value.state, rev),
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let block_key = keys::block(cidr);
        let mut retry = Retry::new(&block_key);
        loop {
            retry.next().await?;
            let Some(b) = store::get_block(self.ds.as_ref(), cidr).await? else {
                break;
            };
            if b.value.host() != Some(node) {
                break;
            }
            let result = if b.value.is_empty() {
                self.ds
                    .delete(&block_key, Some(b.revision))
                    .await
                    .map(|_| 0)
            } else if must_be_empty {
                // The block is in use: the affinity goes back as it was, or the block
                // would lose its blackhole and its BGP announcement.
                self.restore_affinity(node, cidr, prev_state).await?;
                return Err(Error::BlockNotEmpty(*cidr));
            } else {
                let mut value = b.value.clone();
                value.affinity = None;
                value.affinity_claim_time = None;
                value.sequence_number += 1;
                let encoded = store::encode(&block_key, &value)?;
                self.ds.update(&block_key, encoded, b.revision, None).await
            };
            match result {
                Ok(_) => break,
                Err(e) if store::is_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // The affinity is ours alone now (pendingDeletion); delete it.
        let mut retry = Retry::new(&key);
        loop {
            retry.next().await?;
            match self.ds.delete(&key, Some(aff_rev)).await {
                Ok(_) | Err(datastore::Error::NotFound { .. }) => break,
                Err(datastore::Error::Conflict { actual, .. }) => aff_rev = actual,
                Err(e) => return Err(e.into()),
            }
        }
        info!(node, block = %cidr, "released block affinity");
        Ok(())
    }

    /// Sets a `pendingDeletion` affinity of `node` back to `state` (a release that found
    /// the block in use), re-reading it on every try: retried through conflicts and store
    /// failures up to the retry budget. If it still fails, the node's GC finds the stuck
    /// claim ([`Ipam::repair_stuck_claim`]).
    async fn restore_affinity(&self, node: &str, cidr: &IpNet, state: AffinityState) -> Result<()> {
        let key = keys::affinity(node, cidr);
        let back = store::encode(
            &key,
            &BlockAffinity {
                state,
                deleted: false,
            },
        )?;
        let mut retry = Retry::new(&key);
        let mut last_failure = None;
        loop {
            if let Err(e) = retry.next().await {
                return Err(last_failure.unwrap_or(e));
            }
            let current = match store::get_affinity(self.ds.as_ref(), node, cidr).await {
                Ok(Some(a)) => a,
                Ok(None) => return Ok(()),
                Err(e) => {
                    last_failure = Some(e);
                    continue;
                }
            };
            if current.value.state != AffinityState::PendingDeletion {
                return Ok(());
            }
            match self
                .ds
                .update(&key, back.clone(), current.revision, None)
                .await
            {
                Ok(_) => {
                    info!(node, block = %cidr, "block in use: its affinity is restored");
                    return Ok(());
                }
                Err(e) => last_failure = Some(e.into()),
            }
        }
    }

    /// Repairs a claim of `node` left `pendingDeletion` by a release that was cut short:
    /// a block still affine to the node and holding addresses gets its affinity back
    /// (confirmed), an empty one is released the rest of the way, an affinity whose block
    /// is gone or another node's is removed. Returns what was done.
    pub async fn repair_stuck_claim(&self, node: &str, cidr: &IpNet) -> Result<StuckClaim> {
        let Some(aff) = store::get_affinity(self.ds.as_ref(), node, cidr).await? else {
            return Ok(StuckClaim::NotStuck);
        };
        if aff.value.state != AffinityState::PendingDeletion {
            return Ok(StuckClaim::NotStuck);
        }
        match store::get_block(self.ds.as_ref(), cidr).await? {
            Some(b) if b.value.host() == Some(node) && !b.value.is_empty() => {
                self.restore_affinity(node, cidr, AffinityState::Confirmed)
                    .await?;
                Ok(StuckClaim::Restored)
            }
            Some(b) if b.value.host() == Some(node) => {
                match self.release_block_affinity(node, cidr, true).await {
                    Ok(()) => Ok(StuckClaim::Released),
                    Err(Error::BlockNotEmpty(_)) => Ok(StuckClaim::Restored),
                    Err(e) => Err(e),
                }
            }
            _ => {
                let key = keys::affinity(node, cidr);
                match self.ds.delete(&key, Some(aff.revision)).await {
                    Ok(_) | Err(datastore::Error::NotFound { .. }) => Ok(StuckClaim::Removed),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Releases `node`'s empty affine blocks (what Calico's kube-controllers GC does),
    /// never its last block. Returns the blocks released.
    pub async fn release_empty_affine_blocks(&self, node: &str) -> Result<Vec<IpNet>> {
        let mut affine = self.affine_blocks(node).await?;
        let mut released = Vec::new();
        let mut remaining = affine.len();
        affine.sort();
        for cidr in affine {
            if remaining <= 1 {
                break;
            }
            let empty = store::get_block(self.ds.as_ref(), &cidr)
                .await?
                .is_some_and(|b| b.value.is_empty());
            if !empty {
                continue;
            }
            match self.release_block_affinity(node, &cidr, true).await {
                Ok(()) => {
                    released.push(cidr);
                    remaining -= 1;
                }
                Err(Error::BlockNotEmpty(_)) | Err(Error::NoAffinity { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// Releases one empty affine block of `node` on request (GC), refusing the node's last
    /// block ([`Error::LastBlock`]) and a block in use ([`Error::BlockNotEmpty`]).
    pub async fn release_empty_affine_block(&self, node: &str, cidr: &IpNet) -> Result<()> {
        let affine = self.affine_blocks(node).await?;
        if !affine.contains(cidr) {
            return Err(Error::NoAffinity {
                node: node.to_string(),
                block: *cidr,
            });
        }
        if affine.len() <= 1 {
            return Err(Error::LastBlock {
                node: node.to_string(),
                block: *cidr,
            });
        }
        self.release_block_affinity(node, cidr, true).await
    }
}
