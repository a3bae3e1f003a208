//! The local status endpoint: a Unix socket under `CALICO_RUN_DIR` that answers every
//! connection with one JSON [`NodeStatusReport`] and closes. `calicoctl node status` reads
//! it; "Calico process is not running." when nothing listens.

use std::path::{Path, PathBuf};

use datastore::model::NodeStatusReport;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Binds the status socket (replacing a stale one left by a crashed agent).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// Serves reports until the report channel closes; removes the socket file on the way out.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    report: watch::Receiver<NodeStatusReport>,
) {
    let _cleanup = RemoveOnDrop(path);
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "status socket accept failed");
                continue;
            }
        };
        if report.has_changed().is_err() {
            return;
        }
        let body = match serde_json::to_vec(&*report.borrow()) {
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

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
