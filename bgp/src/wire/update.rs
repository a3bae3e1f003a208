//! UPDATE decoding (RFC 4271 §4.3) with RFC 7606 error handling.
//!
//! Two passes. The first is ours and trusts nothing: it locates the withdrawn routes, the
//! attribute block and the NLRI by their lengths, parses every NLRI field (base and
//! MP_REACH / MP_UNREACH) into RIB keys, and walks the attributes checking flags, lengths,
//! duplicates and values, deciding per RFC 7606 (table in `../shared/reference/bgp.md` §6):
//!
//! | error | action |
//! |---|---|
//! | attribute header or length runs past the attribute block | treat-as-withdraw |
//! | withdrawn routes / NLRI / MP NLRI cannot be parsed | session reset (3/10, 3/9) |
//! | flags conflict with the type | treat-as-withdraw (AGGREGATOR, ATOMIC_AGGREGATE: discard; MP_*: reset) |
//! | missing ORIGIN / AS_PATH / NEXT_HOP with NLRI present | treat-as-withdraw |
//! | duplicate attribute | keep the first, discard the rest (MP_*: session reset 3/1) |
//! | malformed ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, EXT / LARGE communities, ORIGINATOR_ID, CLUSTER_LIST | treat-as-withdraw |
//! | malformed ATOMIC_AGGREGATE, AGGREGATOR | attribute discard |
//! | LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST from an eBGP peer | attribute discard |
//! | AS4_PATH / AS4_AGGREGATOR from a 4-octet speaker | attribute discard (RFC 6793 §4.1) |
//! | AS_SET / confederation segments, AS 0, eBGP path not starting with the peer AS | treat-as-withdraw (RFC 9774, RFC 7607, RFC 4271 §6.3) |
//! | unrecognised well-known attribute | session reset (3/2) |
//! | malformed MP_REACH / MP_UNREACH | session reset (3/9) |
//!
//! The second pass hands only attributes that passed the first to zettabgp
//! (`BgpAttrItem::decode_from`) to get their values, inside `catch_unwind` as a last line of
//! defence: a panic there becomes treat-as-withdraw, never a dead task.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zettabgp::prelude::{BgpAttrItem, BgpAttrOrigin, BgpSessionParams, BgpTransportMode};

use super::attrs::{LargeCommunity, Origin, PathAttrs, RawAttr, flags, type_code as tc};
use super::notification::{Notification, subcode};
use crate::prefix::{Afi, Prefix4, Prefix6, PrefixKey, is_valid_next_hop};

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateCtx {
    /// The peer is in another AS.
    pub ebgp: bool,
    /// The peer's AS (an eBGP AS_PATH must start with it).
    pub peer_as: u32,
}

/// The RFC 7606 action taken for one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttrAction {
    /// The UPDATE's NLRI were handled as withdrawals.
    TreatAsWithdraw,
    /// The attribute was dropped, the routes kept.
    AttributeDiscard,
}

/// One RFC 7606 decision, kept on the decoded [`Update`] for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrError {
    /// The attribute type code (0 when not attributable to one attribute).
    pub type_code: u8,
    /// What was done.
    pub action: AttrAction,
    /// Why.
    pub reason: String,
}

/// A decoded UPDATE. After treat-as-withdraw the NLRI sit in the withdrawn lists and there
/// are no attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// IPv4 prefixes withdrawn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn4: Vec<Prefix4>,
    /// IPv4 prefixes announced (base NLRI and MP_REACH AFI 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nlri4: Vec<Prefix4>,
    /// Attributes of `nlri4` (next hop from NEXT_HOP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs4: Option<PathAttrs>,
    /// IPv6 prefixes withdrawn (MP_UNREACH).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn6: Vec<Prefix6>,
    /// IPv6 prefixes announced (MP_REACH).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nlri6: Vec<Prefix6>,
    /// Attributes of `nlri6` (next hop from MP_REACH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs6: Option<PathAttrs>,
    /// This UPDATE is an End-of-RIB marker (RFC 4724 §2) for the family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_rib: Option<Afi>,
    /// RFC 7606 actions taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AttrError>,
}

impl Update {
    /// True when at least one attribute error led to treat-as-withdraw.
    pub fn treated_as_withdraw(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.action == AttrAction::TreatAsWithdraw)
    }

    /// Number of prefixes announced plus withdrawn.
    pub fn prefix_count(&self) -> usize {
        self.nlri4.len() + self.withdrawn4.len() + self.nlri6.len() + self.withdrawn6.len()
    }
}

enum Check {
    Keep,
    Discard(&'static str),
    Withdraw(&'static str),
    Reset(Notification),
}

fn be16(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

fn attr_bytes(fl: u8, t: u8, v: &[u8]) -> Vec<u8> {
    let mut out = vec![fl, t];
    if fl & flags::EXTENDED != 0 {
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    } else {
        out.push(v.len() as u8);
    }
    out.extend_from_slice(v);
    out
}

/// (optional, transitive) bits each recognised attribute must carry.
fn expected_flags(t: u8) -> Option<(bool, bool)> {
    Some(match t {
        tc::ORIGIN | tc::AS_PATH | tc::NEXT_HOP | tc::LOCAL_PREF | tc::ATOMIC_AGGREGATE => {
            (false, true)
        }
        tc::MED | tc::ORIGINATOR_ID | tc::CLUSTER_LIST | tc::MP_REACH | tc::MP_UNREACH => {
            (true, false)
        }
        tc::AGGREGATOR
        | tc::COMMUNITIES
        | tc::EXT_COMMUNITIES
        | tc::AS4_PATH
        | tc::AS4_AGGREGATOR
        | tc::LARGE_COMMUNITY => (true, true),
        _ => return None,
    })
}

fn check_as_path(v: &[u8], ctx: &UpdateCtx) -> Check {
    let mut i = 0;
    let mut first: Option<u32> = None;
    while i < v.len() {
        let Some(&[seg_type, count]) = v.get(i..i + 2) else {
            return Check::Withdraw("AS_PATH segment header truncated");
        };
        if count == 0 {
            return Check::Withdraw("AS_PATH segment with no AS");
        }
        let end = i + 2 + 4 * count as usize;
        let Some(asns) = v.get(i + 2..end) else {
            return Check::Withdraw("AS_PATH segment runs past the attribute");
        };
        match seg_type {
            2 => {}
            1 => return Check::Withdraw("AS_SET in AS_PATH (RFC 9774)"),
            3 | 4 => return Check::Withdraw("confederation segment from a non-member"),
            _ => return Check::Withdraw("unknown AS_PATH segment type"),
        }
        for a in asns.chunks_exact(4) {
            let asn = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
            if asn == 0 {
                return Check::Withdraw("AS 0 in AS_PATH (RFC 7607)");
            }
            first.get_or_insert(asn);
        }
        i = end;
    }
    if ctx.ebgp && first != Some(ctx.peer_as) {
        return Check::Withdraw("eBGP AS_PATH does not start with the peer AS");
    }
    Check::Keep
}

fn check_attr(fl: u8, t: u8, v: &[u8], ctx: &UpdateCtx) -> Check {
    if let Some((opt, trans)) = expected_flags(t) {
        let got = (fl & flags::OPTIONAL != 0, fl & flags::TRANSITIVE != 0);
        if got != (opt, trans) {
            return match t {
                tc::AGGREGATOR | tc::ATOMIC_AGGREGATE => Check::Discard("attribute flags conflict"),
                _ => Check::Withdraw("attribute flags conflict"),
            };
        }
    }
    let n = v.len();
    match t {
        tc::ORIGIN => match v {
            [o] if Origin::from_u8(*o).is_some() => Check::Keep,
            [_] => Check::Withdraw("invalid ORIGIN value"),
            _ => Check::Withdraw("ORIGIN length is not 1"),
        },
        tc::AS_PATH => check_as_path(v, ctx),
        tc::NEXT_HOP => match v {
            &[a, b, c, d] if is_valid_next_hop(IpAddr::V4(Ipv4Addr::new(a, b, c, d))) => {
                Check::Keep
            }
            [_, _, _, _] => Check::Withdraw("NEXT_HOP is not a unicast address"),
            _ => Check::Withdraw("NEXT_HOP length is not 4"),
        },
        tc::MED if n != 4 => Check::Withdraw("MULTI_EXIT_DISC length is not 4"),
        tc::LOCAL_PREF if n != 4 => Check::Withdraw("LOCAL_PREF length is not 4"),
        tc::LOCAL_PREF if ctx.ebgp => Check::Discard("LOCAL_PREF from an eBGP peer"),
        tc::ATOMIC_AGGREGATE if n != 0 => Check::Discard("ATOMIC_AGGREGATE length is not 0"),
        tc::AGGREGATOR if n != 8 => Check::Discard("AGGREGATOR length is not 8"),
        tc::COMMUNITIES if n == 0 || n % 4 != 0 => {
            Check::Withdraw("COMMUNITIES length is not a multiple of 4")
        }
        tc::ORIGINATOR_ID if n != 4 => Check::Withdraw("ORIGINATOR_ID length is not 4"),
        tc::ORIGINATOR_ID if ctx.ebgp => Check::Discard("ORIGINATOR_ID from an eBGP peer"),
        tc::CLUSTER_LIST if n == 0 || n % 4 != 0 => {
            Check::Withdraw("CLUSTER_LIST length is not a multiple of 4")
        }
        tc::CLUSTER_LIST if ctx.ebgp => Check::Discard("CLUSTER_LIST from an eBGP peer"),
        tc::EXT_COMMUNITIES if n == 0 || n % 8 != 0 => {
            Check::Withdraw("EXTENDED COMMUNITIES length is not a multiple of 8")
        }
        tc::LARGE_COMMUNITY if n == 0 || n % 12 != 0 => {
            Check::Withdraw("LARGE_COMMUNITY length is not a multiple of 12")
        }
        tc::AS4_PATH | tc::AS4_AGGREGATOR => {
            Check::Discard("AS4_PATH / AS4_AGGREGATOR from a 4-octet AS speaker")
        }
        tc::MED
        | tc::LOCAL_PREF
        | tc::ATOMIC_AGGREGATE
        | tc::AGGREGATOR
        | tc::COMMUNITIES
        | tc::ORIGINATOR_ID
        | tc::CLUSTER_LIST
        | tc::EXT_COMMUNITIES
        | tc::LARGE_COMMUNITY => Check::Keep,
        _ if fl & flags::OPTIONAL == 0 => Check::Reset(Notification::update(
            subcode::update::UNRECOGNIZED_WELL_KNOWN,
            attr_bytes(fl, t, v),
        )),
        // Unrecognised optional transitive: passed on. Optional non-transitive: dropped
        // quietly (RFC 4271 §5), which is not an error.
        _ if fl & flags::TRANSITIVE != 0 => Check::Keep,
        _ => Check::Discard(""),
    }
}

/// MP_REACH_NLRI contents after the first pass.
struct MpReach {
    afi: Afi,
    next_hop: IpAddr,
    next_hop_ok: bool,
}

fn mp_error(fl: u8, t: u8, v: &[u8]) -> Notification {
    Notification::update(subcode::update::OPTIONAL_ATTR, attr_bytes(fl, t, v))
}

fn parse_mp_reach(fl: u8, v: &[u8], u: &mut Update) -> Result<Option<MpReach>, Notification> {
    let err = || mp_error(fl, tc::MP_REACH, v);
    if v.len() < 5 {
        return Err(err());
    }
    let nh_len = v[3] as usize;
    let nh = v.get(4..4 + nh_len).ok_or_else(err)?;
    // One reserved octet (formerly SNPAs) follows the next hop.
    let nlri = v.get(5 + nh_len..).ok_or_else(err)?;
    let Some(afi) = Afi::from_codes(be16(v) as u16, v[2]) else {
        return Ok(None);
    };
    let next_hop = match (afi, nh_len) {
        (Afi::Ipv4, 4) => IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
        (Afi::Ipv6, 16 | 32) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&nh[..16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(err()),
    };
    match afi {
        Afi::Ipv4 => Prefix4::parse_nlri(nlri, &mut u.nlri4),
        Afi::Ipv6 => Prefix6::parse_nlri(nlri, &mut u.nlri6),
    }
    .map_err(|_| err())?;
    Ok(Some(MpReach {
        afi,
        next_hop,
        next_hop_ok: is_valid_next_hop(next_hop),
    }))
}

/// Parses MP_UNREACH_NLRI; returns the family when its NLRI field is empty (End-of-RIB
/// candidate).
fn parse_mp_unreach(fl: u8, v: &[u8], u: &mut Update) -> Result<Option<Afi>, Notification> {
    let err = || mp_error(fl, tc::MP_UNREACH, v);
    if v.len() < 3 {
        return Err(err());
    }
    let Some(afi) = Afi::from_codes(be16(v) as u16, v[2]) else {
        return Ok(None);
    };
    let nlri = &v[3..];
    match afi {
        Afi::Ipv4 => Prefix4::parse_nlri(nlri, &mut u.withdrawn4),
        Afi::Ipv6 => Prefix6::parse_nlri(nlri, &mut u.withdrawn6),
    }
    .map_err(|_| err())?;
    Ok(nlri.is_empty().then_some(afi))
}

/// Decodes an UPDATE body (message minus header). `Err` is the NOTIFICATION for a session
/// reset; everything RFC 7606 lets us survive comes back as `Ok` with
/// [`Update::errors`] saying what was done.
pub fn decode_update(body: &[u8], ctx: &UpdateCtx) -> Result<Update, Notification> {
    let malformed = || Notification::update(subcode::update::MALFORMED_ATTR_LIST, Vec::new());
    let invalid_network = || Notification::update(subcode::update::INVALID_NETWORK, Vec::new());
    if body.len() < 4 {
        return Err(malformed());
    }
    let wlen = be16(body);
    let wbuf = body.get(2..2 + wlen).ok_or_else(malformed)?;
    let alen = be16(body.get(2 + wlen..4 + wlen).ok_or_else(malformed)?);
    let abuf = body.get(4 + wlen..4 + wlen + alen).ok_or_else(malformed)?;
    let nbuf = &body[4 + wlen + alen..];

    let mut u = Update::default();
    Prefix4::parse_nlri(wbuf, &mut u.withdrawn4).map_err(|_| invalid_network())?;
    Prefix4::parse_nlri(nbuf, &mut u.nlri4).map_err(|_| invalid_network())?;
    if wlen == 0 && alen == 0 && nbuf.is_empty() {
        u.end_of_rib = Some(Afi::Ipv4);
        return Ok(u);
    }

    let mut seen = [false; 256];
    let mut withdraw = false;
    let mut kept: Vec<(u8, u8, &[u8])> = Vec::with_capacity(10);
    let mut mp_reach: Option<MpReach> = None;
    let mut mp_unreach_eor: Option<Afi> = None;
    let mut attr_count = 0;
    let mut pos = 0;
    while pos < abuf.len() {
        let rest = &abuf[pos..];
        let taw = |u: &mut Update, reason: &str| {
            u.errors.push(AttrError {
                type_code: 0,
                action: AttrAction::TreatAsWithdraw,
                reason: reason.to_owned(),
            })
        };
        if rest.len() < 3 {
            taw(&mut u, "attribute header truncated");
            withdraw = true;
            break;
        }
        let (fl, t) = (rest[0], rest[1]);
        let (hdr, len) = if fl & flags::EXTENDED != 0 {
            if rest.len() < 4 {
                taw(&mut u, "attribute header truncated");
                withdraw = true;
                break;
            }
            (4, be16(&rest[2..]))
        } else {
            (3, rest[2] as usize)
        };
        let Some(v) = rest.get(hdr..hdr + len) else {
            taw(&mut u, "attribute length runs past the attribute block");
            withdraw = true;
            break;
        };
        pos += hdr + len;
        attr_count += 1;
        if seen[t as usize] {
            if t == tc::MP_REACH || t == tc::MP_UNREACH {
                return Err(malformed());
            }
            u.errors.push(AttrError {
                type_code: t,
                action: AttrAction::AttributeDiscard,
                reason: "duplicate attribute".to_owned(),
            });
            continue;
        }
        seen[t as usize] = true;
        if t == tc::MP_REACH || t == tc::MP_UNREACH {
            if fl & flags::OPTIONAL == 0 || fl & flags::TRANSITIVE != 0 {
                return Err(Notification::update(
                    subcode::update::ATTR_FLAGS,
                    attr_bytes(fl, t, v),
                ));
            }
            if t == tc::MP_REACH {
                mp_reach = parse_mp_reach(fl, v, &mut u)?;
            } else {
                mp_unreach_eor = parse_mp_unreach(fl, v, &mut u)?;
            }
            continue;
        }
        match check_attr(fl, t, v, ctx) {
            Check::Keep => kept.push((fl, t, v)),
            Check::Discard("") => {}
            Check::Discard(reason) => u.errors.push(AttrError {
                type_code: t,
                action: AttrAction::AttributeDiscard,
                reason: reason.to_owned(),
            }),
            Check::Withdraw(reason) => {
                withdraw = true;
                u.errors.push(AttrError {
                    type_code: t,
                    action: AttrAction::TreatAsWithdraw,
                    reason: reason.to_owned(),
                });
            }
            Check::Reset(n) => return Err(n),
        }
    }

    if let Some(mp) = &mp_reach {
        if !mp.next_hop_ok {
            withdraw = true;
            u.errors.push(AttrError {
                type_code: tc::MP_REACH,
                action: AttrAction::TreatAsWithdraw,
                reason: "MP_REACH next hop is not a unicast address".to_owned(),
            });
        }
    }
    let has4 = !u.nlri4.is_empty();
    let has6 = !u.nlri6.is_empty();
    let mp4 = matches!(&mp_reach, Some(m) if m.afi == Afi::Ipv4);
    if !withdraw && (has4 || has6) {
        let missing = if !seen[tc::ORIGIN as usize] {
            Some(tc::ORIGIN)
        } else if !seen[tc::AS_PATH as usize] {
            Some(tc::AS_PATH)
        } else if has4 && !mp4 && !seen[tc::NEXT_HOP as usize] {
            Some(tc::NEXT_HOP)
        } else {
            None
        };
        if let Some(m) = missing {
            withdraw = true;
            u.errors.push(AttrError {
                type_code: m,
                action: AttrAction::TreatAsWithdraw,
                reason: "missing well-known mandatory attribute".to_owned(),
            });
        }
    }
    if attr_count == 1 && u.withdrawn4.is_empty() && !has4 && !has6 {
        u.end_of_rib = mp_unreach_eor;
    }
    if !(has4 || has6) {
        return Ok(u);
    }
    if !withdraw {
        let decoded = std::panic::catch_unwind(|| decode_values(&kept));
        match decoded {
            Ok(Ok(mut base)) => {
                let v4_nh = match &mp_reach {
                    Some(m) if m.afi == Afi::Ipv4 => Some(m.next_hop),
                    _ => base.next_hop,
                };
                if has6 {
                    let mut a6 = base.clone();
                    a6.next_hop = mp_reach
                        .as_ref()
                        .filter(|m| m.afi == Afi::Ipv6)
                        .map(|m| m.next_hop);
                    u.attrs6 = Some(a6);
                }
                if has4 {
                    base.next_hop = v4_nh;
                    u.attrs4 = Some(base);
                }
                return Ok(u);
            }
            Ok(Err(reason)) => u.errors.push(AttrError {
                type_code: 0,
                action: AttrAction::TreatAsWithdraw,
                reason,
            }),
            Err(_) => u.errors.push(AttrError {
                type_code: 0,
                action: AttrAction::TreatAsWithdraw,
                reason: "attribute decoder panicked".to_owned(),
            }),
        }
    }
    // Treat-as-withdraw (RFC 7606 §2): every NLRI in the UPDATE is withdrawn.
    let n4 = std::mem::take(&mut u.nlri4);
    u.withdrawn4.extend(n4);
    let n6 = std::mem::take(&mut u.nlri6);
    u.withdrawn6.extend(n6);
    Ok(u)
}

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

/// Second pass: values of attributes that passed the first pass, through zettabgp.
fn decode_values(kept: &[(u8, u8, &[u8])]) -> Result<PathAttrs, String> {
    let params = zparams();
    let mut a = PathAttrs::default();
    for &(fl, t, v) in kept {
        let known = matches!(
            t,
            tc::ORIGIN
                | tc::AS_PATH
                | tc::NEXT_HOP
                | tc::MED
                | tc::LOCAL_PREF
                | tc::ATOMIC_AGGREGATE
                | tc::AGGREGATOR
                | tc::COMMUNITIES
                | tc::ORIGINATOR_ID
                | tc::CLUSTER_LIST
                | tc::EXT_COMMUNITIES
                | tc::LARGE_COMMUNITY
        );
        if !known {
            a.unknown.push(RawAttr {
                flags: fl,
                type_code: t,
                value: v.to_vec(),
            });
            continue;
        }
        let item = BgpAttrItem::decode_from(&params, t, fl, v.len(), v)
            .map_err(|e| format!("attribute {t}: {e:?}"))?;
        match item {
            BgpAttrItem::Origin(o) => {
                a.origin = match o.value {
                    BgpAttrOrigin::Igp => Origin::Igp,
                    BgpAttrOrigin::Egp => Origin::Egp,
                    BgpAttrOrigin::Incomplete => Origin::Incomplete,
                }
            }
            BgpAttrItem::ASPath(p) => {
                let mut path = Vec::with_capacity(8);
                for seg in &p.value {
                    match seg {
                        zettabgp::prelude::BgpASitem::Seq(s) => {
                            path.extend(s.value.iter().map(|x| x.value))
                        }
                        zettabgp::prelude::BgpASitem::Set(_) => {
                            return Err("AS_SET after validation".to_owned());
                        }
                    }
                }
                a.as_path = Arc::from(path);
            }
            BgpAttrItem::NextHop(n) => a.next_hop = Some(n.value),
            BgpAttrItem::MED(m) => a.med = Some(m.value),
            BgpAttrItem::LocalPref(l) => a.local_pref = Some(l.value),
            BgpAttrItem::AtomicAggregate(_) => a.atomic_aggregate = true,
            BgpAttrItem::AggregatorAS(g) => a.aggregator = Some((g.asn, g.addr)),
            BgpAttrItem::CommunityList(c) => {
                a.communities = c.value.iter().map(|c| c.value).collect()
            }
            BgpAttrItem::LargeCommunityList(l) => {
                a.large_communities = l
                    .value
                    .iter()
                    .map(|c| LargeCommunity(c.ga, c.ldp1, c.ldp2))
                    .collect()
            }
            BgpAttrItem::ExtCommunityList(e) => {
                a.ext_communities = e
                    .value
                    .iter()
                    .map(|c| {
                        ((c.ctype as u64) << 56)
                            | ((c.subtype as u64) << 48)
                            | ((c.a as u64) << 32)
                            | c.b as u64
                    })
                    .collect()
            }
            BgpAttrItem::OriginatorID(o) => match o.value {
                IpAddr::V4(x) => a.originator_id = Some(x),
                IpAddr::V6(_) => return Err("ORIGINATOR_ID is not 4 octets".to_owned()),
            },
            BgpAttrItem::ClusterList(c) => {
                for id in c.value {
                    match id {
                        IpAddr::V4(x) => a.cluster_list.push(x),
                        IpAddr::V6(_) => return Err("CLUSTER_LIST entry size".to_owned()),
                    }
                }
            }
            _ => {
                a.unknown.push(RawAttr {
                    flags: fl,
                    type_code: t,
                    value: v.to_vec(),
                });
            }
        }
    }
    Ok(a)
}
