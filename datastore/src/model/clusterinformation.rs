//! ClusterInformation (singleton `default`): cluster GUID, type and version. Written by
//! calico-node at start; read-only for calicoctl (`calicoctl version` shows it).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;

/// `ClusterInformation = Object<ClusterInformationSpec>`.
pub type ClusterInformation = Object<ClusterInformationSpec>;

/// ClusterInformation spec with Calico's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInformationSpec {
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calico_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Spec for ClusterInformationSpec {
    const KIND: &'static str = "ClusterInformation";
    const PLURAL: &'static str = "clusterinformations";
    const READ_ONLY: bool = true;

    fn validate(&self, _meta: &ObjectMeta) -> Result<()> {
        Ok(())
    }
}
