//! The local status endpoint: a Unix socket under `CALICO_RUN_DIR` that answers every
//! connection with one JSON [`NodeStatusReport`] and closes. `calicoctl node status` reads
//! it; "Calico process is not running." when nothing listens. The socket is `0660`: the
//! node's state is for root and the socket's group, not every local user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datastore::model::NodeStatusReport;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::liveness::{Heartbeat, Liveness};

/// Mode of the socket file.
const SOCKET_MODE: u32 = 0o660;
/// Back-off after a failed accept (e.g. out of file descriptors), doubled up to the max.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Binds the status socket (replacing a stale one left by a crashed agent), mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    super::clear_socket_path(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(listener)
}

/// The report as it is now: the last assembled one plus the tasks that are not live.
fn current(report: &watch::Receiver<NodeStatusReport>, liveness: &Liveness) -> NodeStatusReport {
    let mut now = report.borrow().clone();
    now.warnings.extend(liveness.problems());
    now
}

/// Serves reports until the report channel closes; removes the socket file on the way out.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    report: watch::Receiver<NodeStatusReport>,
    liveness: Liveness,
    mut heartbeat: Heartbeat,
) {
    let _cleanup = super::RemoveOnDrop(path);
    let mut backoff = Backoff::new(ACCEPT_BACKOFF, MAX_ACCEPT_BACKOFF);
    loop {
        let accepted = tokio::select! {
            () = heartbeat.tick() => continue,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, _) = match accepted {
            Ok(s) => {
                backoff.reset();
                s
            }
            Err(e) => {
                // E.g. out of file descriptors: retrying at once would spin.
                let wait = backoff.next_wait();
                warn!(error = %e, retry_in = ?wait, "status socket accept failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if report.has_changed().is_err() {
            return;
        }
        let body = match serde_json::to_vec(&current(&report, &liveness)) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot encode node status");
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = stream.write_all(&body).await {
                debug!(error = %e, "status client went away");
            }
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_for_root_and_its_group_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("calico-node.sock");
        let _listener = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
    }
}
