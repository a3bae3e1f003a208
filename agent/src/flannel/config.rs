//! flannel's network configuration (`<prefix>/config`, e.g. `/coreos.com/network/config`),
//! parsed and checked the way flannel's `pkg/subnet/config.go` does, with one clear error per
//! bad field. Pure: no I/O.
//!
//! ```json
//! {"Network": "10.244.0.0/16", "SubnetLen": 24, "SubnetMin": "10.244.1.0",
//!  "SubnetMax": "10.244.255.0", "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472,
//!  "DirectRouting": false}}
//! ```
//!
//! Defaults (flannel's `CheckNetworkConfig`): `SubnetLen` 24 when the network is a /22 or
//! larger, else the network's length + 2; `SubnetMin` the second subnet (the first is
//! skipped so no host gets the network's `.0`); `SubnetMax` the last subnet; `VNI` 1;
//! `Port` 8472 (the kernel's default, what flannel's 0 means). One deviation: without a
//! `Backend` flannel's parser falls back to `udp`, which calico-rs does not implement, so the
//! default here is `vxlan` (what flannel's documentation recommends).

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Map, Value};
use thiserror::Error;

use super::subnet::{subnet_size, subnets_in};

/// flannel's VXLAN UDP port (the Linux kernel default, `Port: 0`).
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// flannel's default VNI.
pub const DEFAULT_VNI: u32 = 1;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// The smallest network flannel accepts.
pub const MIN_NETWORK_PREFIX: u8 = 28;
/// The longest subnet flannel hands out.
pub const MAX_SUBNET_LEN: u8 = 30;

/// One bad field of the network config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// flannel's field name (`Network`, `SubnetLen`, `Backend.VNI`, ...).
    pub field: String,
    /// What is wrong, with the offending value.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a network config cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The value is not a JSON object.
    #[error("network config is not a JSON object: {0}")]
    Json(String),
    /// One or more fields are wrong; every one found is listed.
    #[error("invalid network config: {}", join(.0))]
    Fields(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConfigError {
    /// The field errors (empty for a JSON error).
    pub fn fields(&self) -> &[FieldError] {
        match self {
            ConfigError::Json(_) => &[],
            ConfigError::Fields(f) => f,
        }
    }
}

/// The backends calico-rs implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendType {
    /// `vxlan`: flannel.<VNI>, onlink routes, permanent neighbours and FDB entries.
    Vxlan,
    /// `host-gw`: `<subnet> via <PublicIP>` routes, no encapsulation.
    HostGw,
}

impl BackendType {
    /// flannel's spelling, as stored in `BackendType` of a lease.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Vxlan => "vxlan",
            BackendType::HostGw => "host-gw",
        }
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Backend` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub kind: BackendType,
    /// VXLAN network identifier (vxlan only); the device is `flannel.<VNI>`.
    pub vni: u32,
    /// VXLAN destination UDP port (vxlan only).
    pub port: u16,
    /// vxlan: route to peers on our own L2 subnet directly, without encapsulation.
    pub direct_routing: bool,
    /// vxlan: the device MTU; `None` = interface MTU - 50.
    pub mtu: Option<u32>,
}

/// A checked network config with flannel's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The whole overlay (`Network`).
    pub network: Ipv4Net,
    /// Prefix length of each node's subnet.
    pub subnet_len: u8,
    /// First subnet handed out (network address of it).
    pub subnet_min: Ipv4Addr,
    /// Last subnet handed out (network address of it).
    pub subnet_max: Ipv4Addr,
    pub backend: BackendConfig,
}

impl NetworkConfig {
    /// Parses and checks the stored JSON.
    pub fn parse(raw: &[u8]) -> Result<NetworkConfig, ConfigError> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| ConfigError::Json(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(ConfigError::Json(format!("found {value}")));
        };
        Checker::default().check(&obj)
    }

    /// How many subnets lie between `SubnetMin` and `SubnetMax`.
    pub fn subnet_count(&self) -> u64 {
        let step = u64::from(subnet_size(self.subnet_len));
        (u64::from(u32::from(self.subnet_max)) - u64::from(u32::from(self.subnet_min))) / step + 1
    }

    /// True when `subnet` is one this config hands out (right length, inside the range,
    /// aligned): a lease that does not fit is not reused after a config change.
    pub fn fits(&self, subnet: &Ipv4Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.network() == subnet.addr()
            && subnet.addr() >= self.subnet_min
            && subnet.addr() <= self.subnet_max
    }

    /// Every subnet this config hands out, from `SubnetMin` to `SubnetMax`.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + use<> {
        subnets_in(self.subnet_min, self.subnet_max, self.subnet_len)
    }
}

/// Collects field errors while checking.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn bad(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    fn check(mut self, obj: &Map<String, Value>) -> Result<NetworkConfig, ConfigError> {
        match obj.get("EnableIPv4") {
            None | Some(Value::Null) | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => self.bad(
                "EnableIPv4",
                "false is not supported: calico-rs's flannel backend is IPv4 only",
            ),
            Some(v) => self.bad("EnableIPv4", format!("{v} is not true or false")),
        }
        if let Some(v) = obj.get("EnableIPv6") {
            match v.as_bool() {
                Some(false) => {}
                Some(true) => self.bad(
                    "EnableIPv6",
                    "true is not supported: calico-rs's flannel backend is IPv4 only",
                ),
                None => self.bad("EnableIPv6", format!("{v} is not true or false")),
            }
        }
        let network = self.network(obj.get("Network"));
        let subnet_len = network.and_then(|n| self.subnet_len(n, obj.get("SubnetLen")));
        let range = match (network, subnet_len) {
            (Some(n), Some(len)) => self.range(n, len, obj.get("SubnetMin"), obj.get("SubnetMax")),
            _ => None,
        };
        let backend = self.backend(obj.get("Backend"));
        match (network, subnet_len, range, backend) {
            (Some(network), Some(subnet_len), Some((subnet_min, subnet_max)), Some(backend))
                if self.errors.is_empty() =>
            {
                Ok(NetworkConfig {
                    network,
                    subnet_len,
                    subnet_min,
                    subnet_max,
                    backend,
                })
            }
            _ => Err(ConfigError::Fields(self.errors)),
        }
    }

    fn network(&mut self, v: Option<&Value>) -> Option<Ipv4Net> {
        let Some(v) = v else {
            self.bad("Network", "missing (e.g. \"Network\": \"10.244.0.0/16\")");
            return None;
        };
        let Some(text) = v.as_str() else {
            self.bad(
                "Network",
                format!("{v} is not a string like \"10.244.0.0/16\""),
            );
            return None;
        };
        let Ok(net) = text.parse::<Ipv4Net>() else {
            self.bad("Network", format!("'{text}' is not an IPv4 CIDR"));
            return None;
        };
        if net.prefix_len() > MIN_NETWORK_PREFIX {
            self.bad(
                "Network",
                format!("'{text}' is too small: flannel needs a /{MIN_NETWORK_PREFIX} or larger"),
            );
            return None;
        }
        if net.addr() != net.network() {
            self.bad(
                "Network",
                format!("'{text}' has host bits set (did you mean {}?)", net.trunc()),
            );
            return None;
        }
        Some(net)
    }

    fn subnet_len(&mut self, network: Ipv4Net, v: Option<&Value>) -> Option<u8> {
        let len = match v {
            None | Some(Value::Null) => {
                return Some(if network.prefix_len() <= 22 {
                    24
                } else {
                    network.prefix_len() + 2
                });
            }
            Some(Value::Number(n)) if n.as_u64().is_some_and(|l| l <= 32) => {
                u8::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0)
            }
            Some(other) => {
                self.bad(
                    "SubnetLen",
                    format!("{other} is not a prefix length (0-32)"),
                );
                return None;
            }
        };
        if len == 0 {
            // flannel treats 0 as unset.
            return self.subnet_len(network, None);
        }
        if len > MAX_SUBNET_LEN {
            self.bad(
                "SubnetLen",
                format!("{len} is too long: at most {MAX_SUBNET_LEN}"),
            );
            return None;
        }
        if len < network.prefix_len() + 2 {
            self.bad(
                "SubnetLen",
                format!(
                    "{len} leaves fewer than four subnets in {network}: use at least {}",
                    network.prefix_len() + 2
                ),
            );
            return None;
        }
        Some(len)
    }

    fn boundary(
        &mut self,
        field: &str,
        network: Ipv4Net,
        len: u8,
        v: Option<&Value>,
    ) -> Option<Option<Ipv4Addr>> {
        let v = match v {
            None | Some(Value::Null) => return Some(None),
            Some(v) => v,
        };
        let Some(text) = v.as_str() else {
            self.bad(field, format!("{v} is not a string like \"10.244.1.0\""));
            return None;
        };
        let Ok(ip) = text.parse::<Ipv4Addr>() else {
            self.bad(field, format!("'{text}' is not an IPv4 address"));
            return None;
        };
        if !network.contains(&ip) {
            self.bad(field, format!("{ip} is not inside Network {network}"));
            return None;
        }
        let aligned = Ipv4Net::new(ip, len).map(|n| n.network() == ip);
        if aligned != Ok(true) {
            self.bad(
                field,
                format!("{ip} is not the start of a /{len} subnet (SubnetLen)"),
            );
            return None;
        }
        Some(Some(ip))
    }

    fn range(
        &mut self,
        network: Ipv4Net,
        len: u8,
        min: Option<&Value>,
        max: Option<&Value>,
    ) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let step = subnet_size(len);
        let min = self.boundary("SubnetMin", network, len, min);
        let max = self.boundary("SubnetMax", network, len, max);
        let (min, max) = (min?, max?);
        let min = min.unwrap_or_else(|| Ipv4Addr::from(u32::from(network.network()) + step));
        let max = max.unwrap_or_else(|| {
            Ipv4Addr::from(u32::from(network.broadcast()).wrapping_sub(step - 1))
        });
        if min > max {
            self.bad(
                "SubnetMin",
                format!("{min} is after SubnetMax {max}: no subnet to hand out"),
            );
            return None;
        }
        Some((min, max))
    }

    fn backend(&mut self, v: Option<&Value>) -> Option<BackendConfig> {
        let mut backend = BackendConfig {
            kind: BackendType::Vxlan,
            vni: DEFAULT_VNI,
            port: DEFAULT_VXLAN_PORT,
            direct_routing: false,
            mtu: None,
        };
        let obj = match v {
            None | Some(Value::Null) => return Some(backend),
            Some(Value::Object(obj)) => obj,
            Some(other) => {
                self.bad(
                    "Backend",
                    format!("{other} is not an object like {{\"Type\": \"vxlan\"}}"),
                );
                return None;
            }
        };
        let before = self.errors.len();
        match obj.get("Type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => match t.to_ascii_lowercase().as_str() {
                "vxlan" => backend.kind = BackendType::Vxlan,
                "host-gw" => backend.kind = BackendType::HostGw,
                "udp" | "ipip" | "wireguard" | "ipsec" | "alloc" | "extension" | "tencent-vpc" => {
                    self.bad(
                        "Backend.Type",
                        format!("'{t}' is a flannel backend calico-rs does not implement: use vxlan or host-gw"),
                    )
                }
                _ => self.bad(
                    "Backend.Type",
                    format!("'{t}' is not a backend type: use vxlan or host-gw"),
                ),
            },
            Some(other) => self.bad("Backend.Type", format!("{other} is not a string")),
        }
        if let Some(v) = obj.get("VNI").filter(|v| !v.is_null()) {
            match v.as_u64() {
                Some(vni) if (1..=u64::from(MAX_VNI)).contains(&vni) => {
                    backend.vni = u32::try_from(vni).unwrap_or(DEFAULT_VNI);
                }
                _ => self.bad("Backend.VNI", format!("{v} is not a VNI (1-{MAX_VNI})")),
            }
        }
        if let Some(v) = obj.get("Port").filter(|v| !v.is_null()) {
            match v.as_u64() {
                Some(0) => backend.port = DEFAULT_VXLAN_PORT,
                Some(p) if p <= u64::from(u16::MAX) => {
                    backend.port = u16::try_from(p).unwrap_or(DEFAULT_VXLAN_PORT);
                }
                _ => self.bad("Backend.Port", format!("{v} is not a UDP port (0-65535)")),
            }
        }
        if let Some(v) = obj.get("DirectRouting").filter(|v| !v.is_null()) {
            match v.as_bool() {
                Some(b) => backend.direct_routing = b,
                None => self.bad("Backend.DirectRouting", format!("{v} is not true or false")),
            }
        }
        if let Some(v) = obj.get("MTU").filter(|v| !v.is_null()) {
            match v.as_u64() {
                Some(0) => {}
                Some(m) if (68..=65535).contains(&m) => backend.mtu = u32::try_from(m).ok(),
                _ => self.bad("Backend.MTU", format!("{v} is not an MTU (68-65535)")),
            }
        }
        for (field, what) in [("GBP", "group-based policy"), ("Learning", "MAC learning")] {
            if let Some(v) = obj.get(field).filter(|v| !v.is_null()) {
                match v.as_bool() {
                    Some(false) => {}
                    Some(true) => self.bad(
                        &format!("Backend.{field}"),
                        format!("true ({what}) is not supported by calico-rs"),
                    ),
                    None => self.bad(
                        &format!("Backend.{field}"),
                        format!("{v} is not true or false"),
                    ),
                }
            }
        }
        (self.errors.len() == before).then_some(backend)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
