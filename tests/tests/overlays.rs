//! Overlays end to end (issue 6): VXLAN Always across two subnets, CrossSubnet, live
//! switching of the pool's mode by `calicoctl apply`, IPIP (where the kernel has it), MTU
//! and natOutgoing. Nodes, pods, the router and the outside world are network namespaces;
//! etcd is real. Needs root:
//! `cargo test -p lab --test overlays -- --ignored --nocapture`.

#[path = "overlays/support.rs"]
mod support;

use std::time::Duration;

use lab::Netns;
use lab::cluster::{Cluster, LabSpec};
use lab::ping::{PingTally, Pinger, unix_now};
use support::*;

fn lab(subnets: Vec<usize>, env: &[(&str, &str)], start: bool) -> Cluster {
    let mut spec = LabSpec {
        node_subnets: subnets,
        agent_env: Default::default(),
        start_agents: start,
        etcd_members: 1,
        dual_stack: false,
    };
    spec = spec.env("CALICO_IPV4POOL_CIDR", POOL_CIDR);
    for (k, v) in env {
        spec = spec.env(k, v);
    }
    Cluster::start(spec).expect("lab starts")
}

/// Pings until an answer comes (the first packets may race route programming).
fn ping_ok(c: &Cluster, from: usize, to: usize) -> bool {
    lab::wait_until(settle(), || c.pods_ping(from, to))
}

fn wait_mode(c: &Cluster, backend: Backend, ipip: Mode, vxlan: Mode) {
    if let Err(e) = wait_for_mode(c, backend, ipip, vxlan) {
        panic!(
            "kernel state for ipip={ipip:?} vxlan={vxlan:?} not reached:\n{e}\n{}",
            c.logs(30)
        );
    }
}

fn wait_mtu_file(c: &Cluster, mtu: u32) {
    for n in &c.nodes {
        assert!(
            lab::wait_until(settle(), || mtu_file(n) == Some(mtu)),
            "{}: MTU file {:?}, want {mtu}",
            n.name,
            mtu_file(n)
        );
    }
}

/// The sample pool file for a VXLAN mode (all of them: 10.244.0.0/16, natOutgoing).
fn example_pool(vxlan: Mode) -> String {
    let file = match vxlan {
        Mode::Never => "ippool.yaml",
        Mode::Always => "ippool-vxlan.yaml",
        Mode::CrossSubnet => "ippool-vxlan-crosssubnet.yaml",
    };
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("sample pool");
    assert!(
        text.contains(&format!("cidr: {POOL_CIDR}")),
        "{path} is not the lab's pool"
    );
    text
}

/// True when `ip` lies in `block` (`a.b.c.d/len`).
fn in_block(ip: &str, block: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, len)) = block.split_once('/') else {
        return false;
    };
    let (Some(ip), Some(net), Ok(len)) = (parse(ip), parse(net), len.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    ip & mask == net & mask
}

/// The host side of a pod's veth (the route to the pod names it).
fn host_veth(c: &Cluster, pod: usize) -> String {
    let p = &c.pods[pod];
    let ip = p.ip.to_string();
    c.nodes[p.node]
        .routes()
        .iter()
        .find(|r| r.starts_with(&format!("{ip} dev ")))
        .and_then(|r| r.split_whitespace().nth(2))
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test overlays -- --ignored"]
fn vxlan_always_across_two_subnets_matches_calico_kernel_state() {
    let _one = one_lab_at_a_time();
    let mut c = lab(
        vec![0, 0, 1],
        &[
            ("CALICO_NETWORKING_BACKEND", "vxlan"),
            ("CALICO_IPV4POOL_VXLAN", "Always"),
            // No resync during the test: drift below is repaired on kernel events alone.
            ("FELIX_ROUTEREFRESHINTERVAL", "3600"),
        ],
        true,
    );
    wait_mode(&c, Backend::Vxlan, Mode::Never, Mode::Always);
    wait_mtu_file(&c, 1450);
    let a = c.add_pod(0, "a").expect("pod a");
    let b = c.add_pod(1, "b").expect("pod b");
    let d = c.add_pod(2, "d").expect("pod d");

    // Reference §4.7, on every node.
    for n in &c.nodes {
        let link = link_details(n, VXLAN);
        for want in [
            "mtu 1450",
            "vxlan id 4096",
            &format!("local {} dev eth0", n.ip()),
            "dstport 4789",
            "nolearning",
        ] {
            assert!(
                link.contains(want),
                "{}: `{want}` missing in\n{link}",
                n.name
            );
        }
        let f = facts(n);
        let (vtep, mac) = f.vtep.clone().expect("vtep");
        assert!(
            f.blocks.iter().any(|b| in_block(&vtep, b)),
            "{}: the VTEP {vtep} comes from the node's own block {:?}",
            n.name,
            f.blocks
        );
        assert!(mac.starts_with("66:"), "{}: VTEP MAC {mac}", n.name);
        println!(
            "{}: {}\n{}",
            n.name,
            link.lines().nth(2).unwrap_or("").trim(),
            {
                let e = actual(n);
                format!(
                    "  routes {:?}\n  neigh {:?}\n  fdb {:?}",
                    e.routes, e.neighbours, e.fdb
                )
            }
        );
    }
    wait_mode(&c, Backend::Vxlan, Mode::Never, Mode::Always);

    // New pod veths get the tunnel MTU, on both ends.
    for p in [a, b, d] {
        assert_eq!(mtu(&c.pods[p].ns, "eth0"), Some(1450), "pod {p} eth0");
        let veth = host_veth(&c, p);
        assert_eq!(
            mtu(&c.nodes[c.pods[p].node].ns, &veth),
            Some(1450),
            "{veth}"
        );
    }

    // Pods ping across, through the tunnel: counters rise and the router carries UDP 4789.
    let capture = Capture::start(
        &c.ctl,
        "any",
        "udp port 4789",
        c.path().join("ctl.pcap.txt"),
    )
    .expect("tcpdump on the router");
    let before = counters(&c.nodes[0].ns, VXLAN);
    assert!(ping_ok(&c, a, b), "a -> b (same subnet)\n{}", c.logs(30));
    assert!(ping_ok(&c, a, d), "a -> d (other subnet)\n{}", c.logs(30));
    assert!(ping_ok(&c, d, b), "d -> b");
    let after = counters(&c.nodes[0].ns, VXLAN);
    println!("node1 vxlan.calico tx/rx packets: {before:?} -> {after:?}");
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "{before:?} -> {after:?}"
    );
    assert!(
        lab::wait_until(Duration::from_secs(5), || capture
            .packets()
            .iter()
            .any(|l| l.contains("10.0.0.1.") && l.contains("10.0.1.3.4789"))),
        "no VXLAN packet node1 -> node3 seen on the router: {:?}",
        capture.packets()
    );
    println!(
        "on the router: {}",
        capture.packets().first().cloned().unwrap_or_default()
    );

    // Neighbours and FDB entries deleted by hand come back on the kernel's neighbour
    // events, without waiting for the resync (an hour here).
    let n0 = &c.nodes[0];
    let whole = actual(n0);
    assert!(
        !whole.neighbours.is_empty() && !whole.fdb.is_empty(),
        "{whole:?}"
    );
    n0.ns
        .sh(&format!("ip neigh flush dev {VXLAN} nud permanent"))
        .expect("ip neigh flush");
    for entry in &whole.fdb {
        let words: Vec<&str> = entry.split_whitespace().collect();
        let dst = words
            .iter()
            .skip_while(|w| **w != "dst")
            .nth(1)
            .expect("dst");
        n0.ns
            .sh(&format!(
                "bridge fdb del {} dev {VXLAN} dst {dst}",
                words[0]
            ))
            .expect("bridge fdb del");
    }
    assert!(
        lab::wait_until(settle(), || actual(n0) == whole),
        "{}: neighbours and FDB entries not restored: {:?}\n{}",
        n0.name,
        actual(n0),
        c.logs(30)
    );

    // FelixConfiguration vxlanMTU overrides the detected MTU, live.
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  vxlanMTU: 1400
",
    )
    .expect("apply FelixConfiguration");
    wait_mtu_file(&c, 1400);
    for n in &c.nodes {
        assert!(
            lab::wait_until(settle(), || mtu(&n.ns, VXLAN) == Some(1400)),
            "{}: vxlan.calico MTU {:?}",
            n.name,
            mtu(&n.ns, VXLAN)
        );
    }
    let e = c.add_pod(0, "e").expect("pod e");
    assert_eq!(
        mtu(&c.pods[e].ns, "eth0"),
        Some(1400),
        "a new pod gets vxlanMTU"
    );
    assert!(ping_ok(&c, e, d), "e -> d after the MTU change");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test overlays -- --ignored"]
fn vxlan_cross_subnet_encapsulates_only_across_subnets_and_mtu_follows_the_host() {
    let _one = one_lab_at_a_time();
    let mut c = lab(
        vec![0, 0, 1],
        &[
            ("CALICO_NETWORKING_BACKEND", "vxlan"),
            ("CALICO_IPV4POOL_VXLAN", "CrossSubnet"),
        ],
        false,
    );
    // A host MTU of 1400: tunnel and pods get 1350.
    for n in &c.nodes {
        n.ns.ip(&["link", "set", "eth0", "mtu", "1400"])
            .expect("mtu");
    }
    for i in 0..c.nodes.len() {
        c.start_agent(i).expect("agent");
    }
    wait_mode(&c, Backend::Vxlan, Mode::Never, Mode::CrossSubnet);
    wait_mtu_file(&c, 1350);
    let a = c.add_pod(0, "a").expect("pod a");
    let b = c.add_pod(1, "b").expect("pod b");
    let d = c.add_pod(2, "d").expect("pod d");
    wait_mode(&c, Backend::Vxlan, Mode::Never, Mode::CrossSubnet);
    for n in &c.nodes {
        assert_eq!(mtu(&n.ns, VXLAN), Some(1350), "{}", n.name);
        println!("{}: {:?}", n.name, owned_routes(n));
    }
    assert_eq!(mtu(&c.pods[a].ns, "eth0"), Some(1350));

    // Same subnet: plain, the tunnel stays silent on both nodes.
    assert!(ping_ok(&c, a, b), "a -> b\n{}", c.logs(30));
    let n1 = counters(&c.nodes[0].ns, VXLAN);
    let n2 = counters(&c.nodes[1].ns, VXLAN);
    assert!(c.pods[a].ns.ping(&c.pods[b].ip.to_string(), 5));
    let n1_after = counters(&c.nodes[0].ns, VXLAN);
    let n2_after = counters(&c.nodes[1].ns, VXLAN);
    println!("same subnet: node1 vxlan {n1:?} -> {n1_after:?}, node2 {n2:?} -> {n2_after:?}");
    assert_eq!(
        (n1, n2),
        (n1_after, n2_after),
        "same-subnet traffic was encapsulated"
    );

    // Across subnets: through the tunnel.
    assert!(ping_ok(&c, a, d), "a -> d\n{}", c.logs(30));
    let before = counters(&c.nodes[0].ns, VXLAN);
    assert!(c.pods[a].ns.ping(&c.pods[d].ip.to_string(), 5));
    let after = counters(&c.nodes[0].ns, VXLAN);
    println!("cross subnet: node1 vxlan {before:?} -> {after:?}");
    assert!(
        after.0 >= before.0 + 5 && after.1 >= before.1 + 5,
        "{before:?} -> {after:?}"
    );
}

/// Ping interval of the live-switching test, so losses read as time.
const PING_INTERVAL: &str = "0.01";

/// What one ping saw across one switch.
struct SwitchTally {
    from: Mode,
    to: Mode,
    label: &'static str,
    /// Whether the pair is reachable in the mode switched to.
    reachable: bool,
    tally: PingTally,
    /// Milliseconds from the apply to the kernel state of the new mode on every node.
    settled_ms: u64,
}

impl SwitchTally {
    fn line(&self) -> String {
        let (from, to, label, t) = (self.from, self.to, self.label, self.tally);
        match (self.reachable, t.first_answer_ms) {
            (true, Some(first)) => format!(
                "{from:?} -> {to:?}: {label}: {} lost, {} answered, first answer {first} ms after apply (kernel state settled at {} ms)",
                t.lost, t.answered, self.settled_ms
            ),
            _ => format!(
                "{from:?} -> {to:?}: {label}: unreachable, as expected without encapsulation ({} unanswered)",
                t.lost
            ),
        }
    }
}

/// One switch of the live-switching test: apply, wait for the kernel state, let the pings
/// recover, and tally the losses.
struct Switch<'a> {
    c: &'a Cluster,
    /// (label, pod from, pod to); the first pair is on one subnet.
    pairs: Vec<(&'static str, usize, usize)>,
}

impl Switch<'_> {
    fn to(&self, from_mode: Mode, mode: Mode, step: usize) -> Vec<SwitchTally> {
        let c = self.c;
        let pingers: Vec<Pinger> = self
            .pairs
            .iter()
            .map(|(label, from, to)| {
                Pinger::start(
                    &c.pods[*from].ns,
                    &c.pods[*to].ip.to_string(),
                    PING_INTERVAL,
                    c.path().join(format!("ping-{step}-{label}.log")),
                )
            })
            .collect();
        // The baseline: the same-subnet pair answers before the switch.
        assert!(
            pingers[0].wait_answers(5, settle()),
            "no baseline ping before the switch"
        );
        let applied = unix_now();
        // The pools a user would apply: the sample files.
        c.apply(&example_pool(mode)).expect("apply");
        wait_mode(c, Backend::Bgp, Mode::Never, mode);
        let settled_ms = ((unix_now() - applied) * 1000.0) as u64;
        let mut tallies = Vec::new();
        for ((label, _, _), mut p) in self.pairs.iter().zip(pingers) {
            let reachable = mode != Mode::Never || *label == "same-subnet";
            if reachable && !p.wait_answers(20, settle()) {
                let routes: Vec<String> = c
                    .nodes
                    .iter()
                    .map(|n| format!("{}: {:?}", n.name, actual(n)))
                    .collect();
                panic!(
                    "{label}: ping did not recover after {from_mode:?} -> {mode:?}\n{}\n{}\n{}",
                    p.describe(),
                    routes.join("\n"),
                    c.logs(30)
                );
            }
            tallies.push(SwitchTally {
                from: from_mode,
                to: mode,
                label,
                reachable,
                tally: p.stop(applied),
                settled_ms,
            });
        }
        tallies
    }
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test overlays -- --ignored"]
fn switching_never_vxlan_crosssubnet_never_live_keeps_pods_connected() {
    let _one = one_lab_at_a_time();
    // BGP mesh (the default backend), nodes 1-2 on one subnet, node 3 on the other.
    let mut c = lab(vec![0, 0, 1], &[], true);
    let a = c.add_pod(0, "a").expect("pod a");
    let b = c.add_pod(1, "b").expect("pod b");
    let d = c.add_pod(2, "d").expect("pod d");
    wait_mode(&c, Backend::Bgp, Mode::Never, Mode::Never);
    wait_mtu_file(&c, 1500);
    assert!(
        ping_ok(&c, a, b),
        "a -> b before any switch\n{}",
        c.logs(30)
    );

    let sw = Switch {
        c: &c,
        pairs: vec![("same-subnet", a, b), ("cross-subnet", a, d)],
    };
    let mut report = Vec::new();
    let steps = [
        (Mode::Never, Mode::Always, 1450),
        (Mode::Always, Mode::CrossSubnet, 1450),
        (Mode::CrossSubnet, Mode::Never, 1500),
    ];
    for (step, (from, to, pod_mtu)) in steps.into_iter().enumerate() {
        report.extend(sw.to(from, to, step));
        wait_mtu_file(&c, pod_mtu);
        let nodes = c
            .calicoctl(0, &["get", "nodes", "-o", "yaml"])
            .expect("calicoctl");
        let nodes = String::from_utf8_lossy(&nodes.stdout);
        assert_eq!(
            nodes.contains("ipv4VXLANTunnelAddr"),
            to != Mode::Never,
            "tunnel addresses follow the mode:\n{nodes}"
        );
        let pools = c
            .calicoctl(0, &["get", "ippool", "-o", "wide"])
            .expect("calicoctl");
        println!("{}", String::from_utf8_lossy(&pools.stdout).trim_end());
    }
    // After the round trip: no device, no neighbour, no FDB, no proto 80 route anywhere.
    for n in &c.nodes {
        assert!(
            facts(n).vtep.is_none(),
            "{}: vxlan.calico left behind",
            n.name
        );
        assert!(
            !owned_routes(n).iter().any(|r| r.contains("proto 80")),
            "{}: stale routes {:?}",
            n.name,
            owned_routes(n)
        );
    }
    println!("packets lost per switch (ping -i {PING_INTERVAL}):");
    for t in &report {
        println!("  {}", t.line());
    }
    // What the README claims: a same-subnet pair loses nothing at the switches away from
    // Always, and Always -> CrossSubnet loses nothing across subnets either (make before
    // break). Never -> Always is not claimed: the nodes switch one after the other, and a
    // sender may encapsulate before the receiver's vxlan.calico exists (1-2 packets at
    // 10 ms were lost in two full test runs).
    for t in &report {
        let claimed = (t.label == "same-subnet" && t.from != Mode::Never)
            || (t.from, t.to) == (Mode::Always, Mode::CrossSubnet);
        if claimed {
            assert_eq!(t.tally.lost, 0, "pings lost: {}", t.line());
        }
    }
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test overlays -- --ignored"]
fn nat_outgoing_masquerades_to_the_outside_but_not_between_pods() {
    let _one = one_lab_at_a_time();
    // The default pool has natOutgoing: true (CALICO_IPV4POOL_NAT_OUTGOING's default).
    let mut c = lab(vec![0, 0], &[], true);
    let a = c.add_pod(0, "a").expect("pod a");
    let b = c.add_pod(1, "b").expect("pod b");
    let outside = Netns::create("out").expect("outside namespace");
    c.attach(&outside, "eth0", 0, "10.0.0.100/24")
        .expect("attach");

    for n in &c.nodes {
        let ok = lab::wait_until(settle(), || {
            sh(&n.ns, "iptables-save -t nat").contains(
                "-A cali-nat-outgoing -m comment --comment \"cali:flqWnvo8yq4ULQLa\" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE",
            )
        });
        assert!(
            ok,
            "{}: no masquerade rule\n{}",
            n.name,
            sh(&n.ns, "iptables-save -t nat")
        );
        assert!(
            sh(&n.ns, "ipset save cali40masq-ipam-pools")
                .contains(&format!("add cali40masq-ipam-pools {POOL_CIDR}"))
        );
    }

    // To the outside: the node's address.
    let seen = Capture::start(&outside, "eth0", "icmp", c.path().join("outside.txt"))
        .expect("tcpdump outside");
    assert!(
        lab::wait_until(settle(), || c.pods[a].ns.ping("10.0.0.100", 1)),
        "pod a cannot reach the outside\n{}",
        c.logs(30)
    );
    let natted = lab::wait_until(Duration::from_secs(5), || {
        seen.packets()
            .iter()
            .any(|l| l.contains("IP 10.0.0.1 > 10.0.0.100: ICMP echo request"))
    });
    let packets = seen.packets();
    println!(
        "outside sees: {}",
        packets.first().cloned().unwrap_or_default()
    );
    assert!(natted, "{packets:?}");
    let pod_a = c.pods[a].ip.to_string();
    assert!(!packets.iter().any(|l| l.contains(&pod_a)), "{packets:?}");

    // Between pods: the pod's own address.
    let at_b = Capture::start(&c.pods[b].ns, "eth0", "icmp", c.path().join("pod-b.txt"))
        .expect("tcpdump in pod b");
    assert!(ping_ok(&c, a, b), "a -> b\n{}", c.logs(30));
    let direct = format!("IP {pod_a} > {}: ICMP echo request", c.pods[b].ip);
    let kept = lab::wait_until(Duration::from_secs(5), || {
        at_b.packets().iter().any(|l| l.contains(&direct))
    });
    let packets = at_b.packets();
    println!(
        "pod b sees: {}",
        packets.first().cloned().unwrap_or_default()
    );
    assert!(kept, "{packets:?}");

    // natOutgoing switched off live: rules and sets go, the outside sees the pod address.
    c.apply(&pool_yaml(Mode::Never, Mode::Never, false))
        .expect("apply");
    for n in &c.nodes {
        let gone = lab::wait_until(settle(), || {
            !sh(&n.ns, "iptables-save -t nat").contains("cali-")
                && sh(&n.ns, "ipset list -n").trim().is_empty()
        });
        assert!(
            gone,
            "{}: NAT state left\n{}",
            n.name,
            sh(&n.ns, "iptables-save -t nat")
        );
    }
    let seen = Capture::start(&outside, "eth0", "icmp", c.path().join("outside2.txt"))
        .expect("tcpdump outside");
    let _ = c.pods[a].ns.ping("10.0.0.100", 2);
    assert!(
        lab::wait_until(Duration::from_secs(5), || seen
            .packets()
            .iter()
            .any(|l| l.contains(&format!("IP {pod_a} > 10.0.0.100")))),
        "{:?}",
        seen.packets()
    );
    drop(outside);
}

/// Tests that need the kernel's ipip module. Where the kernel has none they fail (they
/// never pass without running): `scripts/test` skips them there (`--skip
/// needs_ipip_module::`) and runs them inside the VM (`tests/tests/vm_ipip.rs`).
mod needs_ipip_module {
    use super::*;

    fn require_kernel_ipip() {
        if let Err(why) = kernel_ipip_support() {
            panic!(
                "the kernel has no ipip support ({why}): this test runs only where it has (the VM: cargo test -p lab --test vm_ipip -- --ignored)"
            );
        }
    }

    #[test]
    #[ignore = "needs root netns and the kernel's ipip module (scripts/test runs it in the VM: vm_ipip)"]
    fn ipip_always_then_cross_subnet_then_never() {
        require_kernel_ipip();
        let _one = one_lab_at_a_time();
        let mut c = lab(vec![0, 0, 1], &[("CALICO_IPV4POOL_IPIP", "Always")], true);
        wait_mtu_file(&c, 1480);
        let a = c.add_pod(0, "a").expect("pod a");
        let b = c.add_pod(1, "b").expect("pod b");
        let d = c.add_pod(2, "d").expect("pod d");
        wait_mode(&c, Backend::Bgp, Mode::Always, Mode::Never);
        for n in &c.nodes {
            let f = facts(n);
            assert!(f.tunl0.is_some(), "{}: tunl0 has no tunnel address", n.name);
            assert_eq!(mtu(&n.ns, "tunl0"), Some(1480), "{}", n.name);
            println!("{}: tunl0 {:?} {:?}", n.name, f.tunl0, owned_routes(n));
        }
        assert_eq!(mtu(&c.pods[a].ns, "eth0"), Some(1480));
        let before = counters(&c.nodes[0].ns, "tunl0");
        assert!(ping_ok(&c, a, b), "a -> b\n{}", c.logs(30));
        assert!(ping_ok(&c, a, d), "a -> d\n{}", c.logs(30));
        let after = counters(&c.nodes[0].ns, "tunl0");
        assert!(after.0 > before.0, "tunl0 tx {before:?} -> {after:?}");

        c.apply(&pool_yaml(Mode::CrossSubnet, Mode::Never, true))
            .expect("apply");
        wait_mode(&c, Backend::Bgp, Mode::CrossSubnet, Mode::Never);
        assert!(ping_ok(&c, a, b) && ping_ok(&c, a, d), "after CrossSubnet");
        let before = counters(&c.nodes[0].ns, "tunl0");
        assert!(c.pods[a].ns.ping(&c.pods[b].ip.to_string(), 3));
        assert_eq!(
            counters(&c.nodes[0].ns, "tunl0").0,
            before.0,
            "same subnet went through tunl0"
        );

        c.apply(&pool_yaml(Mode::Never, Mode::Never, true))
            .expect("apply");
        wait_mode(&c, Backend::Bgp, Mode::Never, Mode::Never);
        assert!(ping_ok(&c, a, b), "after Never");
        for n in &c.nodes {
            assert!(
                lab::wait_until(settle(), || facts(n).tunl0.is_none()),
                "{}: tunl0 keeps its address",
                n.name
            );
        }
        wait_mtu_file(&c, 1500);
    }
}
