//! Which addresses are in use outside IPAM, and which allocations may be collected as
//! leaked: one rule for `calicoctl ipam check`, the guarded release and calico-node's
//! collector (pure).

use std::collections::BTreeMap;
use std::net::IpAddr;

use datastore::model::ipam::attr;
use datastore::model::{Node, WorkloadEndpoint};

fn ip_of(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.parse().ok()
}

/// The addresses a WorkloadEndpoint uses (`spec.ipNetworks`).
pub fn workload_addresses(w: &WorkloadEndpoint) -> Vec<IpAddr> {
    w.spec.ip_networks.iter().filter_map(|n| ip_of(n)).collect()
}

/// The tunnel addresses a Node records, with the tunnel's name (`ipip`, `vxlan`,
/// `vxlan-v6`).
pub fn tunnel_addresses(n: &Node) -> Vec<(IpAddr, &'static str)> {
    let ipip = n
        .spec
        .bgp
        .as_ref()
        .and_then(|b| b.ipv4_ipip_tunnel_addr.as_deref())
        .and_then(ip_of)
        .map(|ip| (ip, "ipip"));
    let vxlan = n
        .spec
        .ipv4_vxlan_tunnel_addr
        .as_deref()
        .and_then(ip_of)
        .map(|ip| (ip, "vxlan"));
    let vxlan_v6 = n
        .spec
        .ipv6_vxlan_tunnel_addr
        .as_deref()
        .and_then(ip_of)
        .map(|ip| (ip, "vxlan-v6"));
    ipip.into_iter().chain(vxlan).chain(vxlan_v6).collect()
}

/// Whether an allocation may be collected as leaked once nothing uses it: one made for a
/// Kubernetes pod (it carries the pod's namespace and name, as the CNI plugin records
/// them), as Calico's kube-controllers collect. Tunnel addresses and reservations made by
/// anything else are never collected by themselves.
pub fn collectable(handle: Option<&str>, attrs: &BTreeMap<String, String>) -> bool {
    let tunnel = matches!(
        attrs.get(attr::TYPE).map(String::as_str),
        Some(attr::TYPE_IPIP | attr::TYPE_VXLAN | attr::TYPE_VXLAN_V6)
    ) || handle.is_some_and(crate::tunnel::is_tunnel_handle);
    let pod = [attr::NAMESPACE, attr::POD]
        .iter()
        .all(|k| attrs.get(*k).is_some_and(|v| !v.is_empty()));
    pod && !tunnel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_pod_allocations_are_collectable() {
        let pod = attrs(&[("namespace", "default"), ("pod", "web"), ("node", "n1")]);
        assert!(collectable(Some("k8s-pod-network.abc"), &pod));
        // A reservation without a pod (another libcalico user, a plain CNI container).
        assert!(!collectable(Some("reserved"), &attrs(&[("node", "n1")])));
        assert!(!collectable(
            Some("k8s-pod-network.abc"),
            &attrs(&[("namespace", "default")])
        ));
        // Tunnel addresses, by type or by handle, even with pod-like attributes.
        let mut tunnel = pod.clone();
        tunnel.insert("type".into(), "vxlanTunnelAddress".into());
        assert!(!collectable(Some("x"), &tunnel));
        assert!(!collectable(Some("ipip-tunnel-addr-n1"), &pod));
    }
}
