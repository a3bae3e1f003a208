//! The calico-rs side: `calico-node` on every node of a full mesh, a pool of /31 blocks so
//! every claim is a new block, route monitors in every node's kernel and a watch on A's
//! block affinities in etcd.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::Ipv4Net;
use lab::Netns;
use lab::bins::bin;
use lab::cluster::{Cluster, LabSpec};
use lab::cni::{CniBin, add_pod};

use crate::etcd_watch::AffinityWatcher;
use crate::ipam_client::{IpamClient, v4};
use crate::monitor::{RouteEvent, RouteMonitor};
use crate::stats::{Samples, memory_of};
use crate::{BLOCK_SIZE, POOL, Sizes, WAIT};

/// What calico-rs measured at one size.
#[derive(Debug, Default)]
pub struct OursFigures {
    /// CNI ADD starts on A -> the block's route in B's kernel.
    pub cni_to_b: Samples,
    /// CNI ADD starts on A -> the route in the last of the other kernels.
    pub cni_to_all: Samples,
    /// CNI ADD starts -> its block affinity confirmed in etcd (the plugin's IPAM share).
    pub cni_to_confirm: Samples,
    /// Affinity confirmed -> route in B's kernel, in the CNI samples (the agents' share).
    pub cni_confirm_to_b: Samples,
    /// The CNI ADD call itself (process start, IPAM, veth, routes).
    pub cni_duration: Samples,
    /// In-process IPAM claim starts on A -> route in B's kernel.
    pub claim_to_b: Samples,
    /// Affinity-confirmed notification on A -> route in B's kernel.
    pub confirm_to_b: Samples,
    /// Affinity-confirmed notification on A -> route in the last of the other kernels.
    pub confirm_to_all: Samples,
    /// The blackhole in A's kernel (programmed by A's agent) -> route in B's kernel;
    /// negative when B had it first.
    pub a_to_b: Samples,
    /// A route the agent owns deleted on B -> back.
    pub drift: Samples,
    /// VmRSS, VmHWM, RssAnon (KiB) per calico-node.
    pub rss: Vec<u64>,
    pub hwm: Vec<u64>,
    pub anon: Vec<u64>,
}

/// The lab, in drop order: client threads, monitors, pod namespaces, then the cluster.
struct OursLab {
    ipam: IpamClient,
    watcher: AffinityWatcher,
    monitors: Vec<RouteMonitor>,
    pods: Vec<Netns>,
    cni: CniBin,
    cluster: Cluster,
    n: usize,
}

/// When a block showed up: confirmed in etcd, in A's kernel, in B's, in the last kernel.
struct Arrival {
    confirmed: Instant,
    at_a: Instant,
    at_b: Instant,
    at_all: Instant,
}

/// Builds an `n`-node calico-rs mesh and measures it.
pub fn run(n: usize, sizes: &Sizes) -> Result<OursFigures> {
    let cluster = Cluster::start(
        LabSpec::nodes(n)
            .env("CALICO_IPV4POOL_CIDR", POOL)
            .env("CALICO_IPV4POOL_BLOCK_SIZE", &BLOCK_SIZE.to_string()),
    )?;
    let monitors = cluster
        .nodes
        .iter()
        .map(|n| RouteMonitor::start(&n.ns))
        .collect::<Result<Vec<_>>>()?;
    let a = &cluster.nodes[0];
    let blocks = u32::try_from(4 * sizes.samples + 10)?;
    let ipam = IpamClient::start(&a.ns, &cluster.etcd_endpoint(), &a.name, blocks)?;
    let watcher = AffinityWatcher::start(&a.ns, &cluster.etcd_endpoint(), &a.name)?;
    let mut lab = OursLab {
        ipam,
        watcher,
        monitors,
        pods: Vec::new(),
        cni: CniBin::calico(&bin("calico")?, &bin("calico-ipam")?)?,
        cluster,
        n,
    };
    let mut f = OursFigures::default();
    // Warm-up: the first block waits until every session is up.
    let (first, _) = lab
        .cni_sample(0, Duration::from_secs(60))
        .with_context(|| format!("the calico-rs mesh did not converge\n{}", lab.logs()))?;
    for i in 1..=sizes.samples {
        let (_, (started, done, t)) = lab.cni_sample(i, WAIT)?;
        f.cni_duration.push(done - started);
        f.cni_to_b.push_between(started, t.at_b);
        f.cni_to_all.push_between(started, t.at_all);
        f.cni_to_confirm.push_between(started, t.confirmed);
        f.cni_confirm_to_b.push_between(t.confirmed, t.at_b);
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 1..=sizes.samples {
        let (started, t) = lab.claim_sample(i)?;
        f.claim_to_b.push_between(started, t.at_b);
        f.confirm_to_b.push_between(t.confirmed, t.at_b);
        f.confirm_to_all.push_between(t.confirmed, t.at_all);
        f.a_to_b.push_between(t.at_a, t.at_b);
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.drift(first, sizes.drift_samples, &mut f.drift)?;
    for node in &lab.cluster.nodes {
        for m in memory_of(&node.ns, "calico-node") {
            f.rss.push(m.rss);
            f.hwm.push(m.hwm);
            f.anon.push(m.anon);
        }
    }
    if lab.monitors.iter().any(|m| m.lost() > 0) {
        eprintln!("warning: a route monitor lost notifications in the calico-rs lab");
    }
    if sizes.logs > 0 {
        let nodes = &lab.cluster.nodes;
        for node in [&nodes[0], &nodes[nodes.len() - 1]] {
            eprintln!("--- {} ---\n{}", node.name, node.agent_log(sizes.logs));
        }
    }
    Ok(f)
}

impl OursLab {
    fn a_ip(&self) -> Result<Ipv4Addr> {
        Ok(self.cluster.nodes[0].ip().parse()?)
    }

    fn logs(&self) -> String {
        self.cluster.logs(15)
    }

    /// Creates a pod on A through the CNI plugin (claiming a new /31 block), times the
    /// block's arrival everywhere, then fills the block with a second pod so the next
    /// sample claims a new one. Returns the block and (ADD start, ADD end, arrivals).
    fn cni_sample(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Result<(Ipv4Net, (Instant, Instant, Arrival))> {
        let pod = Netns::create(&format!("b{}p{i}", self.n))?;
        let filler = Netns::create(&format!("b{}f{i}", self.n))?;
        let conf = self.cluster.cni_conf(0);
        let id = format!("bench-{}-{i}-{}", self.n, std::process::id());
        self.monitors.iter_mut().for_each(RouteMonitor::clear);
        let started = Instant::now();
        let ip = add_pod(&self.cluster.nodes[0].ns, &self.cni, &conf, &pod, &id)?;
        let done = Instant::now();
        self.pods.push(pod);
        let block = Ipv4Net::new(ip, BLOCK_SIZE)?.trunc();
        let arrival = self.arrival(block, timeout)?;
        let node = &self.cluster.nodes[0].ns;
        let second = add_pod(node, &self.cni, &conf, &filler, &format!("{id}-fill"))?;
        self.pods.push(filler);
        if !block.contains(&second) {
            eprintln!("warning: filler pod {second} is outside block {block}");
        }
        Ok((block, (started, done, arrival)))
    }

    /// Claims a block for A in-process (the CNI plugin's IPAM code, no plugin process) and
    /// times its arrival everywhere.
    fn claim_sample(&mut self, i: usize) -> Result<(Instant, Arrival)> {
        self.monitors.iter_mut().for_each(RouteMonitor::clear);
        let (started, _, block) = self
            .ipam
            .claim(&format!("bench-claim-{}-{i}", self.n))
            .map_err(|e| anyhow!(e))?;
        let block = v4(block).context("an IPv6 block")?;
        Ok((started, self.arrival(block, WAIT)?))
    }

    /// Waits for `block`'s confirmation in etcd, its blackhole on A and its route via A on
    /// every other node.
    fn arrival(&mut self, block: Ipv4Net, timeout: Duration) -> Result<Arrival> {
        let a_ip = self.a_ip()?;
        let confirmed = self
            .watcher
            .wait(block, timeout)
            .with_context(|| format!("{block} was never seen confirmed in etcd"))?;
        let at_a = self.monitors[0]
            .wait(timeout, |e| e.added && e.blackhole && e.dst == block)
            .with_context(|| format!("no blackhole for {block} on A\n{}", self.logs()))?
            .at;
        let mut arrivals = Vec::new();
        for k in 1..self.monitors.len() {
            let want = |e: &RouteEvent| e.added && e.dst == block && e.gateway == Some(a_ip);
            match self.monitors[k].wait(timeout, want) {
                Some(e) => arrivals.push(e.at),
                None => bail!(
                    "{block} never reached node{}; it has {:#?}\n{}",
                    k + 1,
                    self.cluster.nodes[k].routes(),
                    self.logs()
                ),
            }
        }
        Ok(Arrival {
            confirmed,
            at_a,
            at_b: arrivals.last().copied().unwrap_or(at_a),
            at_all: arrivals.iter().max().copied().unwrap_or(at_a),
        })
    }

    /// Deletes B's route to A's block `block` by hand and times its return.
    fn drift(&mut self, block: Ipv4Net, samples: usize, out: &mut Samples) -> Result<()> {
        let b = self.cluster.nodes.len() - 1;
        for _ in 0..samples {
            self.monitors[b].clear();
            self.cluster.nodes[b]
                .ns
                .ip(&["route", "del", &block.to_string(), "proto", "bird"])?;
            let Some(gone) = self.monitors[b].wait(WAIT, |e| !e.added && e.dst == block) else {
                bail!("deleting {block} on node{} was not seen", b + 1);
            };
            match self.monitors[b].wait(WAIT, |e| e.added && e.dst == block) {
                Some(back) => out.push_between(gone.at, back.at),
                None => bail!(
                    "calico-node never put {block} back on node{}\n{}",
                    b + 1,
                    self.cluster.nodes[b].agent_log(40)
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
