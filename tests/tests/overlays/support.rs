//! Helpers for the overlay labs: pool YAML, what each node's kernel holds (owned routes,
//! the VXLAN device, neighbours, FDB, counters), the state each mode should leave, a
//! background ping that counts its losses, and a tcpdump capture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lab::cluster::{Cluster, LabNode};
use lab::{Daemon, Netns, wait_until};

/// The VXLAN device Calico creates.
pub const VXLAN: &str = "vxlan.calico";
/// The pool every overlay lab uses.
pub const POOL_CIDR: &str = "10.244.0.0/16";
/// How long a lab may take to reach a state (bounds a failing test; no speed assertion):
/// longer inside the IPIP VM (`CALICO_RS_VM` set), whose CPU is emulated.
pub fn settle() -> Duration {
    if std::env::var_os("CALICO_RS_VM").is_some() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    }
}

/// Labs in one test binary share namespace names: one lab at a time.
pub fn one_lab_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// An encapsulation mode as the pool spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Never,
    Always,
    CrossSubnet,
}

impl Mode {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Never => "Never",
            Mode::Always => "Always",
            Mode::CrossSubnet => "CrossSubnet",
        }
    }

    /// True when traffic to a node (on our subnet or not) is encapsulated.
    pub fn encapsulates(self, same_subnet: bool) -> bool {
        match self {
            Mode::Never => false,
            Mode::Always => true,
            Mode::CrossSubnet => !same_subnet,
        }
    }
}

/// The default pool with the given modes.
pub fn pool_yaml(ipip: Mode, vxlan: Mode, nat_outgoing: bool) -> String {
    format!(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: {POOL_CIDR}
  blockSize: 26
  ipipMode: {}
  vxlanMode: {}
  natOutgoing: {nat_outgoing}
  nodeSelector: all()
",
        ipip.as_str(),
        vxlan.as_str()
    )
}

/// Runs `sh -c script` in `ns`; empty on failure (callers compare with expectations).
pub fn sh(ns: &Netns, script: &str) -> String {
    ns.sh(script).unwrap_or_default()
}

/// What the tests read of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub ip: String,
    pub subnet: usize,
    /// The node's affine blocks (its blackhole routes).
    pub blocks: Vec<String>,
    /// The VTEP (vxlan.calico's /32) and MAC, when the device exists.
    pub vtep: Option<(String, String)>,
    /// tunl0's address, when it has one.
    pub tunl0: Option<String>,
}

/// The first IPv4 address of `dev`, without prefix.
pub fn device_address(ns: &Netns, dev: &str) -> Option<String> {
    let text = sh(ns, &format!("ip -4 -o addr show dev {dev} 2>/dev/null"));
    let mut words = text.split_whitespace();
    words.find(|w| *w == "inet")?;
    Some(words.next()?.split('/').next()?.to_string())
}

/// Reads the facts of node `n`.
pub fn facts(n: &LabNode) -> NodeFacts {
    let mut blocks: Vec<String> = n
        .routes()
        .iter()
        .filter_map(|r| r.strip_prefix("blackhole "))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect();
    blocks.sort();
    let vtep = device_address(&n.ns, VXLAN).map(|addr| {
        let mac = sh(&n.ns, &format!("cat /sys/class/net/{VXLAN}/address"));
        (addr, mac.trim().to_string())
    });
    NodeFacts {
        ip: n.ip().to_string(),
        subnet: n.subnet,
        blocks,
        vtep,
        tunl0: device_address(&n.ns, "tunl0"),
    }
}

/// The routes of node `n` calico-node owns, as `ip route` prints them: `proto bird`,
/// `proto 80` and anything through a tunnel device.
pub fn owned_routes(n: &LabNode) -> BTreeSet<String> {
    n.routes()
        .into_iter()
        .filter(|r| {
            !r.contains("proto kernel")
                && (r.contains("proto bird")
                    || r.contains("proto 80")
                    || r.contains("dev vxlan.calico")
                    || r.contains("dev tunl0"))
        })
        .collect()
}

/// Which backend carries routes (decides the protocol of our own blackholes and whether
/// unencapsulated routes come from BGP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Bgp,
    Vxlan,
}

/// The kernel state node `me` should hold under `ipip`/`vxlan`, given every node's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub routes: BTreeSet<String>,
    pub neighbours: BTreeSet<String>,
    pub fdb: BTreeSet<String>,
}

/// Computes [`Expected`] for node `me` (reference §4.6, §4.7).
pub fn expected(
    all: &[NodeFacts],
    me: usize,
    backend: Backend,
    ipip: Mode,
    vxlan: Mode,
) -> Expected {
    let mut out = Expected::default();
    let own = &all[me];
    let proto = match backend {
        Backend::Bgp => "proto bird",
        Backend::Vxlan => "proto 80",
    };
    for b in &own.blocks {
        out.routes.insert(format!("blackhole {b} {proto}"));
    }
    for (j, other) in all.iter().enumerate() {
        if j == me {
            continue;
        }
        let same = other.subnet == own.subnet;
        for b in &other.blocks {
            let route = if vxlan.encapsulates(same) {
                let (vtep, _) = other.vtep.clone().unwrap_or_default();
                Some(format!("{b} via {vtep} dev {VXLAN} proto 80 onlink"))
            } else if vxlan != Mode::Never {
                Some(format!("{b} via {} dev eth0 proto 80 onlink", other.ip))
            } else if backend == Backend::Bgp && ipip.encapsulates(same) {
                Some(format!("{b} via {} dev tunl0 proto bird onlink", other.ip))
            } else if backend == Backend::Bgp && same {
                Some(format!("{b} via {} dev eth0 proto bird", other.ip))
            } else {
                // Plain routes to another subnet: the kernel refuses a gateway it cannot
                // reach directly (the lab's router knows no pod routes).
                None
            };
            out.routes.extend(route);
        }
        if vxlan.encapsulates(same) {
            let (vtep, mac) = other.vtep.clone().unwrap_or_default();
            out.neighbours
                .insert(format!("{vtep} lladdr {mac} PERMANENT"));
            out.fdb
                .insert(format!("{mac} dst {} self permanent", other.ip));
        }
    }
    out
}

/// What node `n` actually holds, in the same shape as [`Expected`].
pub fn actual(n: &LabNode) -> Expected {
    let lines = |script: &str| -> BTreeSet<String> {
        sh(&n.ns, script)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    Expected {
        routes: owned_routes(n),
        neighbours: lines(&format!(
            "ip neigh show dev {VXLAN} nud permanent 2>/dev/null"
        )),
        fdb: lines(&format!(
            "bridge fdb show dev {VXLAN} 2>/dev/null | grep ' dst '"
        )),
    }
}

/// Waits until every node holds what `ipip`/`vxlan` ask for (devices included), and
/// returns the last mismatch otherwise.
pub fn wait_for_mode(c: &Cluster, backend: Backend, ipip: Mode, vxlan: Mode) -> Result<(), String> {
    let mut last = String::new();
    let ok = wait_until(settle(), || {
        let all: Vec<NodeFacts> = c.nodes.iter().map(facts).collect();
        let wants_vxlan = vxlan != Mode::Never;
        for (i, n) in c.nodes.iter().enumerate() {
            if wants_vxlan != all[i].vtep.is_some() {
                last = format!("{}: vxlan device present={}", n.name, all[i].vtep.is_some());
                return false;
            }
            if all[i].blocks.is_empty() {
                last = format!("{}: no block yet", n.name);
                return false;
            }
            let want = expected(&all, i, backend, ipip, vxlan);
            let have = actual(n);
            if want != have {
                last = format!("{}:\n want {want:#?}\n have {have:#?}", n.name);
                return false;
            }
        }
        true
    });
    if ok { Ok(()) } else { Err(last) }
}

/// `ip -d link show <dev>` in node `n`.
pub fn link_details(n: &LabNode, dev: &str) -> String {
    sh(&n.ns, &format!("ip -d link show {dev}"))
}

/// The MTU of `dev` in `ns`.
pub fn mtu(ns: &Netns, dev: &str) -> Option<u32> {
    sh(ns, &format!("cat /sys/class/net/{dev}/mtu"))
        .trim()
        .parse()
        .ok()
}

/// (tx, rx) packet counters of `dev` in `ns`.
pub fn counters(ns: &Netns, dev: &str) -> (u64, u64) {
    let read = |what: &str| {
        sh(
            ns,
            &format!("cat /sys/class/net/{dev}/statistics/{what}_packets"),
        )
        .trim()
        .parse()
        .unwrap_or(0)
    };
    (read("tx"), read("rx"))
}

/// The pod MTU the agent wrote for the CNI plugin.
pub fn mtu_file(n: &LabNode) -> Option<u32> {
    std::fs::read_to_string(&n.mtu_file)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this kernel can make IPIP devices (checked in a throw-away namespace), with
/// the reason when it cannot.
pub fn kernel_ipip_support() -> Result<(), String> {
    let ns = Netns::create("ipipck").map_err(|e| format!("{e:#}"))?;
    // Endpoints of its own: a second any-to-any ipip device would clash with tunl0.
    ns.ip(&[
        "link", "add", "ipipck", "type", "ipip", "local", "10.9.0.1", "remote", "10.9.0.2",
    ])
    .map(drop)
    .map_err(|e| format!("{e:#}"))
}

/// A background tcpdump; its lines are read while it runs.
pub struct Capture {
    _daemon: Daemon,
    log: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -l -n -i <dev> <filter>` in `ns` and waits until it listens.
    pub fn start(ns: &Netns, dev: &str, filter: &str, log: PathBuf) -> Option<Capture> {
        let _ = std::fs::remove_file(&log);
        let mut args = vec!["-l", "-n", "-i", dev];
        args.extend(filter.split_whitespace());
        let daemon = ns.spawn("tcpdump", &args, &BTreeMap::new(), &log).ok()?;
        let listening = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on"))
        });
        listening.then_some(Capture {
            _daemon: daemon,
            log,
        })
    }

    /// The packet lines captured so far.
    pub fn packets(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" IP "))
            .map(str::to_string)
            .collect()
    }
}
