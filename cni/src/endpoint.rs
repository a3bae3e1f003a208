//! The WorkloadEndpoint the calico plugin records for each pod interface (Calico's
//! `projectcalico.org/v3` WorkloadEndpoint, namespaced), and its removal on DEL.

use std::net::IpAddr;
use std::sync::Arc;

use datastore::model::{IpFamily, WorkloadEndpoint, WorkloadEndpointSpec};
use datastore::{Client, Datastore, Guard};

use crate::env::CniEnv;
use crate::error::{CniError, Result, code};
use crate::names;

/// What the endpoint records about one wired interface.
#[derive(Debug, Clone)]
pub struct EndpointInfo<'a> {
    pub node: &'a str,
    pub network: &'a str,
    pub env: &'a CniEnv,
    pub host_if: &'a str,
    /// The pod's addresses, at most one per family.
    pub ips: &'a [IpAddr],
    pub mac: &'a str,
}

/// The resource for one pod interface.
pub fn build(info: &EndpointInfo<'_>) -> WorkloadEndpoint {
    let env = info.env;
    let namespace = names::endpoint_namespace(env);
    let orchestrator = names::orchestrator(env);
    let (pod, workload, profiles) = match env.k8s_pod() {
        Some((ns, pod)) => (
            pod.to_string(),
            String::new(),
            vec![format!("kns.{ns}"), format!("ksa.{ns}.default")],
        ),
        None => (
            String::new(),
            env.container_id.clone(),
            vec![info.network.to_string()],
        ),
    };
    let spec = WorkloadEndpointSpec {
        orchestrator: orchestrator.to_string(),
        workload,
        node: info.node.to_string(),
        container_id: env.container_id.clone(),
        pod,
        endpoint: env.ifname.clone(),
        ip_networks: info
            .ips
            .iter()
            .map(|ip| format!("{ip}/{}", IpFamily::of_addr(ip).host_prefix_len()))
            .collect(),
        profiles,
        interface_name: info.host_if.to_string(),
        mac: info.mac.to_string(),
        ..WorkloadEndpointSpec::default()
    };
    let mut wep = WorkloadEndpoint::new(names::endpoint_name(info.node, env), spec);
    wep.metadata.namespace = Some(namespace.clone());
    wep.metadata
        .labels
        .insert("projectcalico.org/namespace".into(), namespace);
    wep.metadata
        .labels
        .insert("projectcalico.org/orchestrator".into(), orchestrator.into());
    wep
}

/// How many writes [`record`] tries before it gives up on an unreachable datastore (each
/// bounded by the store's request timeout; the caller bounds the whole).
const RECORD_ATTEMPTS: usize = 5;

/// The IPAM handle the endpoint's address is held by, as it is now: the guard of the
/// endpoint's write. None when no handle exists (an IPAM plugin other than calico-ipam).
pub async fn address_handle(
    ds: &Arc<dyn Datastore>,
    network: &str,
    container_id: &str,
) -> Result<Option<Guard>> {
    let key = datastore::keys::handle(&names::handle_id(network, container_id));
    Ok(ds.get(&key).await?.as_ref().map(Guard::on))
}

/// Writes the endpoint, guarded by its address's IPAM handle when there is one: a write
/// that reaches etcd after this ADD gave up (its TCP segments retransmitted by the kernel
/// after the process ended, a proposal committed by a new leader) finds the handle
/// released and writes nothing, so no endpoint outlives its address. An unanswered write
/// is tried again, which settles it: the retry creates the endpoint or finds the one the
/// first attempt made. A record of the same interface left by another container is
/// replaced.
pub async fn record(
    ds: &Arc<dyn Datastore>,
    info: &EndpointInfo<'_>,
    guard: Option<&Guard>,
) -> Result<()> {
    let client = Client::new(ds.clone());
    let want = build(info);
    let mut last = None;
    for attempt in 0..RECORD_ATTEMPTS {
        let written = match guard {
            Some(g) => client.create_guarded(want.clone(), g).await,
            None => client.create(want.clone()).await,
        };
        match written {
            Ok(_) => return Ok(()),
            Err(datastore::Error::AlreadyExists { .. }) => {
                let ns = want.metadata.namespace.clone().unwrap_or_default();
                let name = want.metadata.name.clone();
                match client.try_get_in::<WorkloadEndpoint>(&ns, &name).await {
                    Ok(Some(found)) if same_endpoint(&found, &want) => return Ok(()),
                    Ok(Some(stale)) => {
                        let rv = stale.metadata.resource_version.clone();
                        match client
                            .delete_in::<WorkloadEndpoint>(&ns, &name, rv.as_deref())
                            .await
                        {
                            Ok(_)
                            | Err(datastore::Error::NotFound { .. })
                            | Err(datastore::Error::Conflict { .. }) => {}
                            Err(e) => last = Some(e),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => last = Some(e),
                }
            }
            Err(datastore::Error::Conflict { key, .. }) if guard.is_some_and(|g| g.key == key) => {
                return Err(CniError::new(
                    code::IPAM_FAILURE,
                    "the pod's address was released while its endpoint was being recorded",
                    format!("IPAM handle {key} is gone or was created again"),
                ));
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(attempt, error = %e, "recording the endpoint: no answer; trying again");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt.min(4))).await;
    }
    Err(last.map_or_else(
        || {
            CniError::new(
                code::TRY_AGAIN_LATER,
                "the endpoint kept changing while it was being recorded",
                "",
            )
        },
        CniError::from,
    ))
}

/// The endpoint found is the one this ADD writes (an earlier attempt of it landed).
fn same_endpoint(found: &WorkloadEndpoint, want: &WorkloadEndpoint) -> bool {
    let (f, w) = (&found.spec, &want.spec);
    f.container_id == w.container_id
        && f.ip_networks == w.ip_networks
        && f.interface_name == w.interface_name
        && f.mac == w.mac
}

/// Reads the endpoint of this interface, if any.
pub async fn get(
    ds: &Arc<dyn Datastore>,
    node: &str,
    env: &CniEnv,
) -> Result<Option<WorkloadEndpoint>> {
    let name = names::endpoint_name(node, env);
    let ns = names::endpoint_namespace(env);
    Ok(Client::new(ds.clone())
        .try_get_in::<WorkloadEndpoint>(&ns, &name)
        .await?)
}

/// The container holding the endpoint when it is not `container_id` (a recreated
/// sandbox's); None when it is ours or there is none. An endpoint without a container id
/// (recorded by something else) counts as ours, as in Calico.
pub fn other_container(wep: Option<&WorkloadEndpoint>, container_id: &str) -> Option<String> {
    wep.map(|w| w.spec.container_id.as_str())
        .filter(|c| !c.is_empty() && *c != container_id)
        .map(str::to_string)
}

/// Deletes the endpoint if it is still this container's (a compare-and-delete on the
/// revision read, re-read when it moved); absent is fine. Returns the other container
/// that holds it instead, if any.
pub async fn remove_if_ours(
    ds: &Arc<dyn Datastore>,
    node: &str,
    env: &CniEnv,
) -> Result<Option<String>> {
    let name = names::endpoint_name(node, env);
    let ns = names::endpoint_namespace(env);
    let client = Client::new(ds.clone());
    for _ in 0..5 {
        let Some(wep) = client.try_get_in::<WorkloadEndpoint>(&ns, &name).await? else {
            return Ok(None);
        };
        if let Some(other) = other_container(Some(&wep), &env.container_id) {
            return Ok(Some(other));
        }
        let rv = wep.metadata.resource_version.clone();
        match client
            .delete_in::<WorkloadEndpoint>(&ns, &name, rv.as_deref())
            .await
        {
            Ok(_) | Err(datastore::Error::NotFound { .. }) => return Ok(None),
            Err(datastore::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        format!("the endpoint {ns}/{name} kept changing while it was being deleted"),
        "",
    ))
}
