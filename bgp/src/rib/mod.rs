//! The RIB: Adj-RIBs-In, Loc-RIB and Adj-RIBs-Out (RFC 4271 §3.2), sans-IO.
//!
//! Layout, chosen for millions of routes at a few dozen octets each:
//! - [`table::PathTable`] per family holds, per destination, every peer's path (the
//!   Adj-RIB-In entries, post-import; paths refused on import are kept, flagged, for counts
//!   and explanations) with the Loc-RIB best first. A path is 8 octets: peer index, flags,
//!   reject reason, interned attribute id ([`attrs::AttrStore`]).
//! - [`AdjRibIn`] and [`LocRib`] are read views over it; [`AdjRibOut`] is a real per-peer
//!   table (prefix → attributes sent).
//!
//! Changes are batched: updates and withdrawals only touch paths and queue the prefix;
//! [`Rib::process`] then runs the decision process once per queued prefix, emits
//! [`RouteEvent`]s for learned best-path changes, runs export for every Established peer and
//! encodes packed UPDATEs into each peer's output buffer ([`Rib::take_wire`]).

pub mod attrs;
pub mod decision;
mod export;
mod paths;
pub mod table;
mod views;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use self::attrs::{AttrId, AttrStore};
pub use self::export::PeerOut;
use self::paths::{accepted_count, holds_accepted, prefixes_of, process_family, remove, upsert};
use self::table::{PF_REJECTED, PF_STALE, PathRef, PathTable};
pub use self::views::{AdjRibIn, AdjRibOut, LocRib};
use crate::config::{ImportLimit, LimitAction, NextHopMode, OriginAttrs, PeerConfig};
pub use crate::events::RejectReason;
use crate::events::{LearnedRoute, PathInfo, RouteEvent};
use crate::policy::{Policy, Verdict};
use crate::prefix::{Afi, Prefix, Prefix4, Prefix6, PrefixKey};
use crate::wire::{GracefulRestartCap, PathAttrs, Update};

/// Peer index of locally originated routes.
pub const LOCAL: u16 = 0;

/// Speaker-wide settings the RIB needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RibConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our CLUSTER_ID when we are a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// RFC 8212 default deny for eBGP peers without policy.
    pub ebgp_requires_policy: bool,
}

/// Per-peer prefix counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Paths held from the peer (accepted, or refused by policy; routes refused by an
    /// import limit are not held).
    pub received: u64,
    /// Paths accepted by import.
    pub accepted: u64,
    /// Paths kept stale (graceful restart).
    pub stale: u64,
}

/// What the RIB knows about one peer: its configuration, the running session and its
/// Adj-RIB-Out. Owned by the [`Rib`]; written by the speaker on config and session changes.
pub struct RibPeer {
    /// Address.
    pub addr: IpAddr,
    /// Name.
    pub name: String,
    /// Our AS on this session.
    pub local_as: u32,
    /// eBGP.
    pub ebgp: bool,
    /// Route-reflector client.
    pub rr_client: bool,
    /// Next-hop handling.
    pub next_hop: NextHopMode,
    /// IPv6 next hop for next-hop-self.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Configured source address.
    pub local_address: Option<IpAddr>,
    /// Own-AS occurrences allowed in AS_PATH.
    pub num_allowed_local_as: u8,
    /// Import policy.
    pub import: Option<Policy>,
    /// Export policy.
    pub export: Option<Policy>,
    /// BGP identifier of the peer (last session).
    pub router_id: Ipv4Addr,
    /// Session Established.
    pub up: bool,
    /// Families negotiated.
    pub families: Vec<Afi>,
    /// Our address on the current connection.
    pub session_local: Option<IpAddr>,
    /// Families whose stale routes wait for End-of-RIB.
    pub stale_families: Vec<Afi>,
    /// Counters.
    pub counters: Counters,
    /// Cap on accepted routes.
    pub import_limit: Option<ImportLimit>,
    /// The limit has been reported since the count last fell below it.
    pub limit_reported: bool,
    out4: PeerOut<Prefix4>,
    out6: PeerOut<Prefix6>,
    wire: Vec<u8>,
}

impl RibPeer {
    /// A peer from its configuration.
    pub fn new(cfg: &PeerConfig, speaker_as: u32) -> RibPeer {
        let mut p = RibPeer {
            addr: cfg.address,
            name: String::new(),
            local_as: 0,
            ebgp: false,
            rr_client: false,
            next_hop: NextHopMode::Auto,
            next_hop_v6: None,
            local_address: None,
            num_allowed_local_as: 0,
            import: None,
            export: None,
            router_id: Ipv4Addr::UNSPECIFIED,
            up: false,
            families: Vec::new(),
            session_local: None,
            stale_families: Vec::new(),
            counters: Counters::default(),
            import_limit: None,
            limit_reported: false,
            out4: PeerOut::default(),
            out6: PeerOut::default(),
            wire: Vec::new(),
        };
        p.configure(cfg, speaker_as);
        p
    }

    /// Applies (new) configuration; returns (import changed, export changed).
    pub fn configure(&mut self, cfg: &PeerConfig, speaker_as: u32) -> (bool, bool) {
        // A new import limit counts as an import change: routes refused under the old one
        // were not kept, so they are asked for again.
        let import_changed = self.import != cfg.import
            || self.num_allowed_local_as != cfg.num_allowed_local_as
            || self.import_limit != cfg.import_limit;
        let export_changed = self.export != cfg.export
            || self.next_hop != cfg.next_hop
            || self.next_hop_v6 != cfg.next_hop_v6
            || self.rr_client != cfg.route_reflector_client;
        self.name = cfg.name.clone();
        self.local_as = cfg.effective_local_as(speaker_as);
        self.ebgp = cfg.is_ebgp(speaker_as);
        self.rr_client = cfg.route_reflector_client;
        self.next_hop = cfg.next_hop;
        self.next_hop_v6 = cfg.next_hop_v6;
        self.local_address = cfg.local_address;
        self.num_allowed_local_as = cfg.num_allowed_local_as;
        self.import = cfg.import.clone();
        self.export = cfg.export.clone();
        self.import_limit = cfg.import_limit;
        (import_changed, export_changed)
    }

    /// Prefixes in the Adj-RIB-Out.
    pub fn advertised(&self) -> u64 {
        (self.out4.adj.len() + self.out6.adj.len()) as u64
    }
}

/// Session facts the RIB needs when a peer comes up.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeerUp {
    /// Peer BGP identifier.
    pub router_id: Ipv4Addr,
    /// Negotiated families.
    pub families: Vec<Afi>,
    /// Our address on the connection.
    pub local_addr: Option<IpAddr>,
    /// The peer's graceful-restart capability on the new session.
    pub graceful_restart: Option<GracefulRestartCap>,
}

/// Per-family state.
pub struct Family<P: PrefixKey> {
    table: PathTable<P>,
    dirty: Vec<(P, Option<PathRef>)>,
}

impl<P: PrefixKey> Default for Family<P> {
    fn default() -> Self {
        Family {
            table: PathTable::default(),
            dirty: Vec::new(),
        }
    }
}

/// The routing information bases of one speaker.
pub struct Rib {
    cfg: RibConfig,
    attrs: AttrStore,
    v4: Family<Prefix4>,
    v6: Family<Prefix6>,
    peers: Vec<Option<RibPeer>>,
    events: Vec<RouteEvent>,
    scratch: Vec<PathRef>,
    /// Peers whose import limit was just reached (see [`Rib::take_limit_trips`]).
    limit_trips: Vec<u16>,
    /// Report learned best-path changes as events.
    pub emit_events: bool,
}

/// Borrowed pieces of the RIB other than one family's table.
pub(crate) struct Parts<'a> {
    pub cfg: &'a RibConfig,
    pub attrs: &'a mut AttrStore,
    pub peers: &'a mut Vec<Option<RibPeer>>,
    pub events: &'a mut Vec<RouteEvent>,
    pub scratch: &'a mut Vec<PathRef>,
    pub emit_events: bool,
}

/// A family's prefix type, with access to its parts of the RIB.
pub(crate) trait Fam: PrefixKey {
    fn split(rib: &mut Rib) -> (&mut Family<Self>, Parts<'_>);
    fn family(rib: &Rib) -> &Family<Self>;
    fn out(p: &mut RibPeer) -> &mut PeerOut<Self>;
}

impl Fam for Prefix4 {
    fn split(rib: &mut Rib) -> (&mut Family<Self>, Parts<'_>) {
        let Rib {
            cfg,
            attrs,
            v4,
            peers,
            events,
            scratch,
            emit_events,
            ..
        } = rib;
        (
            v4,
            Parts {
                cfg,
                attrs,
                peers,
                events,
                scratch,
                emit_events: *emit_events,
            },
        )
    }
    fn family(rib: &Rib) -> &Family<Self> {
        &rib.v4
    }
    fn out(p: &mut RibPeer) -> &mut PeerOut<Self> {
        &mut p.out4
    }
}

impl Fam for Prefix6 {
    fn split(rib: &mut Rib) -> (&mut Family<Self>, Parts<'_>) {
        let Rib {
            cfg,
            attrs,
            v6,
            peers,
            events,
            scratch,
            emit_events,
            ..
        } = rib;
        (
            v6,
            Parts {
                cfg,
                attrs,
                peers,
                events,
                scratch,
                emit_events: *emit_events,
            },
        )
    }
    fn family(rib: &Rib) -> &Family<Self> {
        &rib.v6
    }
    fn out(p: &mut RibPeer) -> &mut PeerOut<Self> {
        &mut p.out6
    }
}

/// Flags every path of `peer` stale; returns how many.
fn mark_stale<P: PrefixKey>(t: &mut PathTable<P>, peer: u16) -> u64 {
    let mut n = 0;
    t.slots.for_each_mut(|s| {
        if s.peer == peer {
            s.pflags |= PF_STALE;
            n += 1;
        }
    });
    t.more.for_each_mut(|m| {
        for x in m.paths.iter_mut().filter(|x| x.peer == peer) {
            x.flags |= PF_STALE;
            n += 1;
        }
    });
    n
}

// ===== impl Rib =====

impl Rib {
    /// An empty RIB.
    pub fn new(cfg: RibConfig) -> Rib {
        Rib {
            cfg,
            attrs: AttrStore::default(),
            v4: Family::default(),
            v6: Family::default(),
            peers: vec![None],
            events: Vec::new(),
            scratch: Vec::new(),
            limit_trips: Vec::new(),
            emit_events: true,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RibConfig {
        &self.cfg
    }

    /// Registers a peer; returns its index.
    pub fn add_peer(&mut self, cfg: &PeerConfig) -> u16 {
        let p = RibPeer::new(cfg, self.cfg.local_as);
        if let Some(i) = self.peers.iter().skip(1).position(Option::is_none) {
            self.peers[i + 1] = Some(p);
            return (i + 1) as u16;
        }
        self.peers.push(Some(p));
        (self.peers.len() - 1) as u16
    }

    /// The peer at `idx`.
    pub fn peer(&self, idx: u16) -> Option<&RibPeer> {
        self.peers.get(idx as usize).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, idx: u16) -> Option<&mut RibPeer> {
        self.peers.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// Applies new configuration to a peer; returns (import changed, export changed). An
    /// export change is applied at once (the Adj-RIB-Out is recomputed); an import change
    /// needs the peer's routes again (route refresh or session reset, the caller's call).
    pub fn configure_peer(&mut self, idx: u16, cfg: &PeerConfig) -> (bool, bool) {
        let speaker_as = self.cfg.local_as;
        let Some(p) = self.peer_mut(idx) else {
            return (false, false);
        };
        let changed = p.configure(cfg, speaker_as);
        if changed.1 && p.up {
            self.refresh_export(idx);
        }
        changed
    }

    /// Removes a peer and every route learned from it.
    pub fn remove_peer(&mut self, idx: u16) {
        self.peer_down(idx, &[]);
        if let Some(slot) = self.peers.get_mut(idx as usize) {
            *slot = None;
        }
    }

    /// The session with peer `idx` reached Established: stale routes of families the new
    /// session cannot restore are flushed (RFC 4724 §4.2), and the whole Loc-RIB is
    /// exported to it followed by End-of-RIB markers.
    pub fn peer_up(&mut self, idx: u16, up: PeerUp) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        p.up = true;
        p.router_id = up.router_id;
        p.families = up.families.clone();
        p.session_local = up.local_addr;
        let stale = std::mem::take(&mut p.stale_families);
        let mut keep = Vec::new();
        for afi in stale {
            let preserved = up
                .graceful_restart
                .as_ref()
                .is_some_and(|gr| gr.families.iter().any(|&(a, f)| a == afi && f))
                && up.families.contains(&afi);
            if preserved {
                keep.push(afi);
            } else {
                self.flush_stale(idx, Some(afi));
            }
        }
        if let Some(p) = self.peer_mut(idx) {
            p.stale_families = keep;
        }
        self.refresh_export(idx);
        if let Some(p) = self.peer_mut(idx) {
            for afi in p.families.clone() {
                crate::wire::encode::push_end_of_rib(&mut p.wire, afi);
            }
        }
    }

    /// The session with peer `idx` went down. Routes of the families in `keep` stay as
    /// stale (graceful-restart helper, RFC 4724 §4.2: the families the peer listed in its
    /// capability) until [`Rib::flush_stale`]; the others are withdrawn.
    pub fn peer_down(&mut self, idx: u16, keep: &[Afi]) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        p.up = false;
        p.session_local = None;
        p.wire.clear();
        let (o4, o6) = (std::mem::take(&mut p.out4), std::mem::take(&mut p.out6));
        o4.release_all(&mut self.attrs);
        o6.release_all(&mut self.attrs);
        let mut stale = 0u64;
        if keep.contains(&Afi::Ipv4) {
            stale += mark_stale(&mut self.v4.table, idx);
        } else {
            self.withdraw_peer::<Prefix4>(idx, |_| true);
        }
        if keep.contains(&Afi::Ipv6) {
            stale += mark_stale(&mut self.v6.table, idx);
        } else {
            self.withdraw_peer::<Prefix6>(idx, |_| true);
        }
        if let Some(p) = self.peer_mut(idx) {
            p.counters.stale = stale;
            p.stale_families = keep.to_vec();
        }
    }

    fn withdraw_peer<P: Fam>(&mut self, idx: u16, f: impl Fn(PathRef) -> bool) {
        let prefixes = prefixes_of(P::family(self), idx, f);
        let (fam, mut parts) = P::split(self);
        for p in prefixes {
            remove(fam, &mut parts, &p, idx);
        }
    }

    /// Drops the stale routes of `idx` (of one family, or all): its End-of-RIB arrived or
    /// its restart / stale-path timer expired.
    pub fn flush_stale(&mut self, idx: u16, afi: Option<Afi>) {
        let stale = |p: PathRef| p.flags & PF_STALE != 0;
        if afi != Some(Afi::Ipv6) {
            self.withdraw_peer::<Prefix4>(idx, stale);
        }
        if afi != Some(Afi::Ipv4) {
            self.withdraw_peer::<Prefix6>(idx, stale);
        }
        if let Some(p) = self.peer_mut(idx) {
            match afi {
                Some(a) => p.stale_families.retain(|x| *x != a),
                None => p.stale_families.clear(),
            }
        }
    }

    /// True while `idx` has stale routes waiting.
    pub fn has_stale(&self, idx: u16) -> bool {
        self.peer(idx).is_some_and(|p| !p.stale_families.is_empty())
    }

    fn import<P: Fam>(&mut self, idx: u16, nlri: &[P], attrs: PathAttrs) {
        let Some(peer) = self.peer(idx) else {
            return;
        };
        let pre = self.import_check(peer, &attrs);
        let policy = peer.import.clone();
        let block_at = peer
            .import_limit
            .filter(|l| l.action == LimitAction::Block)
            .map(|l| l.max);
        let (fam, mut parts) = P::split(self);
        let base = parts.attrs.intern(attrs);
        let base_attrs = parts.attrs.get(base).clone();
        let mut modified: Vec<(Option<usize>, AttrId)> = Vec::new();
        // A policy that does not look at the prefix decides once for the whole UPDATE.
        let fixed = match (&policy, nlri.first()) {
            (Some(pol), Some(first)) if !pol.depends_on_prefix() => {
                Some(pol.evaluate(first, &base_attrs))
            }
            _ => None,
        };
        let mut base_refs = 0u32;
        let mut refused_by_limit = false;
        for &prefix in nlri {
            let (attr, flags, reason) = match (pre, &policy) {
                (Err(r), _) => (base, PF_REJECTED, r),
                (Ok(()), None) => (base, 0, RejectReason::None),
                (Ok(()), Some(pol)) => {
                    match fixed.unwrap_or_else(|| pol.evaluate(&prefix, &base_attrs)) {
                        Verdict::Reject => (base, PF_REJECTED, RejectReason::ImportPolicy),
                        Verdict::Accept(t) => match pol.set_actions(t) {
                            None => (base, 0, RejectReason::None),
                            Some(set) => {
                                let id = match modified.iter().find(|(x, _)| *x == t) {
                                    Some(&(_, id)) => id,
                                    None => {
                                        let mut a = (*base_attrs).clone();
                                        set.apply(&mut a);
                                        let id = parts.attrs.intern(a);
                                        modified.push((t, id));
                                        id
                                    }
                                };
                                (id, 0, RejectReason::None)
                            }
                        },
                    }
                }
            };
            // Block: once the limit is reached, routes the peer did not have accepted
            // already are refused (an update of an accepted one is not a new route), and
            // not kept either: the limit bounds what a peer makes us hold. Its earlier
            // path for the prefix, replaced by this announcement, goes too.
            if let Some(max) = block_at
                && flags == 0
                && accepted_count(parts.peers, idx) >= max
                && !holds_accepted(fam, &prefix, idx)
            {
                refused_by_limit = true;
                remove(fam, &mut parts, &prefix, idx);
                continue;
            }
            if attr == base {
                base_refs += 1;
            } else {
                parts.attrs.retain(attr);
            }
            upsert(
                fam,
                &mut parts,
                prefix,
                PathRef {
                    peer: idx,
                    flags,
                    reason: reason as u8,
                    attr: attr.0,
                },
            );
        }
        parts.attrs.retain_n(base, base_refs);
        parts.attrs.release(base);
        for (_, id) in modified {
            parts.attrs.release(id);
        }
        if refused_by_limit {
            self.limit_reached(idx);
        }
    }

    /// Reports peer `idx`'s import limit as reached, once until the count falls below it.
    fn limit_reached(&mut self, idx: u16) {
        if let Some(p) = self.peer_mut(idx) {
            if !std::mem::replace(&mut p.limit_reported, true) {
                self.limit_trips.push(idx);
            }
        }
    }

    /// Prefix-independent import checks: RFC 8212, own-AS loop, RFC 4456 loops.
    fn import_check(&self, peer: &RibPeer, a: &PathAttrs) -> Result<(), RejectReason> {
        if peer.ebgp && peer.import.is_none() && self.cfg.ebgp_requires_policy {
            return Err(RejectReason::NoImportPolicy);
        }
        let own = a
            .as_path
            .iter()
            .filter(|&&x| x == peer.local_as || x == self.cfg.local_as)
            .count();
        if own > peer.num_allowed_local_as as usize {
            return Err(RejectReason::AsLoop);
        }
        if !peer.ebgp {
            if a.originator_id == Some(self.cfg.router_id) {
                return Err(RejectReason::OriginatorLoop);
            }
            let cluster = self.cfg.cluster_id.unwrap_or(self.cfg.router_id);
            if a.cluster_list.contains(&cluster) {
                return Err(RejectReason::ClusterLoop);
            }
        }
        if a.next_hop.is_none() {
            return Err(RejectReason::NextHop);
        }
        Ok(())
    }

    /// Applies a received UPDATE from peer `idx` (queues the changed prefixes).
    pub fn apply_update(&mut self, idx: u16, u: Update) {
        let Update {
            withdrawn4,
            nlri4,
            attrs4,
            withdrawn6,
            nlri6,
            attrs6,
            end_of_rib,
            ..
        } = u;
        {
            let (fam, mut parts) = Prefix4::split(self);
            for p in &withdrawn4 {
                remove(fam, &mut parts, p, idx);
            }
        }
        {
            let (fam, mut parts) = Prefix6::split(self);
            for p in &withdrawn6 {
                remove(fam, &mut parts, p, idx);
            }
        }
        if let (false, Some(a)) = (nlri4.is_empty(), attrs4) {
            self.import(idx, &nlri4, a);
        }
        if let (false, Some(a)) = (nlri6.is_empty(), attrs6) {
            self.import(idx, &nlri6, a);
        }
        if let Some(afi) = end_of_rib {
            if self
                .peer(idx)
                .is_some_and(|p| p.stale_families.contains(&afi))
            {
                self.flush_stale(idx, Some(afi));
            }
        }
        self.check_import_limit(idx);
    }

    /// Notes a peer whose accepted routes reached its import limit (once, until the count
    /// falls below it again); the speaker takes the limit's action.
    fn check_import_limit(&mut self, idx: u16) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        let Some(limit) = p.import_limit else {
            return;
        };
        let accepted = p.counters.accepted;
        // Block stops at the limit (reported by the import); the others act past it.
        if limit.action != LimitAction::Block && accepted > limit.max {
            self.limit_reached(idx);
        } else if accepted < limit.max {
            p.limit_reported = false;
        }
    }

    /// Peers whose import limit was reached since the last call.
    pub fn take_limit_trips(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.limit_trips)
    }

    /// Originates (or updates) local routes.
    pub fn originate(&mut self, routes: Vec<(IpNet, OriginAttrs)>) {
        for (net, oa) in routes {
            let mut communities = oa.communities;
            communities.sort_unstable();
            communities.dedup();
            let mut large = oa.large_communities;
            large.sort_unstable();
            large.dedup();
            let a = PathAttrs {
                origin: oa.origin,
                as_path: Arc::from(Vec::new()),
                next_hop: oa.next_hop,
                med: oa.med,
                local_pref: oa.local_pref,
                communities,
                large_communities: large,
                ..PathAttrs::default()
            };
            let path = |attr: AttrId| PathRef {
                peer: LOCAL,
                flags: 0,
                reason: 0,
                attr: attr.0,
            };
            match Prefix::from(net) {
                Prefix::V4(p) => {
                    let (fam, mut parts) = Prefix4::split(self);
                    let id = parts.attrs.intern(a);
                    upsert(fam, &mut parts, p, path(id));
                }
                Prefix::V6(p) => {
                    let (fam, mut parts) = Prefix6::split(self);
                    let id = parts.attrs.intern(a);
                    upsert(fam, &mut parts, p, path(id));
                }
            }
        }
    }

    /// Withdraws local routes.
    pub fn withdraw_local(&mut self, nets: Vec<IpNet>) {
        for net in nets {
            match Prefix::from(net) {
                Prefix::V4(p) => {
                    let (fam, mut parts) = Prefix4::split(self);
                    remove(fam, &mut parts, &p, LOCAL);
                }
                Prefix::V6(p) => {
                    let (fam, mut parts) = Prefix6::split(self);
                    remove(fam, &mut parts, &p, LOCAL);
                }
            }
        }
    }

    /// The peer asked for our routes again (RFC 2918): resend the whole Adj-RIB-Out of
    /// that family.
    pub fn route_refresh(&mut self, idx: u16, afi: Afi) {
        let Some(p) = self.peer_mut(idx) else {
            return;
        };
        match afi {
            Afi::Ipv4 => std::mem::take(&mut p.out4).release_all(&mut self.attrs),
            Afi::Ipv6 => std::mem::take(&mut p.out6).release_all(&mut self.attrs),
        }
        match afi {
            Afi::Ipv4 => export::export_all::<Prefix4>(self, idx),
            Afi::Ipv6 => export::export_all::<Prefix6>(self, idx),
        }
        self.finish_round();
    }

    /// Recomputes everything exported to `idx` (after an export policy change or when the
    /// session comes up) and queues the differences.
    pub fn refresh_export(&mut self, idx: u16) {
        export::export_all::<Prefix4>(self, idx);
        export::export_all::<Prefix6>(self, idx);
        self.finish_round();
    }

    /// Prefixes queued for the decision process.
    pub fn pending(&self) -> usize {
        self.v4.dirty.len() + self.v6.dirty.len()
    }

    /// Runs the decision process on everything queued, collects events and encodes
    /// UPDATEs. Returns the number of prefixes whose best path changed.
    pub fn process(&mut self) -> usize {
        let n = process_family::<Prefix4>(self) + process_family::<Prefix6>(self);
        self.finish_round();
        n
    }

    fn finish_round(&mut self) {
        let Rib { peers, attrs, .. } = self;
        for p in peers.iter_mut().flatten() {
            let RibPeer {
                out4, out6, wire, ..
            } = p;
            out4.flush(attrs, wire);
            out6.flush(attrs, wire);
        }
        self.attrs.collect();
    }

    /// Events produced since the last call.
    pub fn take_events(&mut self) -> Vec<RouteEvent> {
        std::mem::take(&mut self.events)
    }

    /// Encoded messages waiting for peer `idx`.
    pub fn take_wire(&mut self, idx: u16) -> Vec<u8> {
        self.peer_mut(idx)
            .map(|p| std::mem::take(&mut p.wire))
            .unwrap_or_default()
    }

    /// Indexes of peers with encoded messages waiting.
    pub fn peers_with_wire(&self) -> Vec<u16> {
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.as_ref().is_some_and(|p| !p.wire.is_empty()))
            .map(|(i, _)| i as u16)
            .collect()
    }

    /// Learned best routes (the snapshot for a resync).
    pub fn learned_routes(&self) -> Vec<LearnedRoute> {
        let mut v = Vec::new();
        self.learned_of(&self.v4, &mut v);
        self.learned_of(&self.v6, &mut v);
        v
    }

    fn learned_of<P: Fam>(&self, fam: &Family<P>, v: &mut Vec<LearnedRoute>) {
        for s in fam.table.slots.iter() {
            let Some(b) = s.best() else { continue };
            if b.peer == LOCAL {
                continue;
            }
            let Some(peer) = self.peer(b.peer) else {
                continue;
            };
            let a = self.attrs.get(AttrId(b.attr));
            v.push(LearnedRoute {
                prefix: s.prefix.to_ipnet(),
                next_hop: a.next_hop.unwrap_or(peer.addr),
                as_path: a.as_path.clone(),
                from_peer: peer.addr,
                attrs: a.clone(),
                stale: b.flags & PF_STALE != 0,
            });
        }
    }

    /// Every path of `net` with its standing (best first).
    pub fn explain(&self, net: IpNet) -> Vec<PathInfo> {
        let mut paths = Vec::new();
        match Prefix::from(net) {
            Prefix::V4(p) => self.v4.table.load(&p, &mut paths),
            Prefix::V6(p) => self.v6.table.load(&p, &mut paths),
        }
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| PathInfo {
                from_peer: (p.peer != LOCAL)
                    .then(|| self.peer(p.peer).map(|x| x.addr))
                    .flatten(),
                best: i == 0 && p.flags & PF_REJECTED == 0,
                stale: p.flags & PF_STALE != 0,
                reason: RejectReason::from_u8(p.reason),
                attrs: self.attrs.get(AttrId(p.attr)).clone(),
            })
            .collect()
    }

    /// Destinations with a best path, per family.
    pub fn loc_rib_len(&self) -> (usize, usize) {
        (self.v4.table.len(), self.v6.table.len())
    }

    /// Distinct attribute sets interned.
    pub fn attr_sets(&self) -> usize {
        self.attrs.len()
    }
}

#[cfg(test)]
#[path = "rib_tests.rs"]
mod tests;
