//! The flannel-style backend (`CALICO_NETWORKING_BACKEND=flannel`): per-node subnet leases
//! in etcd in flannel's own layout, programmed as flannel's vxlan or host-gw backends.

use std::sync::Arc;

use anyhow::{Result, bail};
use datastore::Datastore;

use crate::calc::Backend;
use crate::config::NodeConfig;
use crate::local::LocalNode;
use crate::tasks::TaskGuard;
use crate::tasks::dataplane::ExtraState;

/// Starts the flannel backend when it is the configured one; returns the desired state it
/// publishes for the dataplane task to merge.
pub async fn start(
    _cfg: &NodeConfig,
    _local: &LocalNode,
    backend: Backend,
    _store: Arc<dyn Datastore>,
    _guards: &mut Vec<TaskGuard<()>>,
) -> Result<Option<ExtraState>> {
    if backend != Backend::Flannel {
        return Ok(None);
    }
    bail!(
        "CALICO_NETWORKING_BACKEND=flannel: the flannel backend is not available in this build yet"
    )
}
