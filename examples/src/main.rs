//! The calico-rs demo: a three-node cluster in network namespaces on this machine, pods on
//! every node pinging each other over routes the embedded BGP speaker exchanged, the
//! operator's view through `calicoctl`, a live switch of the pool to VXLAN and back by
//! `calicoctl apply -f`, and the top-of-rack case with a real BIRD 2 router.
//!
//! Run it with `sudo scripts/demo` (it installs what is missing and builds first).
//! `--keep` leaves the lab running; `scripts/cleanup` removes it.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab::bgp_peers::{NeighborSpec, Router, RouterKind, RouterSpec};
use lab::cluster::{Cluster, LabSpec};
use lab::wait_until;

const POOL_CIDR: &str = "10.244.0.0/16";
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

fn routes(c: &Cluster, node: usize) {
    println!("{}$ ip route", c.nodes[node].name);
    for r in c.nodes[node].routes() {
        println!("{r}");
    }
}

/// Pings between every pair of pods on different nodes; prints one line per source pod.
fn ping_all(c: &Cluster) -> Result<()> {
    let mut failures = Vec::new();
    let mut pairs = 0;
    for a in 0..c.pods.len() {
        let mut line = format!("  {} ({}) ->", c.pods[a].name, c.pods[a].ip);
        for b in 0..c.pods.len() {
            if c.pods[a].node == c.pods[b].node {
                continue;
            }
            pairs += 1;
            let ok = wait_until(WAIT, || c.pods_ping(a, b));
            line.push_str(&format!(
                " {} {}",
                c.pods[b].name,
                if ok { "ok" } else { "FAILED" }
            ));
            if !ok {
                failures.push(format!("{} -> {}", c.pods[a].name, c.pods[b].name));
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
    println!("  {pairs}/{pairs} cross-node pod pairs answer ping");
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
        "A 3-node cluster: calico-node with its embedded BGP speaker on each, etcd, BGP full mesh",
    );
    let mut c = Cluster::start(LabSpec::nodes(3).env("CALICO_IPV4POOL_CIDR", POOL_CIDR))
        .context("starting the lab")?;
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
            .map(|n| format!("{} ({})", n.name, n.address))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("pods (CNI ADD through the calico plugin, addresses from calico-ipam):");
    for p in &c.pods {
        println!("  {:<6} on {}  {}", p.name, c.nodes[p.node].name, p.ip);
    }

    section("Pods ping each other across nodes");
    ping_all(&c)?;

    section("What an operator sees");
    calicoctl(&c, 0, &["get", "nodes", "-o", "wide"])?;
    calicoctl(&c, 0, &["get", "ippool", "-o", "wide"])?;
    wait_until(WAIT, || {
        c.calicoctl(0, &["node", "status"])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .matches("Established")
                    .count()
                    == 2
            })
            .unwrap_or(false)
    });
    calicoctl(&c, 0, &["node", "status"])?;
    calicoctl(&c, 0, &["ipam", "show", "--show-blocks"])?;
    routes(&c, 0);

    section("Switch the pool to VXLAN, live, with calicoctl apply -f");
    apply(&c, &pool_yaml("Always"))?;
    wait_until(WAIT, || c.nodes[0].has_route("dev vxlan.calico"));
    calicoctl(&c, 0, &["get", "ippool", "-o", "wide"])?;
    routes(&c, 0);
    ping_all(&c)?;

    section("And back to plain BGP routes");
    apply(&c, &pool_yaml("Never"))?;
    wait_until(WAIT, || !c.nodes[0].has_route("vxlan.calico"));
    calicoctl(&c, 0, &["get", "ippool", "-o", "wide"])?;
    routes(&c, 0);
    ping_all(&c)?;

    section("Top of rack: mesh off, every node peers with a BIRD 2 router over eBGP");
    let tor = c.extra_namespace("tor")?;
    c.attach_extra(tor, "eth0", 0, "10.0.0.253/24")?;
    c.extra(tor).sh("sysctl -qw net.ipv4.ip_forward=1")?;
    let tor_spec = RouterSpec {
        router_id: "10.0.0.253".into(),
        ipv6: None,
        asn: 65001,
        neighbors: c
            .nodes
            .iter()
            .map(|n| NeighborSpec {
                next_hop_self: true,
                ..NeighborSpec::new(n.ip(), 64512)
            })
            .collect(),
        routes4: vec![],
        routes6: vec![],
        install_routes: true,
    };
    let bird = Router::start(
        RouterKind::Bird,
        c.extra(tor),
        &c.path().join("tor"),
        tor_spec,
    )?;
    apply(
        &c,
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: false\n  asNumber: 64512\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor\nspec:\n  peerIP: 10.0.0.253\n  asNumber: 65001\n  numAllowedLocalASNumbers: 1\n",
    )?;
    wait_until(WAIT, || c.nodes[0].has_route("via 10.0.0.253"));
    wait_until(WAIT, || {
        c.calicoctl(0, &["node", "status"])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("global"))
            .unwrap_or(false)
    });
    calicoctl(&c, 0, &["node", "status"])?;
    println!("tor$ birdc show route");
    print!("{}", bird.birdc("show route")?);
    println!("tor$ ip route");
    print!("{}", c.extra(tor).ip(&["route", "show"])?);
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
