//! Attribute interning: every distinct [`PathAttrs`] is stored once and referred to by a
//! 4-octet [`AttrId`]; routes hold ids, never attributes. Reference counted; an entry whose
//! count drops to zero is freed only at [`AttrStore::collect`] (end of a RIB batch), so ids
//! seen during a batch stay valid and comparable for the whole batch.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;

use crate::wire::PathAttrs;

/// Index of an interned attribute set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrId(pub(crate) u32);

struct Entry {
    attrs: Option<Arc<PathAttrs>>,
    hash: u64,
    refs: u32,
}

/// The interned attribute sets. Owned by the RIB.
#[derive(Default)]
pub struct AttrStore {
    entries: Vec<Entry>,
    free: Vec<u32>,
    index: HashTable<u32>,
    zero: Vec<u32>,
}

fn hash_of(a: &PathAttrs) -> u64 {
    let mut h = DefaultHasher::new();
    a.hash(&mut h);
    h.finish()
}

impl AttrStore {
    /// Interns `a` and takes one reference on it.
    pub fn intern(&mut self, a: PathAttrs) -> AttrId {
        let hash = hash_of(&a);
        let entries = &self.entries;
        if let Some(&i) = self
            .index
            .find(hash, |&i| entries[i as usize].attrs.as_deref() == Some(&a))
        {
            self.entries[i as usize].refs += 1;
            return AttrId(i);
        }
        let e = Entry {
            attrs: Some(Arc::new(a)),
            hash,
            refs: 1,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = e;
                i
            }
            None => {
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.index
            .insert_unique(hash, i, |&j| entries[j as usize].hash);
        AttrId(i)
    }

    /// The attributes of `id`.
    #[inline]
    pub fn get(&self, id: AttrId) -> &Arc<PathAttrs> {
        match &self.entries[id.0 as usize].attrs {
            Some(a) => a,
            None => unreachable_attrs(),
        }
    }

    /// Takes one more reference.
    #[inline]
    pub fn retain(&mut self, id: AttrId) {
        self.entries[id.0 as usize].refs += 1;
    }

    /// Takes `n` more references.
    #[inline]
    pub fn retain_n(&mut self, id: AttrId, n: u32) {
        self.entries[id.0 as usize].refs += n;
    }

    /// Drops one reference; the entry is freed at the next [`AttrStore::collect`] if none is
    /// left by then.
    #[inline]
    pub fn release(&mut self, id: AttrId) {
        let e = &mut self.entries[id.0 as usize];
        e.refs = e.refs.saturating_sub(1);
        if e.refs == 0 {
            self.zero.push(id.0);
        }
    }

    /// Frees entries left without references.
    pub fn collect(&mut self) {
        for i in std::mem::take(&mut self.zero) {
            let e = &mut self.entries[i as usize];
            if e.refs != 0 || e.attrs.is_none() {
                continue;
            }
            let hash = e.hash;
            e.attrs = None;
            if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
                entry.remove();
            }
            self.free.push(i);
        }
    }

    /// Number of live attribute sets.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// True when nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cold]
fn unreachable_attrs() -> ! {
    // An id is only handed out for a live entry and entries are only freed with no
    // references; reaching this is a RIB bookkeeping bug, not peer input.
    panic!("bgp rib: attribute id used after free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_attributes_share_one_id_and_are_freed_after_the_last_release() {
        let mut s = AttrStore::default();
        let a = PathAttrs {
            med: Some(1),
            ..PathAttrs::default()
        };
        let x = s.intern(a.clone());
        let y = s.intern(a.clone());
        assert_eq!(x, y);
        assert_eq!(s.len(), 1);
        s.release(x);
        s.collect();
        assert_eq!(s.len(), 1);
        s.release(y);
        let z = s.intern(a);
        assert_eq!(z, x, "revived before collect");
        s.release(z);
        s.collect();
        assert_eq!(s.len(), 0);
    }
}
