//! Pod addresses in flannel mode (calico-node with `CALICO_NETWORKING_BACKEND=flannel`):
//! `calico-ipam` hands out addresses from the node's leased subnet, read from flannel's
//! `subnet.env`, and stores them the way containernetworking's `host-local` does, so one
//! Calico CNI config serves both modes and the pod is wired the Calico way either way.
//!
//! - Mode: flannel when the config names `flannel_subnet_file` (then the file must exist:
//!   until calico-node has leased a subnet the answer is code 11, try again later), or when
//!   the default `/run/flannel/subnet.env` exists; Calico IPAM otherwise.
//! - Range: `FLANNEL_SUBNET` without its network address (flannel's VTEP, `<subnet>.0`),
//!   its first address (`.1`, the gateway flannel's bridge setup uses) and its broadcast.
//! - State (host-local's layout): under `flannel_data_dir`, default
//!   `/var/lib/cni/networks/<network name>`, one file per address named by the address and
//!   holding `<container id>\r\n<ifname>`, `last_reserved_ip.0` for round-robin reuse, and a
//!   `lock` file (flock) serialising every calico-ipam process of the host.
//! - DEL frees by container id and interface; nothing allocated is success.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;

use crate::error::{CniError, Result, code};
use crate::result::{CniResult, IpConfig};
use crate::skel::Invocation;

/// flannel's default subnet file.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
/// host-local's default state directory (one sub-directory per network name).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// host-local's separator between the container id and the interface name.
const LINE_BREAK: &str = "\r\n";
const LAST_RESERVED: &str = "last_reserved_ip.0";

/// The config keys this mode reads (unknown to Calico, ignored by everything else).
#[derive(Debug, Default, Deserialize)]
struct FlannelKeys {
    #[serde(default)]
    name: String,
    #[serde(default)]
    flannel_subnet_file: String,
    #[serde(default)]
    flannel_data_dir: String,
}

/// Allocation from the node's flannel subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlannelIpam {
    /// The node's leased subnet (`FLANNEL_SUBNET` as a network).
    pub subnet: Ipv4Net,
    /// Where allocations are recorded.
    pub dir: PathBuf,
}

/// `FLANNEL_SUBNET` of a subnet.env text, as the subnet (`10.244.1.1/24` -> `10.244.1.0/24`).
pub fn parse_subnet_env(text: &str) -> Option<Ipv4Net> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .find(|(k, _)| k.trim() == "FLANNEL_SUBNET")
        .and_then(|(_, v)| v.trim().parse::<Ipv4Net>().ok())
        .map(|n| n.trunc())
}

impl FlannelKeys {
    fn from_stdin(stdin: &[u8]) -> FlannelKeys {
        serde_json::from_slice(stdin).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        if self.flannel_data_dir.is_empty() {
            Path::new(DEFAULT_DATA_DIR).join(&self.name)
        } else {
            PathBuf::from(&self.flannel_data_dir)
        }
    }
}

impl FlannelIpam {
    /// Decides the mode from the raw config: `Some` in flannel mode.
    pub fn detect(stdin: &[u8]) -> Result<Option<FlannelIpam>> {
        let keys = FlannelKeys::from_stdin(stdin);
        let explicit = !keys.flannel_subnet_file.is_empty();
        let path = if explicit {
            keys.flannel_subnet_file.as_str()
        } else {
            DEFAULT_SUBNET_FILE
        };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound && !explicit => return Ok(None),
            Err(e) => {
                return Err(CniError::new(
                    code::TRY_AGAIN_LATER,
                    format!(
                        "cannot read the flannel subnet file {path}: is calico-node running with CALICO_NETWORKING_BACKEND=flannel and holding a lease?"
                    ),
                    e.to_string(),
                ));
            }
        };
        let subnet = parse_subnet_env(&text).ok_or_else(|| {
            CniError::new(
                code::TRY_AGAIN_LATER,
                format!("{path} has no valid FLANNEL_SUBNET"),
                text.trim().to_string(),
            )
        })?;
        Ok(Some(FlannelIpam {
            subnet,
            dir: keys.data_dir(),
        }))
    }

    /// The addresses pods may get: `.2` up to the one before the broadcast.
    pub fn range(&self) -> (u32, u32) {
        let net = u32::from(self.subnet.network());
        let bcast = u32::from(self.subnet.broadcast());
        (net.saturating_add(2), bcast.saturating_sub(1))
    }

    fn lock(&self) -> Result<Flock<File>> {
        fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            CniError::new(
                code::IO_FAILURE,
                format!("cannot lock {}", path.display()),
                errno.to_string(),
            )
        })
    }

    /// Every recorded allocation: (address, container id, ifname).
    fn allocations(&self) -> Result<Vec<(Ipv4Addr, String, String)>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_error(&self.dir, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(ip) = name.parse::<Ipv4Addr>() else {
                continue;
            };
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let mut parts = text.splitn(2, LINE_BREAK);
            let id = parts.next().unwrap_or_default().trim().to_string();
            let ifname = parts.next().unwrap_or_default().trim().to_string();
            out.push((ip, id, ifname));
        }
        Ok(out)
    }

    /// The address of `container_id`/`ifname`, allocating one if it has none (a repeated
    /// ADD returns the same address while it is inside the current subnet).
    pub fn add(&self, container_id: &str, ifname: &str) -> Result<Ipv4Net> {
        let _lock = self.lock()?;
        for (ip, id, ifn) in self.allocations()? {
            if id == container_id && ifn == ifname {
                if self.subnet.contains(&ip) {
                    return self.with_prefix(ip);
                }
                // Left over from a previous lease: free it.
                let _ = fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
        let (first, last) = self.range();
        if first > last {
            return Err(CniError::new(
                code::IPAM_FAILURE,
                format!("flannel subnet {} has no room for pods", self.subnet),
                "",
            ));
        }
        let last_reserved = fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|t| t.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|ip| (first..=last).contains(ip));
        let start = match last_reserved {
            Some(ip) if ip < last => ip + 1,
            _ => first,
        };
        let size = last - first + 1;
        for i in 0..size {
            let ip = Ipv4Addr::from(first + (start - first + i) % size);
            let path = self.dir.join(ip.to_string());
            let created = OpenOptions::new().write(true).create_new(true).open(&path);
            let mut file = match created {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&path, e)),
            };
            file.write_all(format!("{container_id}{LINE_BREAK}{ifname}").as_bytes())
                .map_err(|e| io_error(&path, e))?;
            let _ = fs::write(self.dir.join(LAST_RESERVED), ip.to_string());
            return self.with_prefix(ip);
        }
        Err(CniError::new(
            code::IPAM_FAILURE,
            format!(
                "no free address left in this node's flannel subnet {}",
                self.subnet
            ),
            self.dir.display().to_string(),
        ))
    }

    /// Frees whatever `container_id`/`ifname` holds; nothing is success.
    pub fn del(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut released = Vec::new();
        for (ip, id, ifn) in self.allocations()? {
            if id == container_id && (ifn == ifname || ifn.is_empty()) {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => released.push(ip),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path, e)),
                }
            }
        }
        Ok(released)
    }

    /// The address `container_id`/`ifname` holds, if any.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .allocations()?
            .into_iter()
            .find(|(_, id, ifn)| id == container_id && ifn == ifname)
            .map(|(ip, _, _)| ip))
    }

    fn with_prefix(&self, ip: Ipv4Addr) -> Result<Ipv4Net> {
        Ipv4Net::new(ip, self.subnet.prefix_len())
            .map_err(|e| CniError::new(code::IPAM_FAILURE, "bad prefix", e.to_string()))
    }
}

// ===== the calico-ipam operations in flannel mode =====

/// ADD: the container's address from the flannel subnet, as an IPAM result.
pub fn add(ipam: &FlannelIpam, inv: &Invocation) -> Result<CniResult> {
    let net = ipam.add(&inv.env.container_id, &inv.env.ifname)?;
    tracing::info!(container = inv.env.container_id, address = %net, subnet = %ipam.subnet, "assigned from the flannel subnet");
    Ok(CniResult {
        ips: vec![IpConfig {
            address: net.to_string(),
            gateway: None,
            interface: None,
        }],
        dns: inv.conf.dns.clone().unwrap_or_default(),
        ..CniResult::default()
    })
}

/// Whether a DEL with this config is flannel mode's: a subnet file named, or flannel's
/// default one present (the file need not be readable: the lease may be gone by then).
pub fn serves_del(stdin: &[u8]) -> bool {
    let keys = FlannelKeys::from_stdin(stdin);
    !keys.flannel_subnet_file.is_empty() || Path::new(DEFAULT_SUBNET_FILE).exists()
}

/// DEL in flannel mode (`None` otherwise): frees the container's address; nothing
/// allocated is success. Works without subnet.env (the lease may be gone by then).
pub fn del_if_flannel(inv: &Invocation) -> Option<Result<()>> {
    if !serves_del(&inv.stdin) {
        return None;
    }
    let keys = FlannelKeys::from_stdin(&inv.stdin);
    let ipam = FlannelIpam {
        subnet: Ipv4Net::default(),
        dir: keys.data_dir(),
    };
    Some(del(&ipam, inv))
}

fn del(ipam: &FlannelIpam, inv: &Invocation) -> Result<()> {
    let released = ipam.del(&inv.env.container_id, &inv.env.ifname)?;
    tracing::info!(
        container = inv.env.container_id,
        ?released,
        "released from the flannel subnet"
    );
    Ok(())
}

/// CHECK: the container holds an address.
pub fn check(ipam: &FlannelIpam, inv: &Invocation) -> Result<()> {
    match ipam.find(&inv.env.container_id, &inv.env.ifname)? {
        Some(_) => Ok(()),
        None => Err(CniError::new(
            code::CHECK_FAILED,
            format!(
                "no address of flannel subnet {} is allocated to container {}",
                ipam.subnet, inv.env.container_id
            ),
            "",
        )),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> CniError {
    CniError::new(
        code::IO_FAILURE,
        format!("flannel IPAM state {}", path.display()),
        e.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, subnet: &str) -> FlannelIpam {
        FlannelIpam {
            subnet: subnet.parse().expect("net"),
            dir: dir.join("k8s-pod-network"),
        }
    }

    #[test]
    fn detects_the_mode_from_the_config_and_the_file()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let env = dir.path().join("subnet.env");
        let conf = |file: &Path| {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"net1","type":"calico","flannel_subnet_file":"{}"}}"#,
                file.display()
            )
        };
        // Named but not written yet: try again later.
        let e = FlannelIpam::detect(conf(&env).as_bytes()).expect_err("missing");
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        fs::write(
            &env,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        )?;
        let f = FlannelIpam::detect(conf(&env).as_bytes())?.expect("flannel mode");
        assert_eq!(f.subnet, "10.244.7.0/24".parse::<Ipv4Net>()?);
        assert_eq!(f.dir, Path::new("/var/lib/cni/networks/net1"));
        fs::write(&env, "FLANNEL_NETWORK=10.244.0.0/16\n")?;
        let e = FlannelIpam::detect(conf(&env).as_bytes()).expect_err("incomplete");
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        Ok(())
    }

    #[test]
    fn allocates_from_dot_two_round_robin_and_repeats_for_the_same_container()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let f = ipam(dir.path(), "10.244.7.0/24");
        let a = f.add("ctr-a", "eth0")?;
        assert_eq!(a.to_string(), "10.244.7.2/24");
        assert_eq!(f.add("ctr-a", "eth0")?, a);
        let b = f.add("ctr-b", "eth0")?;
        assert_eq!(b.to_string(), "10.244.7.3/24");
        // host-local's file format.
        assert_eq!(
            fs::read_to_string(f.dir.join("10.244.7.2"))?,
            "ctr-a\r\neth0"
        );
        assert_eq!(f.del("ctr-a", "eth0")?, vec![a.addr()]);
        assert!(f.del("ctr-a", "eth0")?.is_empty());
        // Round robin: the freed .2 is not reused before the range wraps.
        assert_eq!(f.add("ctr-c", "eth0")?.to_string(), "10.244.7.4/24");
        assert_eq!(f.find("ctr-b", "eth0")?, Some(b.addr()));
        assert_eq!(f.find("ctr-a", "eth0")?, None);
        Ok(())
    }

    #[test]
    fn a_full_subnet_is_an_ipam_error_and_wraps_after_a_release()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        // A /29: .2 to .6 usable (.0 VTEP, .1 gateway, .7 broadcast).
        let f = ipam(dir.path(), "10.244.7.0/29");
        let got: Vec<String> = (0..5)
            .map(|i| {
                f.add(&format!("c{i}"), "eth0")
                    .map(|n| n.addr().to_string())
            })
            .collect::<Result<_>>()?;
        assert_eq!(
            got,
            vec![
                "10.244.7.2",
                "10.244.7.3",
                "10.244.7.4",
                "10.244.7.5",
                "10.244.7.6"
            ]
        );
        let e = f.add("c5", "eth0").expect_err("full");
        assert_eq!(e.code, code::IPAM_FAILURE);
        f.del("c1", "eth0")?;
        assert_eq!(f.add("c5", "eth0")?.addr().to_string(), "10.244.7.3");
        Ok(())
    }

    #[test]
    fn an_address_from_an_older_lease_is_replaced()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let old = ipam(dir.path(), "10.244.7.0/24");
        old.add("ctr", "eth0")?;
        let new = ipam(dir.path(), "10.244.9.0/24");
        assert_eq!(new.add("ctr", "eth0")?.to_string(), "10.244.9.2/24");
        assert!(!new.dir.join("10.244.7.2").exists());
        Ok(())
    }
}
