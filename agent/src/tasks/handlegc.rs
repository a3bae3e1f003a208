//! Leaked-handle collection: an IPAM handle (`/calico/ipam/v2/handle/<id>`) that no block
//! allocation refers to, unchanged for the grace period, is deleted. It is what an ADD
//! leaves when its handle write got no answer and landed after the runtime's DEL looked
//! (the chaos suite found one with three etcd members: `ipam check` reports it as a handle
//! with no matching IPs). calico-ipam writes the handle before the block allocation and
//! an ADD takes seconds, so a handle that stays unreferenced for the grace period is not
//! one an ADD is still using. The delete is a compare-and-swap on the revision seen, and
//! [`ipam::Ipam::release_handle_if_unchanged`] checks again that no block holds an
//! address for it; every node sweeps (the first delete wins, the others find it gone).
//! The candidates are what [`ipam::Ipam::check`] reports (`calicoctl ipam check`'s
//! "handles with no matching IPs"), read from the datastore on each sweep.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datastore::Revision;
use ipam::Ipam;
use tracing::{debug, info, warn};

use crate::liveness::Heartbeat;

/// The handles (id, revision) no block holds an address for, as `calicoctl ipam check`
/// finds them.
async fn unreferenced(ipam: &Ipam) -> ipam::Result<Vec<(String, Revision)>> {
    let report = ipam.check().await?;
    Ok(report
        .handles_without_ips
        .iter()
        .filter_map(|id| Some((id.clone(), *report.handle_revisions.get(id)?)))
        .collect())
}

/// One sweep: refresh what is unreferenced, delete what has been for `grace`.
async fn sweep(
    ipam: &Ipam,
    grace: Duration,
    seen: &mut BTreeMap<(String, Revision), Instant>,
) -> ipam::Result<()> {
    let now = Instant::now();
    let candidates = unreferenced(ipam).await?;
    seen.retain(|h, _| candidates.contains(h));
    for h in candidates {
        seen.entry(h).or_insert(now);
    }
    let due: Vec<(String, Revision)> = seen
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= grace)
        .map(|(h, _)| h.clone())
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    if datastore::Client::new(ipam.datastore().clone())
        .datastore_locked()
        .await?
    {
        debug!("datastore locked; leaked handles kept for now");
        return Ok(());
    }
    for (id, revision) in due {
        match ipam.release_handle_if_unchanged(&id, revision).await {
            Ok(true) => {
                info!(handle = %id, after = ?grace, "released a leaked handle (no address was held by it)")
            }
            Ok(false) => debug!(handle = %id, "handle changed or in use; kept"),
            Err(e) => {
                warn!(handle = %id, error = %e, "leaked handle not released; will retry");
                continue;
            }
        }
        seen.remove(&(id, revision));
    }
    Ok(())
}

/// Runs for the life of the process; sweeps every half grace period (at least every
/// second). `grace` zero disables collection.
pub async fn run(ipam: Ipam, grace: Duration, mut heartbeat: Heartbeat) {
    let mut seen = BTreeMap::new();
    let every = (grace / 2).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = heartbeat.tick() => continue,
            _ = tick.tick() => {}
        }
        heartbeat.beat();
        if grace.is_zero() {
            continue;
        }
        if let Err(e) = sweep(&ipam, grace, &mut seen).await {
            warn!(error = %e, "cannot sweep IPAM handles; will retry");
        }
    }
}
