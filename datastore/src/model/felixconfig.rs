//! FelixConfiguration: dataplane settings (`default` or `node.<name>`), the subset
//! calico-rs honours. Unknown fields are rejected so a typo does not silently do nothing.
//! Written by operators; read by calico-node's dataplane.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::GoDuration;

/// `FelixConfiguration = Object<FelixConfigurationSpec>`.
pub type FelixConfiguration = Object<FelixConfigurationSpec>;

/// FelixConfiguration spec (Calico names; all optional, Felix defaults apply when unset:
/// vxlanPort 4789, vxlanVNI 4096, MTUs 0 = auto, routeRefreshInterval 90s,
/// healthPort 9099, prometheusMetricsPort 9091).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FelixConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<u32>,
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_iface_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_sys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_source_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_external_routes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_insert_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_refresh_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_support: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<String>,
}

impl Spec for FelixConfigurationSpec {
    const KIND: &'static str = "FelixConfiguration";
    const PLURAL: &'static str = "felixconfigurations";

    fn validate(&self, _meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::misc::validate_felix(self)
    }
}
