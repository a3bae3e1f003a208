//! `calico`: gets the pod's address (Calico IPAM in process, any other IPAM plugin by
//! delegation), wires the pod (veth, sysctls, routes), records its WorkloadEndpoint and
//! prints the result. A failed ADD undoes every step already done, in reverse order. DEL
//! undoes everything and succeeds when there is nothing left to undo. CHECK reports what
//! differs.

use std::net::IpAddr;
use std::sync::Arc;

use datastore::Datastore;
use datastore::model::IpFamily;

use ipam::Ipam;
use ipnet::IpNet;
use tracing::{info, warn};

use crate::endpoint::{self, EndpointInfo};
use crate::error::{CniError, Result, code};
use crate::flannel_ipam::{self, FlannelIpam};
use crate::names;
use crate::netns;
use crate::plugin::calico_ipam::{self, bounded};
use crate::result::{CniResult, Interface, IpConfig, Route};
use crate::skel::{Invocation, Plugin};
use crate::wiring::{self, GATEWAY, GATEWAY_V6, Teardown, Wiring};
use crate::{delegate, store};

/// The `calico` plugin.
pub struct CalicoPlugin;

/// Calico's own IPAM plugin.
const CALICO_IPAM: &str = "calico-ipam";

/// Where an invocation's addresses come from.
#[derive(Clone, Copy)]
enum AddressSource<'a> {
    /// Calico IPAM run in this process on this plugin's datastore connection: the code
    /// `calico-ipam` runs, without a second process start and a second connection. The
    /// `calico-ipam` binary must still be in CNI_PATH, as for Calico.
    InProcess,
    /// The configured IPAM plugin, started as the CNI spec says.
    Plugin(&'a str),
}

impl<'a> AddressSource<'a> {
    /// For an ADD: `calico-ipam` in process unless it serves flannel's subnet (that path
    /// reads flannel's files, not the datastore); any other IPAM as a plugin.
    fn for_add(inv: &'a Invocation) -> Result<AddressSource<'a>> {
        let flannel = |stdin: &[u8]| Ok(FlannelIpam::detect(stdin)?.is_some());
        Self::choose(inv, flannel)
    }

    /// For a DEL: as for an ADD, with calico-ipam's own test for a flannel-mode DEL
    /// (which needs no readable subnet file).
    fn for_del(inv: &'a Invocation) -> Result<AddressSource<'a>> {
        Self::choose(inv, |stdin| Ok(flannel_ipam::serves_del(stdin)))
    }

    fn choose(
        inv: &'a Invocation,
        flannel: impl FnOnce(&[u8]) -> Result<bool>,
    ) -> Result<AddressSource<'a>> {
        let ipam = ipam_type(inv)?;
        delegate::find(ipam, &inv.env)?;
        if ipam == CALICO_IPAM && !flannel(&inv.stdin)? {
            Ok(AddressSource::InProcess)
        } else {
            Ok(AddressSource::Plugin(ipam))
        }
    }

    async fn allocate(self, inv: &Invocation, ds: &Arc<dyn Datastore>) -> Result<CniResult> {
        match self {
            AddressSource::InProcess => {
                let ipam = calico_ipam::claiming(inv, ds.clone());
                bounded("assigning an address", calico_ipam::assign(inv, &ipam)).await
            }
            AddressSource::Plugin(ipam) => Ok(delegate::exec(ipam, "ADD", &inv.stdin, &inv.env)
                .await?
                .unwrap_or_default()),
        }
    }

    async fn release(self, inv: &Invocation, ds: &Arc<dyn Datastore>) -> Result<()> {
        match self {
            AddressSource::InProcess => {
                let ipam = Ipam::new(ds.clone());
                bounded("releasing the address", calico_ipam::release(inv, &ipam)).await
            }
            AddressSource::Plugin(ipam) => delegate::exec(ipam, "DEL", &inv.stdin, &inv.env)
                .await
                .map(|_| ()),
        }
    }
}

fn ipam_type(inv: &Invocation) -> Result<&str> {
    let t = inv.conf.ipam.plugin.as_str();
    if t.is_empty() {
        return Err(CniError::config(
            "missing ipam.type in the network configuration (use \"calico-ipam\")",
        ));
    }
    Ok(t)
}

/// The pod's addresses in an IPAM result (`addr/len` or a bare address): the first of
/// each family, IPv4 first.
fn pod_addresses(result: &CniResult) -> Vec<IpAddr> {
    let all: Vec<IpAddr> = result
        .ips
        .iter()
        .filter_map(|ip| match ip.address.parse::<IpNet>() {
            Ok(net) => Some(net.addr()),
            Err(_) => ip.address.parse::<IpAddr>().ok(),
        })
        .collect();
    let first_v4 = all.iter().find(|ip| ip.is_ipv4());
    let first_v6 = all.iter().find(|ip| ip.is_ipv6());
    first_v4.into_iter().chain(first_v6).copied().collect()
}

/// Removes this container's endpoint if it is there (a rollback's or a DEL's last look);
/// failures are only logged: the caller has already decided its answer.
async fn remove_own_endpoint(ds: &Arc<dyn Datastore>, node: &str, inv: &Invocation) {
    match bounded(
        "removing the endpoint",
        endpoint::remove_if_ours(ds, node, &inv.env),
    )
    .await
    {
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot check for a late endpoint of this container"),
    }
}

/// Undoes the IPAM allocation of a failed ADD.
async fn release_address(inv: &Invocation, source: AddressSource<'_>, ds: &Arc<dyn Datastore>) {
    if let Err(e) = source.release(inv, ds).await {
        warn!(error = %e, "rollback: the IPAM could not release the address");
    }
}

async fn add(inv: &Invocation) -> Result<CniResult> {
    let netns_path = inv
        .env
        .netns
        .clone()
        .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing"))?;
    // Everything that can be checked before allocating is checked first.
    drop(netns::open(&netns_path)?);
    let source = AddressSource::for_add(inv)?;
    let node = inv.conf.node_name()?;
    let host_if = names::host_veth_name(&names::workload_id(&inv.env));

    let ds = bounded("connecting to the datastore", store::connect(&inv.conf)).await?;
    // Calico IPAM reads the datastore's lock itself, with the host's IPAM lock. Other
    // IPAMs (host-local, flannel's leases) check nothing: they start only once the
    // datastore is known to be unlocked.
    if let AddressSource::Plugin(_) = source {
        bounded("reading ClusterInformation", store::ensure_unlocked(&ds)).await?;
    }
    let ipam_result = source.allocate(inv, &ds).await?;
    let ips = pod_addresses(&ipam_result);
    if ips.is_empty() {
        release_address(inv, source, &ds).await;
        return Err(CniError::new(
            code::IPAM_FAILURE,
            format!(
                "the IPAM plugin {} returned no address",
                inv.conf.ipam.plugin
            ),
            "",
        ));
    }
    let wiring = Wiring {
        host_if: host_if.clone(),
        container_id: inv.env.container_id.clone(),
        pod_if: inv.env.ifname.clone(),
        netns: netns_path.clone(),
        ips: ips.clone(),
        mtu: inv.conf.effective_mtu(),
    };
    let wired = match wiring::setup(&wiring).await {
        Ok(w) => w,
        Err(e) => {
            release_address(inv, source, &ds).await;
            return Err(e);
        }
    };
    let info = EndpointInfo {
        node: &node,
        network: &inv.conf.name,
        env: &inv.env,
        host_if: &host_if,
        ips: &ips,
        mac: &wired.pod_mac,
    };
    let recorded = async {
        let guard = bounded(
            "reading the address's IPAM handle",
            endpoint::address_handle(&ds, &inv.conf.name, &inv.env.container_id),
        )
        .await?;
        // No handle: an IPAM that keeps none (flannel's subnet lease, host-local); the
        // write is then unguarded.
        bounded(
            "recording the endpoint",
            endpoint::record(&ds, &info, guard.as_ref()),
        )
        .await
    };
    if let Err(e) = recorded.await {
        let cid = &inv.env.container_id;
        if let Err(te) = wiring::teardown(&host_if, Some(&netns_path), &inv.env.ifname, cid).await {
            warn!(error = %te, "rollback: cannot remove the veth");
        }
        release_address(inv, source, &ds).await;
        // Once the release went through, no guarded write of ours can land any more;
        // one that landed before is removed here. (When the release failed, the
        // runtime's DEL releases and looks again.)
        remove_own_endpoint(&ds, &node, inv).await;
        return Err(e);
    }
    info!(
        container = inv.env.container_id,
        ?ips,
        iface = host_if,
        "pod added"
    );
    Ok(CniResult {
        interfaces: vec![
            Interface {
                name: host_if,
                mac: Some("ee:ee:ee:ee:ee:ee".into()),
                sandbox: None,
            },
            Interface {
                name: inv.env.ifname.clone(),
                mac: Some(wired.pod_mac),
                sandbox: Some(netns_path),
            },
        ],
        ips: ips
            .iter()
            .map(|ip| IpConfig {
                address: format!("{ip}/{}", IpFamily::of_addr(ip).host_prefix_len()),
                gateway: None,
                interface: Some(1),
            })
            .collect(),
        routes: ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(_) => Route {
                    dst: "0.0.0.0/0".into(),
                    gw: Some(GATEWAY.to_string()),
                },
                IpAddr::V6(_) => Route {
                    dst: "::/0".into(),
                    gw: Some(GATEWAY_V6.to_string()),
                },
            })
            .collect(),
        dns: inv.conf.dns.clone().unwrap_or_default(),
    })
}

/// Undoes this container's ADD. The veth and the WorkloadEndpoint are named after the
/// pod, not the container: when the pod's sandbox was recreated, a late DEL for the old
/// container finds the new container's, and leaves them (Calico checks the endpoint's
/// containerID the same way; the veth's alias names its container). The IPAM handle is
/// per container: releasing it never frees the new container's address.
async fn del(inv: &Invocation) -> Result<()> {
    ipam_type(inv)?;
    let cid = &inv.env.container_id;
    let host_if = names::host_veth_name(&names::workload_id(&inv.env));
    let node = inv.conf.node_name()?;
    // The veth first: it needs no datastore, so a pod's wiring goes even while the
    // datastore is away (the runtime retries the DEL for the rest).
    let veth = wiring::teardown(&host_if, inv.env.netns.as_deref(), &inv.env.ifname, cid).await?;
    let ds = bounded("connecting to the datastore", store::connect(&inv.conf)).await?;
    bounded("reading ClusterInformation", store::ensure_unlocked(&ds)).await?;
    let wep = bounded("reading the endpoint", endpoint::get(&ds, &node, &inv.env)).await?;
    let other = endpoint::other_container(wep.as_ref(), cid);
    if let Teardown::OtherContainer(owner) = &veth {
        info!(
            container = cid,
            owner,
            iface = host_if,
            "the veth belongs to another container of the pod; left alone"
        );
    }
    if other.is_none() {
        let other = bounded(
            "removing the endpoint",
            endpoint::remove_if_ours(&ds, &node, &inv.env),
        )
        .await?;
        if let Some(owner) = other {
            info!(
                container = cid,
                owner, "the endpoint now belongs to another container; kept"
            );
        }
    } else {
        info!(
            container = cid,
            owner = other,
            "the endpoint belongs to another container of the pod; kept"
        );
    }
    // Resolved here, after the veth and the endpoint: a DEL does all it can before an
    // IPAM plugin missing from CNI_PATH fails it.
    AddressSource::for_del(inv)?.release(inv, &ds).await?;
    if other.is_none() {
        // A second look: an endpoint write of this container's ADD that reached the store
        // after the first look (it was guarded by the handle just released, so none can
        // land after this one).
        remove_own_endpoint(&ds, &node, inv).await;
    }
    info!(container = cid, iface = host_if, ?veth, "pod deleted");
    Ok(())
}

async fn check(inv: &Invocation) -> Result<()> {
    let ipam = ipam_type(inv)?;
    let netns_path = inv
        .env
        .netns
        .clone()
        .ok_or_else(|| CniError::env("required env variables [CNI_NETNS] missing"))?;
    let host_if = names::host_veth_name(&names::workload_id(&inv.env));
    let prev = match &inv.conf.prev_result {
        Some(v) => Some(CniResult::from_json(v.to_string().as_bytes())?),
        None => None,
    };
    let ips = match prev.as_ref().map(pod_addresses) {
        Some(ips) if !ips.is_empty() => ips,
        _ => {
            let node = inv.conf.node_name()?;
            let ds = bounded("connecting to the datastore", store::connect(&inv.conf)).await?;
            let wep = bounded("reading the endpoint", endpoint::get(&ds, &node, &inv.env))
                .await?
                .ok_or_else(|| {
                    CniError::new(
                        code::CHECK_FAILED,
                        "no WorkloadEndpoint is recorded for this container",
                        names::endpoint_name(&node, &inv.env),
                    )
                })?;
            let ips: Vec<IpAddr> = wep
                .spec
                .ip_networks
                .iter()
                .filter_map(|n| n.split('/').next()?.parse::<IpAddr>().ok())
                .collect();
            if ips.is_empty() {
                return Err(CniError::new(
                    code::CHECK_FAILED,
                    "the endpoint has no address",
                    "",
                ));
            }
            ips
        }
    };
    let wiring = Wiring {
        host_if,
        container_id: inv.env.container_id.clone(),
        pod_if: inv.env.ifname.clone(),
        netns: netns_path,
        ips,
        mtu: inv.conf.effective_mtu(),
    };
    let problems = wiring::check(&wiring).await?;
    if !problems.is_empty() {
        return Err(CniError::new(
            code::CHECK_FAILED,
            "the pod's networking is not as ADD set it up",
            problems.join("; "),
        ));
    }
    delegate::exec(ipam, "CHECK", &inv.stdin, &inv.env).await?;
    Ok(())
}

impl Plugin for CalicoPlugin {
    fn name(&self) -> &'static str {
        "calico"
    }

    async fn add(&self, inv: &Invocation) -> Result<CniResult> {
        add(inv).await
    }

    async fn del(&self, inv: &Invocation) -> Result<()> {
        del(inv).await
    }

    async fn check(&self, inv: &Invocation) -> Result<()> {
        check(inv).await
    }
}
