//! Export: what each peer gets (RFC 4271 §9.1.3, RFC 4456 §8, RFC 1997, RFC 8212) and the
//! Adj-RIB-Out that remembers it.
//!
//! Per (best path, target peer): never back to the peer it came from; NO_ADVERTISE to
//! nobody, NO_EXPORT not to eBGP; iBGP split horizon unless we reflect (client routes to
//! everyone, non-client routes to clients only); RFC 8212 default deny to eBGP without an
//! export policy; then the policy. Attributes: towards eBGP prepend our AS, drop LOCAL_PREF,
//! MED (unless ours), ORIGINATOR_ID and CLUSTER_LIST, next hop self unless `keep`; towards
//! iBGP keep the next hop unless `self`, set LOCAL_PREF, and when reflecting add
//! ORIGINATOR_ID and prepend our CLUSTER_ID. The transformed attribute sets are interned and
//! cached per batch, so a million routes with eight attribute sets cost eight transforms.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::attrs::{AttrId, AttrStore};
use super::table::{MapSlot, PathRef, PrefixMap};
use super::{Fam, LOCAL, Parts, RibPeer};
use crate::config::NextHopMode;
use crate::policy::Verdict;
use crate::prefix::{Afi, Prefix4, Prefix6, PrefixKey};
use crate::wire::attrs::community;
use crate::wire::encode;

type CacheKey = (u32, u16, u16);

/// One peer's Adj-RIB-Out of a family, plus what is queued for its next UPDATEs.
pub struct PeerOut<P: PrefixKey> {
    pub(crate) adj: PrefixMap<P, u32>,
    /// Queued announcements by attribute id (ordered: same input, same bytes out).
    announce: BTreeMap<u32, Vec<P>>,
    withdraw: Vec<P>,
    cache: HashMap<CacheKey, Option<u32>>,
    last: Option<(CacheKey, Option<u32>)>,
}

impl<P: PrefixKey> Default for PeerOut<P> {
    fn default() -> Self {
        PeerOut {
            adj: PrefixMap::default(),
            announce: BTreeMap::new(),
            withdraw: Vec::new(),
            cache: HashMap::new(),
            last: None,
        }
    }
}

/// Encoding of one family's UPDATEs.
pub trait WireFamily: PrefixKey {
    /// Appends withdrawals.
    fn push_withdraw(out: &mut Vec<u8>, prefixes: &[Self]);
    /// Appends announcements.
    fn push_announce(
        out: &mut Vec<u8>,
        attrs: &crate::wire::PathAttrs,
        prefixes: &[Self],
    ) -> Result<(), crate::Error>;
}

impl WireFamily for Prefix4 {
    fn push_withdraw(out: &mut Vec<u8>, prefixes: &[Self]) {
        encode::push_withdraw4(out, prefixes);
    }
    fn push_announce(
        out: &mut Vec<u8>,
        attrs: &crate::wire::PathAttrs,
        prefixes: &[Self],
    ) -> Result<(), crate::Error> {
        let w = encode::encode_path_attrs(attrs, Afi::Ipv4)?;
        encode::push_announce4(out, &w, prefixes)
    }
}

impl WireFamily for Prefix6 {
    fn push_withdraw(out: &mut Vec<u8>, prefixes: &[Self]) {
        if let Err(e) = encode::push_withdraw6(out, prefixes) {
            tracing::warn!("cannot encode IPv6 withdrawals: {e}");
        }
    }
    fn push_announce(
        out: &mut Vec<u8>,
        attrs: &crate::wire::PathAttrs,
        prefixes: &[Self],
    ) -> Result<(), crate::Error> {
        let Some(IpAddr::V6(nh)) = attrs.next_hop else {
            return Err(crate::Error::Encode(
                "IPv6 route without IPv6 next hop".into(),
            ));
        };
        let w = encode::encode_path_attrs(attrs, Afi::Ipv6)?;
        encode::push_announce6(out, &w, nh, prefixes)
    }
}

impl<P: WireFamily> PeerOut<P> {
    /// Encodes what is queued into `wire` and ends the batch (drops the transform cache).
    pub(crate) fn flush(&mut self, attrs: &mut AttrStore, wire: &mut Vec<u8>) {
        if !self.withdraw.is_empty() {
            P::push_withdraw(wire, &self.withdraw);
            self.withdraw = Vec::new();
        }
        for (id, prefixes) in std::mem::take(&mut self.announce) {
            if let Err(e) = P::push_announce(wire, attrs.get(AttrId(id)), &prefixes) {
                tracing::warn!("cannot encode {} routes: {e}", prefixes.len());
            }
        }
        for v in self.cache.drain().filter_map(|(_, v)| v) {
            attrs.release(AttrId(v));
        }
        self.last = None;
    }

    /// Drops everything, releasing attribute references.
    pub(crate) fn release_all(self, attrs: &mut AttrStore) {
        for s in self.adj.iter() {
            attrs.release(AttrId(s.value));
        }
        for v in self.cache.into_values().flatten() {
            attrs.release(AttrId(v));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Local,
    Ebgp,
    IbgpClient,
    IbgpNonClient,
}

/// The attributes `best` is exported with to `target`, or `None` when it is not exported.
/// The returned id is held by the batch cache (no reference for the caller).
fn transform<P: Fam>(
    parts: &mut Parts<'_>,
    prefix: &P,
    best: PathRef,
    target: u16,
) -> Option<AttrId> {
    if best.peer == target {
        return None;
    }
    let (src, src_router_id) = if best.peer == LOCAL {
        (Source::Local, parts.cfg.router_id)
    } else {
        let s = parts.peers.get(best.peer as usize)?.as_ref()?;
        let kind = if s.ebgp {
            Source::Ebgp
        } else if s.rr_client {
            Source::IbgpClient
        } else {
            Source::IbgpNonClient
        };
        (kind, s.router_id)
    };
    let attrs = parts.attrs.get(AttrId(best.attr)).clone();
    let t: &RibPeer = parts.peers.get(target as usize)?.as_ref()?;
    if attrs.has_community(community::NO_ADVERTISE) {
        return None;
    }
    if t.ebgp
        && (attrs.has_community(community::NO_EXPORT)
            || attrs.has_community(community::NO_EXPORT_SUBCONFED))
    {
        return None;
    }
    let reflecting = parts.cfg.cluster_id.is_some();
    if !t.ebgp {
        let ok = match src {
            Source::Local | Source::Ebgp => true,
            Source::IbgpClient => reflecting,
            Source::IbgpNonClient => reflecting && t.rr_client,
        };
        if !ok {
            return None;
        }
    }
    if t.ebgp && t.export.is_none() && parts.cfg.ebgp_requires_policy {
        return None;
    }
    let term = match &t.export {
        None => None,
        Some(pol) => match pol.evaluate_route(prefix, &attrs, src != Source::Local) {
            Verdict::Reject => return None,
            Verdict::Accept(term) => term,
        },
    };
    let key: CacheKey = (
        best.attr,
        best.peer,
        term.map_or(0, |x| (x as u16).saturating_add(1)),
    );
    let t_out = P::out(parts.peers.get_mut(target as usize)?.as_mut()?);
    if let Some((k, v)) = t_out.last {
        if k == key {
            return v.map(AttrId);
        }
    }
    if let Some(&v) = t_out.cache.get(&key) {
        t_out.last = Some((key, v));
        return v.map(AttrId);
    }
    let t: &RibPeer = parts.peers.get(target as usize)?.as_ref()?;
    let mut a = (*attrs).clone();
    let set = match (&t.export, term) {
        (Some(pol), Some(i)) => pol.set_actions(Some(i)),
        _ => None,
    };
    // A policy's prepend goes in front of the path before our own AS, as BIRD's export
    // filters run before the protocol adds it.
    if let Some(set) = set {
        set.prepend_path(&mut a);
    }
    if t.ebgp {
        let mut path = Vec::with_capacity(a.as_path.len() + 1);
        path.push(t.local_as);
        path.extend_from_slice(&a.as_path);
        a.as_path = Arc::from(path);
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
        if src != Source::Local {
            // RFC 4271 §5.1.4: a MED received from a neighbouring AS is not passed on.
            a.med = None;
        }
    } else {
        a.local_pref = Some(a.local_pref.unwrap_or(100));
        if matches!(src, Source::IbgpClient | Source::IbgpNonClient) {
            // RFC 4456 §8.
            a.originator_id.get_or_insert(src_router_id);
            let cluster = parts.cfg.cluster_id.unwrap_or(parts.cfg.router_id);
            a.cluster_list.insert(0, cluster);
        }
    }
    let keep = match t.next_hop {
        NextHopMode::Auto => !t.ebgp,
        NextHopMode::SelfAddress => false,
        NextHopMode::Keep => true,
    };
    let family_ok = |ip: &IpAddr| match P::AFI {
        Afi::Ipv4 => ip.is_ipv4(),
        Afi::Ipv6 => ip.is_ipv6(),
    };
    let own = match P::AFI {
        Afi::Ipv4 => t
            .session_local
            .filter(IpAddr::is_ipv4)
            .or(t.local_address.filter(IpAddr::is_ipv4)),
        Afi::Ipv6 => t
            .next_hop_v6
            .map(IpAddr::V6)
            .or(t.session_local.filter(IpAddr::is_ipv6))
            .or(t.local_address.filter(IpAddr::is_ipv6)),
    };
    let kept = a.next_hop.filter(family_ok);
    a.next_hop = if keep { kept.or(own) } else { own };
    if let Some(set) = set {
        set.apply_attributes(&mut a);
        if t.ebgp {
            a.local_pref = None;
        }
    }
    let result = if a.next_hop.is_some() {
        Some(parts.attrs.intern(a).0)
    } else {
        tracing::debug!(
            "no {:?} next hop towards peer {}; not exported",
            P::AFI,
            t.addr
        );
        None
    };
    let t_out = P::out(parts.peers.get_mut(target as usize)?.as_mut()?);
    t_out.cache.insert(key, result);
    t_out.last = Some((key, result));
    result.map(AttrId)
}

/// Exports the (new) best path of `prefix` to peer `target`, queueing an announcement or a
/// withdrawal when it differs from the Adj-RIB-Out.
pub(crate) fn export_one<P: Fam>(
    parts: &mut Parts<'_>,
    prefix: &P,
    best: Option<PathRef>,
    target: u16,
) {
    let out = best.and_then(|b| transform(parts, prefix, b, target));
    let Some(Some(t)) = parts.peers.get_mut(target as usize) else {
        return;
    };
    let po = P::out(t);
    let old = po.adj.get(prefix).map(|s| s.value);
    if old == out.map(|a| a.0) {
        return;
    }
    match out {
        Some(id) => {
            parts.attrs.retain(id);
            if let Some(prev) = po.adj.insert(MapSlot {
                prefix: *prefix,
                value: id.0,
            }) {
                parts.attrs.release(AttrId(prev.value));
            }
            po.announce.entry(id.0).or_default().push(*prefix);
        }
        None => {
            if let Some(prev) = po.adj.remove(prefix) {
                parts.attrs.release(AttrId(prev.value));
                po.withdraw.push(*prefix);
            }
        }
    }
}

/// Exports the whole Loc-RIB of a family to `target` (session up, export policy change,
/// route refresh).
pub(crate) fn export_all<P: Fam>(rib: &mut super::Rib, target: u16) {
    if rib.pending() > 0 {
        rib.process();
    }
    let (fam, mut parts) = P::split(rib);
    let up = parts
        .peers
        .get(target as usize)
        .and_then(Option::as_ref)
        .is_some_and(|p| p.up && p.families.contains(&P::AFI));
    if !up {
        return;
    }
    for s in fam.table.slots.iter() {
        export_one(&mut parts, &s.prefix, s.best(), target);
    }
}
