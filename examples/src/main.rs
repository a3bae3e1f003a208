//! The calico-rs demo: a three-node dual-stack cluster in network namespaces on this
//! machine, pods on every node pinging each other over IPv4 and IPv6 along routes the
//! embedded BGP speaker exchanged, the operator's view through `calicoctl` (both BGP
//! tables), a live switch of the IPv4 pool to VXLAN and back by `calicoctl apply -f`, and
//! the top-of-rack case with a real BIRD 2 router peered in both families.
//!
//! Run it with `sudo scripts/demo` (it installs what is missing and builds first).
//! `--keep` leaves the lab running; `scripts/cleanup` removes it.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab::bgp_peers::RouterKind;
use lab::cluster::{Cluster, LabSpec};
use lab::tor::{TOR_IP, TOR_IP6, TOR_PEERING, TOR_PEERING_V6, tor_spec};
use lab::wait_until;

const POOL_CIDR: &str = "10.244.0.0/16";
const POOL_V6_CIDR: &str = "fd00:244::/48";
/// The pools' block sizes (calico-node's defaults).
const BLOCK_PREFIX: u32 = 26;
const BLOCK_PREFIX_V6: u32 = 122;
/// How long a step may take to converge before the demo stops with what is missing.
const WAIT: Duration = Duration::from_secs(30);

fn section(title: &str) {
    println!("\n\x1b[1m==> {title}\x1b[0m");
}

fn show(out: &Output) {
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs calicoctl on `node` and prints the command and its output as a user would see it.
fn calicoctl(c: &Cluster, node: usize, args: &[&str]) -> Result<()> {
    println!("{}$ calicoctl {}", c.nodes[node].name, args.join(" "));
    let out = c.calicoctl(node, args)?;
    show(&out);
    if !out.status.success() {
        bail!("calicoctl {} failed", args.join(" "));
    }
    Ok(())
}

/// `calicoctl apply -f -` with the YAML shown first.
fn apply(c: &Cluster, yaml: &str) -> Result<()> {
    println!("node1$ calicoctl apply -f - <<EOF\n{}EOF", yaml);
    print!("{}", c.apply(yaml)?);
    Ok(())
}

/// Waits until `check` holds, else fails naming what did not converge. Every step waits
/// for the state it is about to show, so nothing is printed half-converged.
fn converge(what: &str, c: &Cluster, check: impl FnMut() -> bool) -> Result<()> {
    if wait_until(WAIT, check) {
        return Ok(());
    }
    bail!("{what}: not reached within {WAIT:?}\n{}", c.logs(30))
}

/// The /26 block holding `ip`, as `ip route` prints it.
fn block_of(ip: Ipv4Addr) -> String {
    let mask = u32::MAX << (32 - BLOCK_PREFIX);
    format!("{}/{BLOCK_PREFIX}", Ipv4Addr::from(u32::from(ip) & mask))
}

/// The /122 block holding `ip`, as `ip -6 route` prints it.
fn block6_of(ip: Ipv6Addr) -> String {
    let mask = u128::MAX << (128 - BLOCK_PREFIX_V6);
    format!(
        "{}/{BLOCK_PREFIX_V6}",
        Ipv6Addr::from(u128::from(ip) & mask)
    )
}

/// Every pod's IPv4 block with the node it lives on.
fn blocks(c: &Cluster) -> BTreeSet<(String, usize)> {
    c.pods.iter().map(|p| (block_of(p.ip), p.node)).collect()
}

/// Every pod's IPv6 block with the node it lives on.
fn blocks6(c: &Cluster) -> BTreeSet<(String, usize)> {
    c.pods
        .iter()
        .filter_map(|p| Some((block6_of(p.ip6?), p.node)))
        .collect()
}

/// True when every block of the other nodes has a route on `node` that contains the text
/// `via(owner)` gives for its owner (e.g. "via 10.0.0.2 dev eth0"), and every block of its
/// own pods a blackhole.
fn routes_converged(c: &Cluster, node: usize, via: impl Fn(usize) -> String) -> bool {
    all_routed(&c.nodes[node].routes(), &blocks(c), node, via)
}

/// [`routes_converged`] for the IPv6 blocks (`via(owner)` e.g. "via fd00::2 dev eth0").
fn routes6_converged(c: &Cluster, node: usize, via: impl Fn(usize) -> String) -> bool {
    all_routed(&c.nodes[node].routes_v6(), &blocks6(c), node, via)
}

fn all_routed(
    routes: &[String],
    blocks: &BTreeSet<(String, usize)>,
    node: usize,
    via: impl Fn(usize) -> String,
) -> bool {
    blocks.iter().all(|(block, owner)| {
        let (prefix, text) = if *owner == node {
            (format!("blackhole {block} "), String::new())
        } else {
            (format!("{block} "), via(*owner))
        };
        routes
            .iter()
            .any(|r| r.starts_with(&prefix) && r.contains(&text))
    })
}

/// `calicoctl node status` on node 1 lists `n` sessions Established (both tables).
fn sessions_established(c: &Cluster, n: usize) -> bool {
    c.calicoctl(0, &["node", "status"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .matches("Established")
                .count()
                == n
        })
        .unwrap_or(false)
}

fn routes(c: &Cluster, node: usize) {
    println!("{}$ ip route", c.nodes[node].name);
    for r in c.nodes[node].routes() {
        println!("{r}");
    }
    println!("{}$ ip -6 route | grep -v fe80::", c.nodes[node].name);
    for r in c.nodes[node].routes_v6() {
        if !r.starts_with("fe80::") {
            println!("{r}");
        }
    }
}

/// Pings between every pair of pods on different nodes, over IPv4 and over IPv6; prints
/// one line per source pod (`v4/v6` per destination).
fn ping_all(c: &Cluster) -> Result<()> {
    let mut failures = Vec::new();
    let mut pairs = 0;
    let word = |ok: bool| if ok { "ok" } else { "FAILED" };
    for a in 0..c.pods.len() {
        let mut line = format!("  {} ->", c.pods[a].name);
        for b in 0..c.pods.len() {
            if c.pods[a].node == c.pods[b].node {
                continue;
            }
            pairs += 1;
            let v4 = wait_until(WAIT, || c.pods_ping(a, b));
            let v6 = wait_until(WAIT, || c.pods_ping6(a, b));
            line.push_str(&format!(" {} {}/{}", c.pods[b].name, word(v4), word(v6)));
            if !v4 {
                failures.push(format!("{} -> {} (IPv4)", c.pods[a].name, c.pods[b].name));
            }
            if !v6 {
                failures.push(format!("{} -> {} (IPv6)", c.pods[a].name, c.pods[b].name));
            }
        }
        println!("{line}");
    }
    if !failures.is_empty() {
        bail!(
            "pods could not ping: {}\n{}",
            failures.join(", "),
            c.logs(30)
        );
    }
    println!("  {pairs}/{pairs} cross-node pod pairs answer ping over IPv4 and IPv6");
    Ok(())
}

fn pool_yaml(vxlan: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv4-ippool\nspec:\n  cidr: {POOL_CIDR}\n  ipipMode: Never\n  vxlanMode: {vxlan}\n  natOutgoing: true\n  nodeSelector: all()\n"
    )
}

fn main() -> Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    if !lab::netns::is_root() {
        bail!("the demo builds network namespaces: run it as root (sudo scripts/demo)");
    }

    section(
        "A 3-node dual-stack cluster: calico-node with its embedded BGP speaker on each, etcd, BGP full mesh in both families",
    );
    let spec = LabSpec::nodes(3)
        .dual_stack()
        .env("CALICO_IPV4POOL_CIDR", POOL_CIDR)
        .env("CALICO_IPV6POOL_CIDR", POOL_V6_CIDR);
    let mut c = Cluster::start(spec).context("starting the lab")?;
    for n in 0..3 {
        for k in 0..2 {
            let name = format!("pod{}{}", n + 1, ['a', 'b'][k]);
            c.add_pod(n, &name)?;
        }
    }
    println!(
        "nodes: {}",
        c.nodes
            .iter()
            .map(|n| format!(
                "{} ({}, {})",
                n.name,
                n.address,
                n.address_v6.as_deref().unwrap_or("-")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("pods (CNI ADD through the calico plugin, addresses from calico-ipam):");
    for p in &c.pods {
        let ip6 = p.ip6.map(|ip| ip.to_string()).unwrap_or_default();
        println!(
            "  {:<6} on {}  {:<14} {ip6}",
            p.name, c.nodes[p.node].name, p.ip
        );
    }

    section("Pods ping each other across nodes");
    ping_all(&c)?;

    section("What an operator sees");
    calicoctl(&c, 0, &["get", "nodes", "-o", "wide"])?;
    calicoctl(&c, 0, &["get", "ippool", "-o", "wide"])?;
    converge(
        "node1's two mesh sessions Established in each family",
        &c,
        || sessions_established(&c, 4),
    )?;
    calicoctl(&c, 0, &["node", "status"])?;
    calicoctl(&c, 0, &["ipam", "show", "--show-blocks"])?;
    let plain = |owner: usize| format!("via {} dev eth0", c.nodes[owner].ip());
    let plain6 = |owner: usize| format!("via {} dev eth0", c.nodes[owner].ip6().unwrap_or("?"));
    converge("node1's routes to every block over BGP", &c, || {
        routes_converged(&c, 0, plain) && routes6_converged(&c, 0, plain6)
    })?;
    routes(&c, 0);

    section("Switch the IPv4 pool to VXLAN, live, with calicoctl apply -f");
    apply(&c, &pool_yaml("Always"))?;
    converge(
        "node1's routes to every block through vxlan.calico",
        &c,
        || routes_converged(&c, 0, |_| "dev vxlan.calico".into()),
    )?;
    calicoctl(&c, 0, &["get", "ippool", "-o", "wide"])?;
    routes(&c, 0);
    ping_all(&c)?;

    section("And back to plain BGP routes");
    apply(&c, &pool_yaml("Never"))?;
    converge("node1's routes back on eth0, vxlan.calico gone", &c, || {
        routes_converged(&c, 0, plain) && !c.nodes[0].has_route("vxlan.calico")
    })?;
    calicoctl(&c, 0, &["get", "ippool", "-o", "wide"])?;
    routes(&c, 0);
    ping_all(&c)?;

    section(
        "Top of rack: mesh off, every node peers with a BIRD 2 router over eBGP, a session per family",
    );
    let spec = tor_spec(&c);
    let (tor, bird) = c.start_tor(RouterKind::Bird, spec)?;
    apply(&c, &format!("{TOR_PEERING}---\n{TOR_PEERING_V6}"))?;
    converge("node1: only the two ToR sessions, Established", &c, || {
        c.calicoctl(0, &["node", "status"]).is_ok_and(|o| {
            let t = String::from_utf8_lossy(&o.stdout);
            t.contains("global")
                && !t.contains("node-to-node")
                && t.matches("Established").count() == 2
        })
    })?;
    calicoctl(&c, 0, &["node", "status"])?;
    let all_blocks: Vec<(String, String)> = blocks(&c)
        .into_iter()
        .map(|(b, owner)| (b, c.nodes[owner].ip().to_string()))
        .chain(
            blocks6(&c)
                .into_iter()
                .map(|(b, owner)| (b, c.nodes[owner].ip6().unwrap_or("?").to_string())),
        )
        .collect();
    converge("the ToR's BIRD and kernel hold every block", &c, || {
        let (Ok(rib), Ok(v4), Ok(v6)) = (
            bird.birdc("show route"),
            c.extra(tor).ip(&["route", "show"]),
            c.extra(tor).ip(&["-6", "route", "show"]),
        ) else {
            return false;
        };
        all_blocks.iter().all(|(block, node)| {
            let via = format!("{block} via {node} ");
            rib.contains(block.as_str())
                && v4.lines().chain(v6.lines()).any(|l| l.starts_with(&via))
        })
    })?;
    println!("tor$ birdc show route");
    print!("{}", bird.birdc("show route")?);
    println!("tor$ ip route; ip -6 route | grep -v fe80::");
    print!("{}", c.extra(tor).ip(&["route", "show"])?);
    for l in c.extra(tor).ip(&["-6", "route", "show"])?.lines() {
        if !l.starts_with("fe80::") {
            println!("{l}");
        }
    }
    converge(
        "node1's routes to every other block via the ToR",
        &c,
        || {
            routes_converged(&c, 0, |_| format!("via {TOR_IP} dev eth0"))
                && routes6_converged(&c, 0, |_| format!("via {TOR_IP6} dev eth0"))
        },
    )?;
    routes(&c, 0);
    ping_all(&c)?;

    section("Done");
    if keep {
        println!("The lab is still running. Enter a node with:");
        println!("  ip netns exec {} bash", c.nodes[0].ns.name());
        println!("Remove everything with: scripts/cleanup");
        // Leave the namespaces and processes behind on purpose.
        std::mem::forget(bird);
        std::mem::forget(c);
    } else {
        println!("Removing the lab (namespaces, calico-node, etcd, BIRD).");
    }
    Ok(())
}
