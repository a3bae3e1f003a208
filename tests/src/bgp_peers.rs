//! BGP routers as lab peers for interop tests: BIRD 2, FRR 8 (zebra + bgpd) and GoBGP 3,
//! configured from one neutral description ([`RouterSpec`]), each in its own namespace with
//! its own sockets and files, killable (a crash) and restartable in graceful-restart
//! recovery mode, with their learned routes read back in one shape ([`LearnedRoute`]).
//!
//! Config gotchas handled here (see `../shared/reference/bgp.md` §4):
//! - BIRD refuses eBGP channels without explicit import/export; iBGP exports nothing by
//!   default; `gateway direct` so iBGP next hops need no IGP; IPv6 over an IPv4 session needs
//!   `next hop address`; restart with `-R` so the restarted BIRD sets the F bit.
//! - FRR: `frr defaults datacenter` + `no bgp ebgp-requires-policy`; `bgp graceful-restart
//!   preserve-fw-state` so the F bit is set; zebra runs too so nexthops resolve.
//! - GoBGP: accept-all default policies; graceful restart needs `mp-graceful-restart` per
//!   family; restart with `-r` (restarting flag).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{Daemon, Netns, wait_until};

/// Which router software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// BIRD 2.
    Bird,
    /// FRR 8 (zebra + bgpd).
    Frr,
    /// GoBGP 3.
    GoBgp,
}

/// One neighbor of a lab router.
#[derive(Debug, Clone)]
pub struct NeighborSpec {
    /// Neighbor address (BIRD: an IPv6 one is a session carrying IPv6 only, from the
    /// router's [`RouterSpec::ipv6`] address).
    pub address: String,
    /// Neighbor AS.
    pub asn: u32,
    /// TCP MD5 password.
    pub password: Option<String>,
    /// Treat as route-reflector client.
    pub rr_client: bool,
    /// Graceful restart on (helper and restarter).
    pub graceful_restart: bool,
    /// Exchange IPv6 unicast too.
    pub ipv6: bool,
    /// GTSM (RFC 5082), directly connected.
    pub ttl_security: bool,
    /// Announce routes to this neighbor with ourselves as next hop (a ToR passing routes
    /// between nodes, so traffic crosses it). BIRD and FRR only.
    pub next_hop_self: bool,
    /// Protect the session with BFD (the router's [`RouterSpec::bfd`] timers). BIRD and
    /// FRR only.
    pub bfd: bool,
}

impl NeighborSpec {
    /// A neighbor on an IPv6 address: a session of its own carrying IPv6 only, as
    /// Calico's BIRD6 sessions (BIRD and FRR).
    pub fn is_v6_session(&self) -> bool {
        self.address.parse::<std::net::Ipv6Addr>().is_ok()
    }

    /// A neighbor with defaults (no password, GR on, IPv4 only).
    pub fn new(address: &str, asn: u32) -> NeighborSpec {
        NeighborSpec {
            address: address.to_string(),
            asn,
            password: None,
            rr_client: false,
            graceful_restart: true,
            ipv6: false,
            ttl_security: false,
            next_hop_self: false,
            bfd: false,
        }
    }
}

/// A lab router: identity, neighbors and the routes it originates.
#[derive(Debug, Clone)]
pub struct RouterSpec {
    /// Router id, also its IPv4 address on the lab link.
    pub router_id: String,
    /// Its IPv6 address on the lab link (next hop for IPv6 routes).
    pub ipv6: Option<String>,
    /// Its AS.
    pub asn: u32,
    /// Its neighbors.
    pub neighbors: Vec<NeighborSpec>,
    /// IPv4 prefixes it originates.
    pub routes4: Vec<String>,
    /// IPv6 prefixes it originates.
    pub routes6: Vec<String>,
    /// Install the BGP routes it learns in its namespace's kernel, as a top-of-rack router
    /// forwarding pod traffic does (BIRD: a kernel protocol; FRR: zebra always does; GoBGP:
    /// not supported).
    pub install_routes: bool,
    /// BFD timers for the neighbors with `bfd` (BIRD: `protocol bfd`; FRR: bfdd with the
    /// profile `lab`).
    pub bfd: Option<BfdTimers>,
}

/// BFD timers of a lab router, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    pub tx_ms: u32,
    pub rx_ms: u32,
    pub multiplier: u32,
}

/// A route as a lab router holds it, learned from a BGP neighbor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LearnedRoute {
    /// Next hop.
    pub next_hop: String,
    /// AS path, leftmost first.
    pub as_path: Vec<u32>,
    /// ORIGINATOR_ID, when present.
    pub originator_id: Option<String>,
    /// CLUSTER_LIST.
    pub cluster_list: Vec<String>,
}

/// A running lab router.
pub struct Router {
    kind: RouterKind,
    ns_name: String,
    dir: PathBuf,
    daemons: Vec<Daemon>,
    spec: RouterSpec,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ===== configuration text =====

/// BIRD 2 configuration for `spec`.
pub fn bird_config(spec: &RouterSpec) -> String {
    let mut c = format!(
        "log stderr all;\nrouter id {};\nprotocol device {{ scan time 10; }}\n\
         protocol direct {{ ipv4; ipv6; }}\n",
        spec.router_id
    );
    c.push_str("protocol static s4 { ipv4; ");
    for r in &spec.routes4 {
        c.push_str(&format!("route {r} blackhole; "));
    }
    c.push_str("}\nprotocol static s6 { ipv6; ");
    for r in &spec.routes6 {
        c.push_str(&format!("route {r} blackhole; "));
    }
    c.push_str(
        "}\nfilter own_and_bgp { if source ~ [RTS_STATIC, RTS_BGP] then accept; reject; }\n",
    );
    if spec.install_routes {
        c.push_str("protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }\n");
        c.push_str(
            "protocol kernel k6 { ipv6 { import none; export where source = RTS_BGP; }; }\n",
        );
    }
    if let Some(t) = spec.bfd {
        c.push_str(&format!(
            "protocol bfd {{ interface \"*\" {{ min rx interval {} ms; min tx interval {} ms; \
             idle tx interval 1000 ms; multiplier {}; }}; }}\n",
            t.rx_ms, t.tx_ms, t.multiplier
        ));
    }
    for (i, n) in spec.neighbors.iter().enumerate() {
        // A neighbor on an IPv6 address is a session of its own carrying IPv6 only, as
        // Calico's BIRD6 sessions: it starts from the router's IPv6 address.
        let v6_session = n.is_v6_session();
        let local = match (&spec.ipv6, v6_session) {
            (Some(v6), true) => v6.as_str(),
            _ => spec.router_id.as_str(),
        };
        c.push_str(&format!(
            "protocol bgp n{i} {{\n  local {local} as {};\n  neighbor {} as {};\n  \
             hold time 9; keepalive time 3; connect retry time 1; connect delay time 1;\n  \
             error wait time 1, 5;\n",
            spec.asn, n.address, n.asn
        ));
        if n.graceful_restart {
            c.push_str("  graceful restart on;\n");
        }
        if let Some(pw) = &n.password {
            c.push_str(&format!("  password \"{pw}\";\n"));
        }
        if n.rr_client {
            c.push_str("  rr client;\n");
        }
        if n.ttl_security {
            c.push_str("  ttl security on;\n");
        }
        if n.bfd {
            c.push_str("  bfd on;\n");
        }
        if n.asn == spec.asn {
            // iBGP is multihop by default in BIRD; the lab peers share a link.
            c.push_str("  direct;\n");
        }
        let nh_self = if n.next_hop_self {
            " next hop self;"
        } else {
            ""
        };
        if v6_session {
            c.push_str(&format!(
                "  ipv6 {{ import all; export filter own_and_bgp; gateway direct;{nh_self} }};\n}}\n"
            ));
            continue;
        }
        c.push_str(&format!(
            "  ipv4 {{ import all; export filter own_and_bgp; gateway direct;{nh_self} }};\n"
        ));
        if n.ipv6 {
            let nh = spec
                .ipv6
                .as_deref()
                .map(|a| format!(" next hop address {a};"))
                .unwrap_or_default();
            c.push_str(&format!(
                "  ipv6 {{ import all; export filter own_and_bgp; gateway direct;{nh} }};\n"
            ));
        }
        c.push_str("}\n");
    }
    c
}

/// FRR bgpd configuration for `spec`.
pub fn frr_config(spec: &RouterSpec) -> String {
    let mut c = format!(
        "frr defaults datacenter\nhostname r{}\nlog stdout debugging\n!\nrouter bgp {}\n \
         bgp router-id {}\n no bgp ebgp-requires-policy\n no bgp network import-check\n \
         bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n",
        spec.asn, spec.asn, spec.router_id
    );
    for n in &spec.neighbors {
        let a = &n.address;
        c.push_str(&format!(
            " neighbor {a} remote-as {}\n neighbor {a} timers 3 9\n neighbor {a} timers connect 1\n",
            n.asn
        ));
        if let Some(pw) = &n.password {
            c.push_str(&format!(" neighbor {a} password {pw}\n"));
        }
        if !n.graceful_restart {
            c.push_str(&format!(" neighbor {a} graceful-restart-disable\n"));
        }
        if n.ttl_security {
            c.push_str(&format!(" neighbor {a} ttl-security hops 1\n"));
        }
        if n.bfd {
            c.push_str(&format!(" neighbor {a} bfd profile lab\n"));
        }
    }
    c.push_str(" address-family ipv4 unicast\n");
    for r in &spec.routes4 {
        c.push_str(&format!("  network {r}\n"));
    }
    for n in &spec.neighbors {
        if n.is_v6_session() {
            c.push_str(&format!("  no neighbor {} activate\n", n.address));
            continue;
        }
        c.push_str(&format!("  neighbor {} activate\n", n.address));
        if n.next_hop_self {
            c.push_str(&format!("  neighbor {} next-hop-self\n", n.address));
        }
        if n.rr_client {
            c.push_str(&format!(
                "  neighbor {} route-reflector-client\n",
                n.address
            ));
        }
    }
    c.push_str(" exit-address-family\n address-family ipv6 unicast\n");
    for r in &spec.routes6 {
        c.push_str(&format!("  network {r}\n"));
    }
    for n in spec
        .neighbors
        .iter()
        .filter(|n| n.ipv6 || n.is_v6_session())
    {
        c.push_str(&format!("  neighbor {} activate\n", n.address));
        if n.is_v6_session() && n.next_hop_self {
            c.push_str(&format!("  neighbor {} next-hop-self\n", n.address));
        }
    }
    c.push_str(" exit-address-family\n!\n");
    c
}

/// Starts FRR's `daemon` in `ns` with its files under `dir` (`<daemon>.conf`, `.pid`,
/// `.log`), zebra's socket and the vty directory there, no TCP vty, logging to stdout;
/// `extra` goes first.
fn spawn_frr(ns: &Netns, dir: &Path, daemon: &str, extra: &[&str]) -> Result<Daemon> {
    let file = |ext: &str| s(&dir.join(format!("{daemon}.{ext}")));
    let (conf, pid) = (file("conf"), file("pid"));
    let (zsock, vty) = (s(&dir.join("zserv.api")), s(&dir.join("vty")));
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([
        "-f",
        &conf,
        "-i",
        &pid,
        "-z",
        &zsock,
        "--vty_socket",
        &vty,
        "-P",
        "0",
        "--log",
        "stdout",
    ]);
    ns.spawn(
        &format!("/usr/lib/frr/{daemon}"),
        &args,
        &BTreeMap::new(),
        &dir.join(format!("{daemon}.log")),
    )
}

/// FRR bfdd configuration: the profile `lab` the BGP neighbors with `bfd` use.
pub fn frr_bfdd_config(t: BfdTimers) -> String {
    format!(
        "hostname bfdd\nlog stdout debugging\n!\nbfd\n profile lab\n  transmit-interval {}\n  \
         receive-interval {}\n  detect-multiplier {}\n !\n!\n",
        t.tx_ms, t.rx_ms, t.multiplier
    )
}

/// GoBGP configuration (TOML) for `spec`; routes are added through the CLI after start.
pub fn gobgp_config(spec: &RouterSpec) -> String {
    // Listening on the IPv6 address too, for sessions to IPv6 neighbors.
    let listen = std::iter::once(&spec.router_id)
        .chain(&spec.ipv6)
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut c = format!(
        "[global.config]\n  as = {}\n  router-id = \"{}\"\n  local-address-list = [{listen}]\n\
         [global.apply-policy.config]\n  default-import-policy = \"accept-route\"\n  \
         default-export-policy = \"accept-route\"\n",
        spec.asn, spec.router_id
    );
    for n in &spec.neighbors {
        // Down until the routes are injected (see `Router::launch`), so a restarted
        // GoBGP does not send End-of-RIB before it has its routes.
        c.push_str(&format!(
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n    \
             admin-down = true\n",
            n.address, n.asn
        ));
        if let Some(pw) = &n.password {
            c.push_str(&format!("    auth-password = \"{pw}\"\n"));
        }
        c.push_str(
            "  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    \
             keepalive-interval = 3\n",
        );
        if n.rr_client {
            c.push_str(&format!(
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    \
                 route-reflector-cluster-id = \"{}\"\n",
                spec.router_id
            ));
        }
        if n.graceful_restart {
            c.push_str(
                "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n",
            );
        }
        if n.ttl_security {
            c.push_str(
                "  [neighbors.ttl-security.config]\n    enabled = true\n    ttl-min = 255\n",
            );
        }
        let fams = if n.is_v6_session() {
            vec!["ipv6-unicast"]
        } else if n.ipv6 {
            vec!["ipv4-unicast", "ipv6-unicast"]
        } else {
            vec!["ipv4-unicast"]
        };
        for f in fams {
            c.push_str(&format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{f}\"\n"
            ));
            if n.graceful_restart {
                c.push_str(
                    "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n",
                );
            }
        }
    }
    c
}

// ===== impl Router =====

impl Router {
    /// Starts `kind` in `ns` with files under `dir`.
    pub fn start(kind: RouterKind, ns: &Netns, dir: &Path, spec: RouterSpec) -> Result<Router> {
        fs::create_dir_all(dir)?;
        let mut r = Router {
            kind,
            ns_name: ns.name().to_string(),
            dir: dir.to_path_buf(),
            daemons: Vec::new(),
            spec,
        };
        r.launch(ns, false)?;
        Ok(r)
    }

    /// What it runs with.
    pub fn spec(&self) -> &RouterSpec {
        &self.spec
    }

    fn launch(&mut self, ns: &Netns, recovering: bool) -> Result<()> {
        let none = BTreeMap::new();
        let dir = self.dir.clone();
        match self.kind {
            RouterKind::Bird => {
                let conf = dir.join("bird.conf");
                fs::write(&conf, bird_config(&self.spec))?;
                let mut args = vec!["-f".to_string(), "-c".into(), s(&conf), "-s".into()];
                args.push(s(&dir.join("bird.ctl")));
                if recovering {
                    args.push("-R".into());
                }
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                self.daemons
                    .push(ns.spawn("bird", &a, &none, &dir.join("bird.log"))?);
                if !wait_until(Duration::from_secs(10), || {
                    self.birdc("show status").is_ok()
                }) {
                    bail!("BIRD did not start:\n{}", self.log_tail(20));
                }
            }
            RouterKind::Frr => {
                let vty = dir.join("vty");
                fs::create_dir_all(&vty)?;
                // zebra drops to the frr user (it has no --skip_runas); let it in.
                for d in [&dir, &vty] {
                    fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
                }
                let zsock = s(&dir.join("zserv.api"));
                if self.daemons.is_empty() {
                    fs::write(dir.join("zebra.conf"), "hostname zebra\n")?;
                    let zebra = spawn_frr(ns, &dir, "zebra", &[])?;
                    self.daemons.push(zebra);
                    if !wait_until(Duration::from_secs(10), || Path::new(&zsock).exists()) {
                        bail!("zebra did not start:\n{}", self.log_tail(20));
                    }
                }
                if let Some(t) = self.spec.bfd
                    && !dir.join("bfdd.pid").exists()
                {
                    fs::write(dir.join("bfdd.conf"), frr_bfdd_config(t))?;
                    let bfdd =
                        spawn_frr(ns, &dir, "bfdd", &["--bfdctl", &s(&dir.join("bfdd.sock"))])?;
                    // Kept under bgpd in the list: `kill` pops bgpd, bfdd stays.
                    self.daemons.insert(0, bfdd);
                    if !wait_until(Duration::from_secs(10), || {
                        self.vtysh("show bfd peers").is_ok()
                    }) {
                        bail!("bfdd did not start:\n{}", self.log_tail(20));
                    }
                }
                fs::write(dir.join("bgpd.conf"), frr_config(&self.spec))?;
                let bgpd = spawn_frr(ns, &dir, "bgpd", &["-S"])?;
                self.daemons.push(bgpd);
                if !wait_until(Duration::from_secs(10), || {
                    self.vtysh("show bgp summary").is_ok()
                }) {
                    bail!("bgpd did not start:\n{}", self.log_tail(20));
                }
            }
            RouterKind::GoBgp => {
                let conf = dir.join("gobgpd.toml");
                fs::write(&conf, gobgp_config(&self.spec))?;
                let mut args = vec![
                    "-f".to_string(),
                    s(&conf),
                    "--api-hosts".into(),
                    "127.0.0.1:50051".into(),
                    "--pprof-disable".into(),
                ];
                if recovering {
                    args.push("-r".into());
                }
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                self.daemons
                    .push(ns.spawn("gobgpd", &a, &none, &dir.join("gobgpd.log"))?);
                if !wait_until(Duration::from_secs(10), || self.gobgp(&["global"]).is_ok()) {
                    bail!("gobgpd did not start:\n{}", self.log_tail(20));
                }
                let spec = self.spec.clone();
                for r in &spec.routes4 {
                    self.gobgp(&[
                        "global",
                        "rib",
                        "-a",
                        "ipv4",
                        "add",
                        r,
                        "nexthop",
                        &spec.router_id,
                    ])?;
                }
                if let Some(v6) = &spec.ipv6 {
                    for r in &spec.routes6 {
                        self.gobgp(&["global", "rib", "-a", "ipv6", "add", r, "nexthop", v6])?;
                    }
                }
                for n in &spec.neighbors {
                    self.gobgp(&["neighbor", &n.address, "enable"])?;
                }
            }
        }
        Ok(())
    }

    /// Kills the BGP daemon with SIGKILL, as a crash would (zebra stays for FRR).
    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemons.pop() {
            d.kill();
        }
    }

    /// Starts the BGP daemon again with `spec` (after [`Router::kill`]), in graceful-restart
    /// recovery mode (`bird -R`, `gobgpd -r`; FRR preserves forwarding state by config).
    pub fn restart(&mut self, ns: &Netns, spec: RouterSpec) -> Result<()> {
        self.kill();
        self.spec = spec;
        self.launch(ns, true)
    }

    /// Changes the prefixes it originates, live (BIRD: `configure`; FRR: `network`
    /// statements; GoBGP: `global rib add/del`).
    pub fn set_routes(&mut self, routes4: &[&str], routes6: &[&str]) -> Result<()> {
        let old = self.spec.clone();
        self.spec.routes4 = routes4.iter().map(|r| r.to_string()).collect();
        self.spec.routes6 = routes6.iter().map(|r| r.to_string()).collect();
        let gone = |o: &[String], n: &[String]| -> Vec<String> {
            o.iter().filter(|x| !n.contains(x)).cloned().collect()
        };
        let (g4, a4) = (
            gone(&old.routes4, &self.spec.routes4),
            gone(&self.spec.routes4, &old.routes4),
        );
        let (g6, a6) = (
            gone(&old.routes6, &self.spec.routes6),
            gone(&self.spec.routes6, &old.routes6),
        );
        match self.kind {
            RouterKind::Bird => {
                fs::write(self.dir.join("bird.conf"), bird_config(&self.spec))?;
                let out = self.birdc("configure")?;
                if !out.contains("Reconfigur") {
                    bail!("birdc configure: {out}");
                }
            }
            RouterKind::Frr => {
                let mut args = vec![
                    "conf t".to_string(),
                    format!("router bgp {}", self.spec.asn),
                    "address-family ipv4 unicast".into(),
                ];
                args.extend(g4.iter().map(|r| format!("no network {r}")));
                args.extend(a4.iter().map(|r| format!("network {r}")));
                args.push("exit-address-family".into());
                args.push("address-family ipv6 unicast".into());
                args.extend(g6.iter().map(|r| format!("no network {r}")));
                args.extend(a6.iter().map(|r| format!("network {r}")));
                let vty = s(&self.dir.join("vty"));
                let mut a = vec!["--vty_socket".to_string(), vty];
                for c in args {
                    a.push("-c".into());
                    a.push(c);
                }
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                self.run("vtysh", &a)?;
            }
            RouterKind::GoBgp => {
                let id = self.spec.router_id.clone();
                let v6 = self.spec.ipv6.clone().unwrap_or_default();
                for r in &g4 {
                    self.gobgp(&["global", "rib", "-a", "ipv4", "del", r])?;
                }
                for r in &a4 {
                    self.gobgp(&["global", "rib", "-a", "ipv4", "add", r, "nexthop", &id])?;
                }
                for r in &g6 {
                    self.gobgp(&["global", "rib", "-a", "ipv6", "del", r])?;
                }
                for r in &a6 {
                    self.gobgp(&["global", "rib", "-a", "ipv6", "add", r, "nexthop", &v6])?;
                }
            }
        }
        Ok(())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name, program])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `birdc` (BIRD only).
    pub fn birdc(&self, cmd: &str) -> Result<String> {
        let ctl = s(&self.dir.join("bird.ctl"));
        let mut a = vec!["-s", ctl.as_str()];
        a.extend(cmd.split_whitespace());
        self.run("birdc", &a)
    }

    /// `vtysh -c` (FRR only).
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        let vty = s(&self.dir.join("vty"));
        self.run("vtysh", &["--vty_socket", &vty, "-c", cmd])
    }

    /// The `gobgp` CLI (GoBGP only).
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let mut a = vec!["-u", "127.0.0.1", "-p", "50051"];
        a.extend_from_slice(args);
        self.run("gobgp", &a)
    }

    /// True when the session with `neighbor` is Established.
    pub fn established(&self, neighbor: &str) -> bool {
        match self.kind {
            RouterKind::Bird => {
                let Some(i) = self
                    .spec
                    .neighbors
                    .iter()
                    .position(|n| n.address == neighbor)
                else {
                    return false;
                };
                self.birdc(&format!("show protocols n{i}"))
                    .is_ok_and(|o| o.contains("Established"))
            }
            RouterKind::Frr => self
                .vtysh(&format!("show bgp neighbors {neighbor} json"))
                .ok()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
                .and_then(|v| v[neighbor]["bgpState"].as_str().map(str::to_owned))
                .is_some_and(|s| s == "Established"),
            RouterKind::GoBgp => self
                .gobgp(&["neighbor", neighbor, "-j"])
                .ok()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
                .is_some_and(|v| v["state"]["session_state"] == 6),
        }
    }

    /// Routes it learned over BGP (IPv4 and IPv6), by prefix.
    pub fn learned(&self) -> Result<BTreeMap<String, LearnedRoute>> {
        match self.kind {
            RouterKind::Bird => parse_bird(&self.birdc("show route all")?),
            RouterKind::Frr => {
                let mut m = BTreeMap::new();
                for fam in ["ipv4", "ipv6"] {
                    let out = self.vtysh(&format!("show bgp {fam} unicast json"))?;
                    let v: serde_json::Value = serde_json::from_str(&out)?;
                    let Some(routes) = v["routes"].as_object() else {
                        continue;
                    };
                    for (prefix, paths) in routes {
                        let Some(best) = paths.as_array().and_then(|a| {
                            a.iter()
                                .find(|p| p["bestpath"].as_bool() == Some(true))
                                .cloned()
                        }) else {
                            continue;
                        };
                        if best["peerId"].as_str().is_none_or(|p| p == "(unspec)") {
                            continue;
                        }
                        let detail = self.frr_detail(fam, prefix).unwrap_or_default();
                        m.insert(
                            prefix.clone(),
                            LearnedRoute {
                                next_hop: best["nexthops"][0]["ip"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                                as_path: best["path"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .split_whitespace()
                                    .filter_map(|x| x.parse().ok())
                                    .collect(),
                                ..detail
                            },
                        );
                    }
                }
                Ok(m)
            }
            RouterKind::GoBgp => {
                let mut m = BTreeMap::new();
                for fam in ["ipv4", "ipv6"] {
                    let out = self.gobgp(&["global", "rib", "-a", fam, "-j"])?;
                    if out.trim().is_empty() {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(&out)?;
                    let Some(routes) = v.as_object() else {
                        continue;
                    };
                    for (prefix, paths) in routes {
                        let Some(best) = paths.as_array().and_then(|a| {
                            a.iter()
                                .find(|p| p["best"].as_bool() == Some(true))
                                .cloned()
                        }) else {
                            continue;
                        };
                        if best.get("neighbor-ip").is_none() {
                            continue;
                        }
                        let mut r = LearnedRoute::default();
                        for a in best["attrs"].as_array().into_iter().flatten() {
                            match a["type"].as_u64() {
                                Some(2) => {
                                    for seg in a["as_paths"].as_array().into_iter().flatten() {
                                        r.as_path.extend(
                                            seg["asns"]
                                                .as_array()
                                                .into_iter()
                                                .flatten()
                                                .filter_map(|x| x.as_u64().map(|x| x as u32)),
                                        );
                                    }
                                }
                                Some(3) => {
                                    r.next_hop = a["nexthop"].as_str().unwrap_or_default().into()
                                }
                                Some(14) => {
                                    r.next_hop = a["nexthop"].as_str().unwrap_or_default().into()
                                }
                                Some(9) => r.originator_id = a["value"].as_str().map(Into::into),
                                Some(10) => {
                                    r.cluster_list = a["value"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .filter_map(|x| x.as_str().map(Into::into))
                                        .collect()
                                }
                                _ => {}
                            }
                        }
                        m.insert(prefix.clone(), r);
                    }
                }
                Ok(m)
            }
        }
    }

    fn frr_detail(&self, fam: &str, prefix: &str) -> Option<LearnedRoute> {
        let out = self
            .vtysh(&format!("show bgp {fam} unicast {prefix} json"))
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let best = v["paths"]
            .as_array()?
            .iter()
            .find(|p| p["bestpath"]["overall"].as_bool() == Some(true))?
            .clone();
        Some(LearnedRoute {
            originator_id: best["originatorId"].as_str().map(Into::into),
            cluster_list: best["clusterList"]["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(Into::into))
                .collect(),
            ..LearnedRoute::default()
        })
    }

    /// Prefixes learned, for quick checks.
    pub fn learned_prefixes(&self) -> BTreeSet<String> {
        self.learned()
            .map(|m| m.into_keys().collect())
            .unwrap_or_default()
    }

    /// The daemons' log tails.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemons
            .iter()
            .map(|d| format!("--- {} ---\n{}", d.name(), d.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Parses `birdc show route all`: BGP routes only, best path per prefix.
fn parse_bird(out: &str) -> Result<BTreeMap<String, LearnedRoute>> {
    let mut m = BTreeMap::new();
    let mut cur: Option<(String, LearnedRoute, bool)> = None;
    let mut prefix = String::new();
    let flush = |m: &mut BTreeMap<String, LearnedRoute>,
                 c: Option<(String, LearnedRoute, bool)>| {
        if let Some((p, r, true)) = c {
            m.entry(p).or_insert(r);
        }
    };
    for line in out.lines() {
        if line.starts_with("Table") || line.starts_with("BIRD") || line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        let t = line.trim();
        if !indented || t.starts_with("unicast") || t.starts_with("blackhole") {
            flush(&mut m, cur.take());
            if !indented {
                prefix = t.split_whitespace().next().unwrap_or_default().to_string();
            }
            cur = Some((prefix.clone(), LearnedRoute::default(), false));
            continue;
        }
        let Some((_, r, is_bgp)) = cur.as_mut() else {
            continue;
        };
        if let Some(v) = t.strip_prefix("Type: ") {
            *is_bgp = v.starts_with("BGP");
        } else if let Some(v) = t.strip_prefix("BGP.as_path:") {
            r.as_path = v
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
        } else if let Some(v) = t.strip_prefix("BGP.next_hop:") {
            r.next_hop = v.split_whitespace().next().unwrap_or_default().into();
        } else if let Some(v) = t.strip_prefix("BGP.originator_id:") {
            r.originator_id = Some(v.trim().into());
        } else if let Some(v) = t.strip_prefix("BGP.cluster_list:") {
            r.cluster_list = v.split_whitespace().map(Into::into).collect();
        }
    }
    flush(&mut m, cur.take());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_route_listing_parses_bgp_routes_only() {
        let out = "BIRD 2.0.12 ready.\nTable master4:\n\
10.30.0.0/24         blackhole [s4 00:45:47.057] * (200)\n\tType: static univ\n\
192.168.1.0/26       unicast [n0 00:45:47.838] * (100) [AS64512i]\n\tvia 10.0.0.1 on v2\n\
\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: 64512 65001\n\tBGP.next_hop: 10.0.0.1\n\
\tBGP.originator_id: 10.0.0.5\n\tBGP.cluster_list: 1.1.1.1\n";
        let m = parse_bird(out).expect("parses");
        assert_eq!(m.len(), 1);
        let r = &m["192.168.1.0/26"];
        assert_eq!(r.as_path, vec![64512, 65001]);
        assert_eq!(r.next_hop, "10.0.0.1");
        assert_eq!(r.originator_id.as_deref(), Some("10.0.0.5"));
        assert_eq!(r.cluster_list, vec!["1.1.1.1".to_string()]);
    }
}
