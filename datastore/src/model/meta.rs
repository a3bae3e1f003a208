//! Object metadata shared by every v3 resource, and the generic [`Object`] envelope
//! (`apiVersion`, `kind`, `metadata`, `spec`) that each kind instantiates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API group and version of every resource: `projectcalico.org/v3`.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// Kubernetes-style object metadata, as Calico's v3 API carries it. Written by the user
/// (`name`, `namespace`, `labels`, `annotations`) and by the [`Client`](crate::Client)
/// (`resourceVersion`, `uid`, `creationTimestamp`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The datastore revision of the last write, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// RFC 3339 UTC time of creation, e.g. `2024-05-01T10:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Values written as YAML scalars (`routeReflector: true`) are their text, as Calico's
    /// YAML reader makes them.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_strings"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Metadata with just a name.
    pub fn named(name: impl Into<String>) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        }
    }

    /// Clears what `--export` drops: namespace, uid, resourceVersion, creation and
    /// deletion fields.
    pub fn clear_for_export(&mut self) {
        self.namespace = None;
        self.uid = None;
        self.resource_version = None;
        self.creation_timestamp = None;
        self.deletion_timestamp = None;
        self.generation = None;
    }
}

/// `apiVersion` and `kind`: enough to pick the type of a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
}

/// One v3 resource: type meta, metadata and the kind's spec `S`. Each kind is an alias,
/// e.g. [`IPPool`](crate::model::IPPool) = `Object<IPPoolSpec>`. Serialized in Calico's
/// order (`kind`, `apiVersion`, `metadata`, `spec`); unknown top-level fields are
/// rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec:` with nothing after it (YAML null) is an empty spec, as in Calico.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        bound(deserialize = "S: Deserialize<'de> + Default")
    )]
    pub spec: S,
    /// Only Nodes have a status in Calico (written as `{}`); kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A label value as YAML may spell it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

fn scalar_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, Scalar>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
            };
            (k, text)
        })
        .collect())
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
