//! Which kernel state calico-node owns, written down as a type (after Felix's
//! `OwnershipPolicy`). Everything else on the host is never touched.
//!
//! Owned routes (main table, both families):
//! - `proto bird` (12) and `proto 80` routes: only calico-rs (or the BIRD it replaces)
//!   writes those;
//! - routes through our devices (`cali*`, `tunl0`, `vxlan.calico`, `vxlan-v6.calico`,
//!   `flannel.<VNI>`) except the kernel's own (`proto kernel`);
//! - in flannel host-gw mode, `proto boot` routes inside the flannel network (passed in as
//!   `managed_cidrs`).
//!
//! Hard cases:
//! - a `cali*` host route the agent does not know yet: the CNI plugin creates the route
//!   before the WorkloadEndpoint reaches the agent, so an unknown `cali*` route is only
//!   removed after a grace period;
//! - a route we want whose destination is held by a route we do not own: left alone and
//!   reported as a conflict (Calico fails CNI ADD in that case, #3940);
//! - an owned device removed by hand: recreated on the next pass, its routes with it.

use ipnet::IpNet;

use super::types::{PROTO_BIRD, PROTO_BOOT, PROTO_CALICO, Route};

/// `proto kernel`: routes the kernel derives from addresses.
const PROTO_KERNEL: u8 = 2;

/// Prefix of the host side of pod veths.
pub const WORKLOAD_PREFIX: &str = "cali";
/// The IPIP device.
pub const IPIP_DEVICE: &str = "tunl0";
/// Calico's VXLAN device.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// Calico's VXLAN device for IPv6 pools (IPv6 underlay).
pub const VXLAN_DEVICE_V6: &str = "vxlan-v6.calico";
/// Prefix of flannel's VXLAN device, `flannel.<VNI>`.
const FLANNEL_DEVICE_PREFIX: &str = "flannel.";

/// Flannel's VXLAN device of a VNI: `flannel.<VNI>`.
pub fn flannel_device(vni: u32) -> String {
    format!("{FLANNEL_DEVICE_PREFIX}{vni}")
}

/// True for the VXLAN devices calico-rs creates and deletes (Calico's two, flannel's).
pub fn is_owned_vxlan_device(dev: &str) -> bool {
    let flannel = dev
        .strip_prefix(FLANNEL_DEVICE_PREFIX)
        .is_some_and(|vni| !vni.is_empty() && vni.bytes().all(|b| b.is_ascii_digit()));
    dev == VXLAN_DEVICE || dev == VXLAN_DEVICE_V6 || flannel
}

/// Decides whether a kernel route is ours to change or remove.
#[derive(Debug, Clone, Default)]
pub struct OwnershipPolicy {
    /// Extra CIDRs whose `proto boot` routes are ours (flannel host-gw).
    pub managed_cidrs: Vec<IpNet>,
}

impl OwnershipPolicy {
    /// True when `dev` is one of the devices calico-rs creates.
    pub fn is_owned_device(dev: &str) -> bool {
        dev.starts_with(WORKLOAD_PREFIX) || dev == IPIP_DEVICE || is_owned_vxlan_device(dev)
    }

    /// True when the route is ours.
    pub fn owns(&self, route: &Route) -> bool {
        if route.protocol == PROTO_BIRD || route.protocol == PROTO_CALICO {
            return true;
        }
        if route.protocol == PROTO_KERNEL {
            return false;
        }
        if route.dev().is_some_and(Self::is_owned_device) {
            return true;
        }
        route.protocol == PROTO_BOOT
            && self
                .managed_cidrs
                .iter()
                .any(|cidr| cidr.contains(&route.dst))
    }

    /// True for workload (`cali*`) host routes, which get a grace period when unknown.
    pub fn is_workload_route(route: &Route) -> bool {
        route.dev().is_some_and(|d| d.starts_with(WORKLOAD_PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::RouteTarget;
    use super::*;

    fn route(dst: &str, target: RouteTarget, protocol: u8) -> Route {
        Route {
            dst: dst.parse().expect("cidr"),
            target,
            protocol,
        }
    }

    #[test]
    fn bird_and_calico_protocols_are_owned_kernel_routes_never() {
        let p = OwnershipPolicy::default();
        assert!(p.owns(&route("10.0.0.0/26", RouteTarget::Blackhole, PROTO_BIRD)));
        assert!(p.owns(&route("10.0.0.0/26", RouteTarget::Blackhole, PROTO_CALICO)));
        let dev = RouteTarget::Device {
            dev: "vxlan.calico".into(),
        };
        assert!(!p.owns(&route("10.0.0.0/26", dev, PROTO_KERNEL)));
    }

    #[test]
    fn routes_on_foreign_devices_are_not_owned_unless_managed() {
        let gw = RouteTarget::Gateway {
            via: "10.0.0.1".parse().expect("ip"),
            dev: Some("eth0".into()),
            onlink: false,
        };
        let mut p = OwnershipPolicy::default();
        assert!(!p.owns(&route("10.244.1.0/24", gw.clone(), PROTO_BOOT)));
        p.managed_cidrs = vec!["10.244.0.0/16".parse().expect("cidr")];
        assert!(p.owns(&route("10.244.1.0/24", gw.clone(), PROTO_BOOT)));
        assert!(!p.owns(&route("0.0.0.0/0", gw, PROTO_BOOT)));
    }

    #[test]
    fn pod_host_routes_are_owned_and_get_grace() {
        let r = route(
            "10.0.0.5/32",
            RouteTarget::Device {
                dev: "cali1234567890a".into(),
            },
            PROTO_BOOT,
        );
        assert!(OwnershipPolicy::default().owns(&r));
        assert!(OwnershipPolicy::is_workload_route(&r));
    }

    #[test]
    fn flannel_devices_of_any_vni_are_ours_other_flannel_names_not() {
        assert!(is_owned_vxlan_device(&flannel_device(1)));
        assert!(is_owned_vxlan_device(&flannel_device(4096)));
        assert!(is_owned_vxlan_device("vxlan-v6.calico"));
        for foreign in ["flannel.", "flannel.x", "flannel0", "cni0", "vxlan0"] {
            assert!(!is_owned_vxlan_device(foreign), "{foreign}");
        }
    }
}
