//! The datastore connection a plugin invocation uses, from the config's `datastore_type`,
//! `etcd_*` keys and `datastore_path`. An unreachable datastore is code 11 (try again
//! later) so the runtime retries.

use std::sync::Arc;

use datastore::Datastore;

use crate::config::NetConf;
use crate::error::{CniError, Result, code};

/// Connects to the datastore the config names.
pub async fn connect(conf: &NetConf) -> Result<Arc<dyn Datastore>> {
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        format!(
            "the {} datastore backend is not available yet",
            conf.datastore_type()
        ),
        "",
    ))
}
