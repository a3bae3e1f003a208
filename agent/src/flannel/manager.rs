//! [`LeaseManager`]: takes, keeps and renews this node's subnet lease in flannel's layout
//! (flannel's `LocalManager.tryAcquireLease` + `registry.createSubnet/updateSubnet`).
//!
//! Acquiring, in flannel's order:
//! 1. a lease already holding our `PublicIP` that still fits the config is taken back (its
//!    key re-attached to a fresh TTL lease with a compare-and-swap); one that no longer fits
//!    (the config changed) is deleted; a reservation (a key without TTL) is kept as one;
//! 2. else the subnet we had before (subnet.env, or the lease we just lost) if it is free;
//! 3. else a random pick among up to 100 free subnets between `SubnetMin` and `SubnetMax`,
//!    created with create-if-absent bound to a TTL lease.
//!
//! A lost race (someone created the key first, or moved it under our compare-and-swap) is
//! retried, up to [`RACE_RETRIES`] times per call (flannel gives up on the first one). An
//! exhausted network is [`LeaseError::Exhausted`]; the caller keeps trying (flannel exits).
//! Renewal is a keep-alive of the store lease: no write, so other nodes see no event.

use std::sync::Arc;
use std::time::Duration;

use datastore::{Datastore, Lease, LeaseId, Revision};
use ipnet::Ipv4Net;
use rand::Rng;
use thiserror::Error;
use tracing::{debug, info, warn};

use super::config::NetworkConfig;
use super::lease::{LeaseAttrs, SubnetLease};
use super::subnet::{free_candidates, lease_key, overlaps, pick, subnets_dir};
use super::watcher::LeaseSnapshot;

/// Attempts per [`LeaseManager::acquire`] call when other nodes win the races (flannel's
/// `raceRetries`).
pub const RACE_RETRIES: usize = 10;

/// Lease timing. flannel: 24 h leases renewed an hour before they expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a lease lives without renewal.
    pub ttl: Duration,
    /// Renew this long before expiry (when at least the TTL, a third of the TTL is used).
    pub renew_margin: Duration,
    /// Pause before trying again after a failure or an exhausted network.
    pub retry: Duration,
}

impl Default for LeaseTiming {
    fn default() -> LeaseTiming {
        LeaseTiming {
            ttl: Duration::from_secs(24 * 3600),
            renew_margin: Duration::from_secs(3600),
            retry: Duration::from_secs(5),
        }
    }
}

impl LeaseTiming {
    /// How long after a (re)grant of `ttl` the lease is renewed.
    pub fn renew_after(&self, ttl: Duration) -> Duration {
        if self.renew_margin < ttl {
            ttl - self.renew_margin
        } else {
            ttl / 3
        }
    }
}

/// The lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnLease {
    pub subnet: Ipv4Net,
    /// The store lease the key is bound to; `None` for a reservation (never expires).
    pub lease: Option<LeaseId>,
    /// The TTL the store granted (`None` for a reservation).
    pub ttl: Option<Duration>,
    /// The revision of our write (a snapshot older than this may not show it yet).
    pub revision: Revision,
}

/// Why no lease was taken or kept.
#[derive(Debug, Error)]
pub enum LeaseError {
    /// Every subnet between SubnetMin and SubnetMax is leased.
    #[error("network {network} is exhausted: all {count} subnets from {min} to {max} are leased")]
    Exhausted {
        network: Ipv4Net,
        count: u64,
        min: std::net::Ipv4Addr,
        max: std::net::Ipv4Addr,
    },
    /// Other nodes won every race of this call.
    #[error("lost the race for a subnet {0} times in a row")]
    Contended(usize),
    /// Our lease expired or was revoked.
    #[error("lease of {0} is gone (expired or revoked)")]
    Lost(Ipv4Net),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] datastore::Error),
}

/// One step's outcome inside [`LeaseManager::acquire`].
enum Step {
    Done(OwnLease),
    /// Someone else moved first: list again.
    Raced,
}

/// Takes and keeps one node's lease.
pub struct LeaseManager {
    store: Arc<dyn Datastore>,
    prefix: String,
    config: NetworkConfig,
    attrs: LeaseAttrs,
    timing: LeaseTiming,
}

impl LeaseManager {
    /// A manager for the node whose lease value is `attrs` (its `PublicIP` is its identity).
    pub fn new(
        store: Arc<dyn Datastore>,
        prefix: &str,
        config: NetworkConfig,
        attrs: LeaseAttrs,
        timing: LeaseTiming,
    ) -> LeaseManager {
        LeaseManager {
            store,
            prefix: prefix.trim_end_matches('/').to_string(),
            config,
            attrs,
            timing,
        }
    }

    /// The timing in use.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// The network config leases are taken from.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Takes a lease: ours again if the store still has one, else `previous` if free, else
    /// a random free subnet.
    pub async fn acquire(&self, previous: Option<Ipv4Net>) -> Result<OwnLease, LeaseError> {
        let mut granted: Option<Lease> = None;
        let result = self.acquire_with(previous, &mut granted).await;
        if let Some(unused) = granted {
            // Granted for a create that lost its race: give it back.
            if let Err(e) = self.store.revoke_lease(unused.id).await {
                debug!(error = %e, lease = unused.id, "revoking an unused lease");
            }
        }
        result
    }

    async fn acquire_with(
        &self,
        previous: Option<Ipv4Net>,
        granted: &mut Option<Lease>,
    ) -> Result<OwnLease, LeaseError> {
        for attempt in 0..RACE_RETRIES {
            let listing = self.store.list(&subnets_dir(&self.prefix)).await?;
            let snap = LeaseSnapshot::from_listing(&self.prefix, &listing);
            let step = match self.reclaim(&snap, granted).await? {
                Some(step) => step,
                None => self.take_free(&snap, previous, granted).await?,
            };
            match step {
                Step::Done(own) => return Ok(own),
                Step::Raced => debug!(attempt, "lost a race for a subnet; trying again"),
            }
        }
        Err(LeaseError::Contended(RACE_RETRIES))
    }

    /// Step 1: a lease with our PublicIP.
    async fn reclaim(
        &self,
        snap: &LeaseSnapshot,
        granted: &mut Option<Lease>,
    ) -> Result<Option<Step>, LeaseError> {
        let ours = snap
            .leases
            .values()
            .filter(|l| l.attrs.public_ip == self.attrs.public_ip);
        for lease in ours {
            if !self.config.fits(&lease.subnet) {
                let key = lease_key(&self.prefix, &lease.subnet);
                info!(subnet = %lease.subnet, "removing this node's old lease: it does not fit the network config any more");
                match self.store.delete(&key, Some(lease.mod_revision)).await {
                    Ok(_) | Err(datastore::Error::NotFound { .. }) => {}
                    Err(datastore::Error::Conflict { .. }) => return Ok(Some(Step::Raced)),
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            return self.reattach(lease, granted).await.map(Some);
        }
        Ok(None)
    }

    /// Re-binds our existing key to a fresh TTL lease with our current attributes.
    async fn reattach(
        &self,
        lease: &SubnetLease,
        granted: &mut Option<Lease>,
    ) -> Result<Step, LeaseError> {
        let key = lease_key(&self.prefix, &lease.subnet);
        let value = self.attrs.to_json();
        if lease.lease.is_none() {
            // A reservation: stays without TTL (flannel re-puts it with TTL 0).
            let revision = if lease.attrs == self.attrs {
                lease.mod_revision
            } else {
                match self
                    .store
                    .update(&key, value, lease.mod_revision, None)
                    .await
                {
                    Ok(rev) => rev,
                    Err(datastore::Error::Conflict { .. } | datastore::Error::NotFound { .. }) => {
                        return Ok(Step::Raced);
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            info!(subnet = %lease.subnet, "using this node's reserved subnet");
            return Ok(Step::Done(OwnLease {
                subnet: lease.subnet,
                lease: None,
                ttl: None,
                revision,
            }));
        }
        let fresh = self.grant(granted).await?;
        match self
            .store
            .update(&key, value, lease.mod_revision, Some(fresh.id))
            .await
        {
            Ok(revision) => {
                *granted = None;
                if let Some(old) = lease.lease.filter(|old| *old != fresh.id) {
                    // Its only key now lives on the new lease.
                    if let Err(e) = self.store.revoke_lease(old).await {
                        debug!(error = %e, lease = old, "revoking our previous lease");
                    }
                }
                info!(subnet = %lease.subnet, "took back this node's lease");
                Ok(Step::Done(OwnLease {
                    subnet: lease.subnet,
                    lease: Some(fresh.id),
                    ttl: Some(fresh.ttl),
                    revision,
                }))
            }
            Err(datastore::Error::Conflict { .. } | datastore::Error::NotFound { .. }) => {
                Ok(Step::Raced)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Steps 2 and 3: the previous subnet if free, else a random free one.
    async fn take_free(
        &self,
        snap: &LeaseSnapshot,
        previous: Option<Ipv4Net>,
        granted: &mut Option<Lease>,
    ) -> Result<Step, LeaseError> {
        let taken: Vec<Ipv4Net> = snap.taken.iter().copied().collect();
        let free = |s: &Ipv4Net| self.config.fits(s) && !taken.iter().any(|t| overlaps(s, t));
        let target = match previous.filter(free) {
            Some(p) => p,
            None => {
                let candidates = free_candidates(self.config.subnets(), &taken);
                let chosen = pick(&candidates, |n| rand::rng().random_range(0..n));
                chosen.ok_or(LeaseError::Exhausted {
                    network: self.config.network,
                    count: self.config.subnet_count(),
                    min: self.config.subnet_min,
                    max: self.config.subnet_max,
                })?
            }
        };
        let lease = self.grant(granted).await?;
        let key = lease_key(&self.prefix, &target);
        match self
            .store
            .create(&key, self.attrs.to_json(), Some(lease.id))
            .await
        {
            Ok(revision) => {
                *granted = None;
                info!(subnet = %target, ttl = ?lease.ttl, "leased subnet");
                Ok(Step::Done(OwnLease {
                    subnet: target,
                    lease: Some(lease.id),
                    ttl: Some(lease.ttl),
                    revision,
                }))
            }
            Err(datastore::Error::AlreadyExists { .. }) => Ok(Step::Raced),
            Err(datastore::Error::LeaseNotFound(_)) => {
                // Our spare lease expired meanwhile (short TTLs): grant another next time.
                *granted = None;
                Ok(Step::Raced)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A lease to bind a key to: the spare one from a lost race, else a new one.
    async fn grant(&self, granted: &mut Option<Lease>) -> Result<Lease, LeaseError> {
        if let Some(lease) = *granted {
            return Ok(lease);
        }
        let lease = self.store.grant_lease(self.timing.ttl).await?;
        *granted = Some(lease);
        Ok(lease)
    }

    /// Renews `own` for another full TTL (nothing to do for a reservation).
    pub async fn renew(&self, own: &OwnLease) -> Result<(), LeaseError> {
        let Some(id) = own.lease else {
            return Ok(());
        };
        match self.store.keep_alive(id).await {
            Ok(()) => {
                debug!(subnet = %own.subnet, "renewed lease");
                Ok(())
            }
            Err(datastore::Error::LeaseNotFound(_)) => Err(LeaseError::Lost(own.subnet)),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up now (its key disappears); tests and a deliberate leave use it.
    pub async fn release(&self, own: &OwnLease) -> Result<(), LeaseError> {
        match own.lease {
            Some(id) => match self.store.revoke_lease(id).await {
                Ok(()) | Err(datastore::Error::LeaseNotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            },
            None => {
                let key = lease_key(&self.prefix, &own.subnet);
                match self.store.delete(&key, None).await {
                    Ok(_) | Err(datastore::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Logs what a failed acquisition means for the operator.
    pub fn log_failure(&self, e: &LeaseError, retry: Duration) {
        match e {
            LeaseError::Exhausted { .. } => warn!(
                error = %e,
                retry_in = ?retry,
                "no subnet left for this node: free one (delete a lease of a node that is gone) or widen Network/SubnetMin/SubnetMax; calico-node keeps trying (flannel would exit)"
            ),
            _ => warn!(error = %e, retry_in = ?retry, "cannot take a subnet lease; retrying"),
        }
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
