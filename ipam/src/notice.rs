//! Claim notices: a process that claims a block for its node (the CNI plugin) tells that
//! node's calico-node at once, in one datagram on a socket under `CALICO_RUN_DIR`, what it
//! wrote and at which revision. Without it the agent learns of the claim from its watch,
//! in its turn among every watcher of the cluster: on a busy datastore (or many agents on
//! one machine) that turn can be milliseconds away, and the block is neither routed nor
//! advertised meanwhile. The agent takes the notice as a preview only and holds it to
//! what its watch delivers at that revision.
//!
//! A notice is best effort: no agent listening (not started, another backend) is not an
//! error, and nothing waits for an answer.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use datastore::Revision;
use serde::{Deserialize, Serialize};
use tracing::debug;

/// File name of the claims socket under `CALICO_RUN_DIR`.
pub const CLAIMS_SOCKET: &str = "calico-node-claims.sock";

/// The largest notice the agent reads (a /20 block's JSON is well under it).
pub const MAX_NOTICE_BYTES: usize = 256 * 1024;

/// What one atomic write stored, at `revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimNotice {
    pub revision: Revision,
    pub writes: Vec<NoticeWrite>,
}

/// One key of the write and the JSON value stored under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeWrite {
    pub key: String,
    pub value: String,
}

impl ClaimNotice {
    /// The notice of `writes` (keys and the JSON bytes stored) committed at `revision`;
    /// `None` when a value is not UTF-8 (never the case for what IPAM encodes).
    pub fn of(revision: Revision, writes: &[(String, Vec<u8>)]) -> Option<ClaimNotice> {
        let writes = writes
            .iter()
            .map(|(key, value)| {
                Some(NoticeWrite {
                    key: key.clone(),
                    value: String::from_utf8(value.clone()).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ClaimNotice { revision, writes })
    }

    pub fn encode(&self) -> Vec<u8> {
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(raw: &[u8]) -> Result<ClaimNotice, serde_json::Error> {
        serde_json::from_slice(raw)
    }
}

/// Told of every block claim [`crate::Ipam`] commits in one write.
pub trait ClaimObserver: Send + Sync {
    fn claimed(&self, notice: &ClaimNotice);
}

/// Sends each notice as one datagram to the agent's claims socket.
#[derive(Debug, Clone)]
pub struct SocketNotifier {
    path: PathBuf,
}

impl SocketNotifier {
    pub fn new(path: impl Into<PathBuf>) -> SocketNotifier {
        SocketNotifier { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ClaimObserver for SocketNotifier {
    fn claimed(&self, notice: &ClaimNotice) {
        let sent = UnixDatagram::unbound().and_then(|socket| {
            socket.set_nonblocking(true)?;
            socket.send_to(&notice.encode(), &self.path)
        });
        if let Err(e) = sent {
            // No agent listening: it learns of the claim from its watch, as without us.
            debug!(socket = %self.path.display(), error = %e, "claim notice not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_survives_its_encoding() {
        let writes = vec![(
            "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26".to_string(),
            br#"{"state":"confirmed"}"#.to_vec(),
        )];
        let notice = ClaimNotice::of(7, &writes).expect("utf-8");
        assert_eq!(
            ClaimNotice::decode(&notice.encode()).expect("decodes"),
            notice
        );
        assert_eq!(notice.writes[0].value, r#"{"state":"confirmed"}"#);
    }

    #[test]
    fn a_listener_gets_the_notice_as_one_datagram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CLAIMS_SOCKET);
        let listener = UnixDatagram::bind(&path).expect("bind");
        let notice = ClaimNotice {
            revision: 42,
            writes: vec![NoticeWrite {
                key: "k".into(),
                value: "{}".into(),
            }],
        };
        SocketNotifier::new(&path).claimed(&notice);
        let mut buf = vec![0; MAX_NOTICE_BYTES];
        let n = listener.recv(&mut buf).expect("a datagram");
        assert_eq!(ClaimNotice::decode(&buf[..n]).expect("decodes"), notice);
    }
}
