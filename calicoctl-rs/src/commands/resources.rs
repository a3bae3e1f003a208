//! Kind-generic reads for the verbs: list/get a kind chosen at run time as
//! [`AnyResource`]s, and calicoctl's errors for unknown kind names.

use datastore::client::calico_text;
use datastore::model::{
    AnyResource, BFDConfiguration, BGPConfiguration, BGPFilter, BGPPeer, ClusterInformation,
    FelixConfiguration, IPAMConfiguration, IPPool, Kind, Node, WorkloadEndpoint,
};
use datastore::{Client, Resource};

use crate::error::{CliError, CliResult};

/// Resolves a kind typed on the command line.
pub fn kind(name: &str) -> CliResult<Kind> {
    Kind::from_alias(name).ok_or_else(|| {
        CliError::new(format!(
            "Failed to execute command: resource type '{name}' is not supported"
        ))
    })
}

macro_rules! per_kind {
    ($kind:expr, $t:ident => $body:expr) => {
        match $kind {
            Kind::Node => {
                type $t = Node;
                $body.map(|v| v.into_iter().map(AnyResource::Node).collect::<Vec<_>>())
            }
            Kind::IPPool => {
                type $t = IPPool;
                $body.map(|v| v.into_iter().map(AnyResource::IPPool).collect::<Vec<_>>())
            }
            Kind::BGPPeer => {
                type $t = BGPPeer;
                $body.map(|v| v.into_iter().map(AnyResource::BGPPeer).collect::<Vec<_>>())
            }
            Kind::BGPConfiguration => {
                type $t = BGPConfiguration;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::BGPConfiguration)
                        .collect::<Vec<_>>()
                })
            }
            Kind::FelixConfiguration => {
                type $t = FelixConfiguration;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::FelixConfiguration)
                        .collect::<Vec<_>>()
                })
            }
            Kind::IPAMConfiguration => {
                type $t = IPAMConfiguration;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::IPAMConfiguration)
                        .collect::<Vec<_>>()
                })
            }
            Kind::WorkloadEndpoint => {
                type $t = WorkloadEndpoint;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::WorkloadEndpoint)
                        .collect::<Vec<_>>()
                })
            }
            Kind::ClusterInformation => {
                type $t = ClusterInformation;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::ClusterInformation)
                        .collect::<Vec<_>>()
                })
            }
            Kind::BFDConfiguration => {
                type $t = BFDConfiguration;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::BFDConfiguration)
                        .collect::<Vec<_>>()
                })
            }
            Kind::BGPFilter => {
                type $t = BGPFilter;
                $body.map(|v| {
                    v.into_iter()
                        .map(AnyResource::BGPFilter)
                        .collect::<Vec<_>>()
                })
            }
        }
    };
}

async fn list_typed<R: Resource>(
    client: &Client,
    namespace: Option<&str>,
    revision: &mut i64,
) -> datastore::Result<Vec<R>> {
    let list = match namespace {
        Some(ns) if R::NAMESPACED => client.list_in::<R>(ns).await?,
        _ => client.list::<R>().await?,
    };
    *revision = list.revision;
    Ok(list.items)
}

/// Every resource of `kind` (in `namespace` for namespaced kinds, all namespaces when
/// `None`), with the store revision.
pub async fn list(
    client: &Client,
    kind: Kind,
    namespace: Option<&str>,
) -> CliResult<(Vec<AnyResource>, i64)> {
    let mut revision = 0;
    let items = per_kind!(kind, T => list_typed::<T>(client, namespace, &mut revision).await)
        .map_err(|e| CliError::new(calico_text(&e)))?;
    Ok((items, revision))
}

async fn get_typed<R: Resource>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> datastore::Result<Vec<R>> {
    client.get_in::<R>(namespace, name).await.map(|r| vec![r])
}

/// One resource by name; Calico's "resource does not exist" text when absent.
pub async fn get(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<AnyResource, datastore::Error> {
    let mut v = per_kind!(kind, T => get_typed::<T>(client, namespace, name).await)?;
    v.pop().ok_or_else(|| datastore::Error::NotFound {
        key: format!("{kind}({name})"),
    })
}

/// A bare resource of `kind` naming `name` (for delete by name).
pub fn skeleton(kind: Kind, namespace: Option<&str>, name: &str) -> CliResult<AnyResource> {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), name.into());
    if kind.namespaced() {
        meta.insert("namespace".into(), namespace.unwrap_or("default").into());
    }
    let value = serde_json::json!({
        "kind": kind.name(),
        "apiVersion": datastore::model::API_VERSION,
        "metadata": meta,
    });
    AnyResource::from_value(kind, value)
        .map_err(|e| CliError::new(format!("Failed to execute command: {e}")))
}
