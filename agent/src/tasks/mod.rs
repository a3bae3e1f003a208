//! calico-node's tasks and the channels between them. Each task owns its state and has one
//! kind of input; effects leave as typed messages or `watch` publications.
//!
//! ```text
//!                 etcd / local store
//!                        │ list + watch /calico/
//!                        ▼
//!                  ┌───────────┐  Arc<ClusterState> (watch)
//!                  │  syncer   │─────────────┬────────────────┬──────────────┐
//!                  └───────────┘             ▼                ▼              ▼
//!                                    ┌──────────────┐  ┌────────────┐  ┌───────────┐
//!       kernel events (netlink) ───▶ │  dataplane   │  │ bgp wiring │  │  tunnels  │──▶ IPAM,
//!       resync timer ──────────────▶ │ calc+reconcile│◀─│ peers/exports│ │ (tunnel   │    Node
//!                                    └──────┬───────┘  └─────┬──────┘  │ addresses)│
//!                   health/status ◀─────────┘  learned routes│ ▲       └───────────┘
//!                   (watch)                     (watch)      ▼ │ RouteEvents
//!                                                      ┌────────────┐
//!                                                      │ bgp::Speaker│◀──▶ peers (TCP 179)
//!                                                      └────────────┘
//!   status socket (CALICO_RUN_DIR/calico-node.sock) ◀── peer status + dataplane health
//!   HTTP /liveness /readiness /metrics ◀── the same, and the supervisor's liveness
//! ```
//!
//! Every task above (and the netlink connection, the report assembler, the status socket
//! and the HTTP endpoints) runs under the [`supervisor::Supervisor`]: any of them ending
//! ends the process, and one that stops making progress fails `/liveness`
//! ([`liveness`]).

pub mod bfd_link;
pub mod bgp;
pub mod blockgc;
pub mod claims;
pub mod dataplane;
pub mod handlegc;
pub mod health;
pub mod leakgc;
pub mod status;
pub mod supervisor;
pub mod tunnels;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::ClusterState;

/// A spawned task that is aborted when this guard drops (holo's `Task`), so a failing
/// start-up or a shutdown never leaves tasks behind.
pub struct TaskGuard<T> {
    handle: Option<JoinHandle<T>>,
}

impl<T> TaskGuard<T> {
    /// Wraps a spawned task.
    pub fn new(handle: JoinHandle<T>) -> TaskGuard<T> {
        TaskGuard {
            handle: Some(handle),
        }
    }

    /// Waits for the task to finish.
    pub async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        match self.handle.take() {
            Some(h) => h.await,
            None => std::future::pending().await,
        }
    }

    /// True once the task has ended (finished, panicked or aborted).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// Spawns `fut` and returns a guard that aborts it on drop.
pub fn spawn<F>(fut: F) -> TaskGuard<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    TaskGuard::new(tokio::spawn(fut))
}

/// How long the collectors (leaked addresses, empty blocks) let the state settle after a
/// change that concerns them before they look at it. Their grace periods are minutes
/// long, and a pod start is a burst of writes: looked at on every write, the claiming
/// node spent more CPU on them than on anything else, in the same pass of the runtime as
/// the BGP update the other nodes wait for.
pub const COLLECTOR_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits for a change of the cluster state that moves `reads` (the counters of the parts
/// a task computes from) away from `last`: every node hears every write in the cluster,
/// and most concern other nodes. False when the state is no longer published.
pub async fn state_changed_from<T: PartialEq>(
    rx: &mut watch::Receiver<Arc<ClusterState>>,
    last: &T,
    reads: impl Fn(&ClusterState) -> T,
) -> bool {
    loop {
        if rx.changed().await.is_err() {
            return false;
        }
        if reads(&rx.borrow()) != *last {
            return true;
        }
    }
}

/// Waits for a change on a `watch` channel whose sender may legitimately be gone (an input
/// that does not exist in this configuration): a closed channel then waits forever rather
/// than ending the caller's loop.
pub async fn changed_or_pending<T>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Makes way for a socket at `path`: its directory made, a stale socket left by a crashed
/// agent removed.
pub(crate) fn clear_socket_path(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a socket file when the task serving it ends.
pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
