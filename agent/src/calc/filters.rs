//! BGPFilters as the speaker's policy, with Calico's semantics (confd's
//! `bgp_processor.go` `buildImportFilter`/`buildExportFilter` and `template_funcs.go`
//! `BGPFilterBIRDFuncs`): a session runs the filters its BGPPeer names, in order, that
//! exist and have rules for its direction and family; the first rule that matches decides;
//! a route no rule takes goes on to Calico's own behaviour (import: accept; export: the
//! pool routes, else reject). `peerType` is settled here, per session.
//!
//! Not applied: `interface` (the speaker does not know a route's outgoing interface; a
//! rule with one is skipped), and `priority`/`setPriority` on
//! routes this node originates (BIRD reads them from the kernel route's metric; here only
//! a received LOCAL_PREF carries a priority).

use bgp::policy::{Action, Conditions, Policy, PrefixRange, SetActions, Statement};
use bgp::wire::LargeCommunity;
use datastore::model::{
    BGPFilterRule, BGPFilterSpec, FilterAction, FilterDirection, FilterPeerType, FilterSource,
    MatchOperator,
};
use ipnet::IpNet;

use crate::state::ClusterState;

/// BIRD's largest int: Calico maps a priority P to LOCAL_PREF `BIRD_INT_MAX - P`.
const BIRD_INT_MAX: u32 = 2_147_483_647;

/// A community value as Calico writes it: `aa:nn` (16-bit parts) or `aa:nn:mm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunityValue {
    Standard(u32),
    Large(LargeCommunity),
}

impl CommunityValue {
    /// Parses `aa:nn` / `aa:nn:mm`; `None` for anything else.
    pub fn parse(s: &str) -> Option<CommunityValue> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [a, n] => {
                let (a, n) = (a.parse::<u16>().ok()?, n.parse::<u16>().ok()?);
                Some(CommunityValue::Standard(
                    (u32::from(a) << 16) | u32::from(n),
                ))
            }
            [a, n, m] => Some(CommunityValue::Large(LargeCommunity(
                a.parse().ok()?,
                n.parse().ok()?,
                m.parse().ok()?,
            ))),
            _ => None,
        }
    }
}

/// The filters of `names` a session of this family runs in `direction`: those that exist
/// and have rules for it, in the BGPPeer's order (Calico skips the others silently).
pub fn applied<'a>(
    state: &'a ClusterState,
    names: &'a [String],
    direction: FilterDirection,
    ipv6: bool,
) -> Vec<(&'a str, &'a BGPFilterSpec)> {
    names
        .iter()
        .filter_map(|name| {
            let f = state.bgp_filters.get(name)?;
            (!f.spec.rules(direction, ipv6).is_empty()).then_some((name.as_str(), &f.spec))
        })
        .collect()
}

/// What a session's operator should know about the BGPFilters its BGPPeer names: one that
/// does not exist (Calico skips it silently), one whose stored version was refused (the
/// last valid version, if any, stays applied), a rule calico-rs skips (`interface`).
pub fn notes(state: &ClusterState, names: &[String], ipv6: bool) -> Vec<String> {
    let family = if ipv6 { "V6" } else { "V4" };
    let mut out = Vec::new();
    for name in names {
        let filter = state.bgp_filters.get(name);
        if let Some(why) = state.refused_filters.get(name) {
            let kept = if filter.is_some() {
                "the last valid version is applied"
            } else {
                "it is not applied"
            };
            out.push(format!(
                "BGPFilter {name}: the stored version is refused ({why}); {kept}"
            ));
        } else if filter.is_none() {
            out.push(format!("BGPFilter {name} does not exist"));
        }
        let Some(filter) = filter else { continue };
        for (list, v6, rules) in filter.spec.lists() {
            if v6 != ipv6 {
                continue;
            }
            for (i, rule) in rules.iter().enumerate() {
                if !rule.interface.is_empty() {
                    let list = list.replace(family, &format!("{family}[{i}]"));
                    out.push(format!(
                        "BGPFilter {name}: {list} matches interface {:?}, which calico-rs does \
                         not apply; the rule is skipped",
                        rule.interface
                    ));
                }
            }
        }
    }
    out
}

/// The import policy of a session: its filters' rules, then accept.
pub fn import_policy(filters: &[(&str, &BGPFilterSpec)], ipv6: bool, ibgp: bool) -> Policy {
    Policy {
        statements: statements(filters, FilterDirection::Import, ipv6, ibgp),
        default_action: Action::Accept,
    }
}

/// The export policy of a session: its filters' rules, then Calico's export (`base`).
pub fn export_policy(
    filters: &[(&str, &BGPFilterSpec)],
    ipv6: bool,
    ibgp: bool,
    base: &Policy,
) -> Policy {
    let mut statements = statements(filters, FilterDirection::Export, ipv6, ibgp);
    statements.extend(base.statements.iter().cloned());
    Policy {
        statements,
        default_action: base.default_action,
    }
}

fn statements(
    filters: &[(&str, &BGPFilterSpec)],
    direction: FilterDirection,
    ipv6: bool,
    ibgp: bool,
) -> Vec<Statement> {
    filters
        .iter()
        .flat_map(|(_, spec)| {
            spec.rules(direction, ipv6)
                .iter()
                .filter_map(move |rule| statement(rule, ibgp))
        })
        .collect()
}

/// One rule as a statement; `None` when it does not apply to this session.
fn statement(rule: &BGPFilterRule, ibgp: bool) -> Option<Statement> {
    match rule.peer_type {
        Some(FilterPeerType::IBgp) if !ibgp => return None,
        Some(FilterPeerType::EBgp) if ibgp => return None,
        _ => {}
    }
    if !rule.interface.is_empty() {
        return None;
    }
    let mut conditions = Conditions {
        learned: (rule.source == Some(FilterSource::RemotePeers)).then_some(true),
        as_path_prefix: rule.as_path_prefix.iter().map(|a| a.0).collect(),
        local_pref: rule.priority.and_then(local_pref_of),
        ..Conditions::default()
    };
    if let (Ok(net), Some(op)) = (rule.cidr.parse::<IpNet>(), rule.match_operator) {
        let range = prefix_range(net.trunc(), rule);
        match op {
            MatchOperator::In | MatchOperator::Equal => conditions.prefixes.push(range),
            MatchOperator::NotIn | MatchOperator::NotEqual => conditions.prefixes_none.push(range),
        }
    }
    if let Some(value) = rule.communities.as_ref().and_then(|c| c.values.first()) {
        match CommunityValue::parse(value)? {
            CommunityValue::Standard(c) => conditions.communities_any.push(c),
            CommunityValue::Large(c) => conditions.large_communities_any.push(c),
        }
    }
    let mut set = SetActions::default();
    for op in &rule.operations {
        if let Some(add) = &op.add_community {
            match CommunityValue::parse(&add.value)? {
                CommunityValue::Standard(c) => set.add_communities.push(c),
                CommunityValue::Large(c) => set.add_large_communities.push(c),
            }
        }
        if let Some(p) = &op.prepend_as_path {
            // Each prepend goes in front of the earlier ones, as in BIRD.
            let mut path: Vec<u32> = p.prefix.iter().map(|a| a.0).collect();
            path.append(&mut set.prepend_as_path);
            set.prepend_as_path = path;
        }
        if let Some(lp) = op
            .set_priority
            .as_ref()
            .and_then(|s| s.value)
            .and_then(local_pref_of)
        {
            set.local_pref = Some(lp);
        }
    }
    Some(Statement {
        conditions,
        action: match rule.action {
            Some(FilterAction::Accept) => Action::Accept,
            Some(FilterAction::Reject) | None => Action::Reject,
        },
        set,
    })
}

/// `cidr` matched by `In`: the CIDR and everything inside it, narrowed by `prefixLength`
/// (Calico's `filterMatchPrefixLength`); by `Equal`: the CIDR itself.
fn prefix_range(net: IpNet, rule: &BGPFilterRule) -> PrefixRange {
    let exact = matches!(
        rule.match_operator,
        Some(MatchOperator::Equal | MatchOperator::NotEqual)
    );
    let own = net.prefix_len();
    let longest = net.max_prefix_len();
    match rule.prefix_length {
        None if exact => PrefixRange::exact(net),
        None => PrefixRange::or_longer(net),
        Some(len) => {
            let clamp = |v: i32| u8::try_from(v.clamp(0, i32::from(longest))).unwrap_or(longest);
            PrefixRange {
                net,
                min_len: Some(len.min.map_or(own, clamp).max(own)),
                max_len: Some(len.max.map_or(longest, clamp)),
            }
        }
    }
}

fn local_pref_of(priority: i64) -> Option<u32> {
    let p = u32::try_from(priority).ok()?;
    BIRD_INT_MAX.checked_sub(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp::policy::Verdict;
    use bgp::prefix::Prefix4;
    use bgp::wire::PathAttrs;
    use datastore::model::{AnyResource, BGPFilter, parse_documents};

    /// A BGPFilter from YAML, validated as calicoctl would.
    fn filter(yaml: &str) -> BGPFilter {
        let doc = format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata: {{name: f}}\nspec:\n{yaml}"
        );
        let mut docs = parse_documents(&doc).expect("parses");
        let r = docs.pop().expect("one document");
        r.validate().expect("valid");
        match r {
            AnyResource::BGPFilter(f) => f,
            other => panic!("not a filter: {other:?}"),
        }
    }

    fn p(s: &str) -> Prefix4 {
        s.parse().expect("prefix")
    }

    fn verdicts(pol: &Policy, prefixes: &[&str]) -> Vec<bool> {
        prefixes
            .iter()
            .map(|x| {
                matches!(
                    pol.evaluate(&p(x), &PathAttrs::default()),
                    Verdict::Accept(_)
                )
            })
            .collect()
    }

    #[test]
    fn match_operators_behave_as_birds_operators() {
        // The rules of Calico's confd corpus case bgpfilter/match_operators (importV4).
        let f = filter(
            "  importV4:\n\
             \x20 - {action: Accept, matchOperator: In, cidr: 44.0.0.0/16}\n\
             \x20 - {action: Reject, matchOperator: NotIn, cidr: 44.1.0.0/16}\n\
             \x20 - {action: Accept, matchOperator: Equal, cidr: 44.2.0.0/16}\n\
             \x20 - {action: Reject, matchOperator: NotEqual, cidr: 44.3.0.0/16}\n",
        );
        let pol = import_policy(&[("f", &f.spec)], false, true);
        // 44.0.x is In the first; anything outside 44.1/16 is then rejected by NotIn; inside
        // it, NotEqual 44.3.0.0/16 rejects; only 44.0/16 gets through (as in BIRD).
        assert_eq!(
            verdicts(
                &pol,
                &["44.0.5.0/24", "44.2.0.0/16", "44.1.0.0/24", "44.1.0.0/16"]
            ),
            [true, false, false, false]
        );
        // Without the filter's rules everything is accepted (Calico's import default).
        assert_eq!(
            verdicts(&import_policy(&[], false, true), &["44.1.0.0/24"]),
            [true]
        );
    }

    #[test]
    fn prefix_length_narrows_in_and_equal_is_exact() {
        let f = filter(
            "  exportV4:\n\
             \x20 - {action: Accept, matchOperator: In, cidr: 10.0.0.0/8, prefixLength: {min: 16, max: 24}}\n\
             \x20 - {action: Accept, matchOperator: Equal, cidr: 172.16.0.0/12}\n",
        );
        let pol = export_policy(&[("f", &f.spec)], false, true, &Policy::reject_all());
        assert_eq!(
            verdicts(
                &pol,
                &[
                    "10.1.0.0/16",
                    "10.1.2.0/24",
                    "10.1.2.0/26",
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "172.16.1.0/24"
                ]
            ),
            [true, true, false, false, true, false]
        );
    }

    #[test]
    fn peer_type_keeps_only_the_rules_for_the_session() {
        // Calico's corpus case bgpfilter/peer_type (exportV4).
        let f = filter(
            "  exportV4:\n\
             \x20 - {action: Accept, peerType: eBGP, matchOperator: In, cidr: 10.0.0.0/8}\n\
             \x20 - {action: Reject, peerType: iBGP, matchOperator: In, cidr: 172.16.0.0/12}\n\
             \x20 - {action: Reject}\n",
        );
        let ebgp = export_policy(&[("f", &f.spec)], false, false, &Policy::accept_all());
        let ibgp = export_policy(&[("f", &f.spec)], false, true, &Policy::accept_all());
        assert_eq!(ebgp.statements.len(), 2);
        assert_eq!(ibgp.statements.len(), 2);
        assert_eq!(
            verdicts(&ebgp, &["10.1.0.0/16", "172.16.0.0/16"]),
            [true, false]
        );
        assert_eq!(
            verdicts(&ibgp, &["10.1.0.0/16", "172.16.0.0/16"]),
            [false, false]
        );
    }

    #[test]
    fn operations_become_the_statements_changes_in_birds_order() {
        // Calico's corpus case bgpfilter/communities_and_operations, and example A's
        // prepend order (confd/docs/bgpfilter-bird-config-examples.md).
        let f = filter(
            "  exportV4:\n\
             \x20 - action: Accept\n\
             \x20   communities: {values: ['65000:42']}\n\
             \x20   operations:\n\
             \x20   - addCommunity: {value: '65001:200'}\n\
             \x20   - prependASPath: {prefix: [65000]}\n\
             \x20   - prependASPath: {prefix: [65001, 65002]}\n\
             \x20   - addCommunity: {value: '65000:300:400'}\n\
             \x20   - setPriority: {value: 100}\n",
        );
        let pol = export_policy(&[("f", &f.spec)], false, false, &Policy::reject_all());
        let s = &pol.statements[0];
        assert_eq!(s.conditions.communities_any, [(65000 << 16) | 42]);
        assert_eq!(s.set.add_communities, [(65001 << 16) | 200]);
        assert_eq!(
            s.set.add_large_communities,
            [LargeCommunity(65000, 300, 400)]
        );
        assert_eq!(s.set.prepend_as_path, [65001, 65002, 65000]);
        assert_eq!(s.set.local_pref, Some(2_147_483_547));
    }

    #[test]
    fn sessions_run_the_named_filters_that_exist_and_have_rules_for_them() {
        let mut state = ClusterState::default();
        let mut a = filter("  importV4:\n  - {action: Reject}\n");
        a.metadata.name = "a".into();
        let mut b = filter("  exportV6:\n  - {action: Reject}\n");
        b.metadata.name = "b".into();
        state.bgp_filters.insert("a".into(), a);
        state.bgp_filters.insert("b".into(), b);
        let names = vec!["missing".to_string(), "b".into(), "a".into()];
        let list = |d, v6| -> Vec<&str> {
            applied(&state, &names, d, v6)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(list(FilterDirection::Import, false), ["a"]);
        assert!(list(FilterDirection::Export, false).is_empty());
        assert_eq!(list(FilterDirection::Export, true), ["b"]);
    }

    #[test]
    fn notes_name_missing_and_refused_filters_and_skipped_interface_rules() {
        let mut state = ClusterState::default();
        let mut f = filter(
            "  exportV4:\n  - {action: Reject}\n  - {action: Reject, interface: eth0}\n\
             \x20 importV6:\n  - {action: Reject, interface: eth1}\n",
        );
        f.metadata.name = "f".into();
        state.bgp_filters.insert("f".into(), f);
        state
            .refused_filters
            .insert("g".into(), "cidr and matchOperator must both be set".into());
        let names = vec!["f".to_string(), "g".into(), "h".into()];
        assert_eq!(
            notes(&state, &names, false),
            [
                "BGPFilter f: ExportV4[1] matches interface \"eth0\", which calico-rs does not \
                 apply; the rule is skipped",
                "BGPFilter g: the stored version is refused (cidr and matchOperator must both be \
                 set); it is not applied",
                "BGPFilter h does not exist",
            ]
        );
        assert_eq!(notes(&state, &names, true).len(), 3);
        assert!(notes(&state, &names, true)[0].contains("ImportV6[0]"));
    }

    #[test]
    fn community_values_parse_as_calico_writes_them() {
        assert_eq!(
            CommunityValue::parse("65000:100"),
            Some(CommunityValue::Standard((65000 << 16) | 100))
        );
        assert_eq!(
            CommunityValue::parse("1:2:3"),
            Some(CommunityValue::Large(LargeCommunity(1, 2, 3)))
        );
        assert_eq!(CommunityValue::parse("65536:1"), None);
        assert_eq!(CommunityValue::parse("1"), None);
    }
}
