//! RIB behaviour: import checks, events, export transforms, split horizon and reflection,
//! graceful restart, policies. Each test drives the RIB directly and decodes what it would
//! send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::*;
use crate::policy::{Action, Conditions, PrefixRange, SetActions, Statement};
use crate::wire::attrs::{community, community_value};
use crate::wire::{Message, UpdateCtx, decode_stream};

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn rib(cluster: Option<Ipv4Addr>) -> Rib {
    Rib::new(RibConfig {
        local_as: 64512,
        router_id: ME,
        cluster_id: cluster,
        ebgp_requires_policy: true,
    })
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn peer_cfg(last: u8, asn: u32) -> PeerConfig {
    let mut c = PeerConfig::new(format!("p{last}"), ip(last), asn);
    if asn != 64512 {
        c.import = Some(Policy::accept_all());
        c.export = Some(Policy::accept_all());
    }
    c
}

fn up(r: &mut Rib, idx: u16, last: u8) {
    r.peer_up(
        idx,
        PeerUp {
            router_id: Ipv4Addr::new(10, 0, 0, last),
            families: vec![Afi::Ipv4, Afi::Ipv6],
            local_addr: Some(IpAddr::V4(ME)),
            graceful_restart: Some(GracefulRestartCap {
                restart_time: 120,
                restarting: false,
                notification: false,
                families: vec![(Afi::Ipv4, true), (Afi::Ipv6, true)],
            }),
        },
    );
    r.take_wire(idx);
}

fn add_up(r: &mut Rib, last: u8, asn: u32, client: bool) -> u16 {
    let mut c = peer_cfg(last, asn);
    c.route_reflector_client = client;
    let i = r.add_peer(&c);
    up(r, i, last);
    i
}

fn p4(s: &str) -> Prefix4 {
    s.parse().expect("prefix")
}

fn attrs(path: &[u32], nh: u8) -> PathAttrs {
    PathAttrs {
        as_path: Arc::from(path.to_vec()),
        next_hop: Some(ip(nh)),
        ..PathAttrs::default()
    }
}

fn announce(prefixes: &[&str], a: PathAttrs) -> Update {
    Update {
        nlri4: prefixes.iter().map(|s| p4(s)).collect(),
        attrs4: Some(a),
        ..Update::default()
    }
}

fn withdraw(prefixes: &[&str]) -> Update {
    Update {
        withdrawn4: prefixes.iter().map(|s| p4(s)).collect(),
        ..Update::default()
    }
}

/// Decoded UPDATEs sent to `idx` since the last call.
fn sent(r: &mut Rib, idx: u16) -> Vec<Update> {
    let wire = r.take_wire(idx);
    let mut v = Vec::new();
    let ctx = UpdateCtx {
        ebgp: false,
        peer_as: 0,
    };
    decode_stream(&wire, &ctx, |m| {
        if let Ok(Message::Update(u)) = m {
            v.push(*u);
        }
        true
    });
    v
}

fn announced(us: &[Update]) -> Vec<(Prefix4, PathAttrs)> {
    us.iter()
        .flat_map(|u| {
            u.nlri4
                .iter()
                .map(|p| (*p, u.attrs4.clone().unwrap_or_default()))
        })
        .collect()
}

fn best_event(e: &RouteEvent) -> Option<(String, IpAddr)> {
    match e {
        RouteEvent::Best {
            prefix, from_peer, ..
        } => Some((prefix.to_string(), *from_peer)),
        _ => None,
    }
}

#[test]
fn a_route_from_an_ebgp_peer_with_policy_becomes_best_and_is_reported() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    assert_eq!(r.process(), 1);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    let RouteEvent::Best {
        prefix,
        next_hop,
        as_path,
        from_peer,
        ..
    } = &ev[0]
    else {
        panic!("expected Best: {ev:?}")
    };
    assert_eq!(prefix.to_string(), "10.1.0.0/24");
    assert_eq!((*next_hop, *from_peer), (ip(2), ip(2)));
    assert_eq!(&**as_path, &[65001]);
    assert_eq!(r.peer(e).map(|p| p.counters.accepted), Some(1));
}

#[test]
fn ebgp_peer_without_import_policy_gets_nothing_accepted_rfc_8212() {
    let mut r = rib(None);
    let mut c = peer_cfg(2, 65001);
    c.import = None;
    let e = r.add_peer(&c);
    up(&mut r, e, 2);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    assert!(r.take_events().is_empty());
    let c = r.peer(e).map(|p| p.counters).unwrap_or_default();
    assert_eq!((c.received, c.accepted), (1, 0));
    let why = r.explain("10.1.0.0/24".parse().expect("net"));
    assert_eq!(why[0].reason, RejectReason::NoImportPolicy);
}

#[test]
fn a_withdrawal_reports_the_prefix_withdrawn() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    r.apply_update(e, withdraw(&["10.1.0.0/24"]));
    r.process();
    assert_eq!(
        r.take_events(),
        vec![RouteEvent::Withdrawn {
            prefix: "10.1.0.0/24".parse().expect("net")
        }]
    );
    assert_eq!(r.loc_rib_len(), (0, 0));
}

#[test]
fn an_announce_and_withdraw_in_one_batch_reports_nothing() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.apply_update(e, withdraw(&["10.1.0.0/24"]));
    assert_eq!(r.process(), 0);
    assert!(r.take_events().is_empty());
}

#[test]
fn a_better_path_takes_over_and_the_loser_keeps_its_reason() {
    let mut r = rib(None);
    let a = add_up(&mut r, 2, 65001, false);
    let b = add_up(&mut r, 3, 65002, false);
    r.apply_update(
        a,
        announce(&["10.1.0.0/24"], attrs(&[65001, 65010, 65020], 2)),
    );
    r.process();
    r.take_events();
    r.apply_update(b, announce(&["10.1.0.0/24"], attrs(&[65002], 3)));
    r.process();
    let ev = r.take_events();
    assert_eq!(
        ev.iter().filter_map(best_event).collect::<Vec<_>>(),
        vec![("10.1.0.0/24".to_string(), ip(3))]
    );
    let why = r.explain("10.1.0.0/24".parse().expect("net"));
    assert_eq!(why.len(), 2);
    assert!(why[0].best);
    assert_eq!(why[0].from_peer, Some(ip(3)));
    assert_eq!(why[1].reason, RejectReason::AsPathLength);
    // The best one leaves: the other takes over.
    r.apply_update(b, withdraw(&["10.1.0.0/24"]));
    r.process();
    let ev = r.take_events();
    assert_eq!(
        ev.iter().filter_map(best_event).collect::<Vec<_>>(),
        vec![("10.1.0.0/24".to_string(), ip(2))]
    );
}

#[test]
fn a_locally_originated_route_wins_and_is_not_reported_as_learned() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    r.originate(vec![(
        "10.1.0.0/24".parse().expect("net"),
        OriginAttrs::default(),
    )]);
    r.process();
    assert_eq!(
        r.take_events(),
        vec![RouteEvent::Withdrawn {
            prefix: "10.1.0.0/24".parse().expect("net")
        }]
    );
    r.originate(vec![(
        "10.2.0.0/24".parse().expect("net"),
        OriginAttrs::default(),
    )]);
    r.process();
    assert!(r.take_events().is_empty());
    assert!(r.learned_routes().is_empty());
}

#[test]
fn our_own_as_in_the_path_is_a_loop_unless_allowed() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001, 64512], 2)));
    r.process();
    assert!(r.take_events().is_empty());
    assert_eq!(
        r.explain("10.1.0.0/24".parse().expect("net"))[0].reason,
        RejectReason::AsLoop
    );
    let mut c = peer_cfg(2, 65001);
    c.num_allowed_local_as = 1;
    r.configure_peer(e, &c);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001, 64512], 2)));
    r.process();
    assert_eq!(r.take_events().len(), 1);
}

#[test]
fn export_to_ebgp_prepends_our_as_sets_next_hop_self_and_drops_local_pref() {
    let mut r = rib(None);
    let i = add_up(&mut r, 2, 64512, false);
    let e = add_up(&mut r, 3, 65003, false);
    let mut a = attrs(&[], 2);
    a.local_pref = Some(300);
    a.med = Some(5);
    r.apply_update(i, announce(&["10.1.0.0/24"], a));
    r.process();
    let got = announced(&sent(&mut r, e));
    assert_eq!(got.len(), 1);
    let (p, x) = &got[0];
    assert_eq!(*p, p4("10.1.0.0/24"));
    assert_eq!(&*x.as_path, &[64512]);
    assert_eq!(x.next_hop, Some(IpAddr::V4(ME)));
    assert_eq!((x.local_pref, x.med), (None, None));
}

#[test]
fn export_to_ibgp_keeps_the_next_hop_and_sets_local_pref() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    let i = add_up(&mut r, 3, 64512, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    let got = announced(&sent(&mut r, i));
    let x = &got[0].1;
    assert_eq!(x.next_hop, Some(ip(2)));
    assert_eq!(x.local_pref, Some(100));
    assert_eq!(&*x.as_path, &[65001]);
}

#[test]
fn next_hop_self_towards_ibgp_when_asked() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    let mut c = peer_cfg(3, 64512);
    c.next_hop = NextHopMode::SelfAddress;
    let i = r.add_peer(&c);
    up(&mut r, i, 3);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    assert_eq!(
        announced(&sent(&mut r, i))[0].1.next_hop,
        Some(IpAddr::V4(ME))
    );
}

#[test]
fn next_hop_keep_towards_ebgp_when_asked() {
    let mut r = rib(None);
    let i = add_up(&mut r, 2, 64512, false);
    let mut c = peer_cfg(3, 65003);
    c.next_hop = NextHopMode::Keep;
    let e = r.add_peer(&c);
    up(&mut r, e, 3);
    r.apply_update(i, announce(&["10.1.0.0/24"], attrs(&[], 7)));
    r.process();
    assert_eq!(announced(&sent(&mut r, e))[0].1.next_hop, Some(ip(7)));
}

#[test]
fn ibgp_routes_are_not_sent_to_other_ibgp_peers_without_reflection() {
    let mut r = rib(None);
    let a = add_up(&mut r, 2, 64512, false);
    let b = add_up(&mut r, 3, 64512, false);
    r.apply_update(a, announce(&["10.1.0.0/24"], attrs(&[], 2)));
    r.process();
    assert!(sent(&mut r, b).is_empty());
    assert!(sent(&mut r, a).is_empty(), "never back to the sender");
}

#[test]
fn a_reflector_sends_client_routes_to_everyone_with_originator_id_and_cluster_list() {
    let cluster = Ipv4Addr::new(1, 1, 1, 1);
    let mut r = rib(Some(cluster));
    let c1 = add_up(&mut r, 2, 64512, true);
    let c2 = add_up(&mut r, 3, 64512, true);
    let nc = add_up(&mut r, 4, 64512, false);
    r.apply_update(c1, announce(&["10.1.0.0/24"], attrs(&[], 2)));
    r.process();
    for t in [c2, nc] {
        let got = announced(&sent(&mut r, t));
        assert_eq!(got.len(), 1, "peer {t}");
        let x = &got[0].1;
        assert_eq!(x.originator_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(x.cluster_list, vec![cluster]);
        assert_eq!(x.next_hop, Some(ip(2)), "a reflector keeps the next hop");
    }
    assert!(sent(&mut r, c1).is_empty());
}

#[test]
fn a_reflector_sends_non_client_routes_to_clients_only() {
    let mut r = rib(Some(Ipv4Addr::new(1, 1, 1, 1)));
    let c1 = add_up(&mut r, 2, 64512, true);
    let n1 = add_up(&mut r, 3, 64512, false);
    let n2 = add_up(&mut r, 4, 64512, false);
    r.apply_update(n1, announce(&["10.1.0.0/24"], attrs(&[], 3)));
    r.process();
    assert_eq!(announced(&sent(&mut r, c1)).len(), 1);
    assert!(sent(&mut r, n2).is_empty());
}

#[test]
fn a_reflected_route_keeps_an_existing_originator_id_and_prepends_the_cluster() {
    let cluster = Ipv4Addr::new(1, 1, 1, 1);
    let mut r = rib(Some(cluster));
    let c1 = add_up(&mut r, 2, 64512, true);
    let c2 = add_up(&mut r, 3, 64512, true);
    let mut a = attrs(&[], 2);
    a.originator_id = Some(Ipv4Addr::new(10, 9, 9, 9));
    a.cluster_list = vec![Ipv4Addr::new(2, 2, 2, 2)];
    r.apply_update(c1, announce(&["10.1.0.0/24"], a));
    r.process();
    let x = announced(&sent(&mut r, c2)).remove(0).1;
    assert_eq!(x.originator_id, Some(Ipv4Addr::new(10, 9, 9, 9)));
    assert_eq!(x.cluster_list, vec![cluster, Ipv4Addr::new(2, 2, 2, 2)]);
}

#[test]
fn routes_with_our_router_id_as_originator_or_our_cluster_in_the_list_are_loops() {
    let cluster = Ipv4Addr::new(1, 1, 1, 1);
    let mut r = rib(Some(cluster));
    let c1 = add_up(&mut r, 2, 64512, true);
    let mut a = attrs(&[], 2);
    a.originator_id = Some(ME);
    r.apply_update(c1, announce(&["10.1.0.0/24"], a));
    let mut b = attrs(&[], 2);
    b.cluster_list = vec![Ipv4Addr::new(3, 3, 3, 3), cluster];
    r.apply_update(c1, announce(&["10.2.0.0/24"], b));
    r.process();
    assert!(r.take_events().is_empty());
    let why = |s: &str| r.explain(s.parse().expect("net"))[0].reason;
    assert_eq!(why("10.1.0.0/24"), RejectReason::OriginatorLoop);
    assert_eq!(why("10.2.0.0/24"), RejectReason::ClusterLoop);
}

#[test]
fn no_export_is_not_sent_to_ebgp_and_no_advertise_to_nobody() {
    let mut r = rib(None);
    let i = add_up(&mut r, 2, 64512, false);
    let i2 = add_up(&mut r, 4, 64512, true);
    let e = add_up(&mut r, 3, 65003, false);
    let mut a = attrs(&[], 2);
    a.communities = vec![community::NO_EXPORT];
    r.apply_update(i, announce(&["10.1.0.0/24"], a));
    let mut b = attrs(&[65009], 5);
    b.communities = vec![community::NO_ADVERTISE];
    r.apply_update(e, announce(&["10.2.0.0/24"], b));
    r.process();
    assert!(sent(&mut r, e).is_empty());
    assert!(sent(&mut r, i2).is_empty());
}

#[test]
fn export_policy_filters_by_prefix_range_and_adds_communities() {
    let mut r = rib(None);
    let i = add_up(&mut r, 2, 64512, false);
    let mut c = peer_cfg(3, 65003);
    c.export = Some(Policy {
        statements: vec![Statement {
            conditions: Conditions {
                prefixes: vec![PrefixRange {
                    net: "10.0.0.0/8".parse().expect("net"),
                    min_len: Some(16),
                    max_len: Some(24),
                }],
                ..Conditions::default()
            },
            action: Action::Accept,
            set: SetActions {
                add_communities: vec![community_value(64512, 7)],
                ..SetActions::default()
            },
        }],
        default_action: Action::Reject,
    });
    let e = r.add_peer(&c);
    up(&mut r, e, 3);
    r.apply_update(
        i,
        announce(
            &["10.1.0.0/24", "10.2.0.0/25", "11.0.0.0/16"],
            attrs(&[], 2),
        ),
    );
    r.process();
    let got = announced(&sent(&mut r, e));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, p4("10.1.0.0/24"));
    assert_eq!(got[0].1.communities, vec![community_value(64512, 7)]);
}

#[test]
fn export_policy_prepends_before_our_own_as() {
    // As BIRD: an export filter's bgp_path.prepend runs before the protocol adds its AS.
    let mut r = rib(None);
    let i = add_up(&mut r, 2, 64512, false);
    let mut c = peer_cfg(3, 65003);
    c.export = Some(Policy {
        statements: vec![Statement {
            conditions: Conditions {
                learned: Some(true),
                ..Conditions::default()
            },
            action: Action::Accept,
            set: SetActions {
                prepend_as_path: vec![65100, 65101],
                ..SetActions::default()
            },
        }],
        default_action: Action::Reject,
    });
    let e = r.add_peer(&c);
    up(&mut r, e, 3);
    r.apply_update(i, announce(&["10.1.0.0/24"], attrs(&[], 2)));
    r.process();
    let got = announced(&sent(&mut r, e));
    assert_eq!(got.len(), 1);
    assert_eq!(&*got[0].1.as_path, &[64512, 65100, 65101]);
}

#[test]
fn import_policy_can_set_local_pref_and_communities() {
    let mut r = rib(None);
    let mut c = peer_cfg(2, 65001);
    c.import = Some(Policy {
        statements: vec![Statement {
            set: SetActions {
                local_pref: Some(250),
                add_communities: vec![community_value(64512, 1)],
                ..SetActions::default()
            },
            ..Statement::default()
        }],
        default_action: Action::Reject,
    });
    let e = r.add_peer(&c);
    up(&mut r, e, 2);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    let routes = r.learned_routes();
    assert_eq!(routes[0].attrs.local_pref, Some(250));
    assert_eq!(routes[0].attrs.communities, vec![community_value(64512, 1)]);
}

#[test]
fn a_graceful_down_keeps_routes_stale_without_events_until_end_of_rib() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(
        e,
        announce(&["10.1.0.0/24", "10.2.0.0/24"], attrs(&[65001], 2)),
    );
    r.process();
    r.take_events();
    r.peer_down(e, &[Afi::Ipv4, Afi::Ipv6]);
    r.process();
    assert!(r.take_events().is_empty());
    assert!(r.learned_routes().iter().all(|x| x.stale));
    assert_eq!(r.peer(e).map(|p| p.counters.stale), Some(2));
    up(&mut r, e, 2);
    // The restarted peer re-announces one prefix, then End-of-RIB.
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    assert!(r.take_events().is_empty(), "same path: no change");
    r.apply_update(
        e,
        Update {
            end_of_rib: Some(Afi::Ipv4),
            ..Update::default()
        },
    );
    r.process();
    assert_eq!(
        r.take_events(),
        vec![RouteEvent::Withdrawn {
            prefix: "10.2.0.0/24".parse().expect("net")
        }]
    );
    let left = r.learned_routes();
    assert_eq!(left.len(), 1);
    assert!(!left[0].stale);
}

#[test]
fn a_graceful_down_keeps_only_the_families_listed_in_the_peers_capability() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    // BIRD's "graceful restart aware": the capability lists no family.
    r.peer_down(e, &[]);
    r.process();
    assert_eq!(r.take_events().len(), 1);
    assert!(!r.has_stale(e));
}

#[test]
fn a_new_session_without_graceful_restart_flushes_stale_routes() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    r.peer_down(e, &[Afi::Ipv4, Afi::Ipv6]);
    r.peer_up(
        e,
        PeerUp {
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            families: vec![Afi::Ipv4],
            local_addr: Some(IpAddr::V4(ME)),
            graceful_restart: None,
        },
    );
    r.process();
    assert_eq!(r.take_events().len(), 1);
    assert!(r.learned_routes().is_empty());
}

#[test]
fn restart_timer_expiry_flushes_stale_routes() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    r.peer_down(e, &[Afi::Ipv4, Afi::Ipv6]);
    assert!(r.has_stale(e));
    r.flush_stale(e, None);
    r.process();
    assert_eq!(r.take_events().len(), 1);
    assert!(!r.has_stale(e));
}

#[test]
fn a_non_graceful_down_withdraws_the_peers_routes_and_unadvertises_them() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    let i = add_up(&mut r, 3, 64512, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    assert_eq!(announced(&sent(&mut r, i)).len(), 1);
    r.peer_down(e, &[]);
    r.process();
    assert_eq!(r.take_events().len(), 1);
    let w = sent(&mut r, i);
    assert_eq!(w[0].withdrawn4, vec![p4("10.1.0.0/24")]);
    assert_eq!(r.peer(i).map(RibPeer::advertised), Some(0));
}

#[test]
fn a_peer_coming_up_gets_the_whole_table_then_end_of_rib() {
    let mut r = rib(None);
    r.originate(vec![
        (
            "192.168.1.0/26".parse().expect("net"),
            OriginAttrs::default(),
        ),
        (
            "fd00:10::/122".parse().expect("net"),
            OriginAttrs::default(),
        ),
    ]);
    r.process();
    let mut c = peer_cfg(2, 64512);
    c.next_hop_v6 = Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    let i = r.add_peer(&c);
    r.peer_up(
        i,
        PeerUp {
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            families: vec![Afi::Ipv4, Afi::Ipv6],
            local_addr: Some(IpAddr::V4(ME)),
            graceful_restart: None,
        },
    );
    let us = sent(&mut r, i);
    let eors: Vec<Afi> = us.iter().filter_map(|u| u.end_of_rib).collect();
    assert_eq!(eors, vec![Afi::Ipv4, Afi::Ipv6]);
    let a4 = announced(&us);
    assert_eq!(a4[0].1.next_hop, Some(IpAddr::V4(ME)));
    let six: Vec<_> = us.iter().filter(|u| !u.nlri6.is_empty()).collect();
    assert_eq!(six.len(), 1);
    assert_eq!(
        six[0].attrs6.as_ref().and_then(|a| a.next_hop),
        Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)))
    );
    // The end-of-RIB markers come after the routes.
    assert!(us.last().is_some_and(|u| u.end_of_rib.is_some()));
}

#[test]
fn many_prefixes_with_the_same_attributes_go_out_in_few_updates() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    let i = add_up(&mut r, 3, 64512, false);
    let prefixes: Vec<Prefix4> = (0..10_000u32)
        .map(|n| Prefix4::from_bits(0x6400_0000 + (n << 8), 24).expect("p"))
        .collect();
    r.apply_update(
        e,
        Update {
            nlri4: prefixes.clone(),
            attrs4: Some(attrs(&[65001], 2)),
            ..Update::default()
        },
    );
    r.process();
    let us = sent(&mut r, i);
    let n: usize = us.iter().map(|u| u.nlri4.len()).sum();
    assert_eq!(n, 10_000);
    assert!(us.len() <= 12, "packed into {} UPDATEs", us.len());
    assert_eq!(
        r.attr_sets(),
        2,
        "received and exported attribute sets only"
    );
}

#[test]
fn route_refresh_sends_the_adj_rib_out_again() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    let i = add_up(&mut r, 3, 64512, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    sent(&mut r, i);
    r.route_refresh(i, Afi::Ipv4);
    assert_eq!(announced(&sent(&mut r, i)).len(), 1);
}

#[test]
fn an_export_policy_change_withdraws_what_is_no_longer_allowed() {
    let mut r = rib(None);
    let i = add_up(&mut r, 2, 64512, false);
    let e = add_up(&mut r, 3, 65003, false);
    r.apply_update(i, announce(&["10.1.0.0/24"], attrs(&[], 2)));
    r.process();
    assert_eq!(announced(&sent(&mut r, e)).len(), 1);
    let mut c = peer_cfg(3, 65003);
    c.export = Some(Policy::reject_all());
    r.configure_peer(e, &c);
    let w = sent(&mut r, e);
    assert_eq!(w[0].withdrawn4, vec![p4("10.1.0.0/24")]);
}

#[test]
fn removing_a_peer_withdraws_its_routes() {
    let mut r = rib(None);
    let e = add_up(&mut r, 2, 65001, false);
    r.apply_update(e, announce(&["10.1.0.0/24"], attrs(&[65001], 2)));
    r.process();
    r.take_events();
    r.remove_peer(e);
    r.process();
    assert_eq!(r.take_events().len(), 1);
    assert_eq!(r.attr_sets(), 0, "attributes freed");
}
