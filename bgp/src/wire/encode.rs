//! Encoding of everything we send, appended to one output buffer per peer so a flush is a
//! single `write_all`.
//!
//! Path attributes go through zettabgp's encoders except where they are wrong (reproduced in
//! reference §1.4 and here): AS_PATH (zettabgp writes AS_SEQUENCE as segment type 1, AS_SET),
//! ATOMIC_AGGREGATE (it writes 4 octets instead of none), AGGREGATOR (it writes nothing but
//! claims 4 octets) and LARGE_COMMUNITY (it sets the Partial bit on origination): those are
//! hand-built and passed to zettabgp as `BgpAttrUnknown`. UPDATEs are packed: as many
//! prefixes with the same attributes as fit in 4096 octets (RFC 4271 §4.3).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zettabgp::prelude::{
    BgpAddr, BgpAddrV6, BgpAddrs, BgpAttrItem, BgpAttrOrigin, BgpAttrParams, BgpAttrUnknown,
    BgpClusterList, BgpCommunity, BgpCommunityList, BgpExtCommunity, BgpExtCommunityList,
    BgpLocalpref, BgpMED, BgpMPUpdates, BgpMPWithdraws, BgpNextHop, BgpOrigin, BgpOriginatorID,
    BgpSessionParams, BgpTransportMode,
};

use super::attrs::{Origin, PathAttrs, flags, type_code as tc};
use super::header::{HEADER_LEN, MAX_MESSAGE_LEN, MessageType, push_header};
use super::notification::Notification;
use crate::Error;
use crate::prefix::{Afi, Prefix4, Prefix6, PrefixKey};

const MAX_BODY: usize = MAX_MESSAGE_LEN - HEADER_LEN;

fn zparams() -> BgpSessionParams {
    let mut p = BgpSessionParams::new(
        0,
        0,
        BgpTransportMode::IPv4,
        Ipv4Addr::UNSPECIFIED,
        Vec::new(),
    );
    p.fuzzy_pathid = false;
    p.has_as32bit = true;
    p
}

fn raw(t: u8, fl: u8, value: Vec<u8>) -> BgpAttrItem {
    let fl = if value.len() > 255 {
        fl | flags::EXTENDED
    } else {
        fl & !flags::EXTENDED
    };
    BgpAttrItem::Unknown(BgpAttrUnknown {
        params: BgpAttrParams {
            typecode: t,
            flags: fl,
        },
        value,
    })
}

/// AS_PATH as AS_SEQUENCE segments (type 2) of at most 255 ASNs, 4-octet ASNs.
pub fn as_path_value(path: &[u32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + 4 * path.len());
    for chunk in path.chunks(255) {
        v.push(2);
        v.push(chunk.len() as u8);
        for asn in chunk {
            v.extend_from_slice(&asn.to_be_bytes());
        }
    }
    v
}

/// Encodes the path attributes of a route of family `afi`: NEXT_HOP is included for IPv4,
/// left out for IPv6 (it goes in MP_REACH_NLRI). Ordered by type code.
pub fn encode_path_attrs(a: &PathAttrs, afi: Afi) -> Result<Vec<u8>, Error> {
    let mut items: Vec<(u8, BgpAttrItem)> = Vec::with_capacity(12);
    items.push((
        tc::ORIGIN,
        BgpAttrItem::Origin(BgpOrigin::new(match a.origin {
            Origin::Igp => BgpAttrOrigin::Igp,
            Origin::Egp => BgpAttrOrigin::Egp,
            Origin::Incomplete => BgpAttrOrigin::Incomplete,
        })),
    ));
    items.push((
        tc::AS_PATH,
        raw(tc::AS_PATH, flags::TRANSITIVE, as_path_value(&a.as_path)),
    ));
    if afi == Afi::Ipv4 {
        match a.next_hop {
            Some(IpAddr::V4(nh)) => items.push((
                tc::NEXT_HOP,
                BgpAttrItem::NextHop(BgpNextHop::new(IpAddr::V4(nh))),
            )),
            _ => return Err(Error::Encode("IPv4 route without an IPv4 next hop".into())),
        }
    }
    if let Some(m) = a.med {
        items.push((tc::MED, BgpAttrItem::MED(BgpMED { value: m })));
    }
    if let Some(l) = a.local_pref {
        items.push((
            tc::LOCAL_PREF,
            BgpAttrItem::LocalPref(BgpLocalpref { value: l }),
        ));
    }
    if a.atomic_aggregate {
        items.push((
            tc::ATOMIC_AGGREGATE,
            raw(tc::ATOMIC_AGGREGATE, flags::TRANSITIVE, Vec::new()),
        ));
    }
    if let Some((asn, id)) = a.aggregator {
        let mut v = asn.to_be_bytes().to_vec();
        v.extend_from_slice(&id.octets());
        items.push((
            tc::AGGREGATOR,
            raw(tc::AGGREGATOR, flags::OPTIONAL | flags::TRANSITIVE, v),
        ));
    }
    if !a.communities.is_empty() {
        items.push((
            tc::COMMUNITIES,
            BgpAttrItem::CommunityList(BgpCommunityList::from_vec(
                a.communities
                    .iter()
                    .map(|&c| BgpCommunity::new(c))
                    .collect(),
            )),
        ));
    }
    if let Some(o) = a.originator_id {
        items.push((
            tc::ORIGINATOR_ID,
            BgpAttrItem::OriginatorID(BgpOriginatorID::new(IpAddr::V4(o))),
        ));
    }
    if !a.cluster_list.is_empty() {
        items.push((
            tc::CLUSTER_LIST,
            BgpAttrItem::ClusterList(BgpClusterList {
                value: a.cluster_list.iter().map(|&c| IpAddr::V4(c)).collect(),
            }),
        ));
    }
    if !a.ext_communities.is_empty() {
        let value: BTreeSet<BgpExtCommunity> = a
            .ext_communities
            .iter()
            .map(|&c| {
                BgpExtCommunity::new((c >> 56) as u8, (c >> 48) as u8, (c >> 32) as u16, c as u32)
            })
            .collect();
        items.push((
            tc::EXT_COMMUNITIES,
            BgpAttrItem::ExtCommunityList(BgpExtCommunityList { value }),
        ));
    }
    if !a.large_communities.is_empty() {
        let mut v = Vec::with_capacity(12 * a.large_communities.len());
        for c in &a.large_communities {
            v.extend_from_slice(&c.0.to_be_bytes());
            v.extend_from_slice(&c.1.to_be_bytes());
            v.extend_from_slice(&c.2.to_be_bytes());
        }
        items.push((
            tc::LARGE_COMMUNITY,
            raw(tc::LARGE_COMMUNITY, flags::OPTIONAL | flags::TRANSITIVE, v),
        ));
    }
    for u in &a.unknown {
        // Passed-on optional transitive attribute: Partial bit set (RFC 4271 §5).
        items.push((
            u.type_code,
            raw(
                u.type_code,
                (u.flags & (flags::OPTIONAL | flags::TRANSITIVE)) | flags::PARTIAL,
                u.value.clone(),
            ),
        ));
    }
    items.sort_by_key(|(t, _)| *t);
    let params = zparams();
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    let mut out = Vec::with_capacity(64);
    for (t, item) in &items {
        let n = item
            .encode_to(&params, &mut buf)
            .map_err(|e| Error::Encode(format!("attribute {t}: {e:?}")))?;
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    push_header(out, MessageType::Update, 0);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// Appends UPDATEs announcing IPv4 `prefixes` with the encoded attributes `attrs` (from
/// [`encode_path_attrs`] with [`Afi::Ipv4`]), packed.
pub fn push_announce4(out: &mut Vec<u8>, attrs: &[u8], prefixes: &[Prefix4]) -> Result<(), Error> {
    if 4 + attrs.len() + 5 > MAX_BODY {
        return Err(Error::Encode(
            "path attributes do not fit in an UPDATE".into(),
        ));
    }
    let mut rest = prefixes;
    while !rest.is_empty() {
        let start = begin(out);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        out.extend_from_slice(attrs);
        let limit = start + MAX_MESSAGE_LEN;
        let mut n = 0;
        for p in rest {
            if out.len() + p.nlri_len() > limit {
                break;
            }
            p.write_nlri(out);
            n += 1;
        }
        finish(out, start);
        rest = &rest[n..];
    }
    Ok(())
}

/// Appends UPDATEs withdrawing IPv4 `prefixes`, packed.
pub fn push_withdraw4(out: &mut Vec<u8>, prefixes: &[Prefix4]) {
    let mut rest = prefixes;
    while !rest.is_empty() {
        let start = begin(out);
        out.extend_from_slice(&[0, 0]);
        let limit = start + MAX_MESSAGE_LEN - 2;
        let mut n = 0;
        for p in rest {
            if out.len() + p.nlri_len() > limit {
                break;
            }
            p.write_nlri(out);
            n += 1;
        }
        let wlen = (out.len() - start - HEADER_LEN - 2) as u16;
        out[start + HEADER_LEN..start + HEADER_LEN + 2].copy_from_slice(&wlen.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        finish(out, start);
        rest = &rest[n..];
    }
}

fn encode_item(item: &BgpAttrItem, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    let n = item
        .encode_to(&zparams(), &mut buf)
        .map_err(|e| Error::Encode(format!("MP attribute: {e:?}")))?;
    out.extend_from_slice(&buf[..n]);
    Ok(())
}

/// Appends UPDATEs announcing IPv6 `prefixes` via MP_REACH_NLRI (first attribute, RFC 7606
/// §5.1) with next hop `next_hop`, then `attrs` (from [`encode_path_attrs`] with
/// [`Afi::Ipv6`]).
pub fn push_announce6(
    out: &mut Vec<u8>,
    attrs: &[u8],
    next_hop: Ipv6Addr,
    prefixes: &[Prefix6],
) -> Result<(), Error> {
    // MP_REACH: 4 header (extended length) + AFI/SAFI/NH len (4) + NH 16 + reserved 1.
    const MP_FIXED: usize = 4 + 4 + 16 + 1;
    if 4 + MP_FIXED + attrs.len() + 17 > MAX_BODY {
        return Err(Error::Encode(
            "path attributes do not fit in an UPDATE".into(),
        ));
    }
    let room = MAX_BODY - 4 - MP_FIXED - attrs.len();
    let mut rest = prefixes;
    while !rest.is_empty() {
        let mut used = 0;
        let mut n = 0;
        for p in rest {
            if used + p.nlri_len() > room {
                break;
            }
            used += p.nlri_len();
            n += 1;
        }
        let chunk: Vec<BgpAddrV6> = rest[..n]
            .iter()
            .map(|p| BgpAddrV6::new(p.addr(), p.len()))
            .collect();
        let mp = BgpAttrItem::MPUpdates(BgpMPUpdates {
            nexthop: BgpAddr::V6(next_hop),
            addrs: BgpAddrs::IPV6U(chunk),
        });
        let start = begin(out);
        out.extend_from_slice(&[0, 0, 0, 0]);
        let attr_start = out.len();
        encode_item(&mp, out)?;
        out.extend_from_slice(attrs);
        let alen = (out.len() - attr_start) as u16;
        out[attr_start - 2..attr_start].copy_from_slice(&alen.to_be_bytes());
        finish(out, start);
        rest = &rest[n..];
    }
    Ok(())
}

/// Appends UPDATEs withdrawing IPv6 `prefixes` via MP_UNREACH_NLRI, packed.
pub fn push_withdraw6(out: &mut Vec<u8>, prefixes: &[Prefix6]) -> Result<(), Error> {
    let room = MAX_BODY - 4 - 4 - 3;
    let mut rest = prefixes;
    while !rest.is_empty() {
        let mut used = 0;
        let mut n = 0;
        for p in rest {
            if used + p.nlri_len() > room {
                break;
            }
            used += p.nlri_len();
            n += 1;
        }
        let chunk: Vec<BgpAddrV6> = rest[..n]
            .iter()
            .map(|p| BgpAddrV6::new(p.addr(), p.len()))
            .collect();
        let mp = BgpAttrItem::MPWithdraws(BgpMPWithdraws::new(BgpAddrs::IPV6U(chunk)));
        let start = begin(out);
        out.extend_from_slice(&[0, 0, 0, 0]);
        let attr_start = out.len();
        encode_item(&mp, out)?;
        let alen = (out.len() - attr_start) as u16;
        out[attr_start - 2..attr_start].copy_from_slice(&alen.to_be_bytes());
        finish(out, start);
        rest = &rest[n..];
    }
    Ok(())
}

/// Appends an End-of-RIB marker (RFC 4724 §2): an empty UPDATE for IPv4, an MP_UNREACH with
/// only AFI/SAFI for IPv6.
pub fn push_end_of_rib(out: &mut Vec<u8>, afi: Afi) {
    let start = begin(out);
    match afi {
        Afi::Ipv4 => out.extend_from_slice(&[0, 0, 0, 0]),
        Afi::Ipv6 => {
            out.extend_from_slice(&[0, 0, 0, 6, flags::OPTIONAL, tc::MP_UNREACH, 3, 0, 2, 1])
        }
    }
    finish(out, start);
}

/// Appends a KEEPALIVE.
pub fn push_keepalive(out: &mut Vec<u8>) {
    push_header(out, MessageType::Keepalive, 0);
}

/// Appends a NOTIFICATION.
pub fn push_notification(out: &mut Vec<u8>, n: &Notification) {
    let body = n.body();
    push_header(out, MessageType::Notification, body.len());
    out.extend_from_slice(&body);
}

/// Appends a ROUTE-REFRESH (RFC 2918) for `afi` unicast.
pub fn push_route_refresh(out: &mut Vec<u8>, afi: Afi) {
    push_header(out, MessageType::RouteRefresh, 4);
    out.extend_from_slice(&afi.code().to_be_bytes());
    out.extend_from_slice(&[0, 1]);
}
