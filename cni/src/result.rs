//! The ADD result (spec section 5) in the version the config asked for, and the decoding of
//! a delegated IPAM plugin's result.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{CniError, Result, code};
use crate::version;

/// One interface of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The container's netns path; absent for host-side interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One address of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR form, e.g. `10.244.1.5/32`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces` (absent in IPAM results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// An ADD result (also an IPAM plugin's result, with no interfaces).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Value,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Value,
}

impl CniResult {
    /// The result JSON for spec `version` (adds `"version":"4"` to each IP before 1.0.0).
    pub fn to_json(&self, cni_version: &str) -> String {
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = serde_json::to_value(ip).unwrap_or(Value::Null);
                if version::ips_carry_version(cni_version)
                    && let Value::Object(map) = &mut v
                {
                    let family = if ip.address.contains(':') { "6" } else { "4" };
                    map.insert("version".into(), Value::String(family.into()));
                }
                v
            })
            .collect();
        let mut out = json!({"cniVersion": cni_version});
        if !self.interfaces.is_empty() {
            out["interfaces"] = json!(self.interfaces);
        }
        out["ips"] = Value::Array(ips);
        if !self.routes.is_empty() {
            out["routes"] = json!(self.routes);
        }
        out["dns"] = if self.dns.is_null() {
            json!({})
        } else {
            self.dns.clone()
        };
        out.to_string()
    }

    /// Decodes a result (a delegated IPAM plugin's stdout, or `prevResult`).
    pub fn from_json(raw: &[u8]) -> Result<CniResult> {
        let w: Wire = serde_json::from_slice(raw).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "cannot decode the IPAM plugin's result",
                format!("{e}: {}", String::from_utf8_lossy(raw).trim()),
            )
        })?;
        Ok(CniResult {
            interfaces: w.interfaces,
            ips: w.ips,
            routes: w.routes,
            dns: w.dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cali1234567890a".into(),
                    mac: Some("ee:ee:ee:ee:ee:ee".into()),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    sandbox: Some("/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.0.0.5/32".into(),
                gateway: None,
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("169.254.1.1".into()),
            }],
            dns: Value::Null,
        }
    }

    #[test]
    fn result_shape_follows_the_requested_version() -> Result<()> {
        let v1: Value = serde_json::from_str(&sample().to_json("1.0.0")).unwrap_or_default();
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert_eq!(v1["ips"][0]["interface"], 1);
        assert!(v1["ips"][0].get("version").is_none());
        assert_eq!(v1["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(v1["dns"], json!({}));
        let v031: Value = serde_json::from_str(&sample().to_json("0.3.1")).unwrap_or_default();
        assert_eq!(v031["ips"][0]["version"], "4");
        let back = CniResult::from_json(sample().to_json("0.3.1").as_bytes())?;
        assert_eq!(back.ips[0].address, "10.0.0.5/32");
        Ok(())
    }
}
