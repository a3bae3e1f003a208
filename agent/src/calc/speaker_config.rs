//! What the BGP speaker is told, computed from the cluster state (pure; the BGP task
//! hands it over): the export policy towards every peer, each session's configuration
//! with its BGPFilters, and the attributes of the routes this node originates.

use bgp::Afi;
use bgp::config::{ImportLimit, NextHopMode, OriginAttrs, PeerConfig};
use bgp::policy::{Action, Conditions, Policy, PrefixRange, Statement};
use datastore::model::{FilterDirection, NextHopMode as PeerNextHop};
use ipnet::IpNet;
use tracing::warn;

use crate::calc::exports::Export;
use crate::calc::filters::{self, CommunityValue};
use crate::calc::peers::DesiredPeer;
use crate::state::ClusterState;

/// Calico's BIRD template retries a connection every 3 s.
const CONNECT_RETRY: u16 = 3;

/// The export policy towards every peer: Calico's BIRD filter accepts routes inside the
/// IP pools (our blocks, borrowed /32s, and learned pool routes a reflector passes on) and
/// the advertised service CIDRs; anything else learned (a ToR's default route) is not
/// re-advertised.
pub fn export_policy(state: &ClusterState) -> Policy {
    let mut prefixes: Vec<PrefixRange> = state
        .pools
        .values()
        .filter(|p| !p.spec.disable_bgp_export)
        .filter_map(|p| p.spec.cidr.parse::<IpNet>().ok())
        .map(PrefixRange::or_longer)
        .collect();
    if let Some(cfg) = state.bgp_default() {
        for svc in cfg.spec.advertised_service_cidrs() {
            if let Ok(net) = svc.cidr.parse::<IpNet>() {
                prefixes.push(PrefixRange::or_longer(net.trunc()));
            }
        }
    }
    if prefixes.is_empty() {
        return Policy::reject_all();
    }
    Policy {
        statements: vec![Statement {
            conditions: Conditions {
                prefixes,
                ..Conditions::default()
            },
            action: Action::Accept,
            ..Statement::default()
        }],
        default_action: Action::Reject,
    }
}

/// The speaker's configuration of a session; its policies are Calico's export (`export`)
/// and import-all, behind the session's BGPFilters.
pub fn peer_config(
    p: &DesiredPeer,
    state: &ClusterState,
    export: &Policy,
    import_limit: Option<ImportLimit>,
) -> PeerConfig {
    let v6 = p.address.is_ipv6();
    let ibgp = p.remote_as == p.local_as;
    let import_filters = filters::applied(state, &p.import_filters, FilterDirection::Import, v6);
    let export_filters = filters::applied(state, &p.export_filters, FilterDirection::Export, v6);
    PeerConfig {
        name: p.name.clone(),
        address: p.address.ip(),
        port: p.address.port(),
        remote_as: p.remote_as,
        local_as: Some(p.local_as),
        local_address: p.source,
        passive: p.passive,
        password: p.password.clone(),
        ttl_security: p.ttl_security,
        route_reflector_client: p.rr_client,
        next_hop: match p.next_hop {
            PeerNextHop::Auto => NextHopMode::Auto,
            PeerNextHop::Self_ => NextHopMode::SelfAddress,
            PeerNextHop::Keep => NextHopMode::Keep,
        },
        num_allowed_local_as: u8::try_from(p.num_allowed_local_as).unwrap_or(u8::MAX),
        connect_retry_time: CONNECT_RETRY,
        graceful_restart_time: Some(
            u16::try_from(p.restart_time.as_secs())
                .unwrap_or(4095)
                .min(4095),
        ),
        // One session per family, as Calico's BIRD and BIRD6.
        families: vec![if p.address.is_ipv6() {
            Afi::Ipv6
        } else {
            Afi::Ipv4
        }],
        // Calico imports everything its peers send, unless a filter says otherwise.
        import: Some(filters::import_policy(&import_filters, v6, ibgp)),
        export: Some(filters::export_policy(&export_filters, v6, ibgp, export)),
        import_limit,
        ..PeerConfig::default()
    }
}

/// Parses `aa:nn` (standard) communities; large ones are `aa:nn:mm`.
pub fn origin_attrs(export: &Export) -> OriginAttrs {
    let mut attrs = OriginAttrs::default();
    for c in &export.communities {
        match CommunityValue::parse(c) {
            Some(CommunityValue::Standard(v)) => attrs.communities.push(v),
            Some(CommunityValue::Large(v)) => attrs.large_communities.push(v),
            None => warn!(community = %c, "ignoring a community that is not aa:nn or aa:nn:mm"),
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_policy_passes_pool_routes_and_rejects_the_rest() {
        use datastore::model::EncapMode::Never;

        use crate::calc::fixtures::{cluster, pool};
        let s = cluster(vec![], vec![pool("p", "10.244.0.0/16", Never, Never)]);
        let policy = export_policy(&s);
        let inside: IpNet = "10.244.1.0/26".parse().expect("cidr");
        let outside: IpNet = "0.0.0.0/0".parse().expect("cidr");
        assert!(policy.statements[0].conditions.prefixes[0].matches(&inside));
        assert!(!policy.statements[0].conditions.prefixes[0].matches(&outside));
        assert_eq!(policy.default_action, Action::Reject);
    }

    #[test]
    fn communities_are_parsed_standard_and_large() {
        let attrs = origin_attrs(&Export {
            prefix: "10.0.0.0/26".parse().expect("cidr"),
            communities: vec!["63400:120".into(), "63400:300:100".into(), "bad".into()],
        });
        assert_eq!(attrs.communities, vec![(63400u32 << 16) | 120]);
        assert_eq!(attrs.large_communities.len(), 1);
    }
}
