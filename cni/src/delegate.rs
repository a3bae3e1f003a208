//! CNI delegation (spec section 4): the main plugin runs the IPAM plugin named by
//! `ipam.type`, found on `CNI_PATH`, with the same environment (but its own
//! `CNI_COMMAND`) and the whole network configuration on stdin. Its stderr is ours.

use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::env::CniEnv;
use crate::error::{CniError, Result, code};
use crate::result::CniResult;

#[derive(Deserialize)]
struct ErrorReply {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Finds `plugin` in the `CNI_PATH` directories.
pub fn find(plugin: &str, env: &CniEnv) -> Result<PathBuf> {
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(CniError::config(format!(
            "invalid ipam.type {plugin:?}: expected a plugin name such as \"calico-ipam\""
        )));
    }
    env.path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::config(format!(
                "failed to find plugin {plugin:?} in path {:?}",
                env.path
            ))
        })
}

/// Runs the IPAM plugin for `command` (`ADD`, `DEL`, `CHECK`). ADD returns its result;
/// a failure comes back as the plugin's own CNI error.
pub async fn exec(
    plugin: &str,
    command: &str,
    stdin: &[u8],
    env: &CniEnv,
) -> Result<Option<CniResult>> {
    let path = find(plugin, env)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::DELEGATE_FAILURE,
                format!("cannot run the IPAM plugin {}", path.display()),
                e.to_string(),
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await.map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                "cannot write to the IPAM plugin",
                e.to_string(),
            )
        })?;
    }
    let out = child.wait_with_output().await.map_err(|e| {
        CniError::new(
            code::DELEGATE_FAILURE,
            "the IPAM plugin did not finish",
            e.to_string(),
        )
    })?;
    if !out.status.success() {
        return Err(match serde_json::from_slice::<ErrorReply>(&out.stdout) {
            Ok(reply) => CniError::new(reply.code, reply.msg, reply.details),
            Err(_) => CniError::new(
                code::DELEGATE_FAILURE,
                format!("the IPAM plugin {plugin} failed ({})", out.status),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ),
        });
    }
    if command != "ADD" {
        return Ok(None);
    }
    CniResult::from_json(&out.stdout).map(Some)
}
