//! IPIP end to end on a real kernel: the pool's `ipipMode` switched live by `calicoctl
//! apply -f` (Never -> Always -> CrossSubnet -> Never) under a running ping. Under Always:
//! tunl0 (MTU 1480, the tunnel address from the pool), `<block> via <node> dev tunl0 onlink
//! proto bird` routes, pods pinging across nodes with IP protocol 4 on the fabric; under
//! CrossSubnet, with the lab's router between two subnets: same-subnet traffic plain,
//! cross-subnet through tunl0; back to Never: nothing left (addresses, routes, IPAM). A pool
//! that is IPIP from the start, pod MTU and tunl0 counters: `overlays.rs`.
//!
//! The tests live in `needs_ipip_module`: on a kernel without ipip they fail rather than
//! pass without running, so `scripts/test` skips them on such a host and runs this binary
//! inside a VM with Debian's kernel (`tests/tests/vm_ipip.rs`, tests/vm/README.md). Needs
//! root: `cargo test -p lab --test ipip -- --ignored --test-threads=1`.

use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use lab::cluster::{Cluster, LabSpec};
use lab::netns::Netns;
use lab::ping::{Pinger, unix_now};
use lab::wait_until;

const POOL: &str = "10.244.0.0/16";
/// Bounds a failing wait; generous because the VM emulates its CPU.
const WAIT: Duration = Duration::from_secs(60);

/// Fails the test unless the kernel can make ipip devices (tried in a throw-away
/// namespace).
fn require_kernel_ipip() {
    let ns = Netns::create("ipchk").expect("namespace");
    if let Err(e) = ns.ip(&[
        "link", "add", "ipchk0", "type", "ipip", "local", "10.9.0.1", "remote", "10.9.0.2",
    ]) {
        panic!(
            "the kernel has no ipip support ({e:#}): this test runs only where it has (the VM: cargo test -p lab --test vm_ipip -- --ignored)"
        );
    }
}

/// Labs of one test binary share namespace names: one test at a time.
fn one_lab_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pool as YAML with `ipipMode: mode`, for `calicoctl apply -f -`.
fn pool_yaml(mode: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: {POOL}
  blockSize: 26
  ipipMode: {mode}
  vxlanMode: Never
  natOutgoing: false
  nodeSelector: all()
"
    )
}

/// The /26 block holding `ip`.
fn block(ip: Ipv4Addr) -> String {
    format!("{}/26", Ipv4Addr::from(u32::from(ip) & !63))
}

/// True when `ip` lies in POOL.
fn in_pool(ip: &str) -> bool {
    ip.starts_with("10.244.")
}

/// The route a node has to pod `p`'s block through node `via`, over tunl0 or the fabric.
fn route_to(c: &Cluster, p: usize, via: usize, tunnel: bool) -> String {
    let (block, gw) = (block(c.pods[p].ip), c.nodes[via].ip());
    if tunnel {
        format!("{block} via {gw} dev tunl0 proto bird onlink")
    } else {
        format!("{block} via {gw} dev eth0 proto bird")
    }
}

fn wait_route(c: &Cluster, node: usize, route: &str) {
    assert!(
        wait_until(WAIT, || c.nodes[node].routes().iter().any(|r| r == route)),
        "{} never got `{route}`; it has {:#?}\n{}",
        c.nodes[node].name,
        c.nodes[node].routes(),
        c.logs(30)
    );
}

/// tunl0 of node `i`: (MTU, up, IPv4 addresses), or None when there is no tunl0.
fn tunl0(c: &Cluster, i: usize) -> Option<(u32, bool, Vec<String>)> {
    let ns = &c.nodes[i].ns;
    let link = ns.ip(&["-o", "link", "show", "tunl0"]).ok()?;
    let mtu = link
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)?
        .parse()
        .ok()?;
    let flags = link.split(['<', '>']).nth(1).unwrap_or_default();
    let up = flags.split(',').any(|f| f == "UP");
    let addrs = ns
        .ip(&["-o", "-4", "addr", "show", "dev", "tunl0"])
        .ok()?
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "inet")?;
            Some(w.get(at + 1)?.split('/').next()?.to_string())
        })
        .collect();
    Some((mtu, up, addrs))
}

/// The node's `spec.bgp.ipv4IPIPTunnelAddr`, as calicoctl shows it.
fn tunnel_addr_of(c: &Cluster, i: usize) -> Option<String> {
    let out = c
        .calicoctl(0, &["get", "node", &c.nodes[i].name, "-o", "json"])
        .expect("calicoctl get node");
    let node: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    node.pointer("/spec/bgp/ipv4IPIPTunnelAddr")?
        .as_str()
        .map(str::to_string)
}

/// Waits until every node has tunl0 up, MTU 1480, one address: its recorded tunnel address
/// from the pool. Returns the addresses.
fn assert_tunnels(c: &Cluster) -> Vec<String> {
    let mut addrs = Vec::new();
    for i in 0..c.nodes.len() {
        let ok = wait_until(WAIT, || {
            let Some((mtu, up, a)) = tunl0(c, i) else {
                return false;
            };
            let recorded = tunnel_addr_of(c, i);
            mtu == 1480 && up && a.len() == 1 && recorded.as_deref() == Some(a[0].as_str())
        });
        assert!(
            ok,
            "{}: tunl0 is {:?}, recorded tunnel address {:?}\n{}",
            c.nodes[i].name,
            tunl0(c, i),
            tunnel_addr_of(c, i),
            c.logs(30)
        );
        let a = tunl0(c, i).map(|t| t.2[0].clone()).unwrap_or_default();
        assert!(in_pool(&a), "tunnel address {a} not from {POOL}");
        addrs.push(a);
    }
    addrs
}

/// Waits until no node has a tunnel address, on tunl0 or recorded, nor a route over tunl0,
/// and the addresses it held are back in IPAM.
fn assert_no_tunnels(c: &Cluster, released: &[String]) {
    for i in 0..c.nodes.len() {
        let clean = || {
            tunl0(c, i).is_none_or(|(_, _, a)| a.is_empty())
                && tunnel_addr_of(c, i).is_none()
                && !c.nodes[i].routes().iter().any(|r| r.contains("tunl0"))
        };
        assert!(
            wait_until(WAIT, clean),
            "{} kept IPIP state: tunl0 {:?}, recorded {:?}, routes {:#?}",
            c.nodes[i].name,
            tunl0(c, i),
            tunnel_addr_of(c, i),
            c.nodes[i].routes()
        );
    }
    for a in released {
        let out = c
            .calicoctl(0, &["ipam", "show", "--ip", a])
            .expect("calicoctl ipam show");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("not currently assigned"), "{a}: {text}");
    }
}

/// Pings pod `b` from pod `a` until it answers; panics with the logs otherwise.
fn assert_ping(c: &Cluster, a: usize, b: usize) {
    assert!(
        wait_until(WAIT, || c.pods_ping(a, b)),
        "pod {} ({}) cannot ping pod {} ({})\n{:#?}\n{}",
        c.pods[a].name,
        c.pods[a].ip,
        c.pods[b].name,
        c.pods[b].ip,
        c.nodes.iter().map(|n| n.routes()).collect::<Vec<_>>(),
        c.logs(30)
    );
}

/// tcpdump on the fabric bridge `br0`, started before some traffic.
struct Capture {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Capture {
    /// Starts capturing `filter` on `br0` (subnet 0) and waits until tcpdump listens.
    fn start(c: &Cluster, filter: &str) -> Capture {
        let mut child = c
            .fabric
            .command("tcpdump")
            .args(["-i", "br0", "-nn", "-t", "-l", "-c", "4", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (package tcpdump)");
        let (tx, lines) = mpsc::channel();
        forward_lines(child.stdout.take(), tx.clone());
        forward_lines(child.stderr.take(), tx);
        let capture = Capture { child, lines };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match capture.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains("listening on") => return capture,
                _ => {}
            }
        }
        panic!("tcpdump did not start listening on br0");
    }

    /// Stops the capture (after the traffic) and returns the packets it printed.
    fn packets(mut self) -> Vec<String> {
        // Up to 4 packets end it by itself; otherwise SIGINT after a short grace.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.lines
            .try_iter()
            .filter(|l| l.contains(" > "))
            .collect()
    }
}

/// Sends each line `pipe` yields to `tx`, from a thread.
fn forward_lines(pipe: Option<impl Read + Send + 'static>, tx: mpsc::Sender<String>) {
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
}

/// Captures, on br0, IP protocol 4 (IPIP) to and from pod `b`'s node while pod `a` pings
/// pod `b`, and asserts each packet carries the ping between the pods (tcpdump shows it as
/// `IP <node> > <node>: IP <pod> > <pod>: ICMP ...`).
fn assert_encapsulated(c: &Cluster, a: usize, b: usize) {
    let (pa, pb) = (c.pods[a].ip, c.pods[b].ip);
    let (na, nb) = (c.nodes[c.pods[a].node].ip(), c.nodes[c.pods[b].node].ip());
    let packets = capture_ping(c, a, b, &format!("ip proto 4 and host {nb}"));
    assert!(!packets.is_empty(), "no IPIP packet on br0");
    for p in &packets {
        let ok = p.starts_with(&format!("IP {na} > {nb}: IP {pa} > {pb}: ICMP"))
            || p.starts_with(&format!("IP {nb} > {na}: IP {pb} > {pa}: ICMP"));
        assert!(
            ok,
            "not the pods' ping inside IPIP between their nodes: {p}"
        );
    }
}

/// Captures ICMP to and from pod `b` and IPIP to and from its node on br0 while pod `a`
/// pings pod `b`, and asserts all of it is plain ICMP between the pods.
fn assert_plain(c: &Cluster, a: usize, b: usize) {
    let (pa, pb) = (c.pods[a].ip, c.pods[b].ip);
    let nb = c.nodes[c.pods[b].node].ip();
    let filter = format!("(icmp and host {pb}) or (ip proto 4 and host {nb})");
    let packets = capture_ping(c, a, b, &filter);
    assert!(!packets.is_empty(), "no ICMP on br0");
    for p in &packets {
        let ok = p.starts_with(&format!("IP {pa} > {pb}: ICMP"))
            || p.starts_with(&format!("IP {pb} > {pa}: ICMP"));
        assert!(ok, "not plain ICMP between the pods: {p}");
    }
}

/// The packets matching `filter` seen on br0 while pod `a` pings pod `b`.
fn capture_ping(c: &Cluster, a: usize, b: usize, filter: &str) -> Vec<String> {
    let capture = Capture::start(c, filter);
    assert_ping(c, a, b);
    let packets = capture.packets();
    println!(
        "br0 ({filter}) while {} pings {}:\n{}",
        c.pods[a].name,
        c.pods[b].name,
        packets.join("\n")
    );
    packets
}

/// A lab whose agents create the pool with `CALICO_IPV4POOL_IPIP=mode`.
fn lab(node_subnets: Vec<usize>, mode: &str) -> Cluster {
    let mut spec = LabSpec::nodes(node_subnets.len())
        .env("CALICO_IPV4POOL_CIDR", POOL)
        .env("CALICO_IPV4POOL_IPIP", mode)
        .env("CALICO_IPV4POOL_NAT_OUTGOING", "false");
    spec.node_subnets = node_subnets;
    Cluster::start(spec).expect("lab")
}

/// `calicoctl apply -f -` of the pool with `ipipMode: mode`.
fn set_mode(c: &Cluster, mode: &str) {
    println!("==> ipipMode: {mode}");
    let out = c
        .calicoctl_stdin(0, &["apply", "-f", "-"], Some(&pool_yaml(mode)))
        .expect("calicoctl");
    assert!(
        out.status.success(),
        "calicoctl apply failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tests that need the kernel's ipip module.
mod needs_ipip_module {
    use super::*;

    #[test]
    #[ignore = "needs root netns and the kernel's ipip module (scripts/test runs it in the VM: vm_ipip)"]
    fn ipip_mode_switches_live_never_always_cross_subnet_never() {
        let _one = one_lab_at_a_time();
        require_kernel_ipip();
        // node1 and node2 on subnet 0, node3 on subnet 1 behind the lab's router.
        let mut c = lab(vec![0, 0, 1], "Never");
        let p1 = c.add_pod(0, "p1").expect("pod p1");
        let p2 = c.add_pod(1, "p2").expect("pod p2");
        let p3 = c.add_pod(2, "p3").expect("pod p3");
        wait_route(&c, 0, &route_to(&c, p2, 1, false));
        assert_ping(&c, p1, p2);
        assert_no_tunnels(&c, &[]);

        // A ping that runs through every switch.
        let started = unix_now();
        let ping = Pinger::start(
            &c.pods[p1].ns,
            &c.pods[p2].ip.to_string(),
            "0.2",
            c.path().join("ping.log"),
        );
        assert!(ping.wait_answers(3, WAIT), "no ping before the switches");

        set_mode(&c, "Always");
        let addrs = assert_tunnels(&c);
        wait_route(&c, 0, &route_to(&c, p2, 1, true));
        wait_route(&c, 1, &route_to(&c, p1, 0, true));
        wait_route(&c, 0, &route_to(&c, p3, 2, true));
        wait_route(&c, 2, &route_to(&c, p1, 0, true));
        wait_route(&c, 2, &route_to(&c, p2, 1, true));
        assert_ping(&c, p3, p2);
        assert_encapsulated(&c, p1, p2);
        assert_encapsulated(&c, p1, p3);

        set_mode(&c, "CrossSubnet");
        wait_route(&c, 0, &route_to(&c, p2, 1, false));
        wait_route(&c, 1, &route_to(&c, p1, 0, false));
        wait_route(&c, 0, &route_to(&c, p3, 2, true));
        wait_route(&c, 2, &route_to(&c, p1, 0, true));
        assert_eq!(assert_tunnels(&c), addrs, "tunnel addresses changed");
        assert_plain(&c, p1, p2);
        assert_encapsulated(&c, p1, p3);

        set_mode(&c, "Never");
        assert_no_tunnels(&c, &addrs);
        wait_route(&c, 0, &route_to(&c, p2, 1, false));
        assert_plain(&c, p1, p2);

        // Answers after the last switch, so its losses would show.
        assert!(
            ping.wait_answers(5, WAIT),
            "ping did not answer after Never"
        );
        let tally = ping.stop(started);
        println!("ping through the switches (every 0.2 s): {tally:?}");
        assert_eq!(tally.lost, 0, "pings lost across the switches: {tally:?}");
    }
}
