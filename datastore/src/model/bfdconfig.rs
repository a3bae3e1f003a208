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
        crate::model::validation::misc::validate_bfd(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{AnyResource, Kind};

    /// Parses one BFDConfiguration document and validates it, as `calicoctl apply` does.
    fn check(yaml: &str) -> Result<(), String> {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        let r =
            AnyResource::from_value(Kind::BFDConfiguration, value).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| e.to_string())
    }

    fn doc(interface: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BFDConfiguration\nmetadata: {{name: default}}\n\
             spec:\n  nodeSelector: all()\n  interfaces:\n  - {interface}\n"
        )
    }

    #[test]
    fn calico_enterprises_sample_is_valid() {
        // The sample of Calico Enterprise's BFDConfiguration reference page.
        assert_eq!(
            check(&doc(
                "{matchPattern: '*', minimumRecvInterval: 10ms, minimumSendInterval: 100ms, \
                 idleSendInterval: 1m, multiplier: 5}"
            )),
            Ok(())
        );
    }

    #[test]
    fn bad_values_name_their_field_and_rule() {
        let cases = [
            ("{matchPattern: 'e*th*'}", "MatchPattern"),
            ("{matchPattern: ''}", "MatchPattern"),
            ("{matchPattern: eth0, multiplier: 0}", "Multiplier"),
            ("{matchPattern: eth0, multiplier: 300}", "Multiplier"),
            (
                "{matchPattern: eth0, minimumSendInterval: 0s}",
                "MinimumSendInterval",
            ),
            (
                "{matchPattern: eth0, minimumRecvInterval: 2m}",
                "MinimumRecvInterval",
            ),
            (
                "{matchPattern: eth0, idleSendInterval: 2h}",
                "IdleSendInterval",
            ),
            ("{matchPattern: eth0, tx: 1}", "tx"),
        ];
        for (interface, field) in cases {
            let err = check(&doc(interface)).expect_err(interface);
            assert!(err.contains(field), "{interface}: {err}");
        }
        let bad_selector = doc("{matchPattern: eth0}").replace("all()", "'has(('");
        assert!(
            check(&bad_selector).is_err_and(|e| e.contains("NodeSelector")),
            "{:?}",
            check(&bad_selector)
        );
    }
}
