//! Helpers over sorted maps shared by the calculations and the reconcilers.

use std::collections::BTreeMap;

/// The keys whose entry differs between two maps (added, removed or changed), found in one
/// walk of both in key order.
pub fn changed_keys<K: Ord + Clone, V: PartialEq>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
) -> Vec<K> {
    use std::cmp::Ordering;
    let mut out = Vec::new();
    let (mut x, mut y) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (x.peek(), y.peek()) {
            (None, None) => return out,
            (Some((k, _)), None) => {
                out.push((*k).clone());
                x.next();
            }
            (None, Some((k, _))) => {
                out.push((*k).clone());
                y.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                Ordering::Less => {
                    out.push((*ka).clone());
                    x.next();
                }
                Ordering::Greater => {
                    out.push((*kb).clone());
                    y.next();
                }
                Ordering::Equal => {
                    if va != vb {
                        out.push((*ka).clone());
                    }
                    x.next();
                    y.next();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_removed_and_changed_keys_are_found_in_order() {
        let a = BTreeMap::from([(1, "a"), (2, "b"), (4, "d"), (6, "f")]);
        let b = BTreeMap::from([(0, "z"), (2, "b"), (4, "x"), (5, "e")]);
        assert_eq!(changed_keys(&a, &b), vec![0, 1, 4, 5, 6]);
        assert_eq!(changed_keys(&a, &a), Vec::<i32>::new());
    }
}
