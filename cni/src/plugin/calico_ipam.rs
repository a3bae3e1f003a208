//! `calico-ipam`: one address per container and family (IPv4, and IPv6 with
//! `assign_ipv6: "true"`) from Calico IPAM, under the handle `<network name>.<containerID>`
//! with the pod's attributes. All or nothing: a family that cannot be served releases what
//! the other got. ADD repeated for the same container returns the same addresses; DEL
//! releases by handle and is idempotent.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datastore::Datastore;
use datastore::model::IpFamily;
use datastore::model::ipam::attr;
use ipam::{AllowedUse, AutoAssignArgs, Ipam};

use crate::error::{CniError, Result, code};
use crate::flannel_ipam::{self, FlannelIpam};
use crate::result::{CniResult, IpConfig};
use crate::skel::{Invocation, Plugin};
use crate::store;
use crate::{lock, names};

/// How long one operation may wait on the datastore before answering "try again later".
pub const DATASTORE_TIMEOUT: Duration = Duration::from_secs(20);

/// Bounds a datastore operation: past [`DATASTORE_TIMEOUT`], code 11.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(DATASTORE_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "timed out after {DATASTORE_TIMEOUT:?} {what}; is the datastore reachable?"
                ),
                "",
            ))
        })
}

/// The `calico-ipam` plugin.
pub struct CalicoIpamPlugin;

async fn ipam_for(inv: &Invocation) -> Result<Ipam> {
    Ok(claiming(inv, store::connect(&inv.conf).await?))
}

/// IPAM on `ds` that tells this node's calico-node of each block it claims, so the block
/// is routed and advertised without waiting for the agent's turn in the watch.
pub(crate) fn claiming(inv: &Invocation, ds: Arc<dyn Datastore>) -> Ipam {
    let notifier = ipam::SocketNotifier::new(inv.conf.claims_socket());
    Ipam::new(ds).with_claim_observer(Arc::new(notifier))
}

/// The DEL on a connected store whose lock the caller has read; run in process by the
/// `calico` plugin as [`assign`] is.
pub(crate) async fn release(inv: &Invocation, ipam: &Ipam) -> Result<()> {
    let _lock = lock::acquire(&inv.conf.ipam_lock_file).await;
    let handle = handle(inv);
    let released = ipam.release_by_handle(&handle).await?;
    tracing::info!(handle, ?released, "released");
    Ok(())
}

fn handle(inv: &Invocation) -> String {
    names::handle_id(&inv.conf.name, &inv.env.container_id)
}

async fn add(inv: &Invocation) -> Result<CniResult> {
    // Connected first, so the lock is only held for the IPAM work itself.
    let ipam = ipam_for(inv).await?;
    assign(inv, &ipam).await
}

/// The ADD on a connected store: the `calico` plugin runs it in its own process, on its
/// own connection, when the network's IPAM is `calico-ipam`.
pub(crate) async fn assign(inv: &Invocation, ipam: &Ipam) -> Result<CniResult> {
    let node = inv.conf.node_name()?;
    let families = inv.conf.ipam.families()?;
    let handle = handle(inv);
    // The datastore's lock is read while the host's IPAM lock is waited for; the handle
    // and what the allocation starts from (read under the host's lock, so this node's
    // affinities are current) at the same time: one round trip for all, every read
    // settled before anything is written, and a locked datastore answers at once instead
    // of after the wait for the host's lock.
    let ((), (_lock, held, read)) =
        tokio::try_join!(store::ensure_unlocked(ipam.datastore()), async {
            let lock = lock::acquire(&inv.conf.ipam_lock_file).await;
            let (held, read) =
                tokio::try_join!(ipam.ips_by_handle(&handle), ipam.read_for_assign(&node))?;
            Ok::<_, CniError>((lock, held, read))
        })?;
    let mut ips = Vec::new();
    let mut fresh = Vec::new();
    for family in families {
        if let Some(ip) = held.iter().find(|ip| IpFamily::of_addr(ip) == family) {
            if let Some(info) = ipam.ip_info(*ip).await? {
                ips.push(format!("{ip}/{}", info.block.prefix_len()));
            }
            continue;
        }
        let args = AutoAssignArgs {
            num: 1,
            family,
            handle: handle.clone(),
            attrs: attributes(inv, &node),
            node: node.clone(),
            pools: inv.conf.ipam.pools(family).to_vec(),
            usage: AllowedUse::Workload,
            max_blocks_per_host: None,
        };
        match ipam.auto_assign_from(&args, &read).await {
            Ok(got) => {
                for a in got {
                    ips.push(format!("{}/{}", a.ip, a.block.prefix_len()));
                    fresh.push(a.ip);
                }
            }
            Err(e) => {
                // Calico releases the other family's address when one family fails.
                for ip in fresh {
                    if let Err(re) = ipam.release_ip(ip, None).await {
                        tracing::warn!(%ip, error = %re, "rollback: cannot release an address");
                    }
                }
                return Err(e.into());
            }
        }
    }
    tracing::info!(handle, ?ips, "assigned");
    Ok(CniResult {
        ips: ips
            .into_iter()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: None,
            })
            .collect(),
        dns: inv.conf.dns.clone().unwrap_or_default(),
        ..CniResult::default()
    })
}

/// The secondary attributes stored with a pod's allocation.
fn attributes(inv: &Invocation, node: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    attrs.insert(attr::NODE.to_string(), node.to_string());
    attrs.insert(attr::TIMESTAMP.to_string(), ipam::claim::now_rfc3339());
    if let Some((ns, pod)) = inv.env.k8s_pod() {
        attrs.insert(attr::NAMESPACE.to_string(), ns.to_string());
        attrs.insert(attr::POD.to_string(), pod.to_string());
    }
    attrs
}

impl Plugin for CalicoIpamPlugin {
    fn name(&self) -> &'static str {
        "calico-ipam"
    }

    async fn add(&self, inv: &Invocation) -> Result<CniResult> {
        if let Some(f) = FlannelIpam::detect(&inv.stdin)? {
            return flannel_ipam::add(&f, inv);
        }
        bounded("assigning an address", add(inv)).await
    }

    async fn del(&self, inv: &Invocation) -> Result<()> {
        if let Some(done) = flannel_ipam::del_if_flannel(inv) {
            return done;
        }
        bounded("releasing the address", async {
            let ipam = ipam_for(inv).await?;
            store::ensure_unlocked(ipam.datastore()).await?;
            release(inv, &ipam).await
        })
        .await
    }

    async fn check(&self, inv: &Invocation) -> Result<()> {
        if let Some(f) = FlannelIpam::detect(&inv.stdin)? {
            return flannel_ipam::check(&f, inv);
        }
        bounded("checking the address", async {
            let ipam = ipam_for(inv).await?;
            if ipam.ips_by_handle(&handle(inv)).await?.is_empty() {
                return Err(CniError::new(
                    code::CHECK_FAILED,
                    format!("no address is allocated to handle {}", handle(inv)),
                    "",
                ));
            }
            Ok(())
        })
        .await
    }
}
