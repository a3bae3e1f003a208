//! Claim previews: a claim notice from this node's CNI plugin ([`ipam::notice`]) applied
//! to the [`ClusterState`] ahead of the watch, then held to what the watch delivers.
//!
//! A previewed key stands until the watch reaches the notice's revision: older events for
//! it are not applied over it (they would take the state back), the watch's own event at
//! that revision replaces it (the datastore's word is the last). A watch that passes the
//! revision without the key names a notice that was wrong: the key is read again.

use std::collections::HashMap;

use datastore::model::ipam::AllocationBlock;
use datastore::{Revision, WatchEvent, keys};
use ipam::ClaimNotice;

use crate::state::ClusterState;

/// Why a notice is refused: only this node's claims are previewed.
pub fn vet(notice: &ClaimNotice, node: &str) -> Result<(), String> {
    if notice.writes.is_empty() {
        return Err("a notice with no write".into());
    }
    for write in &notice.writes {
        if let Some((owner, _)) = keys::parse_affinity(&write.key) {
            if owner != node {
                return Err(format!("{}: another node's affinity", write.key));
            }
            continue;
        }
        let cidr = keys::parse_block(&write.key)
            .filter(|cidr| keys::block(cidr) == write.key)
            .ok_or_else(|| format!("{}: neither a block nor an affinity", write.key))?;
        let block: AllocationBlock = serde_json::from_str(&write.value)
            .map_err(|e| format!("{}: not a block ({e})", write.key))?;
        if block.cidr != cidr || block.host() != Some(node) {
            return Err(format!("{}: not a block affine to {node}", write.key));
        }
    }
    Ok(())
}

/// The keys previewed and not yet seen through the watch, with the notices' revisions.
#[derive(Debug, Default)]
pub struct Previews {
    pending: HashMap<String, Revision>,
}

impl Previews {
    /// Applies `notice` unless the watch already reached its revision; true when the
    /// state changed.
    pub fn offer(&mut self, state: &mut ClusterState, notice: &ClaimNotice) -> bool {
        if notice.revision <= state.revision {
            return false;
        }
        let mut changed = false;
        for write in &notice.writes {
            changed |= state.put(&write.key, write.value.as_bytes());
            self.hold(&write.key, notice.revision);
        }
        changed
    }

    /// Holds `key` as written at `revision` (a notice, or a read ahead of the watch).
    pub fn hold(&mut self, key: &str, revision: Revision) {
        let held = self.pending.entry(key.to_string()).or_default();
        *held = (*held).max(revision);
    }

    /// Whether the watch event is to be applied: not when it is older than a preview of
    /// its key. The event at the preview's revision (or later) ends the preview.
    pub fn admits(&mut self, event: &WatchEvent) -> bool {
        match self.pending.get(event.key()) {
            Some(&previewed) if event.revision() < previewed => false,
            Some(_) => {
                self.pending.remove(event.key());
                true
            }
            None => true,
        }
    }

    /// The previewed keys the watch has passed without delivering (the state is at
    /// `revision`): their notices were wrong, they are to be read again.
    pub fn overdue(&mut self, revision: Revision) -> Vec<String> {
        let mut passed = Vec::new();
        self.pending.retain(|key, previewed| {
            let held = *previewed > revision;
            if !held {
                passed.push(key.clone());
            }
            held
        });
        passed
    }
}

#[cfg(test)]
mod tests {
    use datastore::KeyValue;
    use ipam::notice::NoticeWrite;
    use ipnet::IpNet;

    use super::*;

    const NODE: &str = "node1";

    fn cidr() -> IpNet {
        "10.65.0.0/26".parse().expect("cidr")
    }

    fn block_json(host: &str) -> String {
        serde_json::to_string(&AllocationBlock::new(cidr(), Some(host), None)).expect("json")
    }

    fn claim(revision: Revision) -> ClaimNotice {
        ClaimNotice {
            revision,
            writes: vec![
                NoticeWrite {
                    key: keys::affinity(NODE, &cidr()),
                    value: r#"{"state":"confirmed","deleted":false}"#.into(),
                },
                NoticeWrite {
                    key: keys::block(&cidr()),
                    value: block_json(NODE),
                },
            ],
        }
    }

    fn put(key: &str, value: &str, revision: Revision) -> WatchEvent {
        WatchEvent::Put(KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            lease: None,
        })
    }

    fn state_at(revision: Revision) -> ClusterState {
        ClusterState {
            revision,
            ..ClusterState::default()
        }
    }

    /// A state at revision 10 with the claim of revision 12 previewed.
    fn previewed() -> (ClusterState, Previews) {
        let mut state = state_at(10);
        let mut previews = Previews::default();
        previews.offer(&mut state, &claim(12));
        (state, previews)
    }

    #[test]
    fn a_notice_ahead_of_the_watch_makes_the_block_this_nodes_at_once() {
        let mut state = state_at(10);
        let mut previews = Previews::default();
        assert!(previews.offer(&mut state, &claim(12)));
        assert_eq!(
            state.confirmed_blocks_of(NODE).collect::<Vec<_>>(),
            vec![cidr()]
        );
        assert_eq!(
            state.revision, 10,
            "the watch's revision is not the notice's"
        );
    }

    #[test]
    fn a_notice_the_watch_already_delivered_changes_nothing() {
        let mut state = state_at(12);
        let mut previews = Previews::default();
        assert!(!previews.offer(&mut state, &claim(12)));
        assert_eq!(state.confirmed_blocks_of(NODE).count(), 0);
        assert!(previews.overdue(100).is_empty(), "nothing held");
    }

    #[test]
    fn older_events_do_not_take_a_previewed_key_back_and_the_watchs_own_event_ends_it() {
        let (_, mut previews) = previewed();
        let affinity = keys::affinity(NODE, &cidr());
        let older = WatchEvent::Delete {
            key: affinity.clone(),
            revision: 11,
        };
        assert!(
            !previews.admits(&older),
            "an event before the notice's write"
        );
        assert!(
            previews.admits(&put("/calico/other", "{}", 11)),
            "other keys pass"
        );
        assert!(previews.admits(&put(&affinity, "{}", 12)));
        assert!(previews.admits(&older), "no longer held once seen");
        // The block was not seen yet: the watch at 12 without it means a wrong notice.
        assert_eq!(previews.overdue(12), vec![keys::block(&cidr())]);
        assert!(previews.overdue(12).is_empty(), "reported once");
    }

    #[test]
    fn a_preview_is_not_overdue_before_the_watch_reaches_its_revision() {
        let (_, mut previews) = previewed();
        assert!(previews.overdue(11).is_empty());
        assert_eq!(previews.overdue(12).len(), 2);
    }

    #[test]
    fn only_this_nodes_affinities_and_blocks_pass() {
        assert_eq!(vet(&claim(1), NODE), Ok(()));
        assert!(vet(&claim(1), "node2").is_err(), "another node's claim");
        let mut foreign_block = claim(1);
        foreign_block.writes[1].value = block_json("node2");
        assert!(
            vet(&foreign_block, NODE)
                .expect_err("refused")
                .contains("not a block affine")
        );
        let mut other_key = claim(1);
        other_key.writes[0].key = "/calico/resources/v3/projectcalico.org/ippools/p".into();
        assert!(
            vet(&other_key, NODE)
                .expect_err("refused")
                .contains("neither")
        );
        let mut moved = claim(1);
        moved.writes[1].key = keys::block(&"10.65.0.64/26".parse().expect("cidr"));
        assert!(
            vet(&moved, NODE).is_err(),
            "a block stored under another block's key"
        );
        let empty = ClaimNotice {
            revision: 1,
            writes: Vec::new(),
        };
        assert!(vet(&empty, NODE).is_err());
    }
}
