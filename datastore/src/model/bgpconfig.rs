//! BGPConfiguration: cluster-wide BGP settings (`default`) and per-node overrides
//! (`node.<name>`). Written by operators; read by calico-node's speaker and by calicoctl
//! (inherited AS numbers). Unset fields are not persisted: readers use the `effective_*`
//! accessors, which give Calico's defaults (AS 64512, mesh on, Info, port 179).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::bgppeer::BgpPassword;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::{AsNumber, GoDuration, string_enum};

/// `BGPConfiguration = Object<BGPConfigurationSpec>`.
pub type BGPConfiguration = Object<BGPConfigurationSpec>;

/// Calico's default AS number.
pub const DEFAULT_AS_NUMBER: AsNumber = AsNumber(64512);
/// Calico's default BGP listen port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

string_enum! {
    /// `logSeverityScreen` of BGPConfiguration.
    BgpLogSeverity {
        Debug = "Debug",
        Info = "Info",
        Warning = "Warning",
        Error = "Error",
        Fatal = "Fatal",
    }
}

string_enum! {
    /// `serviceLoadBalancerAggregation`: advertise the `serviceLoadBalancerIPs` CIDRs
    /// (`Enabled`, the default) or only a /32 per LoadBalancer service (`Disabled`).
    ServiceLoadBalancerAggregation {
        Enabled = "Enabled",
        Disabled = "Disabled",
    }
}

string_enum! {
    /// `bindMode`: listen on all addresses or only the node IP.
    BindMode {
        None = "None",
        NodeIP = "NodeIP",
    }
}

string_enum! {
    /// `programClusterRoutes`: in Calico, which of BIRD and Felix programs the routes to
    /// other nodes' blocks. calico-node is both, so every value programs them.
    ProgramClusterRoutes {
        Enabled = "Enabled",
        Disabled = "Disabled",
        EnabledNoEncapOnly = "EnabledNoEncapOnly",
        EnabledIPIPOnly = "EnabledIPIPOnly",
    }
}

/// A CIDR entry of `serviceClusterIPs` / `serviceExternalIPs` / `serviceLoadBalancerIPs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCidr {
    pub cidr: String,
}

/// A named community (`communities`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    pub name: String,
    pub value: String,
}

/// A prefix to tag with communities (`prefixAdvertisements`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// BGPConfiguration spec with Calico's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<BgpLogSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceCidr>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceCidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<ServiceLoadBalancerAggregation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<ProgramClusterRoutes>,
}

impl BGPConfigurationSpec {
    /// The service CIDRs advertised as such: cluster and external IPs, and the
    /// LoadBalancer IPs unless `serviceLoadBalancerAggregation: Disabled` (then Calico
    /// advertises a /32 per LoadBalancer service instead, which needs Kubernetes Services).
    pub fn advertised_service_cidrs(&self) -> impl Iterator<Item = &ServiceCidr> {
        let aggregate = self.service_load_balancer_aggregation
            != Some(ServiceLoadBalancerAggregation::Disabled);
        let lb: &[ServiceCidr] = if aggregate {
            &self.service_load_balancer_ips
        } else {
            &[]
        };
        self.service_cluster_ips
            .iter()
            .chain(&self.service_external_ips)
            .chain(lb)
    }

    /// The cluster AS (64512 when unset).
    pub fn effective_as_number(&self) -> AsNumber {
        self.as_number.unwrap_or(DEFAULT_AS_NUMBER)
    }

    /// Whether the node-to-node mesh is on (true when unset).
    pub fn mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }

    /// The BGP port (179 when unset).
    pub fn effective_listen_port(&self) -> u16 {
        self.listen_port.unwrap_or(DEFAULT_LISTEN_PORT)
    }

    /// The log level (Info when unset).
    pub fn effective_log_severity(&self) -> BgpLogSeverity {
        self.log_severity_screen.unwrap_or(BgpLogSeverity::Info)
    }
}

impl Spec for BGPConfigurationSpec {
    const KIND: &'static str = "BGPConfiguration";
    const PLURAL: &'static str = "bgpconfigurations";

    fn validate(&self, meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::bgp::validate_config(meta, self)
    }
}
