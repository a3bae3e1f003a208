//! Prefix-keyed tables sized for millions of routes: 256 shards of open-addressing hash
//! tables (hashbrown) keyed by [`PrefixKey::hash64`], so a resize copies one shard, never the
//! whole table (no doubling spike in peak RSS), and entries are 16 octets for IPv4.
//!
//! [`PathTable`] holds every destination's paths: the first (best, once decided) inline in
//! the slot, any others in an overflow map (most prefixes have one path).
//! [`PrefixMap`] is a plain prefix → value map (Adj-RIB-Out).

use hashbrown::HashTable;

use crate::prefix::PrefixKey;

const SHARDS: usize = 256;

#[inline]
fn shard_of(h: u64) -> usize {
    ((h >> 40) as usize) & (SHARDS - 1)
}

/// Something stored under a prefix.
pub trait Keyed {
    /// The prefix type.
    type K: PrefixKey;
    /// The key.
    fn key(&self) -> &Self::K;
}

/// A sharded hash table of `S` by prefix.
pub struct Sharded<S> {
    shards: Vec<HashTable<S>>,
    len: usize,
}

impl<S: Keyed> Default for Sharded<S> {
    fn default() -> Self {
        Sharded {
            shards: Vec::new(),
            len: 0,
        }
    }
}

impl<S: Keyed> Sharded<S> {
    fn shards_mut(&mut self) -> &mut Vec<HashTable<S>> {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| HashTable::new()).collect();
        }
        &mut self.shards
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry for `k`.
    #[inline]
    pub fn get(&self, k: &S::K) -> Option<&S> {
        let h = k.hash64();
        self.shards.get(shard_of(h))?.find(h, |s| s.key() == k)
    }

    /// The entry for `k`, mutable.
    #[inline]
    pub fn get_mut(&mut self, k: &S::K) -> Option<&mut S> {
        let h = k.hash64();
        self.shards
            .get_mut(shard_of(h))?
            .find_mut(h, |s| s.key() == k)
    }

    /// Inserts `s`, replacing (and returning) an entry with the same key.
    #[inline]
    pub fn insert(&mut self, s: S) -> Option<S> {
        let h = s.key().hash64();
        let shard = &mut self.shards_mut()[shard_of(h)];
        match shard.entry(h, |x| x.key() == s.key(), |x| x.key().hash64()) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Some(std::mem::replace(o.get_mut(), s))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(s);
                self.len += 1;
                None
            }
        }
    }

    /// The entry for `k`, created with `new` when absent. The bool says whether it was
    /// created.
    #[inline]
    pub fn get_or_insert_with(&mut self, k: &S::K, new: impl FnOnce() -> S) -> (&mut S, bool) {
        let h = k.hash64();
        if self.shards.is_empty() {
            self.shards_mut();
        }
        let shard = &mut self.shards[shard_of(h)];
        match shard.entry(h, |x| x.key() == k, |x| x.key().hash64()) {
            hashbrown::hash_table::Entry::Occupied(o) => (o.into_mut(), false),
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                (v.insert(new()).into_mut(), true)
            }
        }
    }

    /// Removes the entry for `k`.
    #[inline]
    pub fn remove(&mut self, k: &S::K) -> Option<S> {
        let h = k.hash64();
        let shard = self.shards.get_mut(shard_of(h))?;
        match shard.find_entry(h, |s| s.key() == k) {
            Ok(e) => {
                self.len -= 1;
                Some(e.remove().0)
            }
            Err(_) => None,
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &S> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Calls `f` on every entry, mutably.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut S)) {
        for shard in &mut self.shards {
            for s in shard.iter_mut() {
                f(s);
            }
        }
    }

    /// Keeps the entries for which `f` returns true.
    pub fn retain(&mut self, mut f: impl FnMut(&mut S) -> bool) {
        let mut removed = 0;
        for shard in &mut self.shards {
            let before = shard.len();
            shard.retain(&mut f);
            removed += before - shard.len();
        }
        self.len -= removed;
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.shards = Vec::new();
        self.len = 0;
    }
}

/// One path of a destination: which peer, its flags and attributes. 8 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRef {
    /// Peer index (0 = originated locally).
    pub peer: u16,
    /// `PF_*` flags.
    pub flags: u8,
    /// Why this path lost (a `RejectReason` as u8) when it is not the best.
    pub reason: u8,
    /// Interned attributes.
    pub attr: u32,
}

/// `PathSlot::pflags` for a path: flags in bits 0–1, reject reason in bits 2–7.
#[inline]
pub fn pack_flags(p: PathRef) -> u8 {
    (p.flags & 3) | (p.reason << 2)
}

/// The path was kept as stale by the graceful-restart helper.
pub const PF_STALE: u8 = 1;
/// The path was refused on import (policy, loop); kept for counts and re-evaluation.
pub const PF_REJECTED: u8 = 2;

/// Destination flag: queued for best-path selection.
pub const DF_DIRTY: u8 = 1;
/// Destination flag: more paths in the overflow map.
pub const DF_MULTI: u8 = 2;

/// A destination's slot: the prefix and its first path (16 octets for IPv4).
#[derive(Debug, Clone, Copy)]
pub struct PathSlot<P> {
    /// The prefix.
    pub prefix: P,
    /// Peer of the first path.
    pub peer: u16,
    /// Flags of the first path.
    pub pflags: u8,
    /// `DF_*` destination flags.
    pub dflags: u8,
    /// Attributes of the first path.
    pub attr: u32,
}

impl<P: PrefixKey> Keyed for PathSlot<P> {
    type K = P;
    fn key(&self) -> &P {
        &self.prefix
    }
}

impl<P> PathSlot<P> {
    /// The first path (its flags in the low two bits of `pflags`, its reject reason in the
    /// upper six).
    #[inline]
    pub fn first(&self) -> PathRef {
        PathRef {
            peer: self.peer,
            flags: self.pflags & 3,
            reason: self.pflags >> 2,
            attr: self.attr,
        }
    }

    /// Replaces the first path.
    #[inline]
    pub fn set_first(&mut self, p: PathRef) {
        self.peer = p.peer;
        self.pflags = pack_flags(p);
        self.attr = p.attr;
    }

    /// The best path: the first one unless it was refused on import.
    #[inline]
    pub fn best(&self) -> Option<PathRef> {
        (self.pflags & PF_REJECTED == 0).then(|| self.first())
    }
}

/// The overflow paths of a multi-path destination.
pub struct MoreSlot<P> {
    /// The prefix.
    pub prefix: P,
    /// Paths after the first.
    pub paths: Vec<PathRef>,
}

impl<P: PrefixKey> Keyed for MoreSlot<P> {
    type K = P;
    fn key(&self) -> &P {
        &self.prefix
    }
}

/// All paths of every destination of one family: Adj-RIBs-In (post-import, with refused
/// paths flagged) and the Loc-RIB (the first path of each slot) in one structure.
pub struct PathTable<P: PrefixKey> {
    /// First paths.
    pub slots: Sharded<PathSlot<P>>,
    /// Further paths.
    pub more: Sharded<MoreSlot<P>>,
}

impl<P: PrefixKey> Default for PathTable<P> {
    fn default() -> Self {
        PathTable {
            slots: Sharded::default(),
            more: Sharded::default(),
        }
    }
}

impl<P: PrefixKey> PathTable<P> {
    /// Every path of `prefix` into `out` (first path first).
    pub fn load(&self, prefix: &P, out: &mut Vec<PathRef>) {
        out.clear();
        if let Some(s) = self.slots.get(prefix) {
            out.push(s.first());
            if s.dflags & DF_MULTI != 0 {
                if let Some(m) = self.more.get(prefix) {
                    out.extend_from_slice(&m.paths);
                }
            }
        }
    }

    /// Replaces the paths of `prefix` with `paths` (first = best); removes the destination
    /// when empty. Keeps the slot's dirty flag as `dirty`.
    pub fn store(&mut self, prefix: &P, paths: &[PathRef], dirty: bool) {
        let dflags =
            (if dirty { DF_DIRTY } else { 0 }) | (if paths.len() > 1 { DF_MULTI } else { 0 });
        let Some((first, rest)) = paths.split_first() else {
            self.slots.remove(prefix);
            self.more.remove(prefix);
            return;
        };
        let slot = PathSlot {
            prefix: *prefix,
            peer: first.peer,
            pflags: pack_flags(*first),
            dflags,
            attr: first.attr,
        };
        let had_more = self
            .slots
            .insert(slot)
            .is_some_and(|old| old.dflags & DF_MULTI != 0);
        if rest.is_empty() {
            if had_more {
                self.more.remove(prefix);
            }
        } else {
            let (m, _) = self.more.get_or_insert_with(prefix, || MoreSlot {
                prefix: *prefix,
                paths: Vec::new(),
            });
            m.paths.clear();
            m.paths.extend_from_slice(rest);
        }
    }

    /// Number of destinations.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no destination is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// A prefix with a value (Adj-RIB-Out entries).
#[derive(Debug, Clone, Copy)]
pub struct MapSlot<P, V> {
    /// The prefix.
    pub prefix: P,
    /// The value.
    pub value: V,
}

impl<P: PrefixKey, V> Keyed for MapSlot<P, V> {
    type K = P;
    fn key(&self) -> &P {
        &self.prefix
    }
}

/// Prefix → value.
pub type PrefixMap<P, V> = Sharded<MapSlot<P, V>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix::Prefix4;

    #[test]
    fn ipv4_slots_are_16_octets() {
        assert_eq!(std::mem::size_of::<PathSlot<Prefix4>>(), 16);
        assert_eq!(std::mem::size_of::<PathRef>(), 8);
    }

    #[test]
    fn paths_store_and_load_with_overflow() {
        let mut t = PathTable::<Prefix4>::default();
        let p: Prefix4 = "10.0.0.0/24".parse().expect("p");
        let a = PathRef {
            peer: 1,
            flags: 0,
            reason: 0,
            attr: 7,
        };
        let b = PathRef { peer: 2, ..a };
        t.store(&p, &[a, b], false);
        let mut v = Vec::new();
        t.load(&p, &mut v);
        assert_eq!(v, vec![a, b]);
        t.store(&p, &[b], true);
        t.load(&p, &mut v);
        assert_eq!(v, vec![b]);
        assert!(t.more.is_empty());
        assert_eq!(t.slots.get(&p).map(|s| s.dflags), Some(DF_DIRTY));
        t.store(&p, &[], false);
        assert!(t.is_empty());
    }

    #[test]
    fn many_prefixes_insert_find_and_remove() {
        let mut m = PrefixMap::<Prefix4, u32>::default();
        for i in 0..100_000u32 {
            let p = Prefix4::from_bits(i << 8, 24).expect("p");
            assert!(
                m.insert(MapSlot {
                    prefix: p,
                    value: i
                })
                .is_none()
            );
        }
        assert_eq!(m.len(), 100_000);
        let p = Prefix4::from_bits(77 << 8, 24).expect("p");
        assert_eq!(m.get(&p).map(|s| s.value), Some(77));
        assert_eq!(m.remove(&p).map(|s| s.value), Some(77));
        assert_eq!(m.len(), 99_999);
        m.retain(|s| s.value % 2 == 0);
        assert_eq!(m.len(), 50_000);
    }
}
