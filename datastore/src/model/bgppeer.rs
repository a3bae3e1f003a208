//! BGPPeer: an explicit BGP peering, global (no node/nodeSelector), per node (`node`) or
//! per selected nodes (`nodeSelector`); the remote end is `peerIP` + `asNumber` or the
//! Calico nodes matching `peerSelector`. Written by operators; read by the BGP peer
//! computation in calico-node.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::{AsNumber, GoDuration, string_enum};

/// `BGPPeer = Object<BGPPeerSpec>`.
pub type BGPPeer = Object<BGPPeerSpec>;

string_enum! {
    /// `sourceAddress`: which local address the session uses.
    SourceAddress {
        UseNodeIP = "UseNodeIP",
        None = "None",
    }
}

string_enum! {
    /// `nextHopMode` (newer Calico).
    NextHopMode {
        Auto = "Auto",
        Self_ = "Self",
        Keep = "Keep",
    }
}

string_enum! {
    /// `reversePeering`: whether the nodes a peering selects peer back on their own
    /// (`Auto`, the default) or only through a BGPPeer of their own (`Manual`).
    ReversePeering {
        Auto = "Auto",
        Manual = "Manual",
    }
}

/// A Kubernetes secret reference (`password: {secretKeyRef: {name, key}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// `{name, key}` of a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

impl SecretKeyRef {
    /// Checks the reference is one Kubernetes could hold: `name` a DNS-1123 subdomain,
    /// `key` made of `[-._a-zA-Z0-9]` and not `.` or `..`. calico-node reads secrets as
    /// files `<secrets dir>/<name>/<key>`, so this is also what keeps a reference inside
    /// that directory (no `/`, no `..`, nothing absolute). Returns the field at fault
    /// (`name` or `key`) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let dns_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if self.name.is_empty() || self.name.len() > 253 || !self.name.split('.').all(dns_label) {
            return Err((
                "name",
                "a secret name must be a lowercase DNS-1123 subdomain (a-z, 0-9, '-' and '.')"
                    .into(),
            ));
        }
        let key_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if self.key.is_empty()
            || self.key.len() > 253
            || self.key == "."
            || self.key == ".."
            || !self.key.bytes().all(key_char)
        {
            return Err((
                "key",
                "a secret key must consist of alphanumeric characters, '-', '_' or '.' (and not be '.' or '..')".into(),
            ));
        }
        Ok(())
    }
}

/// BGPPeer spec with Calico's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// Exact node this peering applies to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// `IP`, `IP:port` or `[IPv6]:port`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    /// Remote AS; unset with `peerIP` means our own (iBGP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<GoDuration>,
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
}

impl BGPPeerSpec {
    /// True for a global peer (applies to every node).
    pub fn is_global(&self) -> bool {
        self.node.is_empty() && self.node_selector.is_empty()
    }

    /// `peerIP` split into address and optional port.
    pub fn peer_addr(&self) -> Option<(std::net::IpAddr, Option<u16>)> {
        crate::model::validation::bgp::parse_peer_ip(&self.peer_ip)
    }
}

impl Spec for BGPPeerSpec {
    const KIND: &'static str = "BGPPeer";
    const PLURAL: &'static str = "bgppeers";

    fn validate(&self, _meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::bgp::validate_peer(self)
    }
}
