//! Kernel resync benchmark (issue 15, item 5): calico-node's route reconciler
//! (`RouteTable` over rtnetlink) in a network namespace of its own, against iproute2 doing
//! the same kernel work in the same run. Printed, not asserted.
//!
//! ```text
//! cargo build --release -p lab --example bench_resync
//! sudo target/release/examples/bench_resync [-- --routes 65536 --new 10000 --reps 5]
//! ```
//!
//! - program: the first pass over `--routes` desired routes (`<ip>/32 via 10.255.0.2 dev
//!   bench0 proto bird`, over a veth pair inside the namespace), one netlink request
//!   each; iproute2: `ip -batch` adding as many.
//! - resync: a pass that dumps the table and finds nothing to change; iproute2: `ip route
//!   show proto bird` listing them.
//! - new: `--new` more desired routes, programmed by a pass that trusts its last dump (as
//!   a desired-state change does); iproute2: `ip -batch` adding as many.
//! - the kernel's share: a raw netlink dump of the same table that reads nothing but the
//!   message headers, the floor under any resync.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent::dataplane::netlink::NetlinkKernel;
use agent::dataplane::ownership::OwnershipPolicy;
use agent::dataplane::route_table::{RouteReport, RouteTable};
use agent::dataplane::types::{PROTO_BIRD, Route, RouteTarget};
use anyhow::{Context, Result, anyhow, bail};
use ipnet::{IpNet, Ipv4Net};
use lab::Netns;
use lab::netns::is_root;
use nix::sched::{CloneFlags, setns};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
const DEVICE: &str = "bench0";

struct Args {
    routes: u32,
    new: u32,
    reps: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        routes: 65_536,
        new: 10_000,
        reps: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let mut value = || args.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--routes" => a.routes = value()?.parse()?,
            "--new" => a.new = value()?.parse()?,
            "--reps" => a.reps = value()?.parse()?,
            other => bail!("unknown argument {other}; use --routes N --new N --reps N"),
        }
    }
    if a.routes == 0 || a.reps == 0 || u64::from(a.routes) + u64::from(a.new) > 1 << 23 {
        bail!("--routes and --reps at least 1, --routes + --new at most 2^23 (10.0.0.0/9)");
    }
    Ok(a)
}

/// The `i`-th /32 in 10.0.0.0/9 (clear of the device's 10.255.0.0/16).
fn dst(i: u32) -> IpNet {
    IpNet::V4(Ipv4Net::from(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i,
    )))
}

fn desired(range: std::ops::Range<u32>) -> BTreeMap<IpNet, Route> {
    range
        .map(|i| {
            let dst = dst(i);
            let route = Route {
                dst,
                target: RouteTarget::Gateway {
                    via: GATEWAY.into(),
                    dev: Some(DEVICE.into()),
                    onlink: false,
                },
                protocol: PROTO_BIRD,
            };
            (dst, route)
        })
        .collect()
}

/// One reconcile pass (`resync`: reading the table first).
async fn pass(
    table: &mut RouteTable,
    kernel: &NetlinkKernel,
    resync: bool,
) -> Result<RouteReport, String> {
    table
        .reconcile_with(kernel, Instant::now(), resync)
        .await
        .map_err(|e| e.to_string())
}

/// The reconciler's figures, measured on a thread inside the namespace.
struct Ours {
    program: Duration,
    resync: Vec<Duration>,
    new: Duration,
}

fn run_ours(ns: &Netns, a: &Args) -> Result<Ours> {
    let file = File::open(ns.path())?;
    let (routes, new, reps) = (a.routes, a.new, a.reps);
    let thread = std::thread::spawn(move || -> Result<Ours, String> {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        runtime.block_on(async move {
            let kernel = NetlinkKernel::connect().map_err(|e| e.to_string())?;
            let mut table = RouteTable::new(OwnershipPolicy::default());
            table.set_desired(desired(0..routes));
            let t = Instant::now();
            let report = pass(&mut table, &kernel, true).await?;
            let program = t.elapsed();
            if report.added != routes as usize || !report.failures.is_empty() {
                return Err(format!(
                    "programmed {} of {routes}: {:?}",
                    report.added,
                    report.failures.first()
                ));
            }
            let mut resync = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                let report = pass(&mut table, &kernel, true).await?;
                resync.push(t.elapsed());
                if report.added + report.removed != 0 {
                    return Err(format!("a resync changed something: {report:?}"));
                }
            }
            table.set_desired(desired(0..routes + new));
            let t = Instant::now();
            let report = pass(&mut table, &kernel, false).await?;
            let new_took = t.elapsed();
            if report.added != new as usize {
                return Err(format!("added {} of {new} new routes", report.added));
            }
            // Leave the namespace's table as the iproute2 side expects to find it: empty.
            table.set_desired(BTreeMap::new());
            pass(&mut table, &kernel, true).await?;
            Ok(Ours {
                program,
                resync,
                new: new_took,
            })
        })
    });
    thread
        .join()
        .map_err(|_| anyhow!("the benchmark thread panicked"))?
        .map_err(|e| anyhow!(e))
}

/// iproute2 adding routes `range` in one `ip -batch`.
fn ip_batch_add(ns: &Netns, range: std::ops::Range<u32>) -> Result<Duration> {
    let batch: String = range
        .map(|i| {
            format!(
                "route add {} via {GATEWAY} dev {DEVICE} proto bird\n",
                dst(i)
            )
        })
        .collect();
    let t = Instant::now();
    ns.ip_batch(&batch)?;
    Ok(t.elapsed())
}

fn ip_dump(ns: &Netns) -> Result<(Duration, usize)> {
    let t = Instant::now();
    let out = ns
        .command("ip")
        .args(["route", "show", "proto", "bird"])
        .stdin(Stdio::null())
        .output()?;
    let took = t.elapsed();
    Ok((took, out.stdout.iter().filter(|b| **b == b'\n').count()))
}

/// The kernel's share of a resync: raw route dumps on a socket inside the namespace,
/// reading nothing but each message's header until the dump is done.
fn raw_dumps(ns: &Netns, reps: usize) -> Result<Vec<Duration>> {
    let file = File::open(ns.path())?;
    let thread = std::thread::spawn(move || -> Result<Vec<Duration>> {
        setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
        (0..reps).map(|rep| raw_dump(rep as u32 + 1)).collect()
    });
    thread
        .join()
        .map_err(|_| anyhow!("the raw dump thread panicked"))?
}

fn raw_dump(sequence: u32) -> Result<Duration> {
    use lab::netlink::{HEADER_LEN, messages, route_socket};
    use nix::sys::socket::{MsgFlags, recv, send};
    use std::os::fd::AsRawFd;
    const RTM_GETROUTE: u16 = 26;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    const NLMSG_DONE: u16 = 3;
    const NLMSG_ERROR: u16 = 2;
    let fd = route_socket(0, |_| Ok(()))?;
    // nlmsghdr (16 bytes) and rtmsg (12 bytes: family AF_INET, the rest zero).
    let mut request = Vec::with_capacity(HEADER_LEN + 12);
    request.extend(((HEADER_LEN + 12) as u32).to_ne_bytes());
    request.extend(RTM_GETROUTE.to_ne_bytes());
    request.extend(NLM_F_REQUEST_DUMP.to_ne_bytes());
    request.extend(sequence.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    request.extend([2u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut buffer = vec![0u8; 64 * 1024];
    let t = Instant::now();
    send(fd.as_raw_fd(), &request, MsgFlags::empty())?;
    loop {
        let n = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
        for message in messages(&buffer[..n]) {
            match message?.kind {
                NLMSG_DONE => return Ok(t.elapsed()),
                NLMSG_ERROR => bail!("the raw route dump failed"),
                _ => {}
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    if !is_root() {
        bail!("the benchmark builds a network namespace: run it as root");
    }
    let a = parse_args()?;
    let ns = Netns::create("resync")?;
    // A veth pair inside the namespace (this kernel may have no dummy driver).
    ns.ip(&[
        "link", "add", DEVICE, "type", "veth", "peer", "name", "bench1",
    ])?;
    ns.ip(&["addr", "add", "10.255.0.1/16", "dev", DEVICE])?;
    ns.ip(&["link", "set", DEVICE, "up"])?;
    ns.ip(&["link", "set", "bench1", "up"])?;

    let ours = run_ours(&ns, &a)?;
    let program_ip = ip_batch_add(&ns, 0..a.routes)?;
    let mut dumps = Vec::new();
    for _ in 0..a.reps {
        let (took, lines) = ip_dump(&ns)?;
        if lines != a.routes as usize {
            bail!("ip route show listed {lines} routes, not {}", a.routes);
        }
        dumps.push(took);
    }
    let raw = median(raw_dumps(&ns, a.reps)?);
    let resync = median(ours.resync);
    let new_ip = ip_batch_add(&ns, a.routes..a.routes + a.new)?;

    println!(
        "routes: {}, new: {}, reps: {} (medians)\n",
        a.routes, a.new, a.reps
    );
    println!("| step | calico-node's reconciler | iproute2 | ratio |");
    println!("|---|---|---|---|");
    let row = |step: &str, o: Duration, r: Duration| {
        println!(
            "| {step} | {} | {} | {:.2}x |",
            ms(o),
            ms(r),
            o.as_secs_f64() / r.as_secs_f64()
        );
    };
    row(
        &format!("program {} routes", a.routes),
        ours.program,
        program_ip,
    );
    row(
        &format!(
            "resync {} routes, nothing to change (ours: dump + diff; ip: route show)",
            a.routes
        ),
        resync,
        median(dumps),
    );
    row(&format!("program {} more", a.new), ours.new, new_ip);
    println!(
        "\nthe kernel's share of a resync (a raw dump of the same {} routes, headers read only): {} (the resync is {:.2}x it)",
        a.routes,
        ms(raw),
        resync.as_secs_f64() / raw.as_secs_f64()
    );
    Ok(())
}
