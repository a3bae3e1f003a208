//! A BIRD 2 daemon running a configuration given as text, inside a namespace with its own
//! control socket (the mesh benchmark runs Calico's own BIRD configuration this way).
//! Routers described by a neutral spec (BIRD, FRR, GoBGP as ToRs and interop peers) are in
//! [`crate::bgp_peers`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{Daemon, Netns, wait_until};

/// A BIRD 2 daemon in a namespace.
pub struct Bird {
    daemon: Daemon,
    ctl: PathBuf,
    ns_name: String,
}

impl Bird {
    /// Writes `config` to `<dir>/bird.conf` and starts `bird -f` in `ns`; waits until
    /// `birdc` answers.
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Result<Bird> {
        fs::create_dir_all(dir)?;
        let conf = dir.join("bird.conf");
        let ctl = dir.join("bird.ctl");
        fs::write(&conf, config)?;
        let conf_s = conf.to_string_lossy().into_owned();
        let ctl_s = ctl.to_string_lossy().into_owned();
        let daemon = ns.spawn(
            "bird",
            &["-f", "-c", &conf_s, "-s", &ctl_s],
            &BTreeMap::new(),
            &dir.join("bird.log"),
        )?;
        let bird = Bird {
            daemon,
            ctl,
            ns_name: ns.name().to_string(),
        };
        if !wait_until(Duration::from_secs(10), || {
            bird.birdc(&["show", "status"]).is_ok()
        }) {
            bail!("BIRD did not start:\n{}", bird.daemon.log_tail(20));
        }
        Ok(bird)
    }

    /// Runs `birdc -s <ctl> <args>` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "birdc", "-s"])
            .arg(&self.ctl)
            .args(args)
            .output()
            .context("running birdc")?;
        if !out.status.success() {
            bail!("birdc failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The daemon's log tail, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}
