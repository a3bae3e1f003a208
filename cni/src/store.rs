//! The datastore connection a plugin invocation uses, from the config's `datastore_type`,
//! `etcd_*` keys and `datastore_path`. An unreachable datastore is code 11 (try again
//! later) so the runtime retries.

use std::sync::Arc;

use datastore::Datastore;
use datastore::backend::LocalStore;
use datastore::backend::local::DEFAULT_PATH;

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
        other => Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!("the {other} datastore backend is not available in this build yet"),
            "",
        )),
    }
}
