//! BGPPeer and BGPConfiguration rules (`v3.25:libcalico-go/lib/validator/v3/validator.go`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};
use crate::model::bgpconfig::BGPConfigurationSpec;
use crate::model::bgppeer::{BGPPeerSpec, BgpPassword};
use crate::model::meta::ObjectMeta;
use crate::model::validation::{check_as_number, check_cidr, check_selector};

const PEER_IP_REASON: &str = "invalid peer IP: must be an IP address, IP:port or [IPv6]:port";

/// Parses `peerIP`: `IP`, `IPv4:port` or `[IPv6]:port`.
pub fn parse_peer_ip(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    match s.parse::<SocketAddr>() {
        Ok(sa) if sa.port() != 0 => Some((sa.ip(), Some(sa.port()))),
        _ => None,
    }
}

/// Checks a password's secret reference (`<field>.SecretKeyRef.Name` / `.Key`).
fn check_password(field: &str, password: Option<&BgpPassword>) -> Result<()> {
    let Some(r) = password.and_then(|p| p.secret_key_ref.as_ref()) else {
        return Ok(());
    };
    r.validate().map_err(|(part, reason)| {
        let (name, value) = match part {
            "name" => ("Name", &r.name),
            _ => ("Key", &r.key),
        };
        Error::invalid(format!("{field}.SecretKeyRef.{name}"), value, reason)
    })
}

/// Checks a BGPPeer spec: Node vs NodeSelector, PeerIP/ASNumber vs PeerSelector, formats.
pub fn validate_peer(spec: &BGPPeerSpec) -> Result<()> {
    check_password("BGPPeer.Spec.Password", spec.password.as_ref())?;
    if !spec.node.is_empty() && !spec.node_selector.is_empty() {
        return Err(Error::invalid(
            "BGPPeer.Spec.Node",
            &spec.node,
            "Node field must be empty when NodeSelector is specified",
        ));
    }
    if !spec.peer_ip.is_empty() && !spec.peer_selector.is_empty() {
        return Err(Error::invalid(
            "BGPPeer.Spec.PeerIP",
            &spec.peer_ip,
            "PeerIP field must be empty when PeerSelector is specified",
        ));
    }
    if let Some(asn) = spec.as_number {
        if !spec.peer_selector.is_empty() {
            return Err(Error::invalid(
                "BGPPeer.Spec.ASNumber",
                asn.to_string(),
                "ASNumber field must be empty when PeerSelector is specified",
            ));
        }
        check_as_number("BGPPeer.Spec.ASNumber", asn)?;
    }
    if let Some(asn) = spec.local_as_number {
        check_as_number("BGPPeer.Spec.LocalASNumber", asn)?;
    }
    if spec.peer_ip.is_empty() && spec.peer_selector.is_empty() {
        return Err(Error::invalid(
            "BGPPeer.Spec.PeerIP",
            "",
            "either PeerIP or PeerSelector must be specified",
        ));
    }
    // No asNumber is required with a peerIP, as in Calico: the session is then iBGP
    // (Calico's confd corpus, explicit_peering/route_reflector_v6_by_ip, peers that way).
    if !spec.peer_ip.is_empty() && parse_peer_ip(&spec.peer_ip).is_none() {
        return Err(Error::invalid(
            "BGPPeer.Spec.PeerIP",
            &spec.peer_ip,
            PEER_IP_REASON,
        ));
    }
    if !spec.node_selector.is_empty() {
        check_selector("BGPPeer.Spec.NodeSelector", &spec.node_selector)?;
    }
    if !spec.peer_selector.is_empty() {
        check_selector("BGPPeer.Spec.PeerSelector", &spec.peer_selector)?;
    }
    if let Some(r) = &spec.reachable_by {
        if spec.peer_ip.is_empty() {
            return Err(Error::invalid(
                "BGPPeer.Spec.ReachableBy",
                r,
                "reachableBy must be empty when peerIP is empty",
            ));
        }
        crate::model::validation::check_ip("BGPPeer.Spec.ReachableBy", r)?;
    }
    if spec.keep_original_next_hop.is_some() && spec.next_hop_mode.is_some() {
        return Err(Error::invalid(
            "BGPPeer.Spec.NextHopMode",
            spec.next_hop_mode.map(|m| m.as_str()).unwrap_or(""),
            "keepOriginalNextHop and nextHopMode cannot both be set",
        ));
    }
    Ok(())
}

/// True for `aa:nn` (16-bit parts) or `aa:nn:mm` (32-bit parts).
pub fn is_community(value: &str) -> bool {
    let parts: Vec<&str> = value.split(':').collect();
    match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    }
}

/// Checks a BGPConfiguration: per-node overrides, mesh-only fields, communities.
pub fn validate_config(meta: &ObjectMeta, spec: &BGPConfigurationSpec) -> Result<()> {
    check_password(
        "BGPConfiguration.Spec.NodeMeshPassword",
        spec.node_mesh_password.as_ref(),
    )?;
    if let Some(asn) = spec.as_number {
        check_as_number("BGPConfiguration.Spec.ASNumber", asn)?;
    }
    if spec.listen_port == Some(0) {
        return Err(Error::invalid(
            "BGPConfiguration.Spec.ListenPort",
            "0",
            "port must be between 1 and 65535",
        ));
    }
    if meta.name.starts_with("node.") {
        let not_allowed = [
            (
                "NodeToNodeMeshEnabled",
                spec.node_to_node_mesh_enabled.is_some(),
            ),
            ("ASNumber", spec.as_number.is_some()),
            ("ServiceClusterIPs", !spec.service_cluster_ips.is_empty()),
            ("ServiceExternalIPs", !spec.service_external_ips.is_empty()),
            (
                "ServiceLoadBalancerIPs",
                !spec.service_load_balancer_ips.is_empty(),
            ),
            ("NodeMeshPassword", spec.node_mesh_password.is_some()),
            (
                "NodeMeshMaxRestartTime",
                spec.node_mesh_max_restart_time.is_some(),
            ),
        ];
        if let Some((field, _)) = not_allowed.iter().find(|(_, set)| *set) {
            return Err(Error::invalid(
                format!("BGPConfiguration.Spec.{field}"),
                &meta.name,
                format!("{field} can only be set on the default BGPConfiguration"),
            ));
        }
    }
    if !spec.mesh_enabled() {
        if spec.node_mesh_password.is_some() {
            return Err(Error::invalid(
                "BGPConfiguration.Spec.NodeMeshPassword",
                "",
                "spec.NodeMeshPassword cannot be set if spec.NodeToNodeMesh is disabled",
            ));
        }
        if let Some(t) = spec.node_mesh_max_restart_time {
            return Err(Error::invalid(
                "BGPConfiguration.Spec.NodeMeshMaxRestartTime",
                t.to_string(),
                "spec.NodeMeshMaxRestartTime cannot be set if spec.NodeToNodeMesh is disabled",
            ));
        }
    }
    let cidr_lists = [
        ("ServiceClusterIPs", &spec.service_cluster_ips),
        ("ServiceExternalIPs", &spec.service_external_ips),
        ("ServiceLoadBalancerIPs", &spec.service_load_balancer_ips),
    ];
    for (field, list) in cidr_lists {
        for c in list {
            check_cidr(&format!("BGPConfiguration.Spec.{field}"), &c.cidr)?;
        }
    }
    let mut names = BTreeSet::new();
    for c in &spec.communities {
        if !is_community(&c.value) {
            return Err(Error::invalid(
                "BGPConfiguration.Spec.Communities[].Value",
                &c.value,
                "invalid community value or format used.",
            ));
        }
        names.insert(c.name.as_str());
    }
    if !spec.communities.is_empty() && spec.prefix_advertisements.is_empty() {
        return Err(Error::invalid(
            "BGPConfiguration.Spec.Communities",
            "",
            "communities are defined but not used in Spec.PrefixAdvertisement[].",
        ));
    }
    for pa in &spec.prefix_advertisements {
        check_cidr(
            "BGPConfiguration.Spec.PrefixAdvertisements[].CIDR",
            &pa.cidr,
        )?;
        for c in &pa.communities {
            if !names.contains(c.as_str()) && !is_community(c) {
                return Err(Error::invalid(
                    "BGPConfiguration.Spec.PrefixAdvertisements[].Communities",
                    c,
                    "invalid community value or format used.",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::types::AsNumber;

    #[test]
    fn peer_ip_forms() {
        assert!(parse_peer_ip("192.20.30.40").is_some());
        assert_eq!(parse_peer_ip("192.20.30.40:1790").unwrap().1, Some(1790));
        assert!(parse_peer_ip("[fd00::1]:179").is_some());
        assert!(parse_peer_ip("fd00::1").is_some());
        assert!(parse_peer_ip("192.20.30.400").is_none());
        assert!(parse_peer_ip("host:179").is_none());
    }

    #[test]
    fn peer_rules() {
        let mut p = BGPPeerSpec {
            peer_ip: "10.0.0.1".into(),
            as_number: Some(AsNumber(64567)),
            ..Default::default()
        };
        assert!(validate_peer(&p).is_ok());
        p.node = "n1".into();
        p.node_selector = "all()".into();
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("Node field must be empty")
        );
        p.node.clear();
        p.peer_selector = "has(rr)".into();
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("PeerIP field must be empty")
        );
        p.peer_ip.clear();
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("ASNumber field must be empty")
        );
        p.as_number = None;
        assert!(validate_peer(&p).is_ok());
        p.as_number = Some(AsNumber(0));
        p.peer_selector.clear();
        p.peer_ip = "10.0.0.1".into();
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("between 1 and")
        );
    }

    #[test]
    fn communities() {
        assert!(is_community("65000:100"));
        assert!(is_community("63400:300:100"));
        assert!(!is_community("70000:1"));
        assert!(!is_community("a:b"));
    }
}
