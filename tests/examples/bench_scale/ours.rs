//! The calico-rs side of the scale lab: `n` calico-node processes, peering as a full mesh
//! or through two route reflectors, each node holding one block before any agent starts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::Ipv4Net;
use lab::cluster::{Cluster, LabSpec};
use lab::reflectors::RR_PEERING;

use crate::etcd_watch::AffinityWatcher;
use crate::ipam_client::{IpamClient, v4};
use crate::monitor::RouteMonitor;
use crate::stats::{Samples, memory_of};
use crate::{BLOCK_SIZE, POOL, Sizes, Topology, WAIT};

/// How long the whole cluster may take to come up before the run counts as broken.
const COLD_START_WAIT: Duration = Duration::from_secs(300);
/// How long the agents are watched doing nothing, for their idle CPU and etcd rates.
const IDLE: Duration = Duration::from_secs(5);
/// The route reflectors' cluster ID.
const CLUSTER_ID: &str = "244.0.0.1";

/// What one size measured.
#[derive(Debug, Default)]
pub struct ScaleFigures {
    /// All agents started -> the last node has every other node's block.
    pub cold_start: Duration,
    /// The same, the median node.
    pub cold_start_median: Duration,
    /// The block's affinity confirmed -> the route in each other node's kernel (one sample
    /// per node).
    pub to_each: Samples,
    /// The block's affinity confirmed -> the route in the last of the other kernels.
    pub to_last: Samples,
    /// CPU time of all agents together per claim, idle rate subtracted.
    pub cpu_ms_per_claim: f64,
    /// Bytes etcd sent its clients per claim, idle rate subtracted.
    pub etcd_bytes_per_claim: Option<f64>,
    /// VmRSS (KiB) per calico-node at the end.
    pub rss: Vec<u64>,
}

/// The lab, in drop order: client threads, monitors, then the cluster.
struct ScaleLab {
    ipam: IpamClient,
    watcher: AffinityWatcher,
    monitors: Vec<RouteMonitor>,
    cluster: Cluster,
}

pub fn run(n: usize, topology: Topology, sizes: &Sizes) -> Result<ScaleFigures> {
    let cluster = Cluster::start(LabSpec {
        start_agents: false,
        ..LabSpec::nodes(n)
            .env("CALICO_IPV4POOL_CIDR", POOL)
            .env("CALICO_IPV4POOL_BLOCK_SIZE", &BLOCK_SIZE.to_string())
    })?;
    cluster.pin_neighbours()?;
    cluster
        .apply(&setup_yaml(&cluster, topology))
        .context("writing the pool and the peering")?;
    let blocks = u32::try_from(sizes.samples + 10)?;
    let ipam = IpamClient::start(&cluster.ctl, &cluster.etcd_endpoint(), "node1", blocks)?;
    let watcher = AffinityWatcher::start_all(&cluster.ctl, &cluster.etcd_endpoint())?;
    let monitors = cluster
        .nodes
        .iter()
        .map(|node| RouteMonitor::start(&node.ns))
        .collect::<Result<Vec<_>>>()?;
    let mut lab = ScaleLab {
        ipam,
        watcher,
        monitors,
        cluster,
    };
    let mut f = ScaleFigures::default();

    // One block per node, claimed before any agent runs.
    let mut owned = BTreeMap::new();
    for i in 0..n {
        let block = lab.claim(i, &format!("scale-{n}-start-{i}"))?.1;
        owned.insert(block, lab.node_ip(i)?);
    }
    let started = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    lab.cluster
        .start_agents_together(&all, COLD_START_WAIT)
        .context("starting every calico-node")?;
    let mut converged = Vec::new();
    for k in 0..n {
        let at = lab
            .wait_for_all(k, &owned, started + COLD_START_WAIT)
            .with_context(|| lab.cluster.logs(10))?;
        converged.push(at.duration_since(started));
    }
    let slowest = (0..n).max_by_key(|k| converged[*k]).unwrap_or(0);
    converged.sort();
    f.cold_start = converged.last().copied().unwrap_or_default();
    f.cold_start_median = converged[(converged.len() - 1) / 2];

    // Idle rates, once everything has settled.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, etcd0) = (lab.agents_cpu(), lab.etcd_sent_bytes());
    std::thread::sleep(IDLE);
    let (cpu1, etcd1) = (lab.agents_cpu(), lab.etcd_sent_bytes());
    let idle_cpu = (cpu1 - cpu0) / IDLE.as_secs_f64();
    let idle_etcd = etcd0.zip(etcd1).map(|(a, b)| (b - a) / IDLE.as_secs_f64());

    let phase = Instant::now();
    for s in 1..=sizes.samples {
        let owner = s % n;
        lab.monitors.iter_mut().for_each(RouteMonitor::clear);
        let (_, block) = lab.claim(owner, &format!("scale-{n}-sample-{s}"))?;
        let confirmed = lab
            .watcher
            .wait(block, WAIT)
            .with_context(|| format!("{block} was never seen confirmed in etcd"))?;
        let via = lab.node_ip(owner)?;
        let mut last = confirmed;
        for k in (0..n).filter(|k| *k != owner) {
            let Some(e) = lab.monitors[k].wait(WAIT, |e| {
                e.added && e.dst == block && e.gateway == Some(via)
            }) else {
                bail!("{block} of node{} never reached node{}", owner + 1, k + 1);
            };
            f.to_each.push_between(confirmed, e.at);
            last = last.max(e.at);
        }
        f.to_last.push_between(confirmed, last);
    }
    let wall = phase.elapsed().as_secs_f64();
    let (cpu2, etcd2) = (lab.agents_cpu(), lab.etcd_sent_bytes());
    let claims = sizes.samples as f64;
    f.cpu_ms_per_claim = ((cpu2 - cpu1) - idle_cpu * wall).max(0.0) * 1000.0 / claims;
    f.etcd_bytes_per_claim = etcd1
        .zip(etcd2)
        .zip(idle_etcd)
        .map(|((a, b), idle)| ((b - a) - idle * wall).max(0.0) / claims);
    for node in &lab.cluster.nodes {
        f.rss.extend(
            memory_of(&node.ns, "calico-node")
                .into_iter()
                .map(|m| m.rss),
        );
    }
    if sizes.logs > 0 {
        // The node that converged last: what held it up.
        let node = &lab.cluster.nodes[slowest];
        eprintln!("--- {} ---\n{}", node.name, node.agent_log(sizes.logs));
    }
    if lab.monitors.iter().any(|m| m.lost() > 0) {
        eprintln!("warning: a route monitor lost notifications");
    }
    Ok(f)
}

/// The pool, and for reflectors: the mesh off, nodes 1 and 2 reflectors, everyone
/// peering with them (written before any agent starts; each agent keeps the labels and
/// cluster ID of its Node when it registers).
fn setup_yaml(cluster: &Cluster, topology: Topology) -> String {
    let mut yaml = format!(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: default-ipv4-ippool}}
spec: {{cidr: {POOL}, blockSize: {BLOCK_SIZE}, natOutgoing: true, nodeSelector: all()}}
"
    );
    if topology == Topology::Reflectors {
        yaml.push_str("---\n");
        yaml.push_str(RR_PEERING);
        for node in &cluster.nodes[..2] {
            yaml.push_str(&format!(
                "---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {}, labels: {{route-reflector: 'true'}}}}
spec: {{bgp: {{ipv4Address: {}, routeReflectorClusterID: {CLUSTER_ID}}}}}
",
                node.name, node.address
            ));
        }
    }
    yaml
}

impl ScaleLab {
    fn node_ip(&self, i: usize) -> Result<Ipv4Addr> {
        Ok(self.cluster.nodes[i].ip().parse()?)
    }

    /// Claims a new block for node `i`: when the claim returned, and the block.
    fn claim(&self, i: usize, handle: &str) -> Result<(Instant, Ipv4Net)> {
        let (_, done, block) = self
            .ipam
            .claim_for(&self.cluster.nodes[i].name, handle)
            .map_err(|e| anyhow!(e))?;
        Ok((done, v4(block).context("an IPv6 block")?))
    }

    /// Waits until node `k`'s kernel has a route to every block in `owned` but its own
    /// (via the owner's address); when the last one arrived.
    fn wait_for_all(
        &mut self,
        k: usize,
        owned: &BTreeMap<Ipv4Net, Ipv4Addr>,
        deadline: Instant,
    ) -> Result<Instant> {
        let me = self.node_ip(k)?;
        let mut missing: BTreeMap<Ipv4Net, Ipv4Addr> = owned
            .iter()
            .filter(|(_, via)| **via != me)
            .map(|(b, via)| (*b, *via))
            .collect();
        let total = missing.len();
        let mut last = Instant::now();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let arrived = self.monitors[k].wait(left, |e| {
                e.added && matches!(missing.get(&e.dst), Some(via) if e.gateway == Some(*via))
            });
            let Some(e) = arrived else {
                let example = missing.keys().next().map(ToString::to_string);
                bail!(
                    "node{} has {} of {total} blocks at the deadline (missing e.g. {})",
                    k + 1,
                    total - missing.len(),
                    example.unwrap_or_default()
                );
            };
            missing.remove(&e.dst);
            last = e.at;
        }
        Ok(last)
    }

    /// utime + stime of every calico-node, in seconds.
    fn agents_cpu(&self) -> f64 {
        let ticks: u64 = self
            .cluster
            .nodes
            .iter()
            .filter_map(|n| n.agent_pid())
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| {
                // Fields after the command name (which may hold spaces): utime and stime
                // are the 12th and 13th.
                let rest = stat.rsplit_once(')')?.1;
                let mut fields = rest.split_whitespace().skip(11);
                let utime: u64 = fields.next()?.parse().ok()?;
                let stime: u64 = fields.next()?.parse().ok()?;
                Some(utime + stime)
            })
            .sum();
        ticks as f64 / clock_ticks_per_second()
    }

    /// etcd's `etcd_network_client_grpc_sent_bytes_total`, read from its metrics endpoint
    /// inside the control namespace.
    fn etcd_sent_bytes(&self) -> Option<f64> {
        let host = self.cluster.etcd.endpoint().trim_start_matches("http://");
        let (addr, port) = host.split_once(':')?;
        let script = format!(
            "exec 3<>/dev/tcp/{addr}/{port} && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = self
            .cluster
            .ctl
            .command("bash")
            .args(["-c", &script])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("etcd_network_client_grpc_sent_bytes_total "))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// The kernel's USER_HZ as `getconf CLK_TCK` reports it (100 on Linux; asked, not assumed).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
