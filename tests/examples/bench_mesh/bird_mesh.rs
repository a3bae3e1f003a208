//! The reference: a full iBGP mesh of BIRD 2 daemons configured the way Calico configures
//! BIRD (confd's bird.cfg, translated to BIRD 2 syntax): the kernel protocol learns alien
//! routes (`learn`) and scans every 2 s, every node peers with every other in AS 64512
//! (one direction active, as Calico's mesh), pool routes are exported to peers and learned
//! routes installed into the kernel (`proto bird`). Same lab as calico-rs: node namespaces
//! on one bridge, built by [`Cluster`] with no agent started.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use lab::cluster::{Cluster, LabSpec};
use lab::routers::Bird;

use crate::monitor::RouteMonitor;
use crate::stats::{Samples, memory_of};
use crate::{AS, POOL, Sizes, WAIT};

/// The kernel protocol's scan time, as Calico sets it.
const SCAN: Duration = Duration::from_secs(2);

/// Calico's bird.cfg for node `me` among `all` node addresses, in BIRD 2 syntax.
pub fn calico_bird_config(me: &str, all: &[String]) -> String {
    let mut conf = format!(
        r#"log stderr {{ warning, error, fatal }};
router id {me};

filter calico_export_to_bgp_peers {{
  if ( net ~ [ {POOL}+ ] ) then accept;
  reject;
}}

filter calico_kernel_programming {{
  if ( source = RTS_BGP ) then accept;
  reject;
}}

protocol kernel {{
  learn;          # Learn all alien routes from the kernel
  persist;        # Don't remove routes on bird shutdown
  scan time 2;    # Scan kernel routing table every 2 seconds
  graceful restart;
  merge paths on;
  ipv4 {{ import all; export filter calico_kernel_programming; }};
}}

protocol device {{ scan time 2; }}

protocol direct {{
  ipv4;
  interface -"cali*", -"kube-ipvs*", "*";
}}

template bgp bgp_template {{
  description "Connection to BGP peer";
  local {me} as {AS};
  multihop;
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5, 30;
  ipv4 {{
    import all;
    export filter calico_export_to_bgp_peers;
    gateway recursive;
    add paths on;
  }};
}}
"#
    );
    for peer in all.iter().filter(|p| *p != me) {
        let name = format!("Mesh_{}", peer.replace('.', "_"));
        // One direction only, as Calico's mesh: the lower address waits for the higher.
        let passive = if ip_key(peer) > ip_key(me) {
            "  passive on;\n"
        } else {
            ""
        };
        conf.push_str(&format!(
            "protocol bgp {name} from bgp_template {{\n  neighbor {peer} as {AS};\n{passive}}}\n"
        ));
    }
    conf
}

fn ip_key(ip: &str) -> u32 {
    ip.parse::<std::net::Ipv4Addr>().map_or(0, u32::from)
}

/// What the BIRD mesh measured at one size.
#[derive(Debug, Default)]
pub struct BirdFigures {
    /// `ip route add` on A starts -> route in B's kernel.
    pub cmd_to_b: Samples,
    /// Route in A's kernel -> route in B's kernel.
    pub a_to_b: Samples,
    /// Route in A's kernel -> route in the last of the other nodes' kernels.
    pub a_to_all: Samples,
    /// A learned route deleted on B -> back.
    pub drift: Samples,
    /// VmRSS, VmHWM, RssAnon (KiB) per daemon.
    pub rss: Vec<u64>,
    pub hwm: Vec<u64>,
    pub anon: Vec<u64>,
}

/// The BIRD lab: monitors drop first, then the daemons, then the namespaces.
struct BirdLab {
    monitors: Vec<RouteMonitor>,
    birds: Vec<Bird>,
    cluster: Cluster,
}

/// The `i`-th benchmark prefix of the BIRD side: `10.244.128.0/31` on.
fn prefix(i: usize) -> Result<Ipv4Net> {
    let base = u32::from(std::net::Ipv4Addr::new(10, 244, 128, 0));
    let i = u32::try_from(i)?;
    Ok(Ipv4Net::new((base + 2 * i).into(), 31)?)
}

/// Builds an `n`-node BIRD mesh and measures it.
pub fn run(n: usize, sizes: &Sizes) -> Result<BirdFigures> {
    let cluster = Cluster::start(LabSpec {
        start_agents: false,
        ..LabSpec::nodes(n)
    })?;
    cluster.pin_neighbours()?;
    let ips: Vec<String> = cluster.nodes.iter().map(|n| n.ip().to_string()).collect();
    let mut birds = Vec::new();
    for node in &cluster.nodes {
        let dir = cluster.path().join(&node.name).join("bird");
        birds.push(Bird::start(
            &node.ns,
            &dir,
            &calico_bird_config(node.ip(), &ips),
        )?);
    }
    let monitors = cluster
        .nodes
        .iter()
        .map(|n| RouteMonitor::start(&n.ns))
        .collect::<Result<Vec<_>>>()?;
    let mut lab = BirdLab {
        monitors,
        birds,
        cluster,
    };
    let mut figures = BirdFigures::default();
    // Warm-up: the first route waits until every session is up.
    lab.sample(0, Duration::from_secs(60), None)
        .context("the BIRD mesh did not converge")?;
    for i in 1..=sizes.samples {
        lab.sample(i, WAIT, Some(&mut figures))?;
    }
    lab.drift(prefix(0)?, sizes.bird_drift_samples, &mut figures.drift)?;
    for node in &lab.cluster.nodes {
        for m in memory_of(&node.ns, "bird") {
            figures.rss.push(m.rss);
            figures.hwm.push(m.hwm);
            figures.anon.push(m.anon);
        }
    }
    if lab.monitors.iter().any(|m| m.lost() > 0) {
        eprintln!("warning: a route monitor lost notifications in the BIRD lab");
    }
    Ok(figures)
}

impl BirdLab {
    /// Adds benchmark prefix `i` on node A and times its arrival everywhere.
    fn sample(
        &mut self,
        i: usize,
        timeout: Duration,
        figures: Option<&mut BirdFigures>,
    ) -> Result<()> {
        let net = prefix(i)?;
        let a_ip = self.cluster.nodes[0].ip().parse::<std::net::Ipv4Addr>()?;
        self.monitors.iter_mut().for_each(RouteMonitor::clear);
        let started = Instant::now();
        self.cluster.nodes[0].ns.ip(&[
            "route",
            "add",
            "blackhole",
            &net.to_string(),
            "proto",
            "static",
        ])?;
        let at_a = self.monitors[0]
            .wait(timeout, |e| e.added && e.dst == net)
            .context("the blackhole never showed on A")?
            .at;
        let mut arrivals = Vec::new();
        for (k, m) in self.monitors.iter_mut().enumerate().skip(1) {
            match m.wait(timeout, |e| {
                e.added && e.dst == net && e.gateway == Some(a_ip)
            }) {
                Some(e) => arrivals.push(e.at),
                None => bail!(
                    "{net} never reached node{} (BIRD log: {})",
                    k + 1,
                    self.birds[k].log_tail(10)
                ),
            }
        }
        if let Some(f) = figures {
            let last = arrivals.iter().max().copied().unwrap_or(at_a);
            let b = arrivals.last().copied().unwrap_or(at_a);
            f.cmd_to_b.push_between(started, b);
            f.a_to_b.push_between(at_a, b);
            f.a_to_all.push_between(at_a, last);
        }
        Ok(())
    }

    /// Deletes the route to `net` that BIRD installed on the last node and times its return.
    fn drift(&mut self, net: Ipv4Net, samples: usize, out: &mut Samples) -> Result<()> {
        let b = self.cluster.nodes.len() - 1;
        for i in 0..samples {
            // BIRD repairs at its next scan: spread the deletions over the 2 s scan period
            // (each would otherwise come right after the scan that repaired the last one).
            let phase = SCAN.as_millis() as u64 * i as u64 / samples as u64;
            std::thread::sleep(Duration::from_millis(phase));
            self.monitors[b].clear();
            self.cluster.nodes[b]
                .ns
                .ip(&["route", "del", &net.to_string(), "proto", "bird"])?;
            let Some(gone) = self.monitors[b].wait(WAIT, |e| !e.added && e.dst == net) else {
                bail!("deleting {net} on node{} was not seen", b + 1);
            };
            match self.monitors[b].wait(Duration::from_secs(10), |e| e.added && e.dst == net) {
                Some(back) => out.push_between(gone.at, back.at),
                None => bail!("BIRD never put {net} back on node{}", b + 1),
            }
        }
        Ok(())
    }
}
