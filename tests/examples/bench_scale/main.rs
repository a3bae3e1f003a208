//! Scale lab (issue 15): real `calico-node` processes, one per node namespace, all on one
//! bridge with real etcd, at sizes a single machine can hold: a full mesh of 100 nodes
//! and 250 nodes behind two route reflectors by default, a BIRD 2 mesh of the mesh sizes
//! beside them in the same run. Printed, not asserted.
//!
//! ```text
//! cargo build --release --workspace --bins
//! sudo cargo run --release -p lab --example bench_scale [-- --mesh 100 --reflectors 250 --samples 20]
//! ```
//!
//! Per size: the cold start (every agent started at once, each node with one block already
//! claimed, until every node's kernel has every other node's block), the propagation of a
//! newly claimed block to each other node's kernel (kernel route notifications, p50/p99),
//! the CPU time all agents together spend per block claim (their idle rate subtracted), the
//! bytes etcd sends to its clients per claim, and each agent's resident memory. Each lab is
//! removed when its size is done, on error too.

#[path = "../bench_mesh/bird_mesh.rs"]
mod bird_mesh;
#[path = "../bench_mesh/etcd_watch.rs"]
mod etcd_watch;
#[path = "../bench_mesh/ipam_client.rs"]
mod ipam_client;
#[path = "../bench_mesh/monitor.rs"]
#[allow(dead_code)] // what the mesh benchmark reads of each event
mod monitor;
mod ours;
#[path = "../bench_mesh/stats.rs"]
#[allow(dead_code)] // the mesh benchmark's table, not used here
mod stats;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lab::netns::is_root;

/// The IP pool of both sides (as the mesh benchmark).
pub const POOL: &str = "10.244.0.0/16";
/// /31 blocks: every claim (two addresses) is a new block, hence a new route.
pub const BLOCK_SIZE: u8 = 31;
/// Calico's default AS.
pub const AS: u32 = 64512;
/// How long one route may take before a sample counts as broken (not a speed limit).
pub const WAIT: Duration = Duration::from_secs(30);

/// How the nodes peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Calico's node-to-node mesh.
    Mesh,
    /// The mesh off, nodes 1 and 2 route reflectors (one cluster ID), everyone peering
    /// with them (Calico's documented setup).
    Reflectors,
}

/// What to run. `samples` and `bird_drift_samples` are what the BIRD side reads.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub mesh: Vec<usize>,
    pub reflectors: Vec<usize>,
    pub samples: usize,
    pub bird_drift_samples: usize,
    /// Run the BIRD mesh beside each mesh size.
    pub bird: bool,
    pub allow_debug: bool,
    /// Print this many last lines of the calico-node log of the node that converged last.
    pub logs: usize,
}

fn parse_args() -> Result<Sizes> {
    let mut s = Sizes {
        mesh: vec![100],
        reflectors: vec![250],
        samples: 20,
        bird_drift_samples: 0,
        bird: true,
        allow_debug: false,
        logs: 0,
    };
    let list = |v: String| -> Result<Vec<usize>> {
        if v.trim().is_empty() {
            return Ok(Vec::new());
        }
        Ok(v.split(',')
            .map(|n| n.trim().parse::<usize>())
            .collect::<Result<_, _>>()?)
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--mesh" => s.mesh = list(value()?)?,
            "--reflectors" => s.reflectors = list(value()?)?,
            "--samples" => s.samples = value()?.parse()?,
            "--no-bird" => s.bird = false,
            "--allow-debug" => s.allow_debug = true,
            "--logs" => s.logs = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; use --mesh N,.. --reflectors N,.. --samples N \
                 --no-bird --allow-debug --logs LINES"
            ),
        }
    }
    if s.mesh
        .iter()
        .chain(&s.reflectors)
        .any(|n| *n < 3 || *n > 250)
        || s.samples == 0
    {
        bail!("every size needs 3 to 250 nodes (one /24), and at least one sample");
    }
    Ok(s)
}

/// `p50 / p99 ms n=<samples>` of latency samples.
fn p50_p99(s: &stats::Samples) -> String {
    match (s.quantile(0.5), s.quantile(0.99)) {
        (Some(m), Some(p)) => format!("{} / {} ms", stats::ms(m), stats::ms(p)),
        _ => "-".to_string(),
    }
}

fn main() -> Result<()> {
    if !is_root() {
        bail!("the scale lab builds network namespaces: run it as root");
    }
    let sizes = parse_args()?;
    let bins = stats::release_binaries(sizes.allow_debug)?;
    let started = Instant::now();
    println!(
        "machine: {}\nbinaries: {bins}\nsettings: {sizes:?}\n",
        stats::machine()
    );
    let runs = sizes
        .mesh
        .iter()
        .map(|n| (*n, Topology::Mesh))
        .chain(sizes.reflectors.iter().map(|n| (*n, Topology::Reflectors)));
    let mut lines = vec![
        "| nodes | peering | cold start: all agents started -> every node has every block (p50 node / last) | a new block -> each other kernel, p50 / p99 | -> the last kernel, p50 / p99 | CPU of all agents per block claim | etcd bytes sent per claim | RSS per agent, median (max) |".to_string(),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for (n, topology) in runs {
        eprintln!(
            "[{:>6.1}s] calico-rs, {n} nodes, {topology:?}",
            started.elapsed().as_secs_f64()
        );
        let f = ours::run(n, topology, &sizes)
            .with_context(|| format!("calico-rs, {n} nodes, {topology:?}"))?;
        let peering = match topology {
            Topology::Mesh => "calico-rs full mesh",
            Topology::Reflectors => "calico-rs, 2 route reflectors",
        };
        let line = format!(
            "| {n} | {peering} | {} / {} | {} | {} | {:.1} ms | {} | {} |",
            stats::ms(f.cold_start_median.as_secs_f64() * 1000.0),
            stats::ms(f.cold_start.as_secs_f64() * 1000.0),
            p50_p99(&f.to_each),
            p50_p99(&f.to_last),
            f.cpu_ms_per_claim,
            f.etcd_bytes_per_claim
                .map_or_else(|| "-".to_string(), |b| format!("{b:.0} B")),
            stats::memory_cell(&f.rss),
        );
        eprintln!("{line}");
        lines.push(line);
        if sizes.bird && topology == Topology::Mesh {
            eprintln!(
                "[{:>6.1}s] BIRD 2, {n} nodes",
                started.elapsed().as_secs_f64()
            );
            let b = bird_mesh::run(n, &sizes).with_context(|| format!("BIRD, {n} nodes"))?;
            let line = format!(
                "| {n} | BIRD 2 full mesh | - | {} (B only) | {} | - | - | {} |",
                p50_p99(&b.a_to_b),
                p50_p99(&b.a_to_all),
                stats::memory_cell(&b.rss),
            );
            eprintln!("{line}");
            lines.push(line);
        }
    }
    println!(
        "{}\n\n{LEGEND}\n\n({:.0} s, load average at the end {})",
        lines.join("\n"),
        started.elapsed().as_secs_f64(),
        stats::load()
    );
    Ok(())
}

/// What each column is, printed under the table.
const LEGEND: &str = "\
Cold start: etcd holds the pool, the peering configuration and one /31 block per node; every \
calico-node is started at once; the time until each node's kernel has a route to every other \
node's block (median over nodes, and the last node).
A new block: a block claimed for a node (in-process calico-rs IPAM from the control \
namespace, nodes taken in turn), from the etcd watch event saying its affinity is confirmed \
(what the owner's calico-node announces on) to the route via that node in each other \
node's kernel (kernel route notifications read in each namespace); BIRD: from the kernel \
notification of a blackhole added on A to the route in B's kernel / in the last kernel.
CPU: utime + stime of every calico-node over the claims, less their idle rate over as long, \
per claim. etcd bytes: etcd_network_client_grpc_sent_bytes_total over the claims, less its \
idle rate, per claim (what the watches of every agent receive).
RSS: VmRSS of every calico-node (bird) at the end.";
