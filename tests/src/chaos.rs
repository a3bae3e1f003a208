//! The chaos suite: real etcd (one member, or three), real calico-node on every node, real
//! CNI plugins, real kernels in namespaces, a pool small enough that nodes must borrow.
//! While workers add and delete pods in parallel (as runtimes do, including the DEL a
//! runtime sends after a failed ADD and the late DEL of a recreated pod's old sandbox),
//! faults are injected at random moments: etcd SIGKILLed and restarted (or the leader of a
//! 3-member cluster), CNI plugins SIGKILLed mid-ADD and mid-DEL, calico-node kill -9 and
//! restart, a node's link to etcd cut (a netfilter drop inside its namespace).
//!
//! Checked while it runs: never two live pods with one address, never a pod address equal
//! to a tunnel address. Checked after the churn and the leak grace period: `calicoctl ipam
//! check` finds no problem, every live pod pings every other, no veth, host route or
//! WorkloadEndpoint is left for a pod that no longer exists, and no calico-node needed a
//! hand. [`run`] returns the figures ([`ChaosReport`]) or the first broken invariant.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{CTL_IP, Cluster, LabSpec};
use crate::cni::{Call, run_killable};
use crate::netns::{Netns, wait_until};
use crate::ping::{Pinger, unix_now};

/// How a chaos run is shaped.
#[derive(Debug, Clone)]
pub struct ChaosSpec {
    pub nodes: usize,
    /// 1 (killed and restarted) or 3 (the leader killed).
    pub etcd_members: usize,
    /// Pod operations (add, delete, recreate, late DEL) at least; the churn goes on until
    /// both these and the fault rounds are done.
    pub min_operations: usize,
    /// Rounds of faults; each round injects every kind once, in a random order.
    pub fault_rounds: usize,
    /// Parallel CNI callers.
    pub workers: usize,
    pub max_pods_per_node: usize,
    /// Mean time between injected faults.
    pub fault_every: Duration,
    /// How long a node's link to etcd stays cut.
    pub etcd_cut_for: Duration,
    /// Chance that a CNI call is SIGKILLed part-way.
    pub cni_kill_chance: f64,
    /// Chance that an operation recreates a pod's sandbox (its old DEL then comes late).
    pub recreate_chance: f64,
    /// calico-node's leaked-address grace period.
    pub leak_grace: Duration,
    pub seed: u64,
}

impl ChaosSpec {
    /// The bounded run of the test command (a few minutes on two cores).
    pub fn bounded(etcd_members: usize) -> ChaosSpec {
        ChaosSpec {
            nodes: 5,
            etcd_members,
            min_operations: 200,
            fault_rounds: 3,
            workers: 3,
            max_pods_per_node: 5,
            fault_every: Duration::from_secs(3),
            etcd_cut_for: Duration::from_secs(5),
            cni_kill_chance: 0.1,
            recreate_chance: 0.1,
            leak_grace: Duration::from_secs(5),
            seed: 0x5eed_c4a0_5000 + etcd_members as u64,
        }
    }

    /// The full run of the chaos example.
    pub fn full(etcd_members: usize) -> ChaosSpec {
        ChaosSpec {
            min_operations: 1_500,
            fault_rounds: 10,
            workers: 4,
            max_pods_per_node: 6,
            fault_every: Duration::from_secs(4),
            etcd_cut_for: Duration::from_secs(20),
            leak_grace: Duration::from_secs(10),
            ..ChaosSpec::bounded(etcd_members)
        }
    }
}

/// The kinds of fault injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    EtcdKilled,
    EtcdLeaderKilled,
    CniKilledMidAdd,
    CniKilledMidDel,
    CalicoNodeKilled,
    EtcdLinkCut,
    LateDel,
}

/// What a run did and saw.
#[derive(Debug, Default, Clone)]
pub struct ChaosReport {
    pub etcd_members: usize,
    /// Pod operations (add, delete, recreate, late DEL).
    pub operations: usize,
    /// CNI plugin calls (DEL retries included).
    pub cni_calls: usize,
    pub adds_ok: usize,
    pub adds_failed: usize,
    pub dels_ok: usize,
    pub faults: BTreeMap<Fault, usize>,
    pub duplicates: usize,
    pub tunnel_collisions: usize,
    /// Addresses `ipam check` found leaked right after the churn stopped.
    pub leaked_after_churn: usize,
    /// Addresses calico-node released as leaked (its log lines).
    pub leaked_collected: usize,
    /// From the end of the last fault to every check passing.
    pub converged_after: Duration,
    /// Pings lost between two pods that lived through the whole run (every 0.1 s).
    pub pings_sent: u64,
    pub pings_lost: u64,
    pub live_pods_at_end: usize,
    /// calico-node processes that ended by themselves and were started again (as a
    /// supervisor would).
    pub agent_self_exits: usize,
    pub elapsed: Duration,
}

impl Fault {
    /// The row of the README table (both etcd kills share one).
    fn label(self) -> &'static str {
        match self {
            Fault::EtcdKilled | Fault::EtcdLeaderKilled => {
                "fault: etcd SIGKILLed (of 3 members: the leader)"
            }
            Fault::CniKilledMidAdd => "fault: CNI plugin SIGKILLed mid-ADD",
            Fault::CniKilledMidDel => "fault: CNI plugin SIGKILLed mid-DEL",
            Fault::CalicoNodeKilled => "fault: calico-node SIGKILLed",
            Fault::EtcdLinkCut => "fault: a node's link to etcd cut",
            Fault::LateDel => "fault: late DEL of a recreated sandbox",
        }
    }
}

impl ChaosReport {
    fn fault_count(&self, label: &str) -> usize {
        self.faults
            .iter()
            .filter(|(f, _)| f.label() == label)
            .map(|(_, n)| n)
            .sum()
    }

    fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            (
                "pod operations (add, delete, recreate)",
                self.operations.to_string(),
            ),
            (
                "CNI calls (DEL retries included)",
                self.cni_calls.to_string(),
            ),
            (
                "ADD ok / failed (cleaned up by the runtime's DEL)",
                format!("{} / {}", self.adds_ok, self.adds_failed),
            ),
            ("DEL ok", self.dels_ok.to_string()),
        ];
        // One row per kind (both etcd kills share theirs), in this order.
        let kinds = [
            Fault::EtcdKilled,
            Fault::CalicoNodeKilled,
            Fault::EtcdLinkCut,
            Fault::CniKilledMidAdd,
            Fault::CniKilledMidDel,
            Fault::LateDel,
        ];
        rows.extend(
            kinds
                .into_iter()
                .map(|f| (f.label(), self.fault_count(f.label()).to_string())),
        );
        rows.extend([
            ("duplicate addresses seen", self.duplicates.to_string()),
            (
                "pod address = a tunnel address",
                self.tunnel_collisions.to_string(),
            ),
            (
                "leaked right after the churn",
                self.leaked_after_churn.to_string(),
            ),
            (
                "leaked and collected by calico-node",
                self.leaked_collected.to_string(),
            ),
            (
                "converged after the last fault",
                format!("{:.1} s", self.converged_after.as_secs_f64()),
            ),
            (
                "canary pings lost (every 0.1 s)",
                format!("{} of {}", self.pings_lost, self.pings_sent),
            ),
            ("live pods at the end", self.live_pods_at_end.to_string()),
            (
                "calico-node self-exits restarted",
                self.agent_self_exits.to_string(),
            ),
            ("run time", format!("{:.0} s", self.elapsed.as_secs_f64())),
        ]);
        rows
    }

    /// This run as a Markdown table.
    pub fn table(&self) -> String {
        ChaosReport::table_of(std::slice::from_ref(self))
    }

    /// Runs side by side, one column each, as a Markdown table (the README quotes it).
    pub fn table_of(reports: &[ChaosReport]) -> String {
        let columns: Vec<Vec<(&str, String)>> = reports.iter().map(ChaosReport::rows).collect();
        let Some(first) = columns.first() else {
            return String::new();
        };
        let width = first.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("| {:<width$} |", "");
        for r in reports {
            out.push_str(&format!(" {:>12} |", format!("{} etcd", r.etcd_members)));
        }
        out.push_str(&format!("\n|{}|", "-".repeat(width + 2)));
        for _ in reports {
            out.push_str(&format!("{}:|", "-".repeat(13)));
        }
        out.push('\n');
        for (i, (label, _)) in first.iter().enumerate() {
            out.push_str(&format!("| {label:<width$} |"));
            for column in &columns {
                let value = column.get(i).map_or("", |(_, v)| v.as_str());
                out.push_str(&format!(" {value:>12} |"));
            }
            out.push('\n');
        }
        out
    }
}

/// A small deterministic generator (the run is reproducible by its seed, up to timing).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// A pod the workers created and have not deleted.
struct LivePod {
    node: usize,
    container: String,
    ip: Ipv4Addr,
    ns: Netns,
}

/// What the workers share.
#[derive(Default)]
struct World {
    live: BTreeMap<String, LivePod>,
    /// Old containers of recreated pods whose DEL is still to come: (node, container, pod).
    late_dels: Vec<(usize, String, String)>,
    /// Tunnel addresses as last read from the Nodes.
    tunnels: BTreeSet<Ipv4Addr>,
    report: ChaosReport,
    violations: Vec<String>,
}

/// What a worker needs of the lab (owned, so the main thread keeps the lab to itself).
struct NodeAccess {
    ns_names: Vec<String>,
    /// Prefix of the pod namespaces (the lab's tag).
    pod_ns_prefix: String,
    confs: Vec<String>,
    cni_path: PathBuf,
    calls: AtomicUsize,
    /// Every CNI call with its outcome and the plugin's log lines.
    journal: Mutex<std::fs::File>,
}

fn pod_args(pod: &str) -> String {
    format!("K8S_POD_NAMESPACE=chaos;K8S_POD_NAME={pod}")
}

impl NodeAccess {
    fn call(
        &self,
        node: usize,
        command: &'static str,
        container: &str,
        netns: Option<&str>,
        pod: &str,
        kill_after: Option<Duration>,
    ) -> Result<Option<crate::cni::CniOutput>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = unix_now();
        let out = run_killable(
            &self.ns_names[node],
            &self.cni_path,
            &self.confs[node],
            &Call {
                plugin: "calico",
                command,
                container_id: container,
                netns,
                ifname: "eth0",
                args: &pod_args(pod),
            },
            kill_after,
        );
        let outcome = match &out {
            Ok(Some(o)) => format!("exit {:?} {}\n{}", o.code, o.stdout.trim(), o.stderr.trim()),
            Ok(None) => format!("SIGKILLed after {kill_after:?}"),
            Err(e) => format!("not run: {e:#}"),
        };
        let line = format!(
            "{started:.3} node{} {command} {container} ({pod}): {outcome}\n",
            node + 1
        );
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let _ = std::io::Write::write_all(&mut *journal, line.as_bytes());
        out
    }

    /// A DEL as a runtime sends it: retried until it succeeds (the store may be away).
    fn del_until_ok(&self, node: usize, container: &str, netns: Option<&str>, pod: &str) -> bool {
        for attempt in 0..60 {
            if let Ok(Some(out)) = self.call(node, "DEL", container, netns, pod, None)
                && out.success()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200 + 50 * attempt.min(10)));
        }
        false
    }
}

/// One worker: picks an operation and does it, until told to stop.
fn worker(
    id: usize,
    spec: &ChaosSpec,
    access: &NodeAccess,
    world: &Mutex<World>,
    stop: &AtomicBool,
    counter: &AtomicUsize,
) {
    let mut rng = Rng(spec.seed ^ (0x9e37_79b9 * (id as u64 + 1)));
    let lock = || world.lock().unwrap_or_else(|p| p.into_inner());
    while !stop.load(Ordering::SeqCst) {
        lock().report.operations += 1;
        let node = rng.below(spec.nodes);
        let late = {
            let mut w = lock();
            if !w.late_dels.is_empty() && rng.chance(0.5) {
                let i = rng.below(w.late_dels.len());
                Some(w.late_dels.swap_remove(i))
            } else {
                None
            }
        };
        if let Some((n, container, pod)) = late {
            // The old sandbox is gone: its DEL names a namespace that no longer exists.
            let ok = access.del_until_ok(n, &container, Some("/run/netns/sandbox-gone"), &pod);
            let mut w = lock();
            *w.report.faults.entry(Fault::LateDel).or_default() += 1;
            if ok {
                w.report.dels_ok += 1;
            }
            continue;
        }
        let on_node: Vec<String> = lock()
            .live
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(n, _)| n.clone())
            .collect();
        if on_node.len() < spec.max_pods_per_node && (on_node.is_empty() || rng.chance(0.6)) {
            add(spec, access, world, &mut rng, node, counter);
        } else if let Some(pod) = on_node.get(rng.below(on_node.len())) {
            if rng.chance(spec.recreate_chance) {
                recreate(access, world, node, pod, counter);
            } else {
                delete(spec, access, world, &mut rng, pod);
            }
        }
    }
}

fn add(
    spec: &ChaosSpec,
    access: &NodeAccess,
    world: &Mutex<World>,
    rng: &mut Rng,
    node: usize,
    counter: &AtomicUsize,
) {
    let lock = || world.lock().unwrap_or_else(|p| p.into_inner());
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let pod = format!("p{n}");
    let container = format!("{pod}-c0");
    let Ok(ns) = Netns::create(&format!("{}x{n}", access.pod_ns_prefix)) else {
        return;
    };
    let path = ns.path();
    let kill = rng.chance(spec.cni_kill_chance).then(|| rng.millis(5, 80));
    let out = access.call(node, "ADD", &container, Some(&path), &pod, kill);
    match out {
        Ok(Some(out)) if out.success() => {
            let mut w = lock();
            let Ok(ip) = out.ip() else {
                w.violations
                    .push(format!("ADD of {pod} succeeded without an IPv4 address"));
                return;
            };
            if let Some((other, _)) = w.live.iter().find(|(_, p)| p.ip == ip) {
                let v = format!("{ip} handed to {pod} while {other} has it");
                w.violations.push(v);
                w.report.duplicates += 1;
            }
            if w.tunnels.contains(&ip) {
                w.violations
                    .push(format!("{ip} handed to {pod} is a tunnel address"));
                w.report.tunnel_collisions += 1;
            }
            w.report.adds_ok += 1;
            w.live.insert(
                pod,
                LivePod {
                    node,
                    container,
                    ip,
                    ns,
                },
            );
        }
        result => {
            {
                let mut w = lock();
                if matches!(result, Ok(None)) {
                    *w.report.faults.entry(Fault::CniKilledMidAdd).or_default() += 1;
                } else {
                    w.report.adds_failed += 1;
                }
            }
            // The runtime cleans up a failed ADD with a DEL.
            if access.del_until_ok(node, &container, Some(&path), &pod) {
                lock().report.dels_ok += 1;
            }
        }
    }
}

fn delete(spec: &ChaosSpec, access: &NodeAccess, world: &Mutex<World>, rng: &mut Rng, pod: &str) {
    let lock = || world.lock().unwrap_or_else(|p| p.into_inner());
    let Some(p) = lock().live.remove(pod) else {
        return;
    };
    let path = p.ns.path();
    let kill = rng.chance(spec.cni_kill_chance).then(|| rng.millis(5, 80));
    let first = access.call(p.node, "DEL", &p.container, Some(&path), pod, kill);
    let ok = match first {
        Ok(Some(out)) if out.success() => true,
        Ok(None) => {
            *lock()
                .report
                .faults
                .entry(Fault::CniKilledMidDel)
                .or_default() += 1;
            access.del_until_ok(p.node, &p.container, Some(&path), pod)
        }
        _ => access.del_until_ok(p.node, &p.container, Some(&path), pod),
    };
    if ok {
        lock().report.dels_ok += 1;
    }
    drop(p.ns);
}

/// The pod's sandbox dies and the runtime makes a new one: ADD of a new container for the
/// same pod; the old container's DEL comes later.
fn recreate(
    access: &NodeAccess,
    world: &Mutex<World>,
    node: usize,
    pod: &str,
    counter: &AtomicUsize,
) {
    let lock = || world.lock().unwrap_or_else(|p| p.into_inner());
    let Some(old) = lock().live.remove(pod) else {
        return;
    };
    let n = counter.fetch_add(1, Ordering::SeqCst);
    drop(old.ns);
    let container = format!("{pod}-c{n}");
    let Ok(ns) = Netns::create(&format!("{}x{n}", access.pod_ns_prefix)) else {
        lock()
            .late_dels
            .push((node, old.container, pod.to_string()));
        return;
    };
    let path = ns.path();
    let out = access.call(node, "ADD", &container, Some(&path), pod, None);
    let mut w = lock();
    w.late_dels.push((node, old.container, pod.to_string()));
    match out {
        Ok(Some(out)) if out.success() => match out.ip() {
            Ok(ip) => {
                if let Some((other, _)) = w.live.iter().find(|(_, p)| p.ip == ip) {
                    let v = format!("{ip} handed to {pod} (recreated) while {other} has it");
                    w.violations.push(v);
                    w.report.duplicates += 1;
                }
                w.report.adds_ok += 1;
                w.live.insert(
                    pod.to_string(),
                    LivePod {
                        node,
                        container,
                        ip,
                        ns,
                    },
                );
            }
            Err(_) => w.violations.push(format!(
                "ADD of {pod} (recreated) succeeded without an IPv4 address"
            )),
        },
        _ => {
            w.report.adds_failed += 1;
            drop(w);
            if access.del_until_ok(node, &container, Some(&path), pod) {
                lock().report.dels_ok += 1;
            }
        }
    }
}

/// The tunnel addresses the Nodes record.
fn tunnel_addresses(c: &Cluster) -> BTreeSet<Ipv4Addr> {
    let Ok(out) = c.calicoctl(0, &["get", "nodes", "-o", "json"]) else {
        return BTreeSet::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .flat_map(|n| {
            [
                n["spec"]["ipv4VXLANTunnelAddr"].as_str(),
                n["spec"]["bgp"]["ipv4IPIPTunnelAddr"].as_str(),
            ]
        })
        .flatten()
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect()
}

/// Member index of the current etcd leader.
fn etcd_leader(c: &Cluster) -> Option<usize> {
    let endpoints = c.etcd_endpoint();
    let out = c
        .ctl
        .exec(
            "etcdctl",
            &[
                "--endpoints",
                &endpoints,
                "endpoint",
                "status",
                "-w",
                "json",
            ],
        )
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let leader = v.as_array()?.iter().find(|e| {
        e["Status"]["header"]["member_id"].as_u64().is_some()
            && e["Status"]["header"]["member_id"] == e["Status"]["leader"]
    })?;
    let url = leader["Endpoint"].as_str()?;
    std::iter::once(&c.etcd)
        .chain(&c.etcd_peers)
        .position(|m| m.endpoint() == url)
}

/// Calico-node processes that exited on their own, started again (a supervisor's job).
fn restart_exited_agents(c: &mut Cluster) -> usize {
    let mut n = 0;
    for i in 0..c.nodes.len() {
        if c.nodes[i].agent_exit_status().is_some() && c.start_agent(i).is_ok() {
            n += 1;
        }
    }
    n
}

/// The faults of one round, in a random order.
fn fault_round(spec: &ChaosSpec, rng: &mut Rng) -> Vec<Fault> {
    let etcd = if spec.etcd_members > 1 {
        Fault::EtcdLeaderKilled
    } else {
        Fault::EtcdKilled
    };
    let mut kinds = vec![Fault::CalicoNodeKilled, Fault::EtcdLinkCut, etcd];
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i + 1));
    }
    kinds
}

/// Injects `fault` and undoes it (restarts what it killed, restores what it cut).
fn inject(c: &mut Cluster, spec: &ChaosSpec, rng: &mut Rng, fault: Fault) -> Result<()> {
    match fault {
        Fault::EtcdKilled => {
            c.etcd.kill();
            std::thread::sleep(rng.millis(1_000, 3_000));
            c.etcd.restart_in(&c.ctl).context("restarting etcd")?;
        }
        Fault::EtcdLeaderKilled => {
            let leader = etcd_leader(c).context("no etcd member reports being the leader")?;
            let (ctl, member) = match leader {
                0 => (&c.ctl, &mut c.etcd),
                i => (&c.ctl, &mut c.etcd_peers[i - 1]),
            };
            member.kill();
            std::thread::sleep(rng.millis(2_000, 4_000));
            member
                .restart_in(ctl)
                .context("restarting the etcd member")?;
        }
        Fault::CalicoNodeKilled => {
            let i = rng.below(c.nodes.len());
            c.kill_agent(i);
            std::thread::sleep(rng.millis(500, 2_000));
            c.start_agent(i).context("restarting calico-node")?;
        }
        Fault::EtcdLinkCut => {
            let i = rng.below(c.nodes.len());
            let rule = format!("OUTPUT -p tcp -d {CTL_IP} -j DROP");
            c.nodes[i].ns.sh(&format!("iptables -I {rule}"))?;
            std::thread::sleep(spec.etcd_cut_for);
            c.nodes[i].ns.sh(&format!("iptables -D {rule}"))?;
        }
        Fault::CniKilledMidAdd | Fault::CniKilledMidDel | Fault::LateDel => {}
    }
    Ok(())
}

/// "N IPs that are allocated in IPAM but not actually in use" of `calicoctl ipam check`.
fn leaked_now(c: &Cluster) -> Option<usize> {
    let out = c.calicoctl(0, &["ipam", "check"]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("IPs that are allocated in IPAM but not actually in use"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ipam_clean(c: &Cluster) -> Result<(), String> {
    let out = c
        .calicoctl(0, &["ipam", "check"])
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("Check complete; found 0 problems.") {
        Ok(())
    } else {
        Err(text)
    }
}

/// Every live pod pings every other (and the two canaries).
fn all_ping(c: &Cluster, live: &[(Ipv4Addr, &Netns)]) -> Result<(), String> {
    let mut all: Vec<(Ipv4Addr, &Netns)> = live.to_vec();
    all.extend(c.pods.iter().map(|p| (p.ip, &p.ns)));
    for (from_ip, from) in &all {
        for (to_ip, _) in &all {
            if from_ip == to_ip {
                continue;
            }
            let ok = from
                .exec("ping", &["-c", "1", "-W", "2", "-q", &to_ip.to_string()])
                .is_ok_and(|o| o.status.success());
            if !ok && !from.ping(&to_ip.to_string(), 3) {
                return Err(format!("{from_ip} cannot ping {to_ip}"));
            }
        }
    }
    Ok(())
}

/// Nothing is left of a pod that no longer exists: per node, the cali veths and their host
/// routes are exactly the live pods', and the WorkloadEndpoints are exactly theirs.
fn no_leftovers(c: &Cluster, live: &BTreeMap<usize, BTreeSet<Ipv4Addr>>) -> Result<(), String> {
    for (i, node) in c.nodes.iter().enumerate() {
        let want: BTreeSet<Ipv4Addr> = live
            .get(&i)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .chain(c.pods.iter().filter(|p| p.node == i).map(|p| p.ip))
            .collect();
        let routed: BTreeSet<Ipv4Addr> = node
            .routes()
            .iter()
            .filter(|r| r.contains(" dev cali"))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        if routed != want {
            return Err(format!(
                "{}: pod routes {routed:?}, live pods {want:?}",
                node.name
            ));
        }
        let links = node.ns.ip(&["-o", "link", "show"]).unwrap_or_default();
        let veths = links.lines().filter(|l| l.contains(": cali")).count();
        if veths != want.len() {
            return Err(format!(
                "{}: {veths} cali veths for {} pods",
                node.name,
                want.len()
            ));
        }
    }
    let out = c
        .calicoctl(0, &["get", "workloadendpoints", "-A", "-o", "json"])
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let weps = v["items"].as_array().map_or(0, Vec::len);
    let pods = live.values().map(BTreeSet::len).sum::<usize>() + c.pods.len();
    if weps != pods {
        return Err(format!("{weps} WorkloadEndpoints for {pods} pods"));
    }
    Ok(())
}

/// Runs the suite; the first broken invariant is the error.
pub fn run(spec: &ChaosSpec) -> Result<ChaosReport> {
    let started = Instant::now();
    let mut c = Cluster::start(LabSpec {
        etcd_members: spec.etcd_members,
        ..LabSpec::nodes(spec.nodes)
            .env("CALICO_IPV4POOL_CIDR", "10.244.0.0/26")
            .env("CALICO_IPV4POOL_BLOCK_SIZE", "28")
            .env("CALICO_IPV4POOL_VXLAN", "Always")
            .env(
                "CALICO_IPAM_LEAK_GRACE",
                &spec.leak_grace.as_secs().to_string(),
            )
    })?;
    // Two pods that live through the whole run, pinging each other.
    let a = c.add_pod(0, "canary-a")?;
    let b = c.add_pod(1, "canary-b")?;
    if !wait_until(Duration::from_secs(60), || c.pods_ping(a, b)) {
        bail!("the canaries never reached each other\n{}", c.logs(20));
    }
    let ping_from = unix_now();
    let pinger = Pinger::start(
        &c.pods[a].ns,
        &c.pods[b].ip.to_string(),
        "0.1",
        c.path().join("canary-ping.log"),
    );
    let access = NodeAccess {
        ns_names: c.nodes.iter().map(|n| n.ns.name().to_string()).collect(),
        pod_ns_prefix: c.tag().to_string(),
        confs: (0..c.nodes.len())
            .map(|i| {
                let mut conf = c.cni_conf(i);
                conf.log_level = "info".into();
                conf.json()
            })
            .collect(),
        cni_path: c.cni_path().to_path_buf(),
        calls: AtomicUsize::new(0),
        journal: Mutex::new(std::fs::File::create(c.path().join("cni-calls.log"))?),
    };
    let world = Mutex::new(World::default());
    world.lock().unwrap_or_else(|p| p.into_inner()).tunnels = tunnel_addresses(&c);
    let stop = AtomicBool::new(false);
    let counter = AtomicUsize::new(0);
    let mut rng = Rng(spec.seed | 1);
    let mut last_fault_end = Instant::now();
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut self_exits = 0;
    let mut fault_error = None;
    std::thread::scope(|s| {
        for id in 0..spec.workers {
            let (access, world, stop, counter) = (&access, &world, &stop, &counter);
            s.spawn(move || worker(id, spec, access, world, stop, counter));
        }
        let every = spec.fault_every.as_millis() as u64;
        let plan: Vec<Fault> = (0..spec.fault_rounds)
            .flat_map(|_| fault_round(spec, &mut rng))
            .collect();
        for fault in plan {
            std::thread::sleep(rng.millis(every / 2, every * 3 / 2));
            if let Err(e) = inject(&mut c, spec, &mut rng, fault) {
                fault_error = Some(e);
                break;
            }
            *faults.entry(fault).or_default() += 1;
            last_fault_end = Instant::now();
            self_exits += restart_exited_agents(&mut c);
            let tunnels = tunnel_addresses(&c);
            let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
            let clash: Vec<String> = w
                .live
                .iter()
                .filter(|(_, p)| tunnels.contains(&p.ip))
                .map(|(n, p)| format!("{n} has {} which is a tunnel address", p.ip))
                .collect();
            w.report.tunnel_collisions += clash.len();
            w.violations.extend(clash);
            w.tunnels = tunnels;
        }
        let churned = || {
            world
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .report
                .operations
        };
        while fault_error.is_none() && churned() < spec.min_operations {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
    });
    if let Some(e) = fault_error {
        return Err(e.context("injecting a fault"));
    }
    self_exits += restart_exited_agents(&mut c);
    let mut w = world.into_inner().unwrap_or_else(|p| p.into_inner());
    // The late DELs still owed.
    for (node, container, pod) in std::mem::take(&mut w.late_dels) {
        if access.del_until_ok(node, &container, Some("/run/netns/sandbox-gone"), &pod) {
            w.report.dels_ok += 1;
        }
        *w.report.faults.entry(Fault::LateDel).or_default() += 1;
    }
    if !w.violations.is_empty() {
        let kept = keep_evidence(&c);
        bail!(
            "invariants broken during the run (lab files in {kept}):\n{}",
            w.violations.join("\n")
        );
    }
    let mut report = std::mem::take(&mut w.report);
    for (f, n) in faults {
        *report.faults.entry(f).or_default() += n;
    }
    report.etcd_members = spec.etcd_members;
    report.cni_calls = access.calls.load(Ordering::Relaxed);
    report.agent_self_exits = self_exits;
    report.leaked_after_churn = leaked_now(&c).unwrap_or(0);

    // Convergence: after the leak grace, everything must be clean without a hand.
    let mut by_node: BTreeMap<usize, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for p in w.live.values() {
        by_node.entry(p.node).or_default().insert(p.ip);
    }
    let live: Vec<(Ipv4Addr, &Netns)> = w.live.values().map(|p| (p.ip, &p.ns)).collect();
    let distinct: BTreeSet<Ipv4Addr> = live.iter().map(|(ip, _)| *ip).collect();
    if distinct.len() != live.len() {
        bail!("two live pods share an address");
    }
    let bound = spec.leak_grace + Duration::from_secs(120);
    let mut last = String::new();
    let converged = wait_until(bound, || {
        let state = ipam_clean(&c)
            .and_then(|()| no_leftovers(&c, &by_node))
            .and_then(|()| all_ping(&c, &live));
        match state {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    if !converged {
        let kept = keep_evidence(&c);
        bail!(
            "not converged {bound:?} after the churn (lab files in {kept}): {last}\n{}",
            c.logs(30)
        );
    }
    report.converged_after = last_fault_end.elapsed();
    let tally = pinger.stop(ping_from);
    report.pings_sent = tally.sent;
    report.pings_lost = tally.lost;
    report.live_pods_at_end = live.len() + c.pods.len();
    report.leaked_collected = c
        .nodes
        .iter()
        .map(|n| {
            n.agent_log(usize::MAX)
                .matches("released a leaked address")
                .count()
        })
        .sum();
    report.elapsed = started.elapsed();
    drop(live);
    drop(w);
    Ok(report)
}

/// Copies the lab's files (agent logs, the CNI journal) and every node's links and routes
/// to a directory that outlives the lab; returns where.
fn keep_evidence(c: &Cluster) -> String {
    let dest = std::env::temp_dir().join(format!(
        "calico-rs-chaos-{}-{}",
        std::process::id(),
        c.tag()
    ));
    let _ = std::fs::create_dir_all(&dest);
    let _ = std::process::Command::new("cp")
        .arg("-r")
        .arg(c.path())
        .arg(dest.join("lab"))
        .status();
    for node in &c.nodes {
        let links = node.ns.ip(&["-d", "link", "show"]).unwrap_or_default();
        let routes = node.routes().join("\n");
        let text = format!("# ip -d link\n{links}\n# ip route\n{routes}\n");
        let _ = std::fs::write(dest.join(format!("{}.kernel", node.name)), text);
    }
    dest.display().to_string()
}
