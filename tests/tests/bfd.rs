//! BFD (issue 16): a node whose link is cut (its port on the fabric taken down, no clean
//! stop) is gone from a BIRD and an FRR top-of-rack router's kernel, and from every other
//! node, within the BFD detection time, against the same cut without BFD (the BGP hold
//! time). The times are printed, not asserted; what is asserted is who noticed: BFD, with
//! its diagnostic, before any hold timer. Needs root: `cargo test -p lab --test bfd --
//! --ignored`.

use std::process::Output;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use lab::bgp_peers::{BfdTimers, NeighborSpec, Router, RouterKind, RouterSpec};
use lab::cluster::{Cluster, LabSpec};
use lab::tor::{TOR_IP as TOR, TOR_PEERING, tor_spec};
use lab::wait_until;

const POOL: &str = "10.244.0.0/16";
const WAIT: Duration = Duration::from_secs(30);

/// 100 ms x 3 on every interface of every node.
const BFD_CONFIG: &str = "apiVersion: projectcalico.org/v3
kind: BFDConfiguration
metadata: {name: default}
spec:
  nodeSelector: all()
  interfaces:
  - matchPattern: 'eth*'
    minimumSendInterval: 100ms
    minimumRecvInterval: 100ms
    idleSendInterval: 1s
    multiplier: 3
";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until every node's BGP has converged after its start: until then calico-node
/// holds route deletions back (for at most 30 s, so that routes kept from before a restart
/// are not removed before BGP learns them again), which would hide what BFD does.
fn wait_converged(c: &Cluster) {
    for n in &c.nodes {
        assert!(
            wait_until(Duration::from_secs(40), || n
                .agent_log(usize::MAX)
                .contains("BGP routes converged")),
            "{} never converged\n{}",
            n.name,
            c.logs(30)
        );
    }
}

fn mesh(n: usize) -> Cluster {
    let mut c = Cluster::start(LabSpec::nodes(n).env("CALICO_IPV4POOL_CIDR", POOL)).expect("lab");
    for i in 0..n {
        c.add_pod(i, &format!("p{}", i + 1)).expect("pod");
    }
    c
}

fn block_of(c: &Cluster, p: usize) -> String {
    Ipv4Net::new(c.pods[p].ip, 26)
        .expect("prefix")
        .trunc()
        .to_string()
}

fn node_status_json(c: &Cluster, node: usize) -> serde_json::Value {
    let out = c
        .calicoctl(node, &["node", "status", "-o", "json"])
        .expect("calicoctl");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The BFD state `node` reports for its session with `peer` (empty when none).
fn bfd_state(c: &Cluster, node: usize, peer: &str) -> String {
    node_status_json(c, node)["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peerAddress"] == peer))
        .and_then(|p| p["bfd"]["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn has_route(ns: &lab::Netns, prefix: &str, via: &str) -> bool {
    ns.ip(&["route", "show"]).is_ok_and(|r| {
        r.lines()
            .any(|l| l.starts_with(prefix) && l.contains(&format!("via {via} ")))
    })
}

/// How long after `from` `gone` first holds (polled every 5 ms), up to `limit`.
fn time_until(from: Instant, limit: Duration, gone: impl Fn() -> bool) -> Option<Duration> {
    while from.elapsed() < limit {
        if gone() {
            return Some(from.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Sends `packets` to `to` port 3784 from inside `ns`, with TTL 255 as a neighbour's BFD
/// would (from a thread that enters the namespace, so the socket is made there).
fn send_bfd_from(ns: &lab::Netns, to: &str, packets: Vec<Vec<u8>>) {
    let path = ns.path();
    let to = format!("{to}:3784");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("namespace");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        sock.set_ttl(255).expect("ttl");
        for p in packets {
            sock.send_to(&p, &to).expect("send");
        }
    })
    .join()
    .expect("sender thread");
}

/// What a peer, a stranger or a broken box may send: short, wrong version, bad lengths,
/// multiplier 0, multipoint, discriminator 0, an unknown Your Discriminator, AdminDown
/// for nobody, authentication, garbage.
fn bad_packets() -> Vec<Vec<u8>> {
    let good = |state: u8, mine: u32, yours: u32| {
        let mut p = vec![0x20, state << 6, 3, 24];
        for v in [mine, yours, 100_000, 100_000, 0] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p
    };
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good(3, 7, 7);
        f(&mut p);
        p
    };
    vec![
        vec![0x20, 0xc0, 3],
        with(&|p| p[0] = 0x40),
        with(&|p| p[3] = 200),
        with(&|p| p[3] = 8),
        with(&|p| p[2] = 0),
        with(&|p| p[1] |= 0x01),
        with(&|p| p[4..8].fill(0)),
        good(3, 7, 0),
        good(3, 7, 0xdead_beef),
        good(0, 7, 0xdead_beef),
        with(&|p| p[1] |= 0x04),
        vec![0xff; 64],
        vec![],
    ]
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_string(), |d| format!("{} ms", d.as_millis()))
}

/// The lab's ToR with BFD on every neighbor, 100 ms x 3.
fn bfd_tor_spec(c: &Cluster) -> RouterSpec {
    let base = tor_spec(c);
    RouterSpec {
        neighbors: base
            .neighbors
            .iter()
            .map(|n| NeighborSpec {
                bfd: true,
                ..n.clone()
            })
            .collect(),
        bfd: Some(BfdTimers {
            tx_ms: 100,
            rx_ms: 100,
            multiplier: 3,
        }),
        ..base
    }
}

/// The ToR's BFD view of `peer`: `Up`, `Down`, ... (FRR's lower case made BIRD's; empty
/// when it has no session).
fn tor_bfd_state(router: &Router, kind: RouterKind, peer: &str) -> String {
    match kind {
        RouterKind::Bird => router
            .birdc("show bfd sessions")
            .unwrap_or_default()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(peer))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .unwrap_or_default(),
        _ => {
            let out = router
                .vtysh(&format!("show bfd peer {peer} json"))
                .unwrap_or_default();
            let state = serde_json::from_str::<serde_json::Value>(&out)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string))
                .unwrap_or_default();
            let mut chars = state.chars();
            chars
                .next()
                .map(|f| f.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

/// Cuts node 0's link and times how long until the ToR's kernel and node 1 lose node 0's
/// block; restores the link and waits until everything is back.
fn cut_and_time(c: &Cluster, tor: &lab::Netns) -> (Option<Duration>, Option<Duration>) {
    let block = block_of(c, 0);
    let node0 = c.nodes[0].ip().to_string();
    let cut = Instant::now();
    c.set_fabric_link(0, false).expect("cut");
    let on_tor = time_until(cut, Duration::from_secs(20), || {
        !has_route(tor, &block, &node0)
    });
    let on_node = time_until(cut, Duration::from_secs(20), || {
        !has_route(&c.nodes[1].ns, &block, TOR)
    });
    c.set_fabric_link(0, true).expect("restore");
    assert!(
        wait_until(WAIT, || has_route(tor, &block, &node0)
            && has_route(&c.nodes[1].ns, &block, TOR)),
        "node 0's block never came back after the link did\n{}",
        c.logs(40)
    );
    (on_tor, on_node)
}

fn tor_case(kind: RouterKind) {
    let mut c = mesh(3);
    let spec = bfd_tor_spec(&c);
    let (t, router) = c.start_tor(kind, spec).expect("ToR router");
    c.apply(TOR_PEERING).expect("apply");
    let tor = c.extra(t);
    let block = block_of(&c, 0);
    let node0 = c.nodes[0].ip().to_string();
    assert!(
        wait_until(WAIT, || has_route(tor, &block, &node0)
            && has_route(&c.nodes[1].ns, &block, TOR)),
        "the ToR never routed {block}\n{}\n{}",
        router.log_tail(30),
        c.logs(30)
    );

    wait_converged(&c);
    // Without BFD on the nodes the ToR's BFD session never comes up: the hold timer decides.
    let (tor_hold, node_hold) = cut_and_time(&c, tor);

    c.apply(BFD_CONFIG).expect("apply BFDConfiguration");
    assert!(
        wait_until(WAIT, || bfd_state(&c, 0, TOR) == "Up"
            && tor_bfd_state(&router, kind, &node0) == "Up"),
        "BFD never came up: node says '{}', ToR says '{}'\n{}\n{}",
        bfd_state(&c, 0, TOR),
        tor_bfd_state(&router, kind, &node0),
        router.log_tail(30),
        c.logs(30)
    );
    let (tor_bfd, node_bfd) = cut_and_time(&c, tor);
    println!(
        "{kind:?} ToR, node 0's link cut: gone from the ToR's kernel after {} with BFD \
         (100 ms x 3) vs {} without (hold time 9 s); from node 1 after {} vs {}",
        ms(tor_bfd),
        ms(tor_hold),
        ms(node_bfd),
        ms(node_hold)
    );
    let (Some(with), Some(without)) = (tor_bfd, tor_hold) else {
        panic!(
            "the ToR never dropped the cut node's block\n{}",
            router.log_tail(40)
        );
    };
    assert!(
        with < without,
        "BFD did not beat the hold timer: {with:?} vs {without:?}"
    );
    // BFD comes back with the link, and says what happened.
    assert!(
        wait_until(WAIT, || bfd_state(&c, 0, TOR) == "Up"
            && tor_bfd_state(&router, kind, &node0) == "Up"),
        "BFD did not come back up\n{}",
        c.logs(30)
    );
    let status = node_status_json(&c, 1);
    println!(
        "node 1's BFD session with the ToR: {:#}",
        status["peers"][0]["bfd"]
    );
    let table = text(&c.calicoctl(1, &["node", "status"]).expect("calicoctl"));
    assert!(table.contains("IPv4 BFD status"), "{table}");
    assert!(table.contains("| 10.0.0.253   | Up"), "{table}");
    let metrics = c.nodes[0].metrics().unwrap_or_default();
    assert!(
        metrics.contains("calico_rs_bfd_sessions{state=\"up\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("calico_rs_bfd_state_changes_total 0\n"),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test bfd -- --ignored"]
fn a_node_cut_off_is_gone_from_a_bird_tor_and_the_other_nodes_at_bfd_speed() {
    tor_case(RouterKind::Bird);
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test bfd -- --ignored"]
fn a_node_cut_off_is_gone_from_an_frr_tor_and_the_other_nodes_at_bfd_speed() {
    tor_case(RouterKind::Frr);
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test bfd -- --ignored"]
fn a_node_cut_off_from_the_mesh_is_gone_from_the_others_and_comes_back_through_flaps() {
    let mut c = mesh(3);
    c.apply(BFD_CONFIG).expect("apply BFDConfiguration");
    let ips: Vec<String> = c.nodes.iter().map(|n| n.ip().to_string()).collect();
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            assert!(
                wait_until(WAIT, || bfd_state(&c, i, &ips[j]) == "Up"),
                "node {i} has no BFD session Up with {}: '{}'\n{}",
                ips[j],
                bfd_state(&c, i, &ips[j]),
                c.logs(30)
            );
        }
    }
    wait_converged(&c);
    // Bad input from a neighbour and from an address with no session changes nothing.
    let before = node_status_json(&c, 0)["peers"].clone();
    send_bfd_from(&c.nodes[1].ns, &ips[0], bad_packets());
    send_bfd_from(&c.ctl, &ips[0], bad_packets());
    std::thread::sleep(Duration::from_secs(1));
    let after = node_status_json(&c, 0)["peers"].clone();
    let count = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    assert_eq!(
        (count(&before), count(&after)),
        (2, 2),
        "{before:#} {after:#}"
    );
    for (b, a) in before
        .as_array()
        .into_iter()
        .flatten()
        .zip(after.as_array().into_iter().flatten())
    {
        assert_eq!(
            (&b["bfd"]["state"], &b["bfd"]["sinceTime"]),
            (&a["bfd"]["state"], &a["bfd"]["sinceTime"]),
            "bad packets moved a session: {a:#}"
        );
    }
    assert!(
        c.nodes[0].agent_running(),
        "calico-node died of bad BFD input"
    );
    let block = block_of(&c, 0);
    let hold = node_status_json(&c, 1)["peers"][0]["holdTime"].clone();
    for round in 1..=3 {
        assert!(
            wait_until(WAIT, || has_route(&c.nodes[1].ns, &block, &ips[0])
                && has_route(&c.nodes[2].ns, &block, &ips[0])),
            "round {round}: node 0's block is not routed\n{}",
            c.logs(30)
        );
        let cut = Instant::now();
        c.set_fabric_link(0, false).expect("cut");
        let gone: Vec<Option<Duration>> = [1, 2]
            .iter()
            .map(|&n| {
                time_until(cut, Duration::from_secs(20), || {
                    !has_route(&c.nodes[n].ns, &block, &ips[0])
                })
            })
            .collect();
        println!(
            "mesh, round {round}: node 0 gone from node 1 after {}, from node 2 after {} \
             (BFD 100 ms x 3; BGP hold time {hold} s)",
            ms(gone[0]),
            ms(gone[1])
        );
        assert!(gone.iter().all(Option::is_some), "{gone:?}\n{}", c.logs(30));
        let peer = &node_status_json(&c, 1)["peers"][0];
        assert_eq!(peer["bfd"]["state"], "Down", "{peer:#}");
        assert_eq!(
            peer["bfd"]["diagnostic"], "control detection time expired",
            "{peer:#}"
        );
        assert!(
            peer["info"].as_str().is_some_and(|i| i.contains("BFD")),
            "the BGP session says why it is down: {peer:#}"
        );
        c.set_fabric_link(0, true).expect("restore");
        assert!(
            wait_until(WAIT, || bfd_state(&c, 1, &ips[0]) == "Up"
                && has_route(&c.nodes[1].ns, &block, &ips[0])
                && has_route(&c.nodes[2].ns, &block, &ips[0])),
            "round {round}: node 0 did not come back\n{}",
            c.logs(30)
        );
    }
    for a in 0..3 {
        for b in (0..3).filter(|b| *b != a) {
            assert!(
                wait_until(WAIT, || c.pods_ping(a, b)),
                "pod {a} cannot ping pod {b} after the flaps\n{}",
                c.logs(30)
            );
        }
    }
    // calicoctl gets and deletes it like any resource; the sessions go, BGP stays up.
    let got = text(&c.calicoctl(0, &["get", "bfdconfigurations"]).expect("get"));
    assert!(got.contains("NAME") && got.contains("default"), "{got}");
    let yaml = text(
        &c.calicoctl(0, &["get", "bfdconfig", "default", "-o", "yaml"])
            .expect("get"),
    );
    assert!(
        yaml.contains("kind: BFDConfiguration") && yaml.contains("multiplier: 3"),
        "{yaml}"
    );
    // The nodes see the deletion one after the other: the first one's sessions go
    // AdminDown, which the others must not take for a failure (RFC 5882 §3.2).
    let closed_by_bfd = || -> usize {
        c.nodes
            .iter()
            .map(|n| n.agent_log(usize::MAX).matches("the path is down").count())
            .sum()
    };
    let before = closed_by_bfd();
    let deleted = c
        .calicoctl(0, &["delete", "bfdconfiguration", "default"])
        .expect("delete");
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert!(
        wait_until(WAIT, || (0..3).all(|i| (0..3)
            .filter(|j| *j != i)
            .all(|j| bfd_state(&c, i, &ips[j]).is_empty()))),
        "a BFD session outlived its configuration"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        closed_by_bfd(),
        before,
        "removing BFD closed a BGP session\n{}",
        c.logs(20)
    );
    let peer = &node_status_json(&c, 1)["peers"][0];
    assert_eq!(peer["state"], "up", "{peer:#}");
    assert!(c.pods_ping(0, 1), "pods after the BFD configuration went");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test bfd -- --ignored"]
fn a_calico_node_restart_is_not_a_dead_path_its_routes_stay_on_the_others() {
    let mut c = mesh(3);
    c.apply(BFD_CONFIG).expect("apply BFDConfiguration");
    let ips: Vec<String> = c.nodes.iter().map(|n| n.ip().to_string()).collect();
    assert!(
        wait_until(WAIT, || bfd_state(&c, 1, &ips[0]) == "Up"
            && bfd_state(&c, 2, &ips[0]) == "Up"),
        "BFD never came up\n{}",
        c.logs(30)
    );
    wait_converged(&c);
    let block = block_of(&c, 0);
    // SIGTERM: calico-node takes its BFD sessions AdminDown before it exits; the other
    // nodes keep BGP's graceful restart, and the route to node 0's pods never leaves
    // their kernels.
    let stopped = Instant::now();
    c.stop_agent(0);
    let mut lost = Vec::new();
    while stopped.elapsed() < Duration::from_secs(2) {
        for n in [1, 2] {
            if !has_route(&c.nodes[n].ns, &block, &ips[0]) && !lost.contains(&n) {
                lost.push(n);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        lost.is_empty(),
        "nodes {lost:?} dropped node 0's block\n{}",
        c.logs(30)
    );
    assert!(
        c.nodes[0]
            .agent_log(usize::MAX)
            .contains("BFD sessions taken administratively down before exit"),
        "{}",
        c.nodes[0].agent_log(20)
    );
    let peer = &node_status_json(&c, 1)["peers"][0];
    assert_eq!(peer["bfd"]["remoteState"], "AdminDown", "{peer:#}");
    c.start_agent(0).expect("restart");
    assert!(
        wait_until(WAIT, || bfd_state(&c, 1, &ips[0]) == "Up"
            && node_status_json(&c, 1)["peers"][0]["state"] == "up"),
        "node 0 did not come back\n{}",
        c.logs(30)
    );
    assert!(has_route(&c.nodes[1].ns, &block, &ips[0]));
    assert!(c.pods_ping(1, 0), "pods after the restart");
}
