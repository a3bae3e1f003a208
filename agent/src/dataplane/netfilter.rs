//! The netfilter tools behind a small trait: `iptables-save` / `iptables-restore
//! --noflush` (`ip6tables-…` for IPv6) for the nat table and `ipset save` / `ipset restore`
//! for sets, run as processes in this network namespace (as Felix does). `iptables` is
//! whichever backend the host's alternatives select (iptables-nft on Debian 12); both read
//! the same rules.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one tool may run before it is killed and the pass retried.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a netfilter operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NetfilterError {
    /// A tool is not installed.
    #[error("{0} not found (install the iptables and ipset packages)")]
    Missing(String),
    /// A tool ran and failed.
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

/// What the natOutgoing reconciler needs from netfilter.
#[async_trait]
pub trait Netfilter: Send + Sync {
    /// `iptables-save -t nat`.
    async fn save_nat(&self) -> Result<String, NetfilterError>;
    /// `iptables-restore --noflush` of `script` (one atomic transaction).
    async fn restore_nat(&self, script: &str) -> Result<(), NetfilterError>;
    /// `ipset save <name>`, or `None` when the set does not exist.
    async fn save_ipset(&self, name: &str) -> Result<Option<String>, NetfilterError>;
    /// `ipset restore` of `script`.
    async fn restore_ipset(&self, script: &str) -> Result<(), NetfilterError>;
}

/// [`Netfilter`] through the command-line tools found on `PATH`, for one family's nat
/// table.
#[derive(Debug, Clone)]
pub struct NetfilterTools {
    save: &'static str,
    restore: &'static str,
}

impl NetfilterTools {
    pub fn new(family: datastore::model::IpFamily) -> NetfilterTools {
        match family {
            datastore::model::IpFamily::V4 => NetfilterTools {
                save: "iptables-save",
                restore: "iptables-restore",
            },
            datastore::model::IpFamily::V6 => NetfilterTools {
                save: "ip6tables-save",
                restore: "ip6tables-restore",
            },
        }
    }
}

/// Runs `program args` with `stdin`, returning stdout, or the error with stderr.
async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetfilterError> {
    let cmd = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NetfilterError::Missing(program.to_string()),
            _ => NetfilterError::Failed {
                cmd: cmd.clone(),
                stderr: e.to_string(),
            },
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| NetfilterError::Failed {
                cmd: cmd.clone(),
                stderr: format!("writing input: {e}"),
            })?;
    }
    let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NetfilterError::Failed {
            cmd: cmd.clone(),
            stderr: format!("no answer within {TOOL_TIMEOUT:?}"),
        })?
        .map_err(|e| NetfilterError::Failed {
            cmd: cmd.clone(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetfilterError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[async_trait]
impl Netfilter for NetfilterTools {
    async fn save_nat(&self) -> Result<String, NetfilterError> {
        run(self.save, &["-t", "nat"], None).await
    }

    async fn restore_nat(&self, script: &str) -> Result<(), NetfilterError> {
        // -w: wait for the xtables lock other writers (kube-proxy, Docker) may hold.
        run(self.restore, &["--noflush", "-w", "5"], Some(script))
            .await
            .map(drop)
    }

    async fn save_ipset(&self, name: &str) -> Result<Option<String>, NetfilterError> {
        match run("ipset", &["save", name], None).await {
            Ok(text) => Ok(Some(text)),
            Err(NetfilterError::Failed { stderr, .. }) if stderr.contains("does not exist") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn restore_ipset(&self, script: &str) -> Result<(), NetfilterError> {
        run("ipset", &["restore"], Some(script)).await.map(drop)
    }
}
