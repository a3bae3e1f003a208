//! Node rules: addresses in the right form, AS range, route reflector cluster id.

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::model::node::NodeSpec;
use crate::model::validation::{check_as_number, check_ip, check_mac};

/// Checks a Node spec.
pub fn validate(spec: &NodeSpec) -> Result<()> {
    if let Some(bgp) = &spec.bgp {
        if let Some(asn) = bgp.as_number {
            check_as_number("Node.Spec.BGP.ASNumber", asn)?;
        }
        if let Some(v4) = &bgp.ipv4_address {
            match v4.parse::<IpNet>() {
                Ok(IpNet::V4(_)) => {}
                _ => {
                    return Err(Error::invalid(
                        "Node.Spec.BGP.IPv4Address",
                        v4,
                        "must be an IPv4 address with prefix length (CIDR form, e.g. 10.0.0.1/24)",
                    ));
                }
            }
        }
        if let Some(v6) = &bgp.ipv6_address {
            match v6.parse::<IpNet>() {
                Ok(IpNet::V6(_)) => {}
                _ => {
                    return Err(Error::invalid(
                        "Node.Spec.BGP.IPv6Address",
                        v6,
                        "must be an IPv6 address with prefix length (CIDR form)",
                    ));
                }
            }
        }
        if let Some(t) = &bgp.ipv4_ipip_tunnel_addr
            && !check_ip("Node.Spec.BGP.IPv4IPIPTunnelAddr", t)?.is_ipv4()
        {
            return Err(Error::invalid(
                "Node.Spec.BGP.IPv4IPIPTunnelAddr",
                t,
                "must be an IPv4 address",
            ));
        }
        if let Some(id) = &bgp.route_reflector_cluster_id
            && id.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(Error::invalid(
                "Node.Spec.BGP.RouteReflectorClusterID",
                id,
                "must be an IPv4 address",
            ));
        }
    }
    if let Some(t) = &spec.ipv4_vxlan_tunnel_addr
        && !check_ip("Node.Spec.IPv4VXLANTunnelAddr", t)?.is_ipv4()
    {
        return Err(Error::invalid(
            "Node.Spec.IPv4VXLANTunnelAddr",
            t,
            "must be an IPv4 address",
        ));
    }
    if let Some(t) = &spec.ipv6_vxlan_tunnel_addr {
        check_ip("Node.Spec.IPv6VXLANTunnelAddr", t)?;
    }
    if let Some(m) = &spec.vxlan_tunnel_mac_addr {
        check_mac("Node.Spec.VXLANTunnelMACAddr", m)?;
    }
    if let Some(m) = &spec.vxlan_tunnel_mac_addr_v6 {
        check_mac("Node.Spec.VXLANTunnelMACAddrV6", m)?;
    }
    Ok(())
}
