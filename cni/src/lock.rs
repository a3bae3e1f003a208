//! The host-wide IPAM lock (Calico's `ipam_lock_file`, default
//! `/var/run/calico/ipam.lock`): `calico-ipam` processes on one host take turns instead of
//! racing each other's compare-and-swap on the node's block. Correctness never depends on
//! it (every write is a CAS); it turns a retry storm into a queue. If the file cannot be
//! opened the operation goes ahead unlocked.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use tracing::warn;

/// Calico's default lock file.
pub const DEFAULT_LOCK_FILE: &str = "/var/run/calico/ipam.lock";

/// Held while the lock is held; released on drop.
pub struct IpamLock {
    _lock: Option<Flock<File>>,
}

/// Waits for the lock at `path` (`""` = the default).
pub async fn acquire(path: &str) -> IpamLock {
    let path = if path.is_empty() {
        DEFAULT_LOCK_FILE.to_string()
    } else {
        path.to_string()
    };
    let taken = tokio::task::spawn_blocking(move || {
        if let Some(dir) = Path::new(&path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {path}: {e}"))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| format!("cannot lock {path}: {errno}"))
    })
    .await;
    match taken {
        Ok(Ok(lock)) => IpamLock { _lock: Some(lock) },
        Ok(Err(e)) => {
            warn!(error = e, "IPAM lock not taken; going ahead without it");
            IpamLock { _lock: None }
        }
        Err(e) => {
            warn!(error = %e, "IPAM lock task failed; going ahead without it");
            IpamLock { _lock: None }
        }
    }
}
