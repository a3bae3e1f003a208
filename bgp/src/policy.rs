//! Import and export policy: an ordered list of statements, first match wins, each with
//! conditions (prefix within, or outside, a set of CIDRs with a length range; standard /
//! large communities; the AS path's first ASes; LOCAL_PREF; learned from a peer or
//! originated here) and an action (accept with attribute changes, or reject). Pure; the
//! RIB applies it.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::prefix::PrefixKey;
use crate::wire::{LargeCommunity, PathAttrs};

/// A prefix range: prefixes inside `net` whose length is within `min_len..=max_len`
/// (BIRD `10.0.0.0/8{16,24}`, Cisco `ge`/`le`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrefixRange {
    /// The covering CIDR.
    pub net: IpNet,
    /// Shortest length matched (defaults to the CIDR's own length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<u8>,
    /// Longest length matched (defaults to the CIDR's own length: exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u8>,
}

impl PrefixRange {
    /// Exactly `net`.
    pub fn exact(net: IpNet) -> PrefixRange {
        PrefixRange {
            net,
            min_len: None,
            max_len: None,
        }
    }

    /// `net` and everything inside it (`net{len,32}` / `{len,128}`).
    pub fn or_longer(net: IpNet) -> PrefixRange {
        PrefixRange {
            net,
            min_len: None,
            max_len: Some(net.max_prefix_len()),
        }
    }

    /// True when `p` is inside the range.
    pub fn matches(&self, p: &IpNet) -> bool {
        let lo = self.min_len.unwrap_or(self.net.prefix_len());
        let hi = self.max_len.unwrap_or(self.net.prefix_len());
        let len = p.prefix_len();
        len >= lo.max(self.net.prefix_len()) && len <= hi && self.net.contains(p)
    }
}

/// What a statement matches; every condition given must hold (empty: matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Conditions {
    /// The prefix is in one of these ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixRange>,
    /// The route carries at least one of these standard communities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub communities_any: Vec<u32>,
    /// The route carries at least one of these large communities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub large_communities_any: Vec<LargeCommunity>,
    /// The prefix is in none of these ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefixes_none: Vec<PrefixRange>,
    /// The AS path starts with these ASes, in this order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub as_path_prefix: Vec<u32>,
    /// The route's LOCAL_PREF is this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// `Some(true)`: only routes learned from a peer; `Some(false)`: only our own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<bool>,
}

/// Attribute changes made by an accepting statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct SetActions {
    /// Standard communities to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_communities: Vec<u32>,
    /// Standard communities to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_communities: Vec<u32>,
    /// Large communities to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_large_communities: Vec<LargeCommunity>,
    /// LOCAL_PREF to set (import, or export to iBGP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC to set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// ASes put in front of the AS path, in this order (before our own AS towards eBGP,
    /// as BIRD's `bgp_path.prepend` in an export filter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prepend_as_path: Vec<u32>,
}

impl SetActions {
    /// True when the statement changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &SetActions::default()
    }

    /// Applies the changes to `a`.
    pub fn apply(&self, a: &mut PathAttrs) {
        self.prepend_path(a);
        self.apply_attributes(a);
    }

    /// Puts `prepend_as_path` in front of the AS path.
    pub fn prepend_path(&self, a: &mut PathAttrs) {
        if !self.prepend_as_path.is_empty() {
            let mut path = Vec::with_capacity(self.prepend_as_path.len() + a.as_path.len());
            path.extend_from_slice(&self.prepend_as_path);
            path.extend_from_slice(&a.as_path);
            a.as_path = path.into();
        }
    }

    /// Applies every change but the AS path's.
    pub fn apply_attributes(&self, a: &mut PathAttrs) {
        if !self.remove_communities.is_empty() {
            a.communities
                .retain(|c| !self.remove_communities.contains(c));
        }
        if !self.add_communities.is_empty() {
            a.communities.extend_from_slice(&self.add_communities);
            a.communities.sort_unstable();
            a.communities.dedup();
        }
        if !self.add_large_communities.is_empty() {
            a.large_communities
                .extend_from_slice(&self.add_large_communities);
            a.large_communities.sort_unstable();
            a.large_communities.dedup();
        }
        if let Some(lp) = self.local_pref {
            a.local_pref = Some(lp);
        }
        if let Some(m) = self.med {
            a.med = Some(m);
        }
    }
}

/// Accept or reject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Take the route (with the statement's changes).
    #[default]
    Accept,
    /// Drop the route.
    Reject,
}

/// One policy statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Statement {
    /// What it matches.
    #[serde(rename = "match")]
    pub conditions: Conditions,
    /// Accept or reject.
    pub action: Action,
    /// Changes when accepting.
    #[serde(skip_serializing_if = "SetActions::is_empty")]
    pub set: SetActions,
}

/// A per-peer import or export policy. Written by the embedding program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Statements, tried in order; the first that matches decides.
    pub statements: Vec<Statement>,
    /// What happens when none matches.
    pub default_action: Action,
}

/// The outcome of evaluating a policy on one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by statement `Some(i)` or by the default action (`None`).
    Accept(Option<usize>),
    /// Rejected.
    Reject,
}

impl Policy {
    /// Accepts everything unchanged (an explicit "allow all" for eBGP under RFC 8212).
    pub fn accept_all() -> Policy {
        Policy::default()
    }

    /// Rejects everything.
    pub fn reject_all() -> Policy {
        Policy {
            statements: Vec::new(),
            default_action: Action::Reject,
        }
    }

    /// Accepts exactly the prefixes in `ranges`, rejects the rest.
    pub fn prefixes(ranges: Vec<PrefixRange>) -> Policy {
        Policy {
            statements: vec![Statement {
                conditions: Conditions {
                    prefixes: ranges,
                    ..Conditions::default()
                },
                action: Action::Accept,
                set: SetActions::default(),
            }],
            default_action: Action::Reject,
        }
    }

    /// True when any statement looks at the prefix (the result may differ per prefix even
    /// for routes sharing attributes).
    pub fn depends_on_prefix(&self) -> bool {
        self.statements
            .iter()
            .any(|s| !s.conditions.prefixes.is_empty() || !s.conditions.prefixes_none.is_empty())
    }

    /// Evaluates the policy on route `prefix`, learned from a peer, with attributes `a`.
    pub fn evaluate<P: PrefixKey>(&self, prefix: &P, a: &PathAttrs) -> Verdict {
        self.evaluate_route(prefix, a, true)
    }

    /// Evaluates the policy on route `prefix` with attributes `a`, learned from a peer
    /// (`learned`) or originated here.
    pub fn evaluate_route<P: PrefixKey>(
        &self,
        prefix: &P,
        a: &PathAttrs,
        learned: bool,
    ) -> Verdict {
        let mut net: Option<IpNet> = None;
        for (i, s) in self.statements.iter().enumerate() {
            let c = &s.conditions;
            if c.learned.is_some_and(|l| l != learned) {
                continue;
            }
            if !c.prefixes.is_empty() {
                let n = *net.get_or_insert_with(|| prefix.to_ipnet());
                if !c.prefixes.iter().any(|r| r.matches(&n)) {
                    continue;
                }
            }
            if !c.prefixes_none.is_empty() {
                let n = *net.get_or_insert_with(|| prefix.to_ipnet());
                if c.prefixes_none.iter().any(|r| r.matches(&n)) {
                    continue;
                }
            }
            if !a.as_path.starts_with(&c.as_path_prefix) {
                continue;
            }
            if c.local_pref.is_some_and(|lp| a.local_pref != Some(lp)) {
                continue;
            }
            if !c.communities_any.is_empty()
                && !c.communities_any.iter().any(|x| a.has_community(*x))
            {
                continue;
            }
            if !c.large_communities_any.is_empty()
                && !c
                    .large_communities_any
                    .iter()
                    .any(|x| a.has_large_community(x))
            {
                continue;
            }
            return match s.action {
                Action::Accept => Verdict::Accept(Some(i)),
                Action::Reject => Verdict::Reject,
            };
        }
        match self.default_action {
            Action::Accept => Verdict::Accept(None),
            Action::Reject => Verdict::Reject,
        }
    }

    /// The changes made by statement `i` (none for the default action).
    pub fn set_actions(&self, i: Option<usize>) -> Option<&SetActions> {
        i.and_then(|i| self.statements.get(i))
            .map(|s| &s.set)
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix::Prefix4;
    use crate::wire::attrs::community_value;

    fn p(s: &str) -> Prefix4 {
        s.parse().expect("prefix")
    }

    #[test]
    fn prefix_range_matches_inside_the_cidr_within_the_lengths() {
        let r = PrefixRange {
            net: "10.0.0.0/8".parse().expect("net"),
            min_len: Some(16),
            max_len: Some(24),
        };
        assert!(r.matches(&"10.1.0.0/16".parse().expect("net")));
        assert!(r.matches(&"10.1.2.0/24".parse().expect("net")));
        assert!(!r.matches(&"10.1.2.0/25".parse().expect("net")));
        assert!(!r.matches(&"10.0.0.0/8".parse().expect("net")));
        assert!(!r.matches(&"11.1.0.0/16".parse().expect("net")));
    }

    #[test]
    fn exact_range_matches_only_itself_and_or_longer_everything_inside() {
        let net: IpNet = "192.168.0.0/16".parse().expect("net");
        assert!(PrefixRange::exact(net).matches(&net));
        assert!(!PrefixRange::exact(net).matches(&"192.168.1.0/26".parse().expect("n")));
        assert!(PrefixRange::or_longer(net).matches(&"192.168.1.0/26".parse().expect("n")));
    }

    #[test]
    fn first_matching_statement_decides_and_default_applies_otherwise() {
        let pol = Policy {
            statements: vec![
                Statement {
                    conditions: Conditions {
                        communities_any: vec![community_value(65000, 666)],
                        ..Conditions::default()
                    },
                    action: Action::Reject,
                    set: SetActions::default(),
                },
                Statement {
                    conditions: Conditions {
                        prefixes: vec![PrefixRange::or_longer("10.0.0.0/8".parse().expect("n"))],
                        ..Conditions::default()
                    },
                    action: Action::Accept,
                    set: SetActions {
                        add_communities: vec![community_value(65000, 1)],
                        ..SetActions::default()
                    },
                },
            ],
            default_action: Action::Reject,
        };
        let mut a = PathAttrs::default();
        assert_eq!(
            pol.evaluate(&p("10.1.0.0/16"), &a),
            Verdict::Accept(Some(1))
        );
        assert_eq!(pol.evaluate(&p("11.1.0.0/16"), &a), Verdict::Reject);
        a.communities = vec![community_value(65000, 666)];
        assert_eq!(pol.evaluate(&p("10.1.0.0/16"), &a), Verdict::Reject);
        let set = pol.set_actions(Some(1)).expect("set");
        let mut b = PathAttrs::default();
        set.apply(&mut b);
        assert_eq!(b.communities, vec![community_value(65000, 1)]);
    }

    #[test]
    fn large_community_condition_matches() {
        let pol = Policy {
            statements: vec![Statement {
                conditions: Conditions {
                    large_communities_any: vec![LargeCommunity(64512, 1, 2)],
                    ..Conditions::default()
                },
                ..Statement::default()
            }],
            default_action: Action::Reject,
        };
        let mut a = PathAttrs::default();
        assert_eq!(pol.evaluate(&p("10.0.0.0/8"), &a), Verdict::Reject);
        a.large_communities = vec![LargeCommunity(64512, 1, 2)];
        assert_eq!(pol.evaluate(&p("10.0.0.0/8"), &a), Verdict::Accept(Some(0)));
    }

    #[test]
    fn negated_prefixes_as_path_start_local_pref_and_origin_are_conditions() {
        let range = PrefixRange::or_longer("10.0.0.0/8".parse().expect("n"));
        let only = |c: Conditions| Policy {
            statements: vec![Statement {
                conditions: c,
                ..Statement::default()
            }],
            default_action: Action::Reject,
        };
        let mut a = PathAttrs::default();
        let outside = only(Conditions {
            prefixes_none: vec![range.clone()],
            ..Conditions::default()
        });
        assert_eq!(outside.evaluate(&p("10.1.0.0/16"), &a), Verdict::Reject);
        assert_eq!(
            outside.evaluate(&p("11.1.0.0/16"), &a),
            Verdict::Accept(Some(0))
        );
        assert!(outside.depends_on_prefix());

        let starts = only(Conditions {
            as_path_prefix: vec![65000, 65001],
            ..Conditions::default()
        });
        a.as_path = vec![65000, 65002].into();
        assert_eq!(starts.evaluate(&p("10.0.0.0/8"), &a), Verdict::Reject);
        a.as_path = vec![65000, 65001, 7].into();
        assert_eq!(
            starts.evaluate(&p("10.0.0.0/8"), &a),
            Verdict::Accept(Some(0))
        );

        let pref = only(Conditions {
            local_pref: Some(2_147_483_547),
            ..Conditions::default()
        });
        assert_eq!(pref.evaluate(&p("10.0.0.0/8"), &a), Verdict::Reject);
        a.local_pref = Some(2_147_483_547);
        assert_eq!(
            pref.evaluate(&p("10.0.0.0/8"), &a),
            Verdict::Accept(Some(0))
        );

        let learned = only(Conditions {
            learned: Some(true),
            ..Conditions::default()
        });
        assert_eq!(
            learned.evaluate_route(&p("10.0.0.0/8"), &a, false),
            Verdict::Reject
        );
        assert_eq!(
            learned.evaluate_route(&p("10.0.0.0/8"), &a, true),
            Verdict::Accept(Some(0))
        );
    }

    #[test]
    fn prepend_puts_the_ases_in_front_in_order() {
        let set = SetActions {
            prepend_as_path: vec![65000, 65001],
            ..SetActions::default()
        };
        let mut a = PathAttrs {
            as_path: vec![7].into(),
            ..PathAttrs::default()
        };
        set.apply(&mut a);
        assert_eq!(&*a.as_path, &[65000, 65001, 7]);
    }

    #[test]
    fn policies_read_from_json() {
        let pol: Policy = serde_json::from_str(
            r#"{"statements":[{"match":{"prefixes":[{"net":"192.168.0.0/16","max_len":32}]},"action":"accept"}],"default_action":"reject"}"#,
        )
        .expect("parses");
        assert_eq!(
            pol.evaluate(&p("192.168.3.0/26"), &PathAttrs::default()),
            Verdict::Accept(Some(0))
        );
    }
}
