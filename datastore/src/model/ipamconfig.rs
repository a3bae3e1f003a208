//! IPAMConfiguration (v3 kind, singleton `default`): strict affinity, automatic block
//! allocation and the per-host block limit. The IPAM library keeps its own storage form
//! at `/calico/ipam/v2/config` (model/ipam.rs); this is the calicoctl-facing resource.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;

/// `IPAMConfiguration = Object<IPAMConfigurationSpec>`.
pub type IPAMConfiguration = Object<IPAMConfigurationSpec>;

fn default_true() -> bool {
    true
}

/// IPAMConfiguration spec. Defaults: strictAffinity false, autoAllocateBlocks true,
/// maxBlocksPerHost 0 (= 20).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default = "default_true")]
    pub auto_allocate_blocks: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_blocks_per_host: i32,
    #[serde(
        default,
        rename = "kubeVirtVMAddressPersistence",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_virt_vm_address_persistence: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ip_cooldown_seconds: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl Default for IPAMConfigurationSpec {
    fn default() -> Self {
        IPAMConfigurationSpec {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
            kube_virt_vm_address_persistence: None,
            ip_cooldown_seconds: 0,
        }
    }
}

impl IPAMConfigurationSpec {
    /// The per-host block limit in effect (0 means 20).
    pub fn effective_max_blocks_per_host(&self) -> u32 {
        if self.max_blocks_per_host <= 0 {
            20
        } else {
            self.max_blocks_per_host.unsigned_abs()
        }
    }
}

impl Spec for IPAMConfigurationSpec {
    const KIND: &'static str = "IPAMConfiguration";
    const PLURAL: &'static str = "ipamconfigurations";

    fn validate(&self, meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::misc::validate_ipam_config(meta, self)
    }
}
