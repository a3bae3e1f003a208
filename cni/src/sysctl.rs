//! Host-side sysctls of a cali interface (Calico's `configureSysctls`), written under
//! /proc/sys, which shows the sysctls of the caller's network namespace.

use std::path::Path;

use tracing::warn;

use crate::error::{CniError, Result};

fn write(path: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

/// `route_localnet=1`, `proxy_arp=1`, `forwarding=1`, `neigh proxy_delay=0` (warn only),
/// and `accept_ra=0` where IPv6 is present.
pub fn configure_host_side(iface: &str) -> Result<()> {
    for (key, value) in [
        ("route_localnet", "1"),
        ("proxy_arp", "1"),
        ("forwarding", "1"),
    ] {
        let path = format!("/proc/sys/net/ipv4/conf/{iface}/{key}");
        write(&path, value).map_err(|e| {
            CniError::dataplane(format!("cannot set {path} to {value}"), e.to_string())
        })?;
    }
    let delay = format!("/proc/sys/net/ipv4/neigh/{iface}/proxy_delay");
    if let Err(e) = write(&delay, "0") {
        warn!(path = delay, error = %e, "cannot set proxy_delay");
    }
    let ra = format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra");
    if Path::new(&ra).exists()
        && let Err(e) = write(&ra, "0")
    {
        warn!(path = ra, error = %e, "cannot set accept_ra");
    }
    Ok(())
}

/// Reads one sysctl of `iface` (for CHECK).
pub fn read_ipv4_conf(iface: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{iface}/{key}"))
        .ok()
        .map(|s| s.trim().to_string())
}
