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

/// Deletes the endpoint; absent is fine.
pub async fn remove(ds: &Arc<dyn Datastore>, node: &str, env: &CniEnv) -> Result<()> {
    let name = names::endpoint_name(node, env);
    let ns = names::endpoint_namespace(env);
    match Client::new(ds.clone())
        .delete_in::<WorkloadEndpoint>(&ns, &name, None)
        .await
    {
        Ok(_) | Err(datastore::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
