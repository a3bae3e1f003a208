//! The BFD sessions this node wants (pure): one per BGP peer on the node's own subnet
//! (single hop, RFC 5881) whose interface a BFDConfiguration selecting this node names,
//! with that entry's timers. BFDConfigurations are taken in name order, the first entry
//! matching the interface wins. Peers beyond the subnet get none (multihop, RFC 5883, is
//! not implemented).

use std::collections::BTreeMap;
use std::net::IpAddr;

use bfd::SessionConfig;
use datastore::model::BFDInterface;
use ipnet::Ipv4Net;

use crate::calc::peers::selector_matches;
use crate::state::ClusterState;

/// The session timers an interface entry asks for.
pub fn session_config(i: &BFDInterface) -> SessionConfig {
    SessionConfig {
        desired_min_tx: i.min_send_interval(),
        required_min_rx: i.min_recv_interval(),
        detect_mult: i.detect_multiplier(),
        idle_tx: i.idle_send_interval(),
    }
}

/// The timers for `interface` on `node`, if any BFDConfiguration asks for BFD there.
pub fn interface_config(
    state: &ClusterState,
    node: &str,
    interface: &str,
) -> Option<SessionConfig> {
    let me = state.nodes.get(node)?;
    state
        .bfd_configs
        .values()
        .filter(|c| {
            c.spec
                .node_selector
                .as_deref()
                .is_some_and(|s| selector_matches(s, me))
        })
        .flat_map(|c| &c.spec.interfaces)
        .find(|i| i.matches(interface))
        .map(session_config)
}

/// The sessions wanted towards `peers`: those on `subnet` (reached over `interface`); none
/// on an IPv6-only node (BFD runs over IPv4 only).
pub fn desired_bfd(
    state: &ClusterState,
    node: &str,
    subnet: Option<Ipv4Net>,
    interface: &str,
    peers: impl IntoIterator<Item = IpAddr>,
) -> BTreeMap<IpAddr, SessionConfig> {
    let Some(cfg) = interface_config(state, node, interface) else {
        return BTreeMap::new();
    };
    peers
        .into_iter()
        .filter(|p| match p {
            IpAddr::V4(v4) => subnet.is_some_and(|s| s.contains(v4) && *v4 != s.addr()),
            IpAddr::V6(_) => false,
        })
        .map(|p| (p, cfg))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datastore::model::types::GoDuration;
    use datastore::model::{BFDConfiguration, BFDConfigurationSpec, EncapMode::Never};

    use super::*;
    use crate::calc::fixtures::*;

    fn bfd(name: &str, selector: &str, pattern: &str, tx_ms: u64) -> BFDConfiguration {
        BFDConfiguration::new(
            name,
            BFDConfigurationSpec {
                node_selector: Some(selector.to_string()),
                interfaces: vec![BFDInterface {
                    match_pattern: pattern.to_string(),
                    minimum_send_interval: Some(GoDuration(Duration::from_millis(tx_ms))),
                    minimum_recv_interval: Some(GoDuration(Duration::from_millis(100))),
                    idle_send_interval: None,
                    multiplier: Some(3),
                }],
            },
        )
    }

    fn peers() -> Vec<IpAddr> {
        ["10.0.0.2", "10.0.0.1", "192.168.9.9"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    fn subnet() -> Option<Ipv4Net> {
        "10.0.0.1/24".parse().ok()
    }

    #[test]
    fn peers_on_the_subnet_of_a_selected_node_get_the_matching_entrys_timers() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        assert!(desired_bfd(&s, "n1", subnet(), "eth0", peers()).is_empty());
        s.bfd_configs
            .insert("b".into(), bfd("b", "all()", "eth*", 100));
        s.bfd_configs
            .insert("a".into(), bfd("a", "all()", "ens*", 300));
        let want = desired_bfd(&s, "n1", subnet(), "eth0", peers());
        let keys: Vec<String> = want.keys().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            vec!["10.0.0.2"],
            "only the peer on the subnet, not ourselves"
        );
        let cfg = want.values().next().copied().unwrap_or_default();
        assert_eq!(cfg.desired_min_tx, Duration::from_millis(100));
        assert_eq!(cfg.detect_mult, 3);
        assert_eq!(
            cfg.idle_tx,
            Duration::from_secs(60),
            "Calico's default idle interval"
        );
        // The first configuration by name whose entry names the interface wins.
        let on_ens = desired_bfd(&s, "n1", subnet(), "ens3", peers());
        assert_eq!(
            on_ens.values().next().map(|c| c.desired_min_tx),
            Some(Duration::from_millis(300))
        );
    }

    #[test]
    fn a_node_the_selector_does_not_pick_gets_none() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        s.bfd_configs
            .insert("a".into(), bfd("a", "rack == 'r9'", "*", 100));
        assert!(desired_bfd(&s, "n1", subnet(), "eth0", peers()).is_empty());
        let mut no_selector = bfd("b", "all()", "*", 100);
        no_selector.spec.node_selector = None;
        s.bfd_configs.insert("b".into(), no_selector);
        assert!(desired_bfd(&s, "n1", subnet(), "eth0", peers()).is_empty());
    }
}
