//! The datastore connection a plugin invocation uses, from the config's `datastore_type`,
//! `etcd_*` keys and `datastore_path`. An unreachable datastore is code 11 (try again
//! later) so the runtime retries.

use std::path::PathBuf;
use std::sync::Arc;

use datastore::Datastore;
use datastore::backend::local::DEFAULT_PATH;
use datastore::backend::{EtcdOptions, EtcdStore, LocalStore};

use crate::config::NetConf;
use crate::error::{CniError, Result, code};

/// Connects to the datastore the config names.
pub async fn connect(conf: &NetConf) -> Result<Arc<dyn Datastore>> {
    match conf.datastore_type() {
        "local" => {
            let path = if conf.datastore_path.is_empty() {
                DEFAULT_PATH
            } else {
                conf.datastore_path.as_str()
            };
            let store = LocalStore::open(path).map_err(|e| {
                CniError::new(
                    code::TRY_AGAIN_LATER,
                    format!("cannot open the local Calico datastore at {path}"),
                    e.to_string(),
                )
            })?;
            Ok(Arc::new(store))
        }
        _ => {
            let endpoints: Vec<String> = conf
                .etcd_endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect();
            if endpoints.is_empty() {
                return Err(CniError::config(
                    "etcd_endpoints is empty: set it (e.g. \"http://10.0.0.1:2379\") or use datastore_type \"local\"",
                ));
            }
            let file = |f: &str| (!f.is_empty()).then(|| PathBuf::from(f));
            let options = EtcdOptions {
                ca_cert_file: file(&conf.etcd_ca_cert_file),
                cert_file: file(&conf.etcd_cert_file),
                key_file: file(&conf.etcd_key_file),
                ..EtcdOptions::new(endpoints)
            };
            match EtcdStore::connect(options).await {
                Ok(store) => Ok(Arc::new(store)),
                Err(e @ datastore::Error::Config(_)) => Err(CniError::config(e.to_string())),
                Err(e) => Err(CniError::new(
                    code::TRY_AGAIN_LATER,
                    format!(
                        "cannot reach etcd at {}; try again later",
                        conf.etcd_endpoints
                    ),
                    e.to_string(),
                )),
            }
        }
    }
}

/// Refuses to work while the datastore is locked (`calicoctl datastore migrate lock`,
/// for an upgrade or an `ipam release --from-report`), as Calico's plugins do: code 11,
/// so the runtime retries once it is unlocked.
pub async fn ensure_unlocked(ds: &Arc<dyn Datastore>) -> Result<()> {
    let locked = datastore::Client::new(ds.clone())
        .datastore_locked()
        .await
        .map_err(|e| {
            CniError::new(
                code::TRY_AGAIN_LATER,
                "error getting ClusterInformation",
                e.to_string(),
            )
        })?;
    if locked {
        return Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "Calico is currently not ready to process requests",
            "the datastore is locked (ClusterInformation default has datastoreReady: false); `calicoctl datastore migrate unlock` unlocks it",
        ));
    }
    Ok(())
}
