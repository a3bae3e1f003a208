//! Driving CNI plugins the way a container runtime does, inside lab namespaces: a CNI_PATH
//! directory with the plugin binaries, a network config for a node, and ADD / DEL / CHECK
//! runs of a plugin inside a node namespace for a pod namespace. Used by the CNI tests, the
//! CNI benchmark and the demo.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

use crate::netns::Netns;

/// A temporary CNI_PATH directory holding plugin binaries (symlinks), removed on drop.
pub struct CniBin {
    dir: tempfile::TempDir,
}

impl CniBin {
    /// A directory with each `(name, binary)` linked in under `name`.
    pub fn new(plugins: &[(&str, &Path)]) -> Result<CniBin> {
        let dir = tempfile::Builder::new().prefix("crs-cni-bin").tempdir()?;
        for (name, bin) in plugins {
            let target = dir.path().join(name);
            std::os::unix::fs::symlink(bin, &target)
                .with_context(|| format!("linking {} as {}", bin.display(), target.display()))?;
        }
        Ok(CniBin { dir })
    }

    /// Ours: `calico` and `calico-ipam` (pass `env!("CARGO_BIN_EXE_calico")`, ...).
    pub fn calico(calico: &Path, calico_ipam: &Path) -> Result<CniBin> {
        CniBin::new(&[("calico", calico), ("calico-ipam", calico_ipam)])
    }

    /// The directory, as `CNI_PATH`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Where a node's plugins find the Calico datastore.
#[derive(Debug, Clone)]
pub enum Store {
    /// `datastore_type: etcdv3` with these comma-separated endpoints.
    Etcd(String),
    /// `datastore_type: local` with the embedded store's file.
    Local(PathBuf),
}

/// A Calico CNI network configuration for one node.
#[derive(Debug, Clone)]
pub struct CalicoConf {
    pub name: String,
    pub cni_version: String,
    pub node: String,
    pub store: Store,
    /// 0 = the MTU file (see `mtu_file`), else 1500.
    pub mtu: u32,
    pub mtu_file: Option<PathBuf>,
    pub ipv4_pools: Vec<String>,
    /// `ipam.assign_ipv4` ("false" when off) and `ipam.assign_ipv6` ("true" when on).
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
    pub log_level: String,
    /// The host-wide IPAM lock file; `None` = the plugin's default
    /// (`/var/run/calico/ipam.lock`). Give each lab node its own.
    pub ipam_lock_file: Option<PathBuf>,
    /// calico-node's claims socket; `None` = the plugin's default
    /// (`/var/run/calico/calico-node-claims.sock`). Give each lab node its own.
    pub claims_socket: Option<PathBuf>,
}

impl CalicoConf {
    /// `k8s-pod-network`, CNI 1.0.0, MTU 1500, every pool.
    pub fn new(node: &str, store: Store) -> CalicoConf {
        CalicoConf {
            name: "k8s-pod-network".to_string(),
            cni_version: "1.0.0".to_string(),
            node: node.to_string(),
            store,
            mtu: 1500,
            mtu_file: None,
            ipv4_pools: Vec::new(),
            assign_ipv4: true,
            assign_ipv6: false,
            log_level: "warn".to_string(),
            ipam_lock_file: None,
            claims_socket: None,
        }
    }

    /// The config JSON a runtime would pass on stdin.
    pub fn json(&self) -> String {
        let mut v = json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "type": "calico",
            "nodename": self.node,
            "mtu": self.mtu,
            "log_level": self.log_level,
            "ipam": {"type": "calico-ipam"},
        });
        match &self.store {
            Store::Etcd(endpoints) => {
                v["datastore_type"] = json!("etcdv3");
                v["etcd_endpoints"] = json!(endpoints);
            }
            Store::Local(path) => {
                v["datastore_type"] = json!("local");
                v["datastore_path"] = json!(path);
            }
        }
        if let Some(f) = &self.mtu_file {
            v["mtu_file"] = json!(f);
        }
        if let Some(f) = &self.ipam_lock_file {
            v["ipam_lock_file"] = json!(f);
        }
        if let Some(f) = &self.claims_socket {
            v["claims_socket"] = json!(f);
        }
        if !self.ipv4_pools.is_empty() {
            v["ipam"]["ipv4_pools"] = json!(self.ipv4_pools);
        }
        if !self.assign_ipv4 {
            v["ipam"]["assign_ipv4"] = json!("false");
        }
        if self.assign_ipv6 {
            v["ipam"]["assign_ipv6"] = json!("true");
        }
        v.to_string()
    }
}

/// One plugin invocation's outcome.
#[derive(Debug, Clone)]
pub struct CniOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    /// True on exit status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as JSON (the result, or the CNI error object).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(self.stdout.trim())
            .with_context(|| format!("plugin stdout is not JSON: {:?}", self.stdout))
    }

    /// The IPv6 address of an ADD result, if it has one.
    pub fn ipv6(&self) -> Option<std::net::Ipv6Addr> {
        let v = self.json().ok()?;
        v["ips"].as_array()?.iter().find_map(|ip| {
            let addr = ip["address"].as_str()?;
            addr.split('/').next()?.parse().ok()
        })
    }

    /// The first address of an ADD result, without its prefix length.
    pub fn ip(&self) -> Result<Ipv4Addr> {
        let v = self.json()?;
        let addr = v["ips"][0]["address"]
            .as_str()
            .with_context(|| format!("no ips[0].address in {v}"))?;
        let ip = addr.split('/').next().unwrap_or(addr);
        ip.parse()
            .with_context(|| format!("bad address {addr:?} in the result"))
    }
}

/// One plugin call: which plugin, which operation, for which container.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The plugin binary name in the CNI_PATH directory (`calico`, `calico-ipam`, `ptp`).
    pub plugin: &'a str,
    /// `ADD`, `DEL`, `CHECK`, `VERSION`.
    pub command: &'a str,
    pub container_id: &'a str,
    /// `CNI_NETNS`; `None` leaves it unset.
    pub netns: Option<&'a str>,
    pub ifname: &'a str,
    /// `CNI_ARGS` (`K8S_POD_NAMESPACE=..;K8S_POD_NAME=..`), may be empty.
    pub args: &'a str,
}

/// Runs a plugin inside `node`, config on stdin, as a runtime does.
pub fn run(node: &Netns, bin: &CniBin, conf: &str, call: &Call<'_>) -> Result<CniOutput> {
    run_in(Some(node), bin.path(), conf, call)
}

/// Runs a plugin inside `node` (or, with `None`, in the caller's namespace; tests never do
/// that for ADD), with `cni_path` as `CNI_PATH`.
pub fn run_in(
    node: Option<&Netns>,
    cni_path: &Path,
    conf: &str,
    call: &Call<'_>,
) -> Result<CniOutput> {
    let child = spawn_plugin(node.map(Netns::name), cni_path, conf, call)?;
    collect(child)
}

/// Runs a plugin inside the namespace called `node` as [`run_in`] does, but kills it
/// (SIGKILL, as a runtime timing out or a node losing power would) if it is still running
/// after `kill_after`: `None` then.
pub fn run_killable(
    node: &str,
    cni_path: &Path,
    conf: &str,
    call: &Call<'_>,
    kill_after: Option<std::time::Duration>,
) -> Result<Option<CniOutput>> {
    let mut child = spawn_plugin(Some(node), cni_path, conf, call)?;
    if let Some(limit) = kill_after {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    collect(child).map(Some)
}

/// Starts the plugin of `call` (inside namespace `node` when given), config on stdin.
fn spawn_plugin(node: Option<&str>, cni_path: &Path, conf: &str, call: &Call<'_>) -> Result<Child> {
    let binary = cni_path.join(call.plugin);
    let mut cmd = Command::new(&binary);
    cmd.env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", cni_path)
        .env("CNI_ARGS", call.args)
        .env_remove("CNI_NETNS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(netns) = call.netns {
        cmd.env("CNI_NETNS", netns);
    }
    let mut child = match node {
        Some(ns) => spawn_in(ns, &mut cmd),
        None => cmd.spawn().map_err(anyhow::Error::from),
    }
    .with_context(|| format!("starting {}", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.as_bytes())?;
    }
    Ok(child)
}

/// Starts `cmd` inside the network namespace `ns`, from a thread that entered it (a child
/// is born in its parent thread's namespaces): as a runtime on a node starts a plugin, one
/// process. `ip netns exec` would add a process of its own and a remount of /sys to every
/// call, 1.2-1.6 ms here, that no runtime pays.
fn spawn_in(ns: &str, cmd: &mut Command) -> Result<Child> {
    let ns_file = File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Child> {
            setns(&ns_file, CloneFlags::CLONE_NEWNET).map_err(|e| anyhow!("entering {ns}: {e}"))?;
            Ok(cmd.spawn()?)
        })
        .join()
        .map_err(|_| anyhow!("the thread starting a plugin in {ns} panicked"))?
    })
}

/// Waits for a plugin and reads what it printed.
fn collect(child: std::process::Child) -> Result<CniOutput> {
    let out = child.wait_with_output()?;
    Ok(CniOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// ADDs pod namespace `pod` (container id `container_id`, `eth0`) on `node` with the
/// `calico` plugin and returns its address.
pub fn add_pod(
    node: &Netns,
    bin: &CniBin,
    conf: &CalicoConf,
    pod: &Netns,
    container_id: &str,
) -> Result<Ipv4Addr> {
    add_pod_output(node, bin, conf, pod, container_id)?.ip()
}

/// ADDs `pod` as [`add_pod`] does; returns the whole successful result.
pub fn add_pod_output(
    node: &Netns,
    bin: &CniBin,
    conf: &CalicoConf,
    pod: &Netns,
    container_id: &str,
) -> Result<CniOutput> {
    let path = pod.path();
    let out = run(
        node,
        bin,
        &conf.json(),
        &Call {
            plugin: "calico",
            command: "ADD",
            container_id,
            netns: Some(&path),
            ifname: "eth0",
            args: "",
        },
    )?;
    if !out.success() {
        bail!(
            "CNI ADD of {container_id} on {} failed: {}{}",
            conf.node,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(out)
}

/// DELs a pod added with [`add_pod`]; `pod` may be gone already.
pub fn del_pod(
    node: &Netns,
    bin: &CniBin,
    conf: &CalicoConf,
    pod: Option<&Netns>,
    container_id: &str,
) -> Result<()> {
    let path = pod.map(Netns::path);
    let out = run(
        node,
        bin,
        &conf.json(),
        &Call {
            plugin: "calico",
            command: "DEL",
            container_id,
            netns: path.as_deref(),
            ifname: "eth0",
            args: "",
        },
    )?;
    if !out.success() {
        bail!(
            "CNI DEL of {container_id} on {} failed: {}{}",
            conf.node,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(())
}

/// Gives a lab node namespace what a real host has and proxy ARP needs: a default route
/// (through `uplink0`, one end of a veth pair kept inside the node), so the host answers a
/// pod's ARP for 169.254.1.1: proxy ARP only answers for addresses routed through another
/// interface. (A veth rather than a dummy: these kernels have no dummy module.)
pub fn add_default_route(node: &Netns) -> Result<()> {
    node.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
    ])?;
    node.ip(&["link", "set", "uplink0", "up"])?;
    node.ip(&["link", "set", "uplink1", "up"])?;
    node.ip(&["route", "add", "default", "dev", "uplink0"])?;
    Ok(())
}
