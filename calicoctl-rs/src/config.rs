//! Where calicoctl's datastore is: `--config <file>` (a CalicoAPIConfig, default
//! `/etc/calico/calicoctl.cfg` when it exists) or the environment (`DATASTORE_TYPE`,
//! `CALICO_DATASTORE_PATH`, `ETCD_ENDPOINTS`, ...).
//!
//! Interim: until `datastore::config` lands, only `local` is served, by [`FileStore`].

use std::path::Path;
use std::sync::Arc;

use datastore::Datastore;
use serde::Deserialize;

use crate::error::CliError;
use crate::shim::FileStore;

const DEFAULT_CONFIG: &str = "/etc/calico/calicoctl.cfg";
const DEFAULT_LOCAL_PATH: &str = "/var/lib/calico/datastore.db";

/// The parts of a CalicoAPIConfig the interim shim understands.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiConfig {
    #[serde(default)]
    spec: ApiConfigSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiConfigSpec {
    #[serde(default)]
    datastore_type: Option<String>,
    #[serde(default)]
    etcd_endpoints: Option<String>,
    #[serde(default)]
    calico_datastore_path: Option<String>,
}

/// Opens the datastore named by `--config` or the environment.
pub async fn connect(config_file: Option<&str>) -> Result<Arc<dyn Datastore>, CliError> {
    let mut kind = std::env::var("DATASTORE_TYPE").ok();
    let mut path = std::env::var("CALICO_DATASTORE_PATH").ok();
    let mut endpoints = std::env::var("ETCD_ENDPOINTS").ok();
    let file = match config_file {
        Some(f) => Some(f.to_string()),
        None if Path::new(DEFAULT_CONFIG).exists() => Some(DEFAULT_CONFIG.to_string()),
        None => None,
    };
    if let Some(f) = file {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| CliError::new(format!("Failed to load client config: open {f}: {e}")))?;
        let cfg: ApiConfig = serde_yaml_ng::from_str(&text)
            .map_err(|e| CliError::new(format!("Failed to load client config: {e}")))?;
        kind = cfg.spec.datastore_type.or(kind);
        path = cfg.spec.calico_datastore_path.or(path);
        endpoints = cfg.spec.etcd_endpoints.or(endpoints);
    }
    match kind.as_deref().unwrap_or("etcdv3") {
        "local" => Ok(Arc::new(FileStore::new(
            path.unwrap_or_else(|| DEFAULT_LOCAL_PATH.to_string()),
        ))),
        "etcdv3" => Err(CliError::new(format!(
            "Failed to create Calico API client: etcdv3 datastore ({}) is not available in \
             this build yet; use DATASTORE_TYPE=local",
            endpoints.unwrap_or_else(|| "http://127.0.0.1:2379".into())
        ))),
        other => Err(CliError::new(format!(
            "Failed to create Calico API client: unknown datastore type: {other}"
        ))),
    }
}
