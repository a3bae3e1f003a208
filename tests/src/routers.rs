//! Real routers as lab peers: BIRD 2 and FRR (zebra + bgpd) running inside a namespace,
//! each with its own control sockets and files so several can share one machine.

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

/// The BIRD 2 configuration of an eBGP top-of-rack router that installs what it learns in
/// its kernel and passes every route on (next-hop-self towards eBGP, as a ToR does).
pub fn bird_tor_config(router_id: &str, asn: u32, neighbors: &[(String, u32)]) -> String {
    let mut conf = format!(
        "log stderr all;\nrouter id {router_id};\nprotocol device {{ scan time 10; }}\n\
         protocol direct {{ ipv4; interface \"eth*\"; }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n"
    );
    for (i, (ip, remote_as)) in neighbors.iter().enumerate() {
        conf.push_str(&format!(
            "protocol bgp peer{i} {{\n  local {router_id} as {asn};\n  neighbor {ip} as {remote_as};\n  \
             hold time 9; keepalive time 3; connect retry time 1; connect delay time 1;\n  \
             error wait time 1, 5;\n  graceful restart on;\n  ipv4 {{ import all; export all; next hop self; }};\n}}\n"
        ));
    }
    conf
}

/// FRR (zebra + bgpd) in a namespace, with its own pid files, zebra socket and vty
/// sockets under `dir`.
pub struct Frr {
    bgpd: Daemon,
    zebra: Daemon,
    vty_dir: PathBuf,
    ns_name: String,
}

impl Frr {
    /// Writes `bgpd_config` and starts zebra, then bgpd, in `ns`. FRR drops privileges to
    /// its `frr` user, so `dir` is handed to that user (and its parent made traversable).
    pub fn start(ns: &Netns, dir: &Path, bgpd_config: &str) -> Result<Frr> {
        fs::create_dir_all(dir)?;
        let vty_dir = dir.join("vty");
        fs::create_dir_all(&vty_dir)?;
        let zsock = dir.join("zserv.api").to_string_lossy().into_owned();
        let vty = vty_dir.to_string_lossy().into_owned();
        let zconf = dir.join("zebra.conf");
        fs::write(&zconf, "hostname tor\n")?;
        let bconf = dir.join("bgpd.conf");
        fs::write(&bconf, bgpd_config)?;
        if let Some(parent) = dir.parent() {
            run_tool("chmod", &["755", &parent.to_string_lossy()])?;
        }
        run_tool("chown", &["-R", "frr:frr", &dir.to_string_lossy()])?;
        let none = BTreeMap::new();
        let zebra = ns.spawn(
            "/usr/lib/frr/zebra",
            &[
                "-f",
                &zconf.to_string_lossy(),
                "-i",
                &dir.join("zebra.pid").to_string_lossy(),
                "-z",
                &zsock,
                "--vty_socket",
                &vty,
                "-P",
                "0",
                "--log",
                "stdout",
            ],
            &none,
            &dir.join("zebra.log"),
        )?;
        if !wait_until(Duration::from_secs(10), || Path::new(&zsock).exists()) {
            bail!("zebra did not start:\n{}", zebra.log_tail(20));
        }
        let bgpd = ns.spawn(
            "/usr/lib/frr/bgpd",
            &[
                "-f",
                &bconf.to_string_lossy(),
                "-i",
                &dir.join("bgpd.pid").to_string_lossy(),
                "-z",
                &zsock,
                "--vty_socket",
                &vty,
                "-P",
                "0",
                "--log",
                "stdout",
            ],
            &none,
            &dir.join("bgpd.log"),
        )?;
        let frr = Frr {
            bgpd,
            zebra,
            vty_dir,
            ns_name: ns.name().to_string(),
        };
        if !wait_until(Duration::from_secs(10), || {
            frr.vtysh("show bgp summary").is_ok()
        }) {
            bail!("bgpd did not start:\n{}", frr.bgpd.log_tail(20));
        }
        Ok(frr)
    }

    /// Runs `vtysh -c <command>` against this instance.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "vtysh", "--vty_socket"])
            .arg(&self.vty_dir)
            .args(["-c", command])
            .output()
            .context("running vtysh")?;
        if !out.status.success() {
            bail!("vtysh failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// bgpd's log tail.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{}\n--- zebra ---\n{}",
            self.bgpd.log_tail(lines),
            self.zebra.log_tail(lines)
        )
    }
}

/// bgpd configuration of an eBGP ToR (datacenter defaults, no RFC 8212 policy needed).
pub fn frr_tor_config(router_id: &str, asn: u32, neighbors: &[(String, u32)]) -> String {
    let mut conf = format!(
        "frr defaults datacenter\nhostname tor\nlog stdout\n!\nrouter bgp {asn}\n bgp router-id {router_id}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n"
    );
    for (ip, remote_as) in neighbors {
        conf.push_str(&format!(
            " neighbor {ip} remote-as {remote_as}\n neighbor {ip} timers 3 9\n neighbor {ip} timers connect 1\n"
        ));
    }
    conf.push_str(" address-family ipv4 unicast\n");
    for (ip, _) in neighbors {
        conf.push_str(&format!(
            "  neighbor {ip} activate\n  neighbor {ip} next-hop-self\n"
        ));
    }
    conf.push_str(" exit-address-family\n!\n");
    conf
}

fn run_tool(program: &str, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {args:?} failed ({status})");
    }
    Ok(())
}
