//! A lease's value in flannel's JSON (`lease.LeaseAttrs`), and a lease as read from the
//! store. Pure.
//!
//! ```json
//! {"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}
//! ```

use std::net::Ipv4Addr;

use datastore::{KeyValue, LeaseId, Revision};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::BackendType;
use super::subnet::subnet_of_key;
use crate::dataplane::types::{format_mac, parse_mac};

/// `LeaseAttrs`: who holds a subnet and how to reach it. Field order and names are
/// flannel's, so `etcdctl get` shows what a flannel user expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    /// Always `null` here (IPv4 only), as flannel writes it for an IPv4 node.
    #[serde(rename = "PublicIPv6", default)]
    pub public_ipv6: Option<String>,
    #[serde(
        rename = "BackendType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub backend_type: String,
    #[serde(
        rename = "BackendData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub backend_data: Option<Value>,
    #[serde(
        rename = "BackendV6Data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub backend_v6_data: Option<Value>,
}

/// vxlan's `BackendData`: `{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: String,
}

impl LeaseAttrs {
    /// What a vxlan node writes.
    pub fn vxlan(public_ip: Ipv4Addr, vni: u32, vtep_mac: [u8; 6]) -> LeaseAttrs {
        let data = VxlanData {
            vni,
            vtep_mac: format_mac(&vtep_mac),
        };
        LeaseAttrs {
            public_ip,
            public_ipv6: None,
            backend_type: BackendType::Vxlan.as_str().to_string(),
            backend_data: serde_json::to_value(data).ok(),
            backend_v6_data: None,
        }
    }

    /// What a host-gw node writes (no backend data).
    pub fn host_gw(public_ip: Ipv4Addr) -> LeaseAttrs {
        LeaseAttrs {
            public_ip,
            public_ipv6: None,
            backend_type: BackendType::HostGw.as_str().to_string(),
            backend_data: None,
            backend_v6_data: None,
        }
    }

    /// The value to store.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The VTEP MAC of a vxlan lease, if well-formed.
    pub fn vtep_mac(&self) -> Option<[u8; 6]> {
        let data: VxlanData = serde_json::from_value(self.backend_data.clone()?).ok()?;
        parse_mac(&data.vtep_mac)
    }
}

/// One lease as read from `<prefix>/subnets/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetLease {
    pub subnet: Ipv4Net,
    pub attrs: LeaseAttrs,
    /// The store lease the key is attached to; `None` for a reservation (no TTL).
    pub lease: Option<LeaseId>,
    /// The key's revision (the compare-and-swap token).
    pub mod_revision: Revision,
}

/// Why a stored key is not a usable lease.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LeaseParseError {
    #[error("{0}: not a subnet key (expected <a.b.c.d>-<len>)")]
    Key(String),
    #[error("{key}: value is not flannel lease JSON: {reason}")]
    Value { key: String, reason: String },
}

impl SubnetLease {
    /// Decodes a key-value under `<prefix>/subnets/`.
    pub fn from_kv(prefix: &str, kv: &KeyValue) -> Result<SubnetLease, LeaseParseError> {
        let subnet =
            subnet_of_key(prefix, &kv.key).ok_or_else(|| LeaseParseError::Key(kv.key.clone()))?;
        let attrs: LeaseAttrs =
            serde_json::from_slice(&kv.value).map_err(|e| LeaseParseError::Value {
                key: kv.key.clone(),
                reason: e.to_string(),
            })?;
        Ok(SubnetLease {
            subnet,
            attrs,
            lease: kv.lease,
            mod_revision: kv.mod_revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_attrs_serialise_exactly_like_flannel() {
        let attrs = LeaseAttrs::vxlan(
            "192.168.64.3".parse().expect("ip"),
            1,
            [0xc6, 0xd2, 0x32, 0x6f, 0x8f, 0x44],
        );
        assert_eq!(
            String::from_utf8(attrs.to_json()).expect("utf8"),
            r#"{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#
        );
        assert_eq!(attrs.vtep_mac(), Some([0xc6, 0xd2, 0x32, 0x6f, 0x8f, 0x44]));
    }

    #[test]
    fn host_gw_attrs_have_no_backend_data() {
        let attrs = LeaseAttrs::host_gw("10.1.10.9".parse().expect("ip"));
        assert_eq!(
            String::from_utf8(attrs.to_json()).expect("utf8"),
            r#"{"PublicIP":"10.1.10.9","PublicIPv6":null,"BackendType":"host-gw"}"#
        );
        assert_eq!(attrs.vtep_mac(), None);
    }

    #[test]
    fn leases_written_by_flannel_itself_decode() {
        let kv = KeyValue {
            key: "/coreos.com/network/subnets/10.5.52.0-24".into(),
            value: br#"{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#.to_vec(),
            create_revision: 5,
            mod_revision: 7,
            lease: Some(0x694d854330fc5110),
        };
        let l = SubnetLease::from_kv("/coreos.com/network", &kv).expect("lease");
        assert_eq!(l.subnet, "10.5.52.0/24".parse::<Ipv4Net>().expect("net"));
        assert_eq!(l.attrs.backend_type, "vxlan");
        assert_eq!(l.lease, Some(0x694d854330fc5110));
        assert_eq!(l.mod_revision, 7);
        // An older flannel without PublicIPv6, and an unknown backend.
        let kv = KeyValue {
            value: br#"{"PublicIP":"10.0.0.2","BackendType":"udp","BackendData":null}"#.to_vec(),
            ..kv
        };
        let l = SubnetLease::from_kv("/coreos.com/network", &kv).expect("lease");
        assert_eq!(l.attrs.backend_type, "udp");
    }

    #[test]
    fn bad_keys_and_values_are_errors_not_panics() {
        let kv = KeyValue {
            key: "/coreos.com/network/subnets/garbage".into(),
            value: b"{}".to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: None,
        };
        assert!(matches!(
            SubnetLease::from_kv("/coreos.com/network", &kv),
            Err(LeaseParseError::Key(_))
        ));
        let kv = KeyValue {
            key: "/coreos.com/network/subnets/10.0.1.0-24".into(),
            value: br#"{"PublicIP":"not-an-ip"}"#.to_vec(),
            ..kv
        };
        assert!(matches!(
            SubnetLease::from_kv("/coreos.com/network", &kv),
            Err(LeaseParseError::Value { .. })
        ));
    }
}
