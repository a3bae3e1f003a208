//! The WorkloadEndpoint the calico plugin records for each pod interface (Calico's
//! `projectcalico.org/v3` WorkloadEndpoint, namespaced), and its removal on DEL.

use std::net::Ipv4Addr;
use std::sync::Arc;

use datastore::model::{WorkloadEndpoint, WorkloadEndpointSpec};
use datastore::{Client, Datastore};

use crate::env::CniEnv;
use crate::error::Result;
use crate::names;

/// What the endpoint records about one wired interface.
#[derive(Debug, Clone)]
pub struct EndpointInfo<'a> {
    pub node: &'a str,
    pub network: &'a str,
    pub env: &'a CniEnv,
    pub host_if: &'a str,
    pub ip: Ipv4Addr,
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
        ip_networks: vec![format!("{}/32", info.ip)],
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

/// Writes the endpoint: created (one round trip in the usual case), or replaced when a
/// record of the same interface is left from an earlier ADD.
pub async fn record(ds: &Arc<dyn Datastore>, info: &EndpointInfo<'_>) -> Result<()> {
    let client = Client::new(ds.clone());
    match client.create(build(info)).await {
        Ok(_) => Ok(()),
        Err(datastore::Error::AlreadyExists { .. }) => {
            client.update(build(info)).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
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
    Err(crate::error::CniError::new(
        crate::error::code::TRY_AGAIN_LATER,
        format!("the endpoint {ns}/{name} kept changing while it was being deleted"),
        "",
    ))
}
