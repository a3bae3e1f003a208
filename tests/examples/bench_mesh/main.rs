//! Mesh benchmark (issue 5, "Benchmark (printed, not asserted)"): calico-rs against a mesh
//! of BIRD 2 daemons configured the way Calico configures BIRD, side by side in one run,
//! in the same kind of lab (node namespaces on one bridge, etcd in `ctl`).
//!
//! ```text
//! cargo build --release --workspace --bins
//! sudo cargo run --release -p lab --example bench_mesh [-- --sizes 3,10,25 --samples 30]
//! ```
//!
//! Every latency is taken from kernel route notifications (rtnetlink multicast read by a
//! thread inside each node's namespace), never by polling. Nothing is asserted; the figures
//! are printed as a Markdown table with the machine they ran on. Each lab (namespaces,
//! daemons, etcd) is removed when its size is done, on error too.

mod bird_mesh;
mod etcd_watch;
mod ipam_client;
mod monitor;
mod ours;
mod stats;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lab::netns::is_root;

use stats::{Row, machine, memory_cell, memory_ratio, table};

/// The IP pool of both sides.
pub const POOL: &str = "10.244.0.0/16";
/// /31 blocks: every claim (two addresses) is a new block, hence a new route.
pub const BLOCK_SIZE: u8 = 31;
/// Calico's default AS.
pub const AS: u32 = 64512;
/// How long one route may take before a sample counts as broken (not a speed limit).
pub const WAIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub nodes: Vec<usize>,
    /// Propagation samples per size and kind.
    pub samples: usize,
    pub drift_samples: usize,
    /// BIRD repairs drift at its next scan (~1 s each), so fewer.
    pub bird_drift_samples: usize,
    /// Run with debug binaries rather than refuse.
    pub allow_debug: bool,
    /// Print this many last lines of A's and B's calico-node logs after each size.
    pub logs: usize,
}

fn parse_args() -> Result<Sizes> {
    let mut s = Sizes {
        nodes: vec![3, 10, 25],
        samples: 30,
        drift_samples: 30,
        bird_drift_samples: 10,
        allow_debug: false,
        logs: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                s.nodes = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "--samples" => s.samples = value()?.parse()?,
            "--drift-samples" => s.drift_samples = value()?.parse()?,
            "--bird-drift-samples" => s.bird_drift_samples = value()?.parse()?,
            "--allow-debug" => s.allow_debug = true,
            "--logs" => s.logs = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; use --sizes 3,10,25 --samples N --drift-samples N \
                 --bird-drift-samples N --allow-debug --logs LINES"
            ),
        }
    }
    if s.nodes.iter().any(|n| *n < 2) || s.samples == 0 {
        bail!("every size needs at least 2 nodes, and at least one sample");
    }
    Ok(s)
}

fn rows_for(n: usize, ours: &ours::OursFigures, bird: &bird_mesh::BirdFigures) -> Vec<Row> {
    let m = |s: &str| format!("{s}, {n} nodes");
    let lat = |metric: &str, o: &stats::Samples, b: Option<&stats::Samples>| {
        Row::latency(&m(metric), o, b)
    };
    vec![
        lat(
            "1a propagation: notification on A -> route in B's kernel",
            &ours.confirm_to_b,
            Some(&bird.a_to_b),
        ),
        lat(
            "1b propagation: notification on A -> route in all other kernels",
            &ours.confirm_to_all,
            Some(&bird.a_to_all),
        ),
        lat(
            "1c propagation: trigger on A -> route in B's kernel",
            &ours.claim_to_b,
            Some(&bird.cmd_to_b),
        ),
        lat(
            "1d propagation: blackhole in A's kernel -> route in B's kernel",
            &ours.a_to_b,
            Some(&bird.a_to_b),
        ),
        lat(
            "2a end to end: CNI ADD on A (new block) -> route in B's kernel",
            &ours.cni_to_b,
            None,
        ),
        lat(
            "2b end to end: CNI ADD on A -> route in all other kernels",
            &ours.cni_to_all,
            None,
        ),
        lat(
            "2c  of which CNI ADD start -> block confirmed in etcd",
            &ours.cni_to_confirm,
            None,
        ),
        lat(
            "2d  of which block confirmed -> route in B's kernel",
            &ours.cni_confirm_to_b,
            None,
        ),
        lat("2e the CNI ADD call itself", &ours.cni_duration, None),
        lat(
            "3 drift repair: route deleted on B -> back",
            &ours.drift,
            Some(&bird.drift),
        ),
        Row {
            metric: m("4a VmRSS per daemon, median (max)"),
            ours: memory_cell(&ours.rss),
            bird: memory_cell(&bird.rss),
            ratio: memory_ratio(&ours.rss, &bird.rss),
        },
        Row {
            metric: m("4b VmHWM per daemon, median (max)"),
            ours: memory_cell(&ours.hwm),
            bird: memory_cell(&bird.hwm),
            ratio: memory_ratio(&ours.hwm, &bird.hwm),
        },
        Row {
            metric: m("4c RssAnon (private) per daemon, median (max)"),
            ours: memory_cell(&ours.anon),
            bird: memory_cell(&bird.anon),
            ratio: memory_ratio(&ours.anon, &bird.anon),
        },
    ]
}

/// What each row compares, printed under the table.
const LEGEND: &str = "\
A = node1, B = the last node; every time is a kernel route notification (or an etcd watch \
event) read by a SCHED_FIFO thread in the node's namespace.
1a/1b: ours from the etcd watch event saying A's new /31 block affinity is confirmed (what \
A's calico-node exports on) to the route via A in B's kernel; BIRD from the kernel \
notification of a blackhole added on A (`ip route add blackhole X proto static`, learned \
by BIRD's kernel protocol) to the route via A in B's kernel.
1c: ours from the start of an in-process calico-rs IPAM claim (its etcd transactions); \
BIRD from the start of the `ip route add` command.
1d: from A's own blackhole (for ours programmed by A's calico-node, in parallel with the \
BGP update, so B can get the route first: negative); for BIRD the same as 1a.
2: ours only (BIRD has no IPAM): a CNI ADD through the calico plugin on A that claims a new \
block; 2c + 2d split it at the etcd confirmation.
3: B's route to A's block deleted with `ip route del`, from the deletion notification to \
the re-add; BIRD's deletions are spread over its 2 s scan period.
4: /proc/<pid>/status of every calico-node / bird at the end of the size's run; VmRSS counts \
the file pages of the binary and its libraries (shared by every process running them), RssAnon \
only what the process holds itself.";

fn main() -> Result<()> {
    if !is_root() {
        bail!("the benchmark builds network namespaces: run it as root");
    }
    let sizes = parse_args()?;
    let bins = stats::release_binaries(sizes.allow_debug)?;
    let started = Instant::now();
    let machine = machine();
    let commit = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("machine: {machine}\ncommit: {commit}\nbinaries: {bins}\nsettings: {sizes:?}\n");
    let mut per_size = Vec::new();
    for &n in &sizes.nodes {
        eprintln!(
            "[{:>5.1}s] calico-rs, {n} nodes",
            started.elapsed().as_secs_f64()
        );
        let ours = ours::run(n, &sizes).with_context(|| format!("calico-rs, {n} nodes"))?;
        eprintln!(
            "[{:>5.1}s] BIRD 2, {n} nodes",
            started.elapsed().as_secs_f64()
        );
        let bird = bird_mesh::run(n, &sizes).with_context(|| format!("BIRD, {n} nodes"))?;
        let rows = rows_for(n, &ours, &bird);
        eprintln!("{}", table(&rows));
        per_size.push(rows);
    }
    // One table, each metric's sizes together.
    let mut rows = Vec::new();
    for k in 0..per_size.first().map_or(0, Vec::len) {
        for size in &mut per_size {
            rows.push(std::mem::take(&mut size[k]));
        }
    }
    println!(
        "{}\n{LEGEND}\n\n({:.0} s, load average at the end {})",
        table(&rows),
        started.elapsed().as_secs_f64(),
        stats::load()
    );
    Ok(())
}
