//! Crafted UPDATEs: each malformation gets the RFC 7606 action (treat-as-withdraw,
//! attribute discard or session reset with the RFC 4271 code/subcode), and none panics.
//! Several of these inputs panic zettabgp 0.6's own decoder (reference §1.4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgp::wire::attrs::{PathAttrs, RawAttr};
use bgp::wire::encode::{
    encode_path_attrs, push_announce4, push_announce6, push_end_of_rib, push_withdraw4,
    push_withdraw6,
};
use bgp::wire::{AttrAction, Message, UpdateCtx, check_header, decode_message, decode_update};
use bgp::{Afi, Prefix4, Prefix6};

const EBGP: UpdateCtx = UpdateCtx {
    ebgp: true,
    peer_as: 65001,
};
const IBGP: UpdateCtx = UpdateCtx {
    ebgp: false,
    peer_as: 64512,
};

fn attr(fl: u8, t: u8, v: &[u8]) -> Vec<u8> {
    let mut a = vec![fl, t];
    if fl & 0x10 != 0 {
        a.extend_from_slice(&(v.len() as u16).to_be_bytes());
    } else {
        a.push(v.len() as u8);
    }
    a.extend_from_slice(v);
    a
}

fn body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

fn origin() -> Vec<u8> {
    attr(0x40, 1, &[0])
}
fn as_path(asns: &[u32]) -> Vec<u8> {
    if asns.is_empty() {
        return attr(0x40, 2, &[]);
    }
    let mut v = vec![2, asns.len() as u8];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes());
    }
    attr(0x40, 2, &v)
}
fn next_hop() -> Vec<u8> {
    attr(0x40, 3, &[10, 0, 0, 2])
}
fn mandatory() -> Vec<u8> {
    [origin(), as_path(&[65001, 65010]), next_hop()].concat()
}
const NLRI: &[u8] = &[24, 10, 1, 1, 24, 10, 1, 2];

fn p4(s: &str) -> Prefix4 {
    s.parse().expect("prefix")
}

fn assert_treat_as_withdraw(b: &[u8], ctx: &UpdateCtx) {
    let u = decode_update(b, ctx).expect("no session reset");
    assert!(u.treated_as_withdraw(), "expected treat-as-withdraw: {u:?}");
    assert!(u.nlri4.is_empty() && u.attrs4.is_none());
    assert_eq!(u.withdrawn4, [p4("10.1.1.0/24"), p4("10.1.2.0/24")]);
}

#[test]
fn well_formed_update_is_accepted_with_its_attributes() {
    let u = decode_update(&body(&[], &mandatory(), NLRI), &EBGP).expect("ok");
    assert!(u.errors.is_empty());
    assert_eq!(u.nlri4, [p4("10.1.1.0/24"), p4("10.1.2.0/24")]);
    let a = u.attrs4.expect("attrs");
    assert_eq!(&*a.as_path, &[65001, 65010]);
    assert_eq!(a.next_hop, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
}

#[test]
fn origin_with_length_2_is_treat_as_withdraw() {
    let attrs = [attr(0x40, 1, &[0, 0]), as_path(&[65001]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn attribute_length_past_the_attribute_block_is_treat_as_withdraw() {
    let mut attrs = mandatory();
    attrs.extend_from_slice(&[0x80, 4, 9, 0, 0]); // MED claiming 9 octets, 2 present
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn one_octet_attribute_block_is_treat_as_withdraw_not_a_panic() {
    let mut attrs = mandatory();
    attrs.push(0x40);
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn duplicate_attribute_keeps_the_first_and_discards_the_rest() {
    let attrs = [
        mandatory(),
        attr(0x80, 4, &[0, 0, 0, 5]),
        attr(0x80, 4, &[0, 0, 0, 9]),
    ]
    .concat();
    let u = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect("ok");
    assert_eq!(u.attrs4.expect("kept").med, Some(5));
    assert_eq!(u.errors.len(), 1);
    assert_eq!(u.errors[0].action, AttrAction::AttributeDiscard);
    assert_eq!(u.errors[0].type_code, 4);
}

#[test]
fn duplicate_mp_reach_is_a_session_reset() {
    let mp = attr(
        0x90,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    let attrs = [origin(), as_path(&[65001]), mp.clone(), mp].concat();
    let n = decode_update(&body(&[], &attrs, &[]), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn missing_next_hop_is_treat_as_withdraw() {
    let attrs = [origin(), as_path(&[65001])].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn missing_origin_is_treat_as_withdraw() {
    let attrs = [as_path(&[65001]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn origin_value_3_is_treat_as_withdraw() {
    let attrs = [attr(0x40, 1, &[3]), as_path(&[65001]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn truncated_nlri_is_a_session_reset_with_invalid_network_field() {
    let n = decode_update(&body(&[], &mandatory(), &[24, 10, 1]), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 10));
}

#[test]
fn nlri_length_33_is_a_session_reset() {
    let n =
        decode_update(&body(&[], &mandatory(), &[33, 1, 1, 1, 1, 1]), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 10));
}

#[test]
fn withdrawn_length_past_the_message_is_malformed_attribute_list() {
    let b = [0u8, 40, 24, 10, 1, 1];
    let n = decode_update(&b, &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn total_attribute_length_past_the_message_is_malformed_attribute_list() {
    let mut b = body(&[], &mandatory(), NLRI);
    b[3] = 200;
    let n = decode_update(&b, &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn header_length_18_is_bad_message_length() {
    let mut h = vec![0xff; 16];
    h.extend_from_slice(&[0, 18, 2]);
    let n = check_header(&h).expect_err("refused");
    assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 18]));
}

#[test]
fn as_path_shorter_than_one_asn_is_treat_as_withdraw_not_a_panic() {
    let attrs = [origin(), attr(0x40, 2, &[2, 1, 0, 0]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
    let attrs = [origin(), attr(0x40, 2, &[2]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn one_octet_mp_reach_is_a_session_reset_not_a_panic() {
    let attrs = [mandatory(), attr(0x80, 14, &[0])].concat();
    let n = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 9));
    let attrs = [mandatory(), attr(0x80, 15, &[0])].concat();
    let n = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[test]
fn mp_reach_with_a_truncated_nlri_is_a_session_reset() {
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
    v.extend_from_slice(&[0, 64, 0xfd, 0]);
    let attrs = [origin(), as_path(&[65001]), attr(0x80, 14, &v)].concat();
    let n = decode_update(&body(&[], &attrs, &[]), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[test]
fn well_known_attribute_marked_optional_is_treat_as_withdraw() {
    let attrs = [attr(0xc0, 1, &[0]), as_path(&[65001]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn malformed_aggregator_is_discarded_and_the_routes_kept() {
    let attrs = [mandatory(), attr(0xc0, 7, &[0, 1, 2])].concat();
    let u = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect("ok");
    assert_eq!(u.nlri4.len(), 2);
    assert_eq!(u.errors[0].action, AttrAction::AttributeDiscard);
    assert_eq!(u.attrs4.expect("attrs").aggregator, None);
}

#[test]
fn atomic_aggregate_with_a_value_is_discarded() {
    let attrs = [mandatory(), attr(0x40, 6, &[1])].concat();
    let u = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect("ok");
    assert_eq!(u.nlri4.len(), 2);
    assert!(!u.attrs4.expect("attrs").atomic_aggregate);
}

#[test]
fn local_pref_from_an_ebgp_peer_is_discarded_and_kept_from_ibgp() {
    let lp = attr(0x40, 5, &[0, 0, 0, 200]);
    let u =
        decode_update(&body(&[], &[mandatory(), lp.clone()].concat(), NLRI), &EBGP).expect("ok");
    assert_eq!(u.attrs4.expect("attrs").local_pref, None);
    let ibgp = [origin(), as_path(&[]), next_hop(), lp].concat();
    let u = decode_update(&body(&[], &ibgp, NLRI), &IBGP).expect("ok");
    assert_eq!(u.attrs4.expect("attrs").local_pref, Some(200));
}

#[test]
fn unrecognized_well_known_attribute_is_a_session_reset_with_the_attribute() {
    let attrs = [mandatory(), attr(0x40, 99, &[1, 2])].concat();
    let n = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect_err("reset");
    assert_eq!((n.code, n.subcode), (3, 2));
    assert_eq!(n.data, vec![0x40, 99, 2, 1, 2]);
}

#[test]
fn unknown_optional_transitive_attribute_is_passed_on_with_the_partial_bit() {
    let attrs = [mandatory(), attr(0xc0, 99, &[1, 2, 3])].concat();
    let u = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect("ok");
    let a = u.attrs4.expect("attrs");
    assert_eq!(
        a.unknown,
        vec![RawAttr {
            flags: 0xc0,
            type_code: 99,
            value: vec![1, 2, 3]
        }]
    );
    let wire = encode_path_attrs(&a, Afi::Ipv4).expect("encodes");
    let pos = wire.windows(2).position(|w| w == [0xe0, 99]);
    assert!(pos.is_some(), "partial bit set on the way out: {wire:02x?}");
}

#[test]
fn as_path_segment_of_zero_asns_is_treat_as_withdraw() {
    let attrs = [origin(), attr(0x40, 2, &[2, 0]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &IBGP);
}

#[test]
fn as_set_is_treat_as_withdraw() {
    let attrs = [
        origin(),
        attr(0x40, 2, &[1, 1, 0, 0, 0xfd, 0xe9]),
        next_hop(),
    ]
    .concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn ebgp_path_not_starting_with_the_peer_as_is_treat_as_withdraw() {
    let attrs = [origin(), as_path(&[65099]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn as_0_in_as_path_is_treat_as_withdraw() {
    let attrs = [origin(), as_path(&[65001, 0]), next_hop()].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn next_hop_0_0_0_0_is_treat_as_withdraw() {
    let attrs = [origin(), as_path(&[65001]), attr(0x40, 3, &[0, 0, 0, 0])].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn communities_of_3_octets_are_treat_as_withdraw() {
    let attrs = [mandatory(), attr(0xc0, 8, &[0, 1, 2])].concat();
    assert_treat_as_withdraw(&body(&[], &attrs, NLRI), &EBGP);
}

#[test]
fn originator_id_from_ebgp_is_discarded() {
    let attrs = [mandatory(), attr(0x80, 9, &[1, 1, 1, 1])].concat();
    let u = decode_update(&body(&[], &attrs, NLRI), &EBGP).expect("ok");
    assert_eq!(u.attrs4.expect("attrs").originator_id, None);
}

#[test]
fn end_of_rib_markers_are_recognised_for_both_families() {
    let mut out = Vec::new();
    push_end_of_rib(&mut out, Afi::Ipv4);
    push_end_of_rib(&mut out, Afi::Ipv6);
    let (_, l1) = check_header(&out).expect("ok").expect("complete");
    let u = decode_update(&out[19..l1], &EBGP).expect("ok");
    assert_eq!(u.end_of_rib, Some(Afi::Ipv4));
    let (_, l2) = check_header(&out[l1..]).expect("ok").expect("complete");
    let u = decode_update(&out[l1 + 19..l1 + l2], &EBGP).expect("ok");
    assert_eq!(u.end_of_rib, Some(Afi::Ipv6));
}

fn sample_attrs() -> PathAttrs {
    PathAttrs {
        as_path: Arc::from(vec![65001u32, 4_200_000_000]),
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        med: Some(7),
        communities: vec![0xfde9_0064],
        large_communities: vec![bgp::wire::LargeCommunity(65001, 1, 2)],
        ext_communities: vec![0x0002_fde9_0000_0064],
        atomic_aggregate: true,
        aggregator: Some((65001, Ipv4Addr::new(1, 2, 3, 4))),
        ..PathAttrs::default()
    }
}

fn messages(out: &[u8]) -> Vec<Message> {
    let mut v = Vec::new();
    bgp::wire::decode_stream(out, &EBGP, |m| {
        v.push(m.expect("decodes"));
        true
    });
    v
}

#[test]
fn encoded_updates_decode_back_to_the_same_routes_and_attributes() {
    let a = sample_attrs();
    let wire = encode_path_attrs(&a, Afi::Ipv4).expect("encodes");
    // AS_PATH is an AS_SEQUENCE (type 2), not zettabgp's type 1.
    let i = wire
        .windows(2)
        .position(|w| w == [0x40, 2])
        .expect("as path");
    assert_eq!(wire[i + 3], 2);
    let prefixes: Vec<Prefix4> = (0..3000u32)
        .map(|i| Prefix4::from_bits(0x0a00_0000 + (i << 8), 24).expect("p"))
        .collect();
    let mut out = Vec::new();
    push_announce4(&mut out, &wire, &prefixes).expect("encodes");
    let msgs = messages(&out);
    assert!(
        msgs.len() >= 3 && msgs.len() <= 4,
        "packed: {} messages",
        msgs.len()
    );
    let mut got = Vec::new();
    for m in msgs {
        let Message::Update(u) = m else {
            panic!("not an update")
        };
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        assert_eq!(u.attrs4.as_ref(), Some(&a));
        got.extend(u.nlri4.iter().copied());
    }
    assert_eq!(got, prefixes);
}

#[test]
fn withdrawals_pack_and_decode_back() {
    let prefixes: Vec<Prefix4> = (0..2000u32)
        .map(|i| Prefix4::from_bits(0x6400_0000 + i, 32).expect("p"))
        .collect();
    let mut out = Vec::new();
    push_withdraw4(&mut out, &prefixes);
    let mut got = Vec::new();
    for m in messages(&out) {
        let Message::Update(u) = m else {
            panic!("not an update")
        };
        got.extend(u.withdrawn4.iter().copied());
    }
    assert_eq!(got, prefixes);
}

#[test]
fn ipv6_routes_travel_in_mp_reach_and_mp_unreach() {
    let mut a = sample_attrs();
    let nh = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    a.next_hop = Some(IpAddr::V6(nh));
    let wire = encode_path_attrs(&a, Afi::Ipv6).expect("encodes");
    let prefixes: Vec<Prefix6> = (0..500u16)
        .map(|i| Prefix6::new(Ipv6Addr::new(0xfd00, 10, i, 0, 0, 0, 0, 0), 64).expect("p"))
        .collect();
    let mut out = Vec::new();
    push_announce6(&mut out, &wire, nh, &prefixes).expect("encodes");
    push_withdraw6(&mut out, &prefixes).expect("encodes");
    let (mut ann, mut wd) = (Vec::new(), Vec::new());
    for m in messages(&out) {
        let Message::Update(u) = m else {
            panic!("not an update")
        };
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        if let Some(a6) = &u.attrs6 {
            assert_eq!(a6, &a);
        }
        ann.extend(u.nlri6.iter().copied());
        wd.extend(u.withdrawn6.iter().copied());
    }
    assert_eq!(ann, prefixes);
    assert_eq!(wd, prefixes);
}

#[test]
fn mp_reach_with_a_link_local_second_next_hop_keeps_the_global_one() {
    let mut v = vec![0, 2, 1, 32];
    v.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets());
    v.extend_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).octets());
    v.extend_from_slice(&[0, 64, 0xfd, 0, 0, 10, 0, 0, 0, 0]);
    let attrs = [attr(0x90, 14, &v), origin(), as_path(&[65001])].concat();
    let u = decode_update(&body(&[], &attrs, &[]), &EBGP).expect("ok");
    assert_eq!(u.nlri6.len(), 1);
    assert_eq!(
        u.attrs6.expect("attrs").next_hop,
        Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)))
    );
}

#[test]
fn route_refresh_and_keepalive_decode() {
    let mut out = Vec::new();
    bgp::wire::encode::push_route_refresh(&mut out, Afi::Ipv6);
    bgp::wire::encode::push_keepalive(&mut out);
    let m = messages(&out);
    assert_eq!(
        m,
        vec![
            Message::RouteRefresh {
                afi: Some(Afi::Ipv6)
            },
            Message::Keepalive
        ]
    );
    let _ = decode_message;
}
