//! The claims socket: a datagram socket under `CALICO_RUN_DIR` on which this node's CNI
//! plugin sends a notice of each block it claims ([`ipam::notice`]); each notice this
//! node may take ([`crate::previews::vet`]) goes to the syncer, which previews it ahead of
//! the watch. The socket is `0600`: only root on this host claims for it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ipam::ClaimNotice;
use ipam::notice::MAX_NOTICE_BYTES;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::liveness::Heartbeat;

const SOCKET_MODE: u32 = 0o600;

/// How many notices may wait for the syncer; more are dropped (the watch brings them).
pub const QUEUE: usize = 64;

/// Binds the claims socket (replacing a stale one left by a crashed agent), mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixDatagram> {
    super::clear_socket_path(path)?;
    let socket = UnixDatagram::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(socket)
}

/// Receives notices until the syncer goes away; removes the socket file on the way out.
pub async fn serve(
    socket: UnixDatagram,
    path: PathBuf,
    node: String,
    syncer: mpsc::Sender<ClaimNotice>,
    mut heartbeat: Heartbeat,
) -> anyhow::Result<()> {
    let _cleanup = super::RemoveOnDrop(path);
    let mut buf = vec![0; MAX_NOTICE_BYTES];
    loop {
        let received = tokio::select! {
            () = heartbeat.tick() => continue,
            received = socket.recv(&mut buf) => received?,
        };
        let notice = match ClaimNotice::decode(&buf[..received]) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "ignoring a claim notice that does not decode");
                continue;
            }
        };
        if let Err(why) = crate::previews::vet(&notice, &node) {
            warn!(reason = %why, "ignoring a claim notice");
            continue;
        }
        match syncer.try_send(notice) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!("claim notices queue full; the watch brings this one");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datastore::keys;
    use ipam::{ClaimObserver, SocketNotifier};
    use ipnet::IpNet;

    use super::*;
    use crate::liveness::Liveness;

    fn affinity_notice(node: &str, revision: i64) -> ClaimNotice {
        let block: IpNet = "10.65.0.0/26".parse().expect("cidr");
        ClaimNotice::of(
            revision,
            &[(
                keys::affinity(node, &block),
                br#"{"state":"confirmed"}"#.to_vec(),
            )],
        )
        .expect("utf-8")
    }

    #[tokio::test]
    async fn the_plugins_notices_for_this_node_reach_the_syncer_and_no_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(ipam::notice::CLAIMS_SOCKET);
        let socket = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let heartbeat = Liveness::new(Duration::from_secs(30)).heartbeat("claims");
        let task = tokio::spawn(serve(socket, path.clone(), "node1".into(), tx, heartbeat));

        let plugin = SocketNotifier::new(&path);
        plugin.claimed(&affinity_notice("node2", 5));
        plugin.claimed(&affinity_notice("node1", 6));
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a notice")
            .expect("open");
        assert_eq!(got, affinity_notice("node1", 6), "node2's was dropped");

        drop(rx);
        plugin.claimed(&affinity_notice("node1", 7));
        let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "ends with the syncer");
        assert!(!path.exists(), "socket file removed");
    }
}
