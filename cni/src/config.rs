//! The network configuration on stdin, shaped like Calico's CNI NetConf
//! (`cni-plugin/pkg/types/types.go`), plus `datastore_path` (the embedded store's file) and
//! `mtu_file` (where Felix's detected MTU is, so several lab nodes can share a machine).
//! Unknown keys are accepted, as the spec requires.

use std::path::{Path, PathBuf};

use datastore::model::IpFamily;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Result, code};
use crate::version;

/// Where calico-node writes the MTU it detected (Calico's `utils.MTUFilePath`).
pub const DEFAULT_MTU_FILE: &str = "/var/lib/calico/mtu";
/// Where calico-node writes its node name (Calico's default `nodename_file`).
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";
/// calico-node's claims socket under the default `CALICO_RUN_DIR` ([`ipam::notice`]).
pub const DEFAULT_CLAIMS_SOCKET: &str = "/var/run/calico/calico-node-claims.sock";
/// The MTU when neither the config nor the MTU file sets one.
pub const DEFAULT_MTU: u32 = 1500;

/// The `ipam` section.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamConf {
    /// The IPAM plugin to delegate to (`calico-ipam`).
    #[serde(rename = "type", default)]
    pub plugin: String,
    /// IPv4 pools to allocate from, by name or CIDR; empty = every usable pool.
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    /// IPv6 pools to allocate from, by name or CIDR; empty = every usable pool.
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
    /// `"false"` = no IPv4 address (Calico's string; a JSON boolean is taken too).
    #[serde(default)]
    pub assign_ipv4: Option<Value>,
    /// `"true"` = an IPv6 address as well.
    #[serde(default)]
    pub assign_ipv6: Option<Value>,
}

impl IpamConf {
    /// The families a pod gets an address of: IPv4 unless `assign_ipv4` is false, IPv6
    /// when `assign_ipv6` is true (Calico's defaults), IPv4 first. Errors name the key.
    pub fn families(&self) -> Result<Vec<IpFamily>> {
        let v4 = flag("ipam.assign_ipv4", self.assign_ipv4.as_ref())?.unwrap_or(true);
        let v6 = flag("ipam.assign_ipv6", self.assign_ipv6.as_ref())?.unwrap_or(false);
        let families: Vec<IpFamily> = [(IpFamily::V4, v4), (IpFamily::V6, v6)]
            .into_iter()
            .filter_map(|(f, on)| on.then_some(f))
            .collect();
        if families.is_empty() {
            return Err(CniError::config(
                "ipam.assign_ipv4 is \"false\" and ipam.assign_ipv6 is not \"true\": no address to assign",
            ));
        }
        Ok(families)
    }

    /// The pools a request of `family` is limited to.
    pub fn pools(&self, family: IpFamily) -> &[String] {
        match family {
            IpFamily::V4 => &self.ipv4_pools,
            IpFamily::V6 => &self.ipv6_pools,
        }
    }
}

/// A Calico boolean key: the string "true" / "false" (or a JSON boolean).
fn flag(key: &str, value: Option<&Value>) -> Result<Option<bool>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(other) => Err(CniError::config(format!(
            "{key} must be \"true\" or \"false\", not {other}"
        ))),
    }
}

/// One network configuration as the runtime passes it to the plugin.
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin: String,
    /// `etcdv3` (default) or `local` (the embedded store at `datastore_path`).
    #[serde(default)]
    pub datastore_type: String,
    /// Comma-separated etcd URLs.
    #[serde(default)]
    pub etcd_endpoints: String,
    #[serde(default)]
    pub etcd_key_file: String,
    #[serde(default)]
    pub etcd_cert_file: String,
    #[serde(default)]
    pub etcd_ca_cert_file: String,
    /// The embedded store's file (`datastore_type: local`).
    #[serde(default)]
    pub datastore_path: String,
    #[serde(default)]
    pub nodename: String,
    #[serde(default)]
    pub nodename_file: String,
    #[serde(default)]
    pub nodename_file_optional: bool,
    /// 0 = the MTU file, else 1500.
    #[serde(default)]
    pub mtu: u32,
    /// Overrides [`DEFAULT_MTU_FILE`].
    #[serde(default)]
    pub mtu_file: String,
    /// The host-wide IPAM lock file (default `/var/run/calico/ipam.lock`).
    #[serde(default)]
    pub ipam_lock_file: String,
    /// Where this node's calico-node hears of the blocks the plugin claims (default
    /// [`DEFAULT_CLAIMS_SOCKET`]; calico-rs only).
    #[serde(default)]
    pub claims_socket: String,
    #[serde(default)]
    pub log_level: String,
    #[serde(default)]
    pub log_file_path: String,
    #[serde(default)]
    pub ipam: IpamConf,
    /// Passed through to the result.
    #[serde(default)]
    pub dns: Option<Value>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
}

impl NetConf {
    /// Decodes and checks the configuration: code 6 when it is not JSON of the right shape,
    /// 1 for a version we do not speak, 7 when a required key is missing or wrong.
    pub fn parse(raw: &[u8]) -> Result<NetConf> {
        let conf: NetConf = serde_json::from_slice(raw).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "error decoding the network configuration on stdin",
                e.to_string(),
            )
        })?;
        if conf.cni_version.is_empty() {
            return Err(CniError::config(
                "missing cniVersion in the network configuration",
            ));
        }
        version::check(&conf.cni_version)?;
        if conf.name.is_empty() {
            return Err(CniError::config("missing network name"));
        }
        let name_ok = conf
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && conf
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !name_ok {
            return Err(CniError::config(format!(
                "invalid network name {:?}: alphanumerics, '_', '.', '-', starting with an alphanumeric",
                conf.name
            )));
        }
        match conf.datastore_type.as_str() {
            "" | "etcdv3" | "local" => {}
            other => {
                return Err(CniError::config(format!(
                    "unsupported datastore_type {other:?}: use \"etcdv3\" or \"local\""
                )));
            }
        }
        for (key, pools) in [
            ("ipam.ipv4_pools", &conf.ipam.ipv4_pools),
            ("ipam.ipv6_pools", &conf.ipam.ipv6_pools),
        ] {
            if pools.iter().any(|p| p.trim().is_empty()) {
                return Err(CniError::config(format!("empty entry in {key}")));
            }
        }
        conf.ipam.families()?;
        Ok(conf)
    }

    /// The claims socket in effect.
    pub fn claims_socket(&self) -> &str {
        if self.claims_socket.is_empty() {
            DEFAULT_CLAIMS_SOCKET
        } else {
            &self.claims_socket
        }
    }

    /// The datastore type in effect (`etcdv3` when unset, as Calico).
    pub fn datastore_type(&self) -> &str {
        if self.datastore_type.is_empty() {
            "etcdv3"
        } else {
            &self.datastore_type
        }
    }

    /// The node name: `nodename`, else the `nodename_file`, else the hostname (Calico's
    /// order).
    pub fn node_name(&self) -> Result<String> {
        if !self.nodename.is_empty() {
            return Ok(self.nodename.clone());
        }
        let file = if self.nodename_file.is_empty() {
            DEFAULT_NODENAME_FILE
        } else {
            &self.nodename_file
        };
        match std::fs::read_to_string(file) {
            Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_string()),
            _ if !self.nodename_file.is_empty() && !self.nodename_file_optional => {
                return Err(CniError::config(format!(
                    "cannot read the node name from nodename_file {file}: is calico-node running?"
                )));
            }
            _ => {}
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| {
            CniError::config(format!("no nodename configured and no hostname: {e}"))
        })?;
        Ok(host.trim().to_lowercase())
    }

    /// The MTU in effect: the configured one, else the MTU file, else 1500.
    pub fn effective_mtu(&self) -> u32 {
        if self.mtu != 0 {
            return self.mtu;
        }
        let file = if self.mtu_file.is_empty() {
            Path::new(DEFAULT_MTU_FILE).to_path_buf()
        } else {
            PathBuf::from(&self.mtu_file)
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_MTU)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_calico_style_config() -> Result<()> {
        let raw = br#"{"cniVersion":"0.3.1","name":"k8s-pod-network","type":"calico",
            "datastore_type":"etcdv3","etcd_endpoints":"http://10.0.0.1:2379","nodename":"n1",
            "mtu":1440,"log_level":"info","ipam":{"type":"calico-ipam","ipv4_pools":["default-ipv4-ippool"]},
            "policy":{"type":"k8s"},"kubernetes":{"kubeconfig":"/x"}}"#;
        let conf = NetConf::parse(raw)?;
        assert_eq!(conf.node_name()?, "n1");
        assert_eq!(conf.effective_mtu(), 1440);
        assert_eq!(conf.ipam.ipv4_pools, vec!["default-ipv4-ippool"]);
        assert_eq!(conf.datastore_type(), "etcdv3");
        Ok(())
    }

    #[test]
    fn bad_configs_get_the_spec_codes() {
        let decode = NetConf::parse(b"{not json").expect_err("decode");
        assert_eq!(decode.code, code::DECODE_FAILURE);
        let version = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n"}"#).expect_err("v");
        assert_eq!(version.code, code::INCOMPATIBLE_VERSION);
        let name = NetConf::parse(br#"{"cniVersion":"1.0.0"}"#).expect_err("name");
        assert_eq!(
            (name.code, name.msg.as_str()),
            (code::INVALID_CONFIG, "missing network name")
        );
        let ds =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","datastore_type":"kubernetes"}"#)
                .expect_err("ds");
        assert_eq!(ds.code, code::INVALID_CONFIG);
    }

    #[test]
    fn assign_ipv4_and_ipv6_choose_the_families() -> Result<()> {
        let conf = |ipam: &str| {
            NetConf::parse(
                format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#).as_bytes(),
            )
        };
        assert_eq!(conf("{}")?.ipam.families()?, [IpFamily::V4]);
        let dual = conf(r#"{"assign_ipv6":"true","ipv6_pools":["fd00::/48"]}"#)?;
        assert_eq!(dual.ipam.families()?, [IpFamily::V4, IpFamily::V6]);
        assert_eq!(dual.ipam.pools(IpFamily::V6), ["fd00::/48"]);
        let v6 = conf(r#"{"assign_ipv4":"false","assign_ipv6":true}"#)?;
        assert_eq!(v6.ipam.families()?, [IpFamily::V6]);
        let none = conf(r#"{"assign_ipv4":"false"}"#).expect_err("nothing to assign");
        assert_eq!(none.code, code::INVALID_CONFIG);
        let bad = conf(r#"{"assign_ipv6":"yes"}"#).expect_err("not a Calico boolean");
        assert_eq!(
            bad.msg,
            r#"ipam.assign_ipv6 must be "true" or "false", not "yes""#
        );
        Ok(())
    }

    #[test]
    fn mtu_zero_reads_the_mtu_file() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("mtu");
        std::fs::write(&file, "1450\n")?;
        let raw = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","mtu":0,"mtu_file":"{}"}}"#,
            file.display()
        );
        assert_eq!(NetConf::parse(raw.as_bytes())?.effective_mtu(), 1450);
        let raw = r#"{"cniVersion":"1.0.0","name":"n","mtu_file":"/nonexistent/mtu"}"#;
        assert_eq!(NetConf::parse(raw.as_bytes())?.effective_mtu(), 1500);
        Ok(())
    }
}
