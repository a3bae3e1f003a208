//! Where calicoctl's datastore is: `--config <file>` (a CalicoAPIConfig; default
//! `/etc/calico/calicoctl.cfg` when it exists) or the environment (`DATASTORE_TYPE`,
//! `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`,
//! `CALICO_DATASTORE_PATH`), as `datastore::config` reads them.

use std::path::Path;
use std::sync::Arc;

use datastore::Datastore;
use datastore::config::{DatastoreConfig, connect as open};

use crate::error::CliError;

/// Opens the datastore named by `--config` or the environment.
pub async fn connect(config_file: Option<&str>) -> Result<Arc<dyn Datastore>, CliError> {
    let config = DatastoreConfig::load(config_file.map(Path::new))
        .map_err(|e| CliError::new(format!("Failed to load client config: {e}")))?;
    open(&config)
        .await
        .map_err(|e| CliError::new(format!("Failed to create Calico API client: {e}")))
}
