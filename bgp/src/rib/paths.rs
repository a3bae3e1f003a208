//! Path bookkeeping shared by every RIB operation: adding, replacing and removing one
//! peer's path of a destination (queueing the destination for the decision process with
//! its previous best), and the batch step that decides, reports and exports.

use std::net::{IpAddr, Ipv4Addr};

use super::attrs::AttrId;
use super::decision::{Candidate, select};
use super::table::{DF_DIRTY, DF_MULTI, MoreSlot, PF_REJECTED, PF_STALE, PathRef, PathSlot};
use super::{Fam, Family, LOCAL, Parts, Rib, RibPeer, export, table};
use crate::events::RouteEvent;

pub(super) fn count(peers: &mut [Option<RibPeer>], p: PathRef, add: bool) {
    let Some(Some(peer)) = peers.get_mut(p.peer as usize) else {
        return;
    };
    let c = &mut peer.counters;
    let f = |x: &mut u64| {
        if add {
            *x += 1
        } else {
            *x = x.saturating_sub(1)
        }
    };
    f(&mut c.received);
    if p.flags & PF_REJECTED == 0 {
        f(&mut c.accepted);
    }
    if p.flags & PF_STALE != 0 {
        f(&mut c.stale);
    }
}

/// Routes accepted from peer `idx` so far.
pub(super) fn accepted_count(peers: &[Option<RibPeer>], idx: u16) -> u64 {
    peers
        .get(idx as usize)
        .and_then(Option::as_ref)
        .map_or(0, |p| p.counters.accepted)
}

/// Whether peer `idx` has an accepted path for `prefix`.
pub(super) fn holds_accepted<P: Fam>(fam: &Family<P>, prefix: &P, idx: u16) -> bool {
    let Some(slot) = fam.table.slots.get(prefix) else {
        return false;
    };
    let accepted = |p: PathRef| p.peer == idx && p.flags & PF_REJECTED == 0;
    if slot.peer == idx {
        return accepted(slot.first());
    }
    slot.dflags & DF_MULTI != 0
        && fam
            .table
            .more
            .get(prefix)
            .is_some_and(|m| m.paths.iter().any(|p| accepted(*p)))
}

/// Adds or replaces `path` (its peer's path) for `prefix`. The path's attribute reference
/// moves into the table.
pub(super) fn upsert<P: Fam>(fam: &mut Family<P>, parts: &mut Parts<'_>, prefix: P, path: PathRef) {
    let table = &mut fam.table;
    let (slot, created) = table.slots.get_or_insert_with(&prefix, || PathSlot {
        prefix,
        peer: path.peer,
        pflags: table::pack_flags(path),
        dflags: DF_DIRTY,
        attr: path.attr,
    });
    count(parts.peers, path, true);
    if created {
        fam.dirty.push((prefix, None));
        return;
    }
    if slot.dflags & DF_DIRTY == 0 {
        fam.dirty.push((prefix, slot.best()));
        slot.dflags |= DF_DIRTY;
    }
    let old = if slot.peer == path.peer {
        let old = slot.first();
        slot.set_first(path);
        Some(old)
    } else if slot.dflags & DF_MULTI == 0 {
        slot.dflags |= DF_MULTI;
        table.more.insert(MoreSlot {
            prefix,
            paths: vec![path],
        });
        None
    } else {
        let (m, _) = table.more.get_or_insert_with(&prefix, || MoreSlot {
            prefix,
            paths: Vec::new(),
        });
        match m.paths.iter_mut().find(|x| x.peer == path.peer) {
            Some(x) => Some(std::mem::replace(x, path)),
            None => {
                m.paths.push(path);
                None
            }
        }
    };
    if let Some(old) = old {
        count(parts.peers, old, false);
        parts.attrs.release(AttrId(old.attr));
    }
}

/// Removes `peer`'s path for `prefix`; true when there was one.
pub(super) fn remove<P: Fam>(
    fam: &mut Family<P>,
    parts: &mut Parts<'_>,
    prefix: &P,
    peer: u16,
) -> bool {
    let table = &mut fam.table;
    let Some(slot) = table.slots.get_mut(prefix) else {
        return false;
    };
    let in_first = slot.peer == peer;
    if !in_first {
        let found = slot.dflags & DF_MULTI != 0
            && table
                .more
                .get(prefix)
                .is_some_and(|m| m.paths.iter().any(|x| x.peer == peer));
        if !found {
            return false;
        }
    }
    if slot.dflags & DF_DIRTY == 0 {
        fam.dirty.push((*prefix, slot.best()));
        slot.dflags |= DF_DIRTY;
    }
    let old;
    if in_first {
        old = slot.first();
        if slot.dflags & DF_MULTI != 0 {
            let mut emptied = false;
            if let Some(m) = table.more.get_mut(prefix) {
                if let Some(next) = m.paths.pop() {
                    slot.set_first(next);
                }
                emptied = m.paths.is_empty();
            }
            if emptied {
                slot.dflags &= !DF_MULTI;
                table.more.remove(prefix);
            }
        } else {
            table.slots.remove(prefix);
        }
    } else {
        let mut emptied = false;
        let mut taken = None;
        if let Some(m) = table.more.get_mut(prefix) {
            if let Some(i) = m.paths.iter().position(|x| x.peer == peer) {
                taken = Some(m.paths.swap_remove(i));
            }
            emptied = m.paths.is_empty();
        }
        if emptied {
            slot.dflags &= !DF_MULTI;
            table.more.remove(prefix);
        }
        let Some(t) = taken else {
            return false;
        };
        old = t;
    }
    count(parts.peers, old, false);
    parts.attrs.release(AttrId(old.attr));
    true
}

/// Prefixes where `peer` has a path matching `f`.
pub(super) fn prefixes_of<P: Fam>(
    fam: &Family<P>,
    peer: u16,
    f: impl Fn(PathRef) -> bool,
) -> Vec<P> {
    let mut v: Vec<P> = fam
        .table
        .slots
        .iter()
        .filter(|s| s.peer == peer && f(s.first()))
        .map(|s| s.prefix)
        .collect();
    for m in fam.table.more.iter() {
        if m.paths.iter().any(|x| x.peer == peer && f(*x)) {
            v.push(m.prefix);
        }
    }
    v
}

/// Runs the decision process for `prefix`; returns the new best.
pub(super) fn decide<P: Fam>(
    fam: &mut Family<P>,
    parts: &mut Parts<'_>,
    prefix: &P,
) -> Option<PathRef> {
    let slot = fam.table.slots.get_mut(prefix)?;
    if slot.dflags & DF_MULTI == 0 {
        slot.dflags &= !DF_DIRTY;
        return slot.best();
    }
    let paths = &mut *parts.scratch;
    fam.table.load(prefix, paths);
    let (valid, rejected): (Vec<PathRef>, Vec<PathRef>) =
        paths.iter().partition(|p| p.flags & PF_REJECTED == 0);
    let mut ordered = Vec::with_capacity(paths.len());
    if !valid.is_empty() {
        let attrs = &*parts.attrs;
        let peers = &*parts.peers;
        let cands: Vec<Candidate<'_>> = valid
            .iter()
            .map(|p| {
                let peer = peers.get(p.peer as usize).and_then(Option::as_ref);
                Candidate {
                    local: p.peer == LOCAL,
                    attrs: attrs.get(AttrId(p.attr)),
                    ebgp: peer.is_some_and(|x| x.ebgp),
                    peer_router_id: peer.map_or(Ipv4Addr::UNSPECIFIED, |x| x.router_id),
                    peer_addr: peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |x| x.addr),
                }
            })
            .collect();
        let (w, reasons) = select(&cands);
        ordered.push(PathRef {
            reason: 0,
            ..valid[w]
        });
        for (i, p) in valid.iter().enumerate() {
            if i != w {
                ordered.push(PathRef {
                    reason: reasons[i] as u8,
                    ..*p
                });
            }
        }
    }
    ordered.extend(rejected);
    fam.table.store(prefix, &ordered, false);
    ordered
        .first()
        .filter(|p| p.flags & PF_REJECTED == 0)
        .copied()
}

fn same(a: Option<PathRef>, b: Option<PathRef>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.peer == y.peer && x.attr == y.attr,
        _ => false,
    }
}

fn learned_event<P: Fam>(parts: &Parts<'_>, prefix: &P, best: Option<PathRef>) -> RouteEvent {
    match best {
        Some(b) => {
            let a = parts.attrs.get(AttrId(b.attr));
            let from = parts
                .peers
                .get(b.peer as usize)
                .and_then(Option::as_ref)
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.addr);
            RouteEvent::Best {
                prefix: prefix.to_ipnet(),
                next_hop: a.next_hop.unwrap_or(from),
                as_path: a.as_path.clone(),
                from_peer: from,
                attrs: a.clone(),
            }
        }
        None => RouteEvent::Withdrawn {
            prefix: prefix.to_ipnet(),
        },
    }
}

/// Decision, events and export for every queued prefix of one family.
pub(super) fn process_family<P: Fam>(rib: &mut Rib) -> usize {
    let (fam, mut parts) = P::split(rib);
    let dirty = std::mem::take(&mut fam.dirty);
    let targets: Vec<u16> = parts
        .peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.as_ref()
                .filter(|p| p.up && p.families.contains(&P::AFI))
                .map(|_| i as u16)
        })
        .collect();
    let mut changes = 0;
    for (prefix, old) in &dirty {
        let new = match fam.table.slots.get_mut(prefix) {
            Some(s) if s.dflags & DF_DIRTY == 0 => continue,
            // One path (most destinations): no decision to make, no second lookup.
            Some(s) if s.dflags & DF_MULTI == 0 => {
                s.dflags &= !DF_DIRTY;
                s.best()
            }
            Some(_) => decide(fam, &mut parts, prefix),
            None => None,
        };
        if same(*old, new) {
            continue;
        }
        changes += 1;
        if parts.emit_events {
            let old_l = old.filter(|p| p.peer != LOCAL);
            let new_l = new.filter(|p| p.peer != LOCAL);
            if !same(old_l, new_l) {
                let ev = learned_event(&parts, prefix, new_l);
                parts.events.push(ev);
            }
        }
        for &t in &targets {
            export::export_one(&mut parts, prefix, new, t);
        }
    }
    // Keep the allocation for the next batch if it was small.
    let mut dirty = dirty;
    dirty.clear();
    if dirty.capacity() <= 1 << 16 && fam.dirty.is_empty() {
        fam.dirty = dirty;
    }
    changes
}
