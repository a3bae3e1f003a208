//! [`AnyResource`]: one resource of any kind, parsed from calicoctl input (multi-document
//! YAML or JSON, lists included) by `apiVersion` + `kind`; and [`Kind`], the kind names
//! and aliases calicoctl accepts on the command line.

use serde::Serialize;
use serde::de::Deserialize;
use thiserror::Error;

use crate::error::{Error, Result};
use crate::model::bfdconfig::BFDConfiguration;
use crate::model::bgpconfig::BGPConfiguration;
use crate::model::bgpfilter::BGPFilter;
use crate::model::bgppeer::BGPPeer;
use crate::model::clusterinformation::ClusterInformation;
use crate::model::felixconfig::FelixConfiguration;
use crate::model::ipamconfig::IPAMConfiguration;
use crate::model::ippool::IPPool;
use crate::model::meta::{API_VERSION, ObjectMeta};
use crate::model::node::Node;
use crate::model::resource::Resource;
use crate::model::types::parse_bad_enum;
use crate::model::workloadendpoint::WorkloadEndpoint;

/// The resource kinds calico-rs knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    IPPool,
    BGPPeer,
    BGPConfiguration,
    FelixConfiguration,
    IPAMConfiguration,
    WorkloadEndpoint,
    ClusterInformation,
    BFDConfiguration,
    BGPFilter,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 10] = [
        Kind::Node,
        Kind::IPPool,
        Kind::BGPPeer,
        Kind::BGPConfiguration,
        Kind::FelixConfiguration,
        Kind::IPAMConfiguration,
        Kind::WorkloadEndpoint,
        Kind::ClusterInformation,
        Kind::BFDConfiguration,
        Kind::BGPFilter,
    ];

    /// Calico's kind name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => Node::KIND,
            Kind::IPPool => IPPool::KIND,
            Kind::BGPPeer => BGPPeer::KIND,
            Kind::BGPConfiguration => BGPConfiguration::KIND,
            Kind::FelixConfiguration => FelixConfiguration::KIND,
            Kind::IPAMConfiguration => IPAMConfiguration::KIND,
            Kind::WorkloadEndpoint => WorkloadEndpoint::KIND,
            Kind::ClusterInformation => ClusterInformation::KIND,
            Kind::BFDConfiguration => BFDConfiguration::KIND,
            Kind::BGPFilter => BGPFilter::KIND,
        }
    }

    /// Whether the kind is namespaced.
    pub fn namespaced(self) -> bool {
        self == Kind::WorkloadEndpoint
    }

    /// Resolves a kind as typed on calicoctl's command line (case-insensitive, with
    /// calicoctl's aliases: `nodes`, `no`, `ipp`, `pool`, `bgpp`, `bp`, `bgpconfig`, ...).
    pub fn from_alias(s: &str) -> Option<Kind> {
        let k = s.to_ascii_lowercase();
        Some(match k.as_str() {
            "node" | "nodes" | "no" | "nos" => Kind::Node,
            "ippool" | "ippools" | "ipp" | "ipps" | "pool" | "pools" => Kind::IPPool,
            "bgppeer" | "bgppeers" | "bgpp" | "bgpps" | "bp" | "bps" => Kind::BGPPeer,
            "bgpconfiguration" | "bgpconfigurations" | "bgpconfig" | "bgpconfigs" => {
                Kind::BGPConfiguration
            }
            "felixconfiguration" | "felixconfigurations" | "felixconfig" | "felixconfigs" => {
                Kind::FelixConfiguration
            }
            "ipamconfiguration" | "ipamconfigurations" | "ipamconfig" | "ipamconfigs" => {
                Kind::IPAMConfiguration
            }
            "workloadendpoint" | "workloadendpoints" | "wep" | "weps" => Kind::WorkloadEndpoint,
            "clusterinformation" | "clusterinformations" | "clusterinfo" | "clusterinfos" => {
                Kind::ClusterInformation
            }
            "bfdconfiguration" | "bfdconfigurations" | "bfdconfig" | "bfdconfigs" => {
                Kind::BFDConfiguration
            }
            "bgpfilter" | "bgpfilters" | "bgpf" | "bgpfs" | "bf" | "bfs" => Kind::BGPFilter,
            _ => return None,
        })
    }

    /// Resolves an exact kind name from a document (`IPPool`).
    pub fn from_kind_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One resource of any kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyResource {
    Node(Node),
    IPPool(IPPool),
    BGPPeer(BGPPeer),
    BGPConfiguration(BGPConfiguration),
    FelixConfiguration(FelixConfiguration),
    IPAMConfiguration(IPAMConfiguration),
    WorkloadEndpoint(WorkloadEndpoint),
    ClusterInformation(ClusterInformation),
    BFDConfiguration(BFDConfiguration),
    BGPFilter(BGPFilter),
}

/// Runs `$body` with `$r` bound to the typed resource inside an [`AnyResource`].
#[macro_export]
macro_rules! with_any {
    ($any:expr, $r:ident => $body:expr) => {
        match $any {
            $crate::model::AnyResource::Node($r) => $body,
            $crate::model::AnyResource::IPPool($r) => $body,
            $crate::model::AnyResource::BGPPeer($r) => $body,
            $crate::model::AnyResource::BGPConfiguration($r) => $body,
            $crate::model::AnyResource::FelixConfiguration($r) => $body,
            $crate::model::AnyResource::IPAMConfiguration($r) => $body,
            $crate::model::AnyResource::WorkloadEndpoint($r) => $body,
            $crate::model::AnyResource::ClusterInformation($r) => $body,
            $crate::model::AnyResource::BFDConfiguration($r) => $body,
            $crate::model::AnyResource::BGPFilter($r) => $body,
        }
    };
}

impl AnyResource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            AnyResource::Node(_) => Kind::Node,
            AnyResource::IPPool(_) => Kind::IPPool,
            AnyResource::BGPPeer(_) => Kind::BGPPeer,
            AnyResource::BGPConfiguration(_) => Kind::BGPConfiguration,
            AnyResource::FelixConfiguration(_) => Kind::FelixConfiguration,
            AnyResource::IPAMConfiguration(_) => Kind::IPAMConfiguration,
            AnyResource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            AnyResource::ClusterInformation(_) => Kind::ClusterInformation,
            AnyResource::BFDConfiguration(_) => Kind::BFDConfiguration,
            AnyResource::BGPFilter(_) => Kind::BGPFilter,
        }
    }

    /// The metadata.
    pub fn meta(&self) -> &ObjectMeta {
        with_any!(self, r => r.meta())
    }

    /// The metadata, mutably.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        with_any!(self, r => r.meta_mut())
    }

    /// `Kind(name)` / `Kind(ns/name)`.
    pub fn ident(&self) -> String {
        with_any!(self, r => r.ident())
    }

    /// The datastore key.
    pub fn key(&self) -> String {
        with_any!(self, r => r.key())
    }

    /// Applies Calico's defaults.
    pub fn set_defaults(&mut self) {
        with_any!(self, r => r.set_defaults())
    }

    /// Validates the resource on its own.
    pub fn validate(&self) -> Result<()> {
        with_any!(self, r => r.validate())
    }

    /// The resource as a JSON value (Calico's field order).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Decodes a JSON value as a resource of `kind`.
    pub fn from_value(kind: Kind, value: serde_json::Value) -> Result<AnyResource, DocumentError> {
        Ok(match kind {
            Kind::Node => AnyResource::Node(typed(kind, value)?),
            Kind::IPPool => AnyResource::IPPool(typed(kind, value)?),
            Kind::BGPPeer => AnyResource::BGPPeer(typed(kind, value)?),
            Kind::BGPConfiguration => AnyResource::BGPConfiguration(typed(kind, value)?),
            Kind::FelixConfiguration => AnyResource::FelixConfiguration(typed(kind, value)?),
            Kind::IPAMConfiguration => AnyResource::IPAMConfiguration(typed(kind, value)?),
            Kind::WorkloadEndpoint => AnyResource::WorkloadEndpoint(typed(kind, value)?),
            Kind::ClusterInformation => AnyResource::ClusterInformation(typed(kind, value)?),
            Kind::BFDConfiguration => AnyResource::BFDConfiguration(typed(kind, value)?),
            Kind::BGPFilter => AnyResource::BGPFilter(typed(kind, value)?),
        })
    }
}

/// Why an input document could not be turned into a resource.
#[derive(Debug, Error)]
pub enum DocumentError {
    /// Not YAML/JSON, or not a mapping.
    #[error("{0}")]
    Syntax(String),
    /// calicoctl's message for an unknown apiVersion/kind pair.
    #[error("Unknown resource type ({kind}) and/or version ({version})")]
    UnknownKind { kind: String, version: String },
    /// A field with a value outside its allowed set, in Calico's field-error form.
    #[error("{0}")]
    Field(Error),
    /// Unknown field, wrong type, ...: `Kind path: message`.
    #[error("{kind} {path}: {message}")]
    Decode {
        kind: String,
        path: String,
        message: String,
    },
}

/// Converts a serde path (`spec.ipipMode`) into Calico's Go field path (`IPPool.Spec.IPIPMode`).
fn go_field_path(kind: &str, path: &str) -> String {
    let mut out = kind.to_string();
    for seg in path.split('.') {
        let (name, index) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let go = match name {
            "ipipMode" => "IPIPMode".to_string(),
            "vxlanMode" => "VXLANMode".to_string(),
            "bgp" => "BGP".to_string(),
            _ => {
                let mut c = name.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            }
        };
        out.push('.');
        out.push_str(&go);
        out.push_str(if index.is_empty() { "" } else { "[]" });
    }
    out
}

fn typed<T: for<'de> Deserialize<'de>>(
    kind: Kind,
    value: serde_json::Value,
) -> Result<T, DocumentError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        match parse_bad_enum(&message) {
            Some((value, allowed)) => DocumentError::Field(Error::invalid(
                go_field_path(kind.name(), &path),
                value,
                format!("must be one of: {allowed}"),
            )),
            None => DocumentError::Decode {
                kind: kind.name().to_string(),
                path: if path == "." {
                    "resource".to_string()
                } else {
                    path
                },
                message,
            },
        }
    })
}

/// Turns one JSON document into resources: a single resource, a `List`/`<Kind>List`
/// with `items`, or a sequence of resources.
fn collect(value: serde_json::Value, out: &mut Vec<AnyResource>) -> Result<(), DocumentError> {
    use serde_json::Value;
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => items.into_iter().try_for_each(|v| collect(v, out)),
        Value::Object(map) => {
            let kind = map
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let version = map
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if kind.ends_with("List") && map.contains_key("items") {
                let items = map.get("items").cloned().unwrap_or(Value::Null);
                return collect(items, out);
            }
            let known = Kind::from_kind_name(&kind).filter(|_| version == API_VERSION);
            let Some(k) = known else {
                return Err(DocumentError::UnknownKind { kind, version });
            };
            out.push(AnyResource::from_value(k, Value::Object(map))?);
            Ok(())
        }
        other => Err(DocumentError::Syntax(format!(
            "resource must be a mapping, found {}",
            match other {
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "a scalar",
            }
        ))),
    }
}

/// Parses calicoctl input: one or more YAML documents (`---`-separated) or JSON, each a
/// resource, a list, or a sequence of resources. Defaults are not applied here.
pub fn parse_documents(text: &str) -> Result<Vec<AnyResource>, DocumentError> {
    let mut out = Vec::new();
    let text = crate::model::yaml11::booleans_as_calico_reads_them(text);
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc)
            .map_err(|e| DocumentError::Syntax(format!("error parsing YAML: {e}")))?;
        collect(value, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for a in ["node", "nodes", "no", "nos", "Nodes"] {
            assert_eq!(Kind::from_alias(a), Some(Kind::Node), "{a}");
        }
        for a in [
            "ippool", "ippools", "ipp", "ipps", "pool", "pools", "ipPool",
        ] {
            assert_eq!(Kind::from_alias(a), Some(Kind::IPPool), "{a}");
        }
        for a in ["bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"] {
            assert_eq!(Kind::from_alias(a), Some(Kind::BGPPeer), "{a}");
        }
        assert_eq!(Kind::from_alias("bgpconfig"), Some(Kind::BGPConfiguration));
        assert_eq!(
            Kind::from_alias("felixconfigs"),
            Some(Kind::FelixConfiguration)
        );
        assert_eq!(
            Kind::from_alias("ipamconfig"),
            Some(Kind::IPAMConfiguration)
        );
        assert_eq!(Kind::from_alias("weps"), Some(Kind::WorkloadEndpoint));
        assert_eq!(
            Kind::from_alias("clusterinformations"),
            Some(Kind::ClusterInformation)
        );
        assert_eq!(Kind::from_alias("pod"), None);
    }

    #[test]
    fn multi_document_yaml_and_lists() {
        let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\n\
                    spec: {cidr: 10.0.0.0/16}\n---\n---\napiVersion: projectcalico.org/v3\n\
                    kind: BGPPeerList\nitems:\n- apiVersion: projectcalico.org/v3\n  \
                    kind: BGPPeer\n  metadata: {name: p}\n  spec: {peerIP: 1.2.3.4, asNumber: 64567}\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].kind(), Kind::IPPool);
        assert_eq!(docs[1].ident(), "BGPPeer(p)");
        let json = r#"[{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"n1"},"spec":{}}]"#;
        assert_eq!(parse_documents(json).unwrap()[0].kind(), Kind::Node);
    }

    #[test]
    fn errors() {
        let e = parse_documents("apiVersion: projectcalico.org/v3\nkind: Pod\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unknown resource type (Pod) and/or version (projectcalico.org/v3)"
        );
        let e = parse_documents("apiVersion: v1\nkind: IPPool\n").unwrap_err();
        assert!(e.to_string().contains("(v1)"));
        let e = parse_documents(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\n\
             spec: {cidr: 10.0.0.0/16, ipipMode: always}\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "error with field IPPool.Spec.IPIPMode = 'always' (must be one of: Always, \
             CrossSubnet, Never)"
        );
        let e = parse_documents(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\n\
             spec: {cidr: 10.0.0.0/16, foo: 1}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("IPPool spec.foo: unknown field `foo`"),
            "{e}"
        );
        assert!(parse_documents("a: [b").is_err());
    }
}
