//! The plugin entry point shared by `calico` and `calico-ipam` (the reference `skel`):
//! read `CNI_COMMAND` and stdin, answer VERSION, decode and check the config and the
//! environment, run the operation, print the result or the CNI error on stdout.

use std::future::Future;
use std::io::{Read, Write};

use serde::Deserialize;

use crate::config::NetConf;
use crate::env::{CniEnv, Command};
use crate::error::{CniError, Result, code};
use crate::result::CniResult;
use crate::{logging, version};

/// One invocation: the checked environment, the decoded config and the raw stdin (what a
/// delegated IPAM plugin gets).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub env: CniEnv,
    pub conf: NetConf,
    pub stdin: Vec<u8>,
}

/// A CNI plugin's operations.
pub trait Plugin {
    /// The plugin's name, for the about text.
    fn name(&self) -> &'static str;
    /// ADD: returns the result to print.
    fn add(&self, inv: &Invocation) -> impl Future<Output = Result<CniResult>>;
    /// DEL: idempotent, nothing left is success.
    fn del(&self, inv: &Invocation) -> impl Future<Output = Result<()>>;
    /// CHECK: an error lists what differs.
    fn check(&self, inv: &Invocation) -> impl Future<Output = Result<()>>;
}

#[derive(Deserialize)]
struct VersionOnly {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
}

/// The version to answer an error in: the config's if we speak it, else the latest.
fn reply_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<VersionOnly>(stdin)
        .ok()
        .map(|v| v.cni_version)
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| version::LATEST.to_string())
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Runs the plugin as the process: returns the exit code.
pub fn run<P: Plugin>(plugin: P) -> i32 {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        eprintln!(
            "CNI {} plugin {}\nCNI protocol versions supported: {}",
            plugin.name(),
            env!("CARGO_PKG_VERSION"),
            version::SUPPORTED.join(", ")
        );
        return 0;
    }
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let err = CniError::new(
            code::IO_FAILURE,
            "cannot read the configuration from stdin",
            e.to_string(),
        );
        print(&err.to_json(version::LATEST));
        return 1;
    }
    let answer_in = reply_version(&stdin);
    match dispatch(&plugin, &command, stdin) {
        Ok(Some(text)) => {
            print(&text);
            0
        }
        Ok(None) => 0,
        Err(e) => {
            tracing::error!(
                code = e.code,
                msg = e.msg,
                details = e.details,
                "{} failed",
                plugin.name()
            );
            print(&e.to_json(&answer_in));
            1
        }
    }
}

fn dispatch<P: Plugin>(plugin: &P, command: &str, stdin: Vec<u8>) -> Result<Option<String>> {
    let command = Command::parse(command)?;
    if command == Command::Version {
        let requested = serde_json::from_slice::<VersionOnly>(&stdin).ok();
        return Ok(Some(version::reply(
            requested.as_ref().map(|v| v.cni_version.as_str()),
        )));
    }
    let conf = match NetConf::parse(&stdin) {
        Ok(conf) => conf,
        Err(e) => {
            logging::init(None);
            return Err(e);
        }
    };
    logging::init(Some(&conf));
    if command == Command::Status {
        return Ok(None);
    }
    let env = CniEnv::from_vars(command, |k| std::env::var(k).ok())?;
    let inv = Invocation { env, conf, stdin };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::IO_FAILURE, "cannot start the runtime", e.to_string()))?;
    rt.block_on(async {
        match command {
            Command::Add => {
                let result = plugin.add(&inv).await?;
                Ok(Some(result.to_json(&inv.conf.cni_version)))
            }
            Command::Del => plugin.del(&inv).await.map(|()| None),
            Command::Check => plugin.check(&inv).await.map(|()| None),
            Command::Version | Command::Status => Ok(None),
        }
    })
}
