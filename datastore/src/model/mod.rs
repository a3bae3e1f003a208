//! The projectcalico.org/v3 resource model: one file per kind, the shared metadata, the
//! [`Resource`] trait and [`AnyResource`] for mixed-kind input (calicoctl).
//!
//! Every kind is `Object<Spec>` with Calico's exact JSON names, unknown fields rejected,
//! and Calico's defaults applied by [`Resource::set_defaults`]. The IPAM storage objects
//! (blocks, affinities, handles, `/calico/ipam/v2/config`) live in `ipam.rs`.

pub mod any;
pub mod bfdconfig;
pub mod bgpconfig;
pub mod bgpfilter;
pub mod bgppeer;
pub mod clusterinformation;
pub mod family;
pub mod felixconfig;
pub mod ipam;
pub mod ipamconfig;
pub mod ippool;
pub mod meta;
pub mod node;
pub mod nodestatus;
pub mod resource;
pub mod types;
pub mod validation;
pub mod workloadendpoint;
pub mod yaml11;

#[cfg(test)]
mod tests;

pub use any::{AnyResource, DocumentError, Kind, parse_documents};
pub use bfdconfig::{BFDConfiguration, BFDConfigurationSpec, BFDInterface};
pub use bgpconfig::{
    BGPConfiguration, BGPConfigurationSpec, BgpLogSeverity, BindMode, Community, DEFAULT_AS_NUMBER,
    DEFAULT_LISTEN_PORT, PrefixAdvertisement, ProgramClusterRoutes, ServiceCidr,
    ServiceLoadBalancerAggregation,
};
pub use bgpfilter::{
    BGPFilter, BGPFilterRule, BGPFilterSpec, FilterAction, FilterDirection, FilterPeerType,
    FilterSource, MatchOperator,
};
pub use bgppeer::{
    BGPPeer, BGPPeerSpec, BgpPassword, NextHopMode, ReversePeering, SecretKeyRef, SourceAddress,
};
pub use clusterinformation::{ClusterInformation, ClusterInformationSpec};
pub use family::IpFamily;
pub use felixconfig::{FelixConfiguration, FelixConfigurationSpec};
pub use ipamconfig::{IPAMConfiguration, IPAMConfigurationSpec};
pub use ippool::{AllowedUse, AssignmentMode, EncapMode, IPPool, IPPoolSpec, Tunnel};
pub use meta::{API_VERSION, Object, ObjectMeta, TypeMeta};
pub use node::{Node, NodeAddress, NodeBgpSpec, NodeSpec, NodeWireguardSpec, OrchRef};
pub use nodestatus::{BfdSessionStatus, BgpPeerStatus, NodeStatusReport, STATUS_SOCKET};
pub use resource::{Resource, Spec, ident_for, key_for};
pub use types::{AsNumber, GoDuration};
pub use workloadendpoint::{EndpointPort, IpNat, WorkloadEndpoint, WorkloadEndpointSpec};
