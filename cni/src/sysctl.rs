//! The sysctls of a pod's interfaces (Calico's `configureSysctls` and
//! `configureContainerSysctls`), written under /proc/sys, which shows the sysctls of the
//! caller's network namespace.

use std::path::Path;

use tracing::warn;

use crate::error::{CniError, Result};

fn set(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .map_err(|e| CniError::dataplane(format!("cannot set {path} to {value}"), e.to_string()))
}

/// The host end, before it is set up. IPv4: `route_localnet=1`, `proxy_arp=1`,
/// `forwarding=1`, `neigh proxy_delay=0` (warn only). IPv6: `accept_dad=0` (so its
/// link-local address, the pods' next hop, is usable at once), `disable_ipv6=0`,
/// `proxy_ndp=1`, `forwarding=1`. `accept_ra=0` wherever IPv6 is present.
pub fn configure_host_side(iface: &str, ipv4: bool, ipv6: bool) -> Result<()> {
    if ipv4 {
        for (key, value) in [
            ("route_localnet", "1"),
            ("proxy_arp", "1"),
            ("forwarding", "1"),
        ] {
            set(&format!("/proc/sys/net/ipv4/conf/{iface}/{key}"), value)?;
        }
        let delay = format!("/proc/sys/net/ipv4/neigh/{iface}/proxy_delay");
        if let Err(e) = std::fs::write(&delay, "0") {
            warn!(path = delay, error = %e, "cannot set proxy_delay");
        }
    }
    if ipv6 {
        for (key, value) in [
            ("accept_dad", "0"),
            ("disable_ipv6", "0"),
            ("proxy_ndp", "1"),
            ("forwarding", "1"),
        ] {
            set(&format!("/proc/sys/net/ipv6/conf/{iface}/{key}"), value)?;
        }
    }
    let ra = format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra");
    if Path::new(&ra).exists()
        && let Err(e) = std::fs::write(&ra, "0")
    {
        warn!(path = ra, error = %e, "cannot set accept_ra");
    }
    Ok(())
}

/// Inside the pod, before its interface is set up, for an IPv6 address: IPv6 enabled in
/// the namespace (else the interface gets no link-local address and the default route
/// cannot be added) and no duplicate address detection on the point-to-point link.
pub fn configure_pod_side_ipv6(iface: &str) -> Result<()> {
    for conf in ["all", "default", "lo"] {
        set(&format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "0")?;
    }
    set(&format!("/proc/sys/net/ipv6/conf/{iface}/accept_dad"), "0")
}

/// Reads one per-interface sysctl of a family (`ipv4` / `ipv6`), for CHECK.
pub fn read_conf(family: &str, iface: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/net/{family}/conf/{iface}/{key}"))
        .ok()
        .map(|s| s.trim().to_string())
}
