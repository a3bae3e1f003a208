//! BFDConfiguration: BFD for the BGP sessions of the selected nodes, per interface, in
//! Calico Enterprise's format (projectcalico.org/v3, cluster scoped). A BGP peer reached
//! over an interface that a matching entry names gets a BFD session with its timers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::GoDuration;

/// `BFDConfiguration = Object<BFDConfigurationSpec>`.
pub type BFDConfiguration = Object<BFDConfigurationSpec>;

/// BFDConfiguration spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BFDConfigurationSpec {
    /// The nodes it applies to (a selector on Node labels; empty = none, as in Calico).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<BFDInterface>,
}

/// The BFD timers of the interfaces whose name matches `matchPattern`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BFDInterface {
    /// An interface name, a prefix with `*` (`eth*`), or `*` for every interface.
    pub match_pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_recv_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_send_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_send_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<u32>,
}

impl BFDInterface {
    /// Calico Enterprise's defaults: 10 ms, 100 ms, 1 m, 5.
    pub const DEFAULT_RECV: Duration = Duration::from_millis(10);
    pub const DEFAULT_SEND: Duration = Duration::from_millis(100);
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);
    pub const DEFAULT_MULTIPLIER: u32 = 5;

    /// Whether `interface` is one this entry names.
    pub fn matches(&self, interface: &str) -> bool {
        match self.match_pattern.strip_suffix('*') {
            Some(prefix) => interface.starts_with(prefix),
            None => interface == self.match_pattern,
        }
    }

    pub fn min_recv_interval(&self) -> Duration {
        self.minimum_recv_interval
            .map_or(Self::DEFAULT_RECV, |d| d.0)
    }

    pub fn min_send_interval(&self) -> Duration {
        self.minimum_send_interval
            .map_or(Self::DEFAULT_SEND, |d| d.0)
    }

    pub fn idle_send_interval(&self) -> Duration {
        self.idle_send_interval.map_or(Self::DEFAULT_IDLE, |d| d.0)
    }

    pub fn detect_multiplier(&self) -> u8 {
        u8::try_from(self.multiplier.unwrap_or(Self::DEFAULT_MULTIPLIER)).unwrap_or(u8::MAX)
    }
}

impl Spec for BFDConfigurationSpec {
    const KIND: &'static str = "BFDConfiguration";
    const PLURAL: &'static str = "bfdconfigurations";

    fn validate(&self, _meta: &ObjectMeta) -> Result<()> {
        crate::validation::misc::validate_bfd(self)
    }
}
