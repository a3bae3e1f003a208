//! A multi-node calico-rs cluster in network namespaces (design.md "Labs"):
//!
//! ```text
//!   n1 (10.0.0.1/24) ─┐                        ┌─ n3 (10.0.1.3/24)     subnet 1 (optional)
//!   n2 (10.0.0.2/24) ─┤ br0   [fabric]   br1 ├─┘
//!                     └──── ctl: 10.0.0.254 / 10.0.1.254 (router + etcd) ────┘
//!                     └──── extra namespaces (ToR, outside world) attach to br0/br1
//! ```
//!
//! Every node runs `calico-node` against the etcd in `ctl`; pods are namespaces wired by
//! the real CNI plugins; `calicoctl` runs inside a node namespace. Everything is removed on
//! drop, in reverse order of creation.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::bins::bin;
use crate::cni::{CalicoConf, Call, CniBin, CniOutput, Store, add_pod_output, del_pod};
use crate::etcd::EtcdServer;
use crate::netns::{Daemon, Netns, remove_leftovers, veth, wait_until};

/// Address of etcd (and of the router) on subnet 0.
pub const CTL_IP: &str = "10.0.0.254";

/// One node of the lab.
pub struct LabNode {
    pub name: String,
    /// The node's address with prefix, e.g. `10.0.0.1/24`.
    pub address: String,
    /// In a dual-stack lab, the node's IPv6 address with prefix, e.g. `fd00:0:0::1/64`.
    pub address_v6: Option<String>,
    pub subnet: usize,
    pub ns: Netns,
    pub run_dir: PathBuf,
    pub mtu_file: PathBuf,
    agent: Option<Daemon>,
    log: PathBuf,
}

impl LabNode {
    /// The node's IP without prefix.
    pub fn ip(&self) -> &str {
        self.address.split('/').next().unwrap_or(&self.address)
    }

    /// The node's IPv6 address without prefix (a dual-stack lab's nodes have one).
    pub fn ip6(&self) -> Option<&str> {
        self.address_v6.as_deref().and_then(|a| a.split('/').next())
    }

    /// True while calico-node runs.
    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(Daemon::is_running)
    }

    /// The process id of calico-node, while it was started by the lab.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().and_then(Daemon::pid)
    }

    /// How calico-node ended, once it has (None while it runs or when never started).
    pub fn agent_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.agent.as_mut().and_then(Daemon::exit_status)
    }

    /// The agent's log so far (last `lines` lines).
    pub fn agent_log(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET <path>` on calico-node's health port (9099) inside the node: (status code,
    /// whole response).
    pub fn health(&self, path: &str) -> Option<(u16, String)> {
        self.http_get(9099, path)
    }

    /// calico-node's Prometheus `/metrics` (port 9091), the body with its headers.
    pub fn metrics(&self) -> Option<String> {
        self.http_get(9091, "/metrics").map(|(_, text)| text)
    }

    fn http_get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = self.ns.exec("bash", &["-c", &script]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, text))
    }

    /// `ip route` in the node, one line per route.
    pub fn routes(&self) -> Vec<String> {
        self.ns
            .ip(&["route", "show"])
            .map(|s| s.lines().map(|l| l.trim().to_string()).collect())
            .unwrap_or_default()
    }

    /// True when some route line contains `needle`.
    pub fn has_route(&self, needle: &str) -> bool {
        self.routes().iter().any(|r| r.contains(needle))
    }

    /// `ip -6 route` in the node, one line per route.
    pub fn routes_v6(&self) -> Vec<String> {
        self.ns
            .ip(&["-6", "route", "show"])
            .map(|s| s.lines().map(|l| l.trim().to_string()).collect())
            .unwrap_or_default()
    }

    /// True when some IPv6 route line contains `needle`.
    pub fn has_route_v6(&self, needle: &str) -> bool {
        self.routes_v6().iter().any(|r| r.contains(needle))
    }
}

/// A pod: a namespace wired by the CNI plugin on a node.
pub struct Pod {
    pub name: String,
    pub node: usize,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address, in a dual-stack lab.
    pub ip6: Option<std::net::Ipv6Addr>,
    pub container_id: String,
    pub ns: Netns,
}

/// How to build the lab.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Subnet index of each node (`vec![0, 0, 1]` = two nodes on subnet 0, one on 1).
    pub node_subnets: Vec<usize>,
    /// Environment for every calico-node (backend, pool, ...), on top of the lab's own.
    pub agent_env: BTreeMap<String, String>,
    /// Start the agents right away.
    pub start_agents: bool,
    /// etcd members (1, or 3 for a cluster that survives losing its leader).
    pub etcd_members: usize,
    /// Every node, the router and the pods get IPv6 beside IPv4: nodes `fd00:0:<subnet>::<n>/64`
    /// (`fd00::1/64` on subnet 0),
    /// `IP6=autodetect`, the CNI's `assign_ipv6`.
    pub dual_stack: bool,
}

impl LabSpec {
    /// `n` nodes on one subnet, default settings (BGP, pool 192.168.0.0/16, no encap).
    pub fn nodes(n: usize) -> LabSpec {
        LabSpec {
            node_subnets: vec![0; n],
            agent_env: BTreeMap::new(),
            start_agents: true,
            etcd_members: 1,
            dual_stack: false,
        }
    }

    /// Makes the lab dual-stack (see [`LabSpec::dual_stack`]).
    pub fn dual_stack(mut self) -> LabSpec {
        self.dual_stack = true;
        self
    }

    /// Adds an environment variable for every agent.
    pub fn env(mut self, key: &str, value: &str) -> LabSpec {
        self.agent_env.insert(key.to_string(), value.to_string());
        self
    }
}

/// The running lab. Field order is drop order: pods, nodes (agents), etcd, namespaces.
pub struct Cluster {
    pub pods: Vec<Pod>,
    pub nodes: Vec<LabNode>,
    extra: Vec<Netns>,
    pub etcd: EtcdServer,
    /// The other members when the lab runs an etcd cluster (`etcd` is member 0).
    pub etcd_peers: Vec<EtcdServer>,
    pub ctl: Netns,
    pub fabric: Netns,
    cni: CniBin,
    agent_env: BTreeMap<String, String>,
    pub dir: TempDir,
    subnets: usize,
    dual_stack: bool,
    next_fabric_port: usize,
    /// Distinguishes this lab's namespaces from other labs of the same test process.
    tag: String,
}

/// Labs started by this process so far (tests run in parallel threads).
static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn subnet_ip(subnet: usize, host: usize) -> String {
    format!("10.0.{subnet}.{host}")
}

/// A host's IPv6 address on a subnet of a dual-stack lab, as the kernel prints it (the
/// host number in hex digits reads the same as in the IPv4 address).
fn subnet_ip6(subnet: usize, host: usize) -> String {
    let text = format!("fd00:0:{subnet}::{host}");
    text.parse::<std::net::Ipv6Addr>()
        .map_or(text, |ip| ip.to_string())
}

impl Cluster {
    /// Builds the fabric, the control namespace with etcd, the nodes, and (when asked)
    /// starts calico-node on each.
    /// This lab's tag (`L<n>`), unique within the process: a prefix for the names of
    /// namespaces a test makes beside the lab's own, so two labs in one test binary
    /// never share a name.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// True for a lab started with [`LabSpec::dual_stack`].
    pub fn is_dual_stack(&self) -> bool {
        self.dual_stack
    }

    pub fn start(spec: LabSpec) -> Result<Cluster> {
        remove_leftovers();
        let dir = tempfile::Builder::new()
            .prefix("calico-rs-lab-")
            .tempdir()?;
        let subnets = spec.node_subnets.iter().copied().max().unwrap_or(0) + 1;
        let tag = format!(
            "L{}",
            LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let fabric = Netns::create(&format!("{tag}fab"))?;
        let ctl = Netns::create(&format!("{tag}ctl"))?;
        ctl.sh("sysctl -qw net.ipv4.ip_forward=1")?;
        for s in 0..subnets {
            let br = format!("br{s}");
            fabric.ip(&["link", "add", &br, "type", "bridge"])?;
            fabric.ip(&["link", "set", &br, "up"])?;
            let port = format!("ctl{s}");
            veth(&ctl, &format!("eth{s}"), &fabric, &port)?;
            fabric.ip(&["link", "set", &port, "master", &br])?;
            ctl.ip(&[
                "addr",
                "add",
                &format!("{}/24", subnet_ip(s, 254)),
                "dev",
                &format!("eth{s}"),
            ])?;
            if spec.dual_stack {
                ctl.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{}/64", subnet_ip6(s, 254)),
                    "dev",
                    &format!("eth{s}"),
                    "nodad",
                ])?;
            }
        }
        if spec.dual_stack {
            ctl.sh("sysctl -qw net.ipv6.conf.all.forwarding=1")?;
        }
        let mut members = if spec.etcd_members > 1 {
            EtcdServer::start_cluster_in(&ctl, CTL_IP.parse()?, spec.etcd_members)?
        } else {
            vec![EtcdServer::start_in(&ctl, CTL_IP.parse()?)?]
        };
        let etcd = members.remove(0);
        let etcd_peers = members;
        let cni = CniBin::calico(&bin("calico")?, &bin("calico-ipam")?)?;
        let mut cluster = Cluster {
            pods: Vec::new(),
            nodes: Vec::new(),
            extra: Vec::new(),
            etcd,
            etcd_peers,
            ctl,
            fabric,
            cni,
            agent_env: spec.agent_env.clone(),
            dir,
            subnets,
            dual_stack: spec.dual_stack,
            next_fabric_port: 0,
            tag,
        };
        for (i, subnet) in spec.node_subnets.iter().enumerate() {
            cluster.add_node(&format!("node{}", i + 1), *subnet)?;
        }
        if spec.start_agents {
            for i in 0..cluster.nodes.len() {
                cluster.start_agent(i)?;
            }
        }
        Ok(cluster)
    }

    /// The etcd endpoints every component uses (comma-separated, as `ETCD_ENDPOINTS`).
    pub fn etcd_endpoint(&self) -> String {
        std::iter::once(&self.etcd)
            .chain(&self.etcd_peers)
            .map(EtcdServer::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Attaches namespace `ns` to subnet `subnet`'s bridge as `dev` with `address`
    /// (`a.b.c.d/len`), default route via the subnet's router.
    pub fn attach(&mut self, ns: &Netns, dev: &str, subnet: usize, address: &str) -> Result<()> {
        if subnet >= self.subnets {
            bail!("subnet {subnet} does not exist in this lab");
        }
        self.next_fabric_port += 1;
        let port = format!("p{}", self.next_fabric_port);
        veth(ns, dev, &self.fabric, &port)?;
        self.fabric
            .ip(&["link", "set", &port, "master", &format!("br{subnet}")])?;
        ns.ip(&["addr", "add", address, "dev", dev])?;
        ns.ip(&["route", "add", "default", "via", &subnet_ip(subnet, 254)])?;
        Ok(())
    }

    /// Adds a node namespace on `subnet` (not started).
    pub fn add_node(&mut self, name: &str, subnet: usize) -> Result<usize> {
        let index = self.nodes.len();
        let ns = Netns::create(&format!("{}n{}", self.tag, index + 1))?;
        let address = format!("{}/24", subnet_ip(subnet, index + 1));
        self.attach(&ns, "eth0", subnet, &address)?;
        let address_v6 = if self.dual_stack {
            let v6 = format!("{}/64", subnet_ip6(subnet, index + 1));
            ns.ip(&["-6", "addr", "add", &v6, "dev", "eth0", "nodad"])?;
            ns.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &subnet_ip6(subnet, 254),
            ])?;
            Some(v6)
        } else {
            None
        };
        let node_dir = self.dir.path().join(name);
        std::fs::create_dir_all(&node_dir)?;
        self.nodes.push(LabNode {
            name: name.to_string(),
            address,
            address_v6,
            subnet,
            ns,
            run_dir: node_dir.join("run"),
            mtu_file: node_dir.join("mtu"),
            agent: None,
            log: node_dir.join("calico-node.log"),
        });
        Ok(index)
    }

    /// Gives every node and the control namespace a permanent ARP entry for each other
    /// (on subnet 0). The kernel's neighbour table is one for all namespaces, with room
    /// for 1024 learned entries in all (`gc_thresh3`, a root-namespace setting this lab
    /// does not touch): a lab of more than about 30 nodes fills it ("neighbor table
    /// overflow"), drops packets and so loses BGP sessions. Permanent entries do not
    /// count against it. A real cluster has a table per node and needs none of this.
    pub fn pin_neighbours(&self) -> Result<()> {
        let mut hosts: Vec<(&Netns, String)> = Vec::new();
        for node in self.nodes.iter().filter(|n| n.subnet == 0) {
            hosts.push((&node.ns, node.ip().to_string()));
        }
        hosts.push((&self.ctl, CTL_IP.to_string()));
        let mut macs = Vec::new();
        // Every one of them is on subnet 0 through its eth0 (the control namespace's eth0
        // is its port on subnet 0).
        for (ns, _) in &hosts {
            let mac = ns.exec("cat", &["/sys/class/net/eth0/address"])?;
            macs.push(String::from_utf8_lossy(&mac.stdout).trim().to_string());
        }
        for (i, (ns, _)) in hosts.iter().enumerate() {
            let batch: String = hosts
                .iter()
                .zip(&macs)
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, ((_, ip), mac))| {
                    format!("neigh replace {ip} lladdr {mac} dev eth0 nud permanent\n")
                })
                .collect();
            ns.ip_batch(&batch)?;
        }
        Ok(())
    }

    /// Takes node `i`'s port on the fabric bridge down (`up` false) or up again: the
    /// node's link is cut where a switch would lose it, not stopped cleanly; the far end
    /// learns of it only by what stops arriving.
    pub fn set_fabric_link(&self, i: usize, up: bool) -> Result<()> {
        // eth0@ifN in the node: N is the ifindex of its fabric end.
        let link = self.nodes[i].ns.ip(&["-o", "link", "show", "eth0"])?;
        let peer = link
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.trim_end_matches(':').split("@if").nth(1))
            .ok_or_else(|| anyhow::anyhow!("no peer index in {link}"))?
            .to_string();
        let ports = self.fabric.ip(&["-o", "link", "show"])?;
        let port = ports
            .lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(peer.as_str()))
            .and_then(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
            .ok_or_else(|| anyhow::anyhow!("no fabric port with index {peer}"))?;
        self.fabric
            .ip(&["link", "set", &port, if up { "up" } else { "down" }])?;
        Ok(())
    }

    /// Creates an extra namespace (a ToR, the outside world) owned by the lab.
    pub fn extra_namespace(&mut self, short: &str) -> Result<usize> {
        self.extra
            .push(Netns::create(&format!("{}{short}", self.tag))?);
        Ok(self.extra.len() - 1)
    }

    /// Attaches extra namespace `index` to `subnet` (see [`attach`](Self::attach)).
    pub fn attach_extra(
        &mut self,
        index: usize,
        dev: &str,
        subnet: usize,
        address: &str,
    ) -> Result<()> {
        let ns = self.extra.remove(index);
        let result = self.attach(&ns, dev, subnet, address);
        self.extra.insert(index, ns);
        result
    }

    /// An extra namespace made with [`extra_namespace`](Self::extra_namespace).
    pub fn extra(&self, index: usize) -> &Netns {
        &self.extra[index]
    }

    /// The environment calico-node gets on node `i`.
    pub fn agent_env(&self, i: usize) -> BTreeMap<String, String> {
        let node = &self.nodes[i];
        let mut env = BTreeMap::from([
            ("NODENAME".to_string(), node.name.clone()),
            ("IP".to_string(), "autodetect".to_string()),
            (
                "IP_AUTODETECTION_METHOD".to_string(),
                "interface=eth0".to_string(),
            ),
            ("DATASTORE_TYPE".to_string(), "etcdv3".to_string()),
            ("ETCD_ENDPOINTS".to_string(), self.etcd_endpoint()),
            (
                "CALICO_RUN_DIR".to_string(),
                node.run_dir.display().to_string(),
            ),
            (
                "CALICO_MTU_FILE".to_string(),
                node.mtu_file.display().to_string(),
            ),
            ("CALICO_LOG_LEVEL".to_string(), "info".to_string()),
        ]);
        if self.dual_stack {
            env.insert("IP6".to_string(), "autodetect".to_string());
            env.insert(
                "IP6_AUTODETECTION_METHOD".to_string(),
                "interface=eth0".to_string(),
            );
        }
        env.extend(self.agent_env.clone());
        env
    }

    /// Starts calico-node on node `i` and waits until its status socket answers.
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        self.start_agent_with(i, &BTreeMap::new())
    }

    /// Starts calico-node on node `i` with extra environment.
    pub fn start_agent_with(&mut self, i: usize, extra: &BTreeMap<String, String>) -> Result<()> {
        self.spawn_agent(i, extra)?;
        self.wait_agent_up(i, Duration::from_secs(20))
    }

    /// Starts calico-node on each of `nodes` at once (no wait between them), then waits
    /// until every one's status socket answers: a cold start of the whole cluster.
    pub fn start_agents_together(&mut self, nodes: &[usize], timeout: Duration) -> Result<()> {
        for &i in nodes {
            self.spawn_agent(i, &BTreeMap::new())?;
        }
        let deadline = std::time::Instant::now() + timeout;
        for &i in nodes {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.wait_agent_up(i, left)?;
        }
        Ok(())
    }

    fn spawn_agent(&mut self, i: usize, extra: &BTreeMap<String, String>) -> Result<()> {
        let mut env = self.agent_env(i);
        env.extend(extra.clone());
        let node = &mut self.nodes[i];
        let daemon = node
            .ns
            .spawn(&bin("calico-node")?.to_string_lossy(), &[], &env, &node.log)?;
        node.agent = Some(daemon);
        Ok(())
    }

    fn wait_agent_up(&self, i: usize, timeout: Duration) -> Result<()> {
        let node = &self.nodes[i];
        let socket = node.run_dir.join("calico-node.sock");
        if !wait_until(timeout, || socket.exists()) {
            bail!(
                "calico-node on {} did not come up:\n{}",
                node.name,
                node.agent_log(30)
            );
        }
        Ok(())
    }

    /// Stops calico-node on node `i` (SIGTERM, graceful).
    pub fn stop_agent(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].agent.take() {
            d.stop(Duration::from_secs(5));
        }
    }

    /// Kills calico-node on node `i` at once (as a crash).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].agent.take() {
            d.kill();
        }
    }

    /// The CNI_PATH directory with the plugins.
    pub fn cni_path(&self) -> &Path {
        self.cni.path()
    }

    /// The CNI configuration of node `i`.
    pub fn cni_conf(&self, i: usize) -> CalicoConf {
        let mut conf = CalicoConf::new(&self.nodes[i].name, Store::Etcd(self.etcd_endpoint()));
        conf.mtu = 0;
        conf.mtu_file = Some(self.nodes[i].mtu_file.clone());
        conf.ipam_lock_file = Some(self.nodes[i].run_dir.join("ipam.lock"));
        conf.claims_socket = Some(self.nodes[i].run_dir.join(ipam::notice::CLAIMS_SOCKET));
        conf.assign_ipv6 = self.dual_stack;
        conf
    }

    /// Runs one CNI plugin call in node `i` with the node's CNI configuration (a call a
    /// runtime would make, such as an IPAM ADD alone).
    pub fn cni_call(&self, i: usize, call: &Call<'_>) -> Result<CniOutput> {
        crate::cni::run(&self.nodes[i].ns, &self.cni, &self.cni_conf(i).json(), call)
    }

    /// A new namespace for pod `name` and a CNI ADD of it on node `i` with `conf`: the
    /// namespace, the container ID and the plugin's output.
    fn cni_add(
        &self,
        i: usize,
        name: &str,
        conf: CalicoConf,
    ) -> Result<(Netns, String, CniOutput)> {
        let ns = Netns::create(&format!("{}p-{name}", self.tag))?;
        let container_id = format!("{name}-{}", std::process::id());
        let out = add_pod_output(&self.nodes[i].ns, &self.cni, &conf, &ns, &container_id)
            .with_context(|| format!("adding pod {name} on {}", self.nodes[i].name))?;
        Ok((ns, container_id, out))
    }

    /// Creates pod `name` on node `i` through CNI ADD; returns its index in `pods`.
    pub fn add_pod(&mut self, i: usize, name: &str) -> Result<usize> {
        let (ns, container_id, out) = self.cni_add(i, name, self.cni_conf(i))?;
        let ip = out.ip()?;
        let ip6 = out.ipv6();
        if self.dual_stack && ip6.is_none() {
            bail!("pod {name} got no IPv6 address: {}", out.stdout);
        }
        self.pods.push(Pod {
            name: name.to_string(),
            node: i,
            ip,
            ip6,
            container_id,
            ns,
        });
        Ok(self.pods.len() - 1)
    }

    /// Creates an IPv6-only pod `name` on node `i` through CNI ADD (`assign_ipv4` off,
    /// `assign_ipv6` on): its namespace, which the caller owns, and its address.
    pub fn add_pod_v6_only(&self, i: usize, name: &str) -> Result<(Netns, std::net::Ipv6Addr)> {
        let mut conf = self.cni_conf(i);
        conf.assign_ipv4 = false;
        conf.assign_ipv6 = true;
        let (ns, _, out) = self.cni_add(i, name, conf)?;
        if out.ip().is_ok() {
            bail!("IPv6-only pod {name} got an IPv4 address: {}", out.stdout);
        }
        let ip6 = out
            .ipv6()
            .with_context(|| format!("pod {name} got no IPv6 address: {}", out.stdout))?;
        Ok((ns, ip6))
    }

    /// Deletes pod `p` through CNI DEL and removes its namespace.
    pub fn delete_pod(&mut self, p: usize) -> Result<()> {
        let pod = self.pods.remove(p);
        let conf = self.cni_conf(pod.node);
        del_pod(
            &self.nodes[pod.node].ns,
            &self.cni,
            &conf,
            Some(&pod.ns),
            &pod.container_id,
        )
    }

    /// Runs `calicoctl args` inside node `i` against the lab's etcd.
    pub fn calicoctl(&self, i: usize, args: &[&str]) -> Result<Output> {
        self.calicoctl_stdin(i, args, None)
    }

    /// Runs `calicoctl args` with `stdin` (for `apply -f -`).
    pub fn calicoctl_stdin(&self, i: usize, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        use std::io::Write;
        use std::process::Stdio;
        let node = &self.nodes[i];
        let mut cmd = node.ns.command(&bin("calicoctl")?.to_string_lossy());
        cmd.args(args)
            .env("DATASTORE_TYPE", "etcdv3")
            .env("ETCD_ENDPOINTS", self.etcd_endpoint())
            .env("CALICO_RUN_DIR", &node.run_dir)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting calicoctl")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// `calicoctl apply -f -` with `yaml`; fails with calicoctl's stderr.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        let out = self.calicoctl_stdin(0, &["apply", "-f", "-"], Some(yaml))?;
        if !out.status.success() {
            bail!(
                "calicoctl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Pings pod `to` from pod `from` (a few packets); true when any reply came back.
    pub fn pods_ping(&self, from: usize, to: usize) -> bool {
        self.pods[from].ns.ping(&self.pods[to].ip.to_string(), 2)
    }

    /// Pings pod `to`'s IPv6 address from pod `from`; false when `to` has none.
    pub fn pods_ping6(&self, from: usize, to: usize) -> bool {
        self.pods[to]
            .ip6
            .is_some_and(|ip| self.pods[from].ns.ping(&ip.to_string(), 2))
    }

    /// Where the lab keeps its files (logs, run dirs).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every agent's log tail, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.agent_log(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

mod flannel;
pub use flannel::{FLANNEL_PREFIX, FlannelLease};
