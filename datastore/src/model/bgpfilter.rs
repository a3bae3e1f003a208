//! BGPFilter: ordered import/export rules per address family, attached to BGPPeers by
//! name (`BGPPeer.spec.filters`). projectcalico.org/v3, cluster scoped, Calico 3.32's shape
//! (`api/pkg/apis/projectcalico/v3/bgpfilter.go`). The first rule that matches a route
//! decides; a route no rule matches goes on to Calico's own import/export behaviour.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::{AsNumber, string_enum};

/// `BGPFilter = Object<BGPFilterSpec>`.
pub type BGPFilter = Object<BGPFilterSpec>;

/// The four rule lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

/// Which way a rule list acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDirection {
    Import,
    Export,
}

impl BGPFilterSpec {
    /// The rules for one direction and family (`ipv6` false: IPv4).
    pub fn rules(&self, direction: FilterDirection, ipv6: bool) -> &[BGPFilterRule] {
        match (direction, ipv6) {
            (FilterDirection::Import, false) => &self.import_v4,
            (FilterDirection::Export, false) => &self.export_v4,
            (FilterDirection::Import, true) => &self.import_v6,
            (FilterDirection::Export, true) => &self.export_v6,
        }
    }

    /// The lists with their field names (`ExportV4`, ...) and families.
    pub fn lists(&self) -> [(&'static str, bool, &[BGPFilterRule]); 4] {
        [
            ("ExportV4", false, &self.export_v4),
            ("ImportV4", false, &self.import_v4),
            ("ExportV6", true, &self.export_v6),
            ("ImportV6", true, &self.import_v6),
        ]
    }
}

string_enum! {
    /// How the route's prefix is compared with `cidr`.
    MatchOperator {
        Equal = "Equal",
        NotEqual = "NotEqual",
        In = "In",
        NotIn = "NotIn",
    }
}

string_enum! {
    /// What a matching rule does.
    FilterAction {
        Accept = "Accept",
        Reject = "Reject",
    }
}

string_enum! {
    /// `source`: only routes learned from BGP peers.
    FilterSource {
        RemotePeers = "RemotePeers",
    }
}

string_enum! {
    /// `peerType`: only towards / from peers of this type (same AS = iBGP).
    FilterPeerType {
        EBgp = "eBGP",
        IBgp = "iBGP",
    }
}

/// One rule: every match given must hold; then `action` (with `operations` on Accept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<FilterSource>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<FilterPeerType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    #[serde(
        default,
        rename = "asPathPrefix",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<AsNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Required (checked by validation, with the field named).
    pub action: Option<FilterAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<FilterOperation>,
}

/// `prefixLength: {min, max}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

/// `communities: {values: [aa:nn]}` (exactly one value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityMatch {
    #[serde(default)]
    pub values: Vec<String>,
}

/// One route change; exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    #[serde(
        default,
        rename = "prependASPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependAsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<SetPriority>,
}

/// `addCommunity: {value: aa:nn}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCommunity {
    #[serde(default)]
    pub value: String,
}

/// `prependASPath: {prefix: [AS, ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrependAsPath {
    #[serde(default)]
    pub prefix: Vec<AsNumber>,
}

/// `setPriority: {value: N}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    pub value: Option<i64>,
}

impl Spec for BGPFilterSpec {
    const KIND: &'static str = "BGPFilter";
    const PLURAL: &'static str = "bgpfilters";

    fn validate(&self, _meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::bgpfilter::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{AnyResource, Kind};

    /// Parses one BGPFilter document and validates it, as `calicoctl apply` does.
    fn check(yaml: &str) -> Result<(), String> {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        let r = AnyResource::from_value(Kind::BGPFilter, value).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| e.to_string())
    }

    fn doc(list: &str, rule: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata: {{name: f}}\n\
             spec:\n  {list}:\n  - {rule}\n"
        )
    }

    #[test]
    fn calicos_full_example_is_valid() {
        // Example A of confd/docs/bgpfilter-bird-config-examples.md (projectcalico/calico).
        let rule = "{cidr: 10.244.0.0/16, matchOperator: In, prefixLength: {min: 24, max: 28}, \
                    peerType: iBGP, communities: {values: ['65000:100']}, asPathPrefix: [65000], \
                    priority: 512, interface: eth0, action: Accept, operations: \
                    [{setPriority: {value: 256}}, {addCommunity: {value: '65000:200'}}, \
                    {prependASPath: {prefix: [65001, 65002]}}]}";
        assert_eq!(check(&doc("importV4", rule)), Ok(()));
        let v6 = "{cidr: 'fd00::/8', matchOperator: NotIn, source: RemotePeers, action: Reject}";
        assert_eq!(check(&doc("exportV6", v6)), Ok(()));
        assert_eq!(check(&doc("exportV4", "{action: Reject}")), Ok(()));
    }

    #[test]
    fn bad_rules_name_their_field_and_rule() {
        let cases = [
            (
                "importV4",
                "{matchOperator: In, action: Accept}",
                "ImportV4[0].CIDR",
                "both be set",
            ),
            (
                "importV4",
                "{cidr: 10.0.0.0/8, action: Accept}",
                "CIDR",
                "both be set",
            ),
            (
                "importV4",
                "{cidr: 'fd00::/8', matchOperator: In, action: Accept}",
                "CIDR",
                "IPv4",
            ),
            (
                "exportV6",
                "{cidr: 10.0.0.0/8, matchOperator: In, action: Accept}",
                "ExportV6[0].CIDR",
                "IPv6",
            ),
            (
                "importV4",
                "{prefixLength: {min: 8}, action: Accept}",
                "PrefixLength",
                "cidr is required",
            ),
            (
                "importV4",
                "{cidr: 10.0.0.0/8, matchOperator: In, prefixLength: {max: 33}, action: Accept}",
                "PrefixLength.Max",
                "between 0 and 32",
            ),
            (
                "importV6",
                "{cidr: 'fd00::/8', matchOperator: In, prefixLength: {min: 129}, action: Accept}",
                "PrefixLength.Min",
                "between 0 and 128",
            ),
            ("importV4", "{cidr: 10.0.0.0/8}", "Action", "required"),
            (
                "importV4",
                "{action: Drop}",
                "ImportV4[].Action",
                "Accept, Reject",
            ),
            (
                "importV4",
                "{matchOperator: Within, cidr: 10.0.0.0/8, action: Accept}",
                "MatchOperator",
                "Equal",
            ),
            (
                "importV4",
                "{peerType: external, action: Accept}",
                "PeerType",
                "eBGP, iBGP",
            ),
            (
                "importV4",
                "{source: Local, action: Accept}",
                "Source",
                "RemotePeers",
            ),
            (
                "importV4",
                "{interface: 'a b', action: Accept}",
                "Interface",
                "[a-zA-Z0-9_.*-]",
            ),
            (
                "importV4",
                "{interface: sixteen-chars-xx, action: Accept}",
                "Interface",
                "1-15",
            ),
            (
                "importV4",
                "{communities: {values: ['65536:1']}, action: Accept}",
                "Communities.Values[0]",
                "community",
            ),
            (
                "importV4",
                "{communities: {values: ['1:1', '1:2']}, action: Accept}",
                "Communities.Values",
                "exactly one",
            ),
            (
                "importV4",
                "{priority: 0, action: Accept}",
                "Priority",
                "between 1",
            ),
            (
                "importV4",
                "{action: Reject, operations: [{addCommunity: {value: '1:1'}}]}",
                "Operations",
                "only be used with action Accept",
            ),
            (
                "importV4",
                "{action: Accept, operations: [{addCommunity: {value: '1:1'}, setPriority: {value: 5}}]}",
                "Operations[0]",
                "exactly one",
            ),
            (
                "importV4",
                "{action: Accept, operations: [{}]}",
                "Operations[0]",
                "exactly one",
            ),
            (
                "importV4",
                "{action: Accept, operations: [{addCommunity: {value: 'x:1'}}]}",
                "AddCommunity.Value",
                "community",
            ),
            (
                "importV4",
                "{action: Accept, operations: [{prependASPath: {prefix: []}}]}",
                "PrependASPath.Prefix",
                "between 1 and 10",
            ),
            (
                "importV4",
                "{action: Accept, operations: [{setPriority: {value: 2147483647}}]}",
                "SetPriority.Value",
                "between 1",
            ),
            (
                "importV4",
                "{action: Accept, nextHop: self}",
                "nextHop",
                "unknown field",
            ),
        ];
        for (list, rule, field, rule_text) in cases {
            let err = check(&doc(list, rule)).expect_err(rule);
            assert!(err.contains(field), "{rule}: {err}");
            assert!(err.contains(rule_text), "{rule}: {err}");
        }
    }
}
