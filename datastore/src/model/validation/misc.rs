//! Rules for FelixConfiguration, IPAMConfiguration, WorkloadEndpoint and BFDConfiguration.

use crate::error::{Error, Result};
use crate::model::felixconfig::FelixConfigurationSpec;
use crate::model::ipamconfig::IPAMConfigurationSpec;
use crate::model::meta::ObjectMeta;
use crate::model::types::GoDuration;
use crate::model::validation::{check_cidr, check_ip, check_mac};
use crate::model::workloadendpoint::WorkloadEndpointSpec;

const LOG_LEVELS: &[&str] = &["debug", "info", "warning", "error", "fatal", "none"];

/// Checks a FelixConfiguration spec.
pub fn validate_felix(spec: &FelixConfigurationSpec) -> Result<()> {
    if let Some(vni) = spec.vxlan_vni
        && (vni == 0 || vni > 0x00ff_ffff)
    {
        return Err(Error::invalid(
            "FelixConfiguration.Spec.VXLANVNI",
            vni.to_string(),
            "VXLAN VNI must be between 1 and 16777215",
        ));
    }
    let ports = [
        ("VXLANPort", spec.vxlan_port),
        ("HealthPort", spec.health_port),
        ("PrometheusMetricsPort", spec.prometheus_metrics_port),
    ];
    for (field, port) in ports {
        if port == Some(0) {
            return Err(Error::invalid(
                format!("FelixConfiguration.Spec.{field}"),
                "0",
                "port must be between 1 and 65535",
            ));
        }
    }
    if let Some(a) = &spec.nat_outgoing_address {
        check_ip("FelixConfiguration.Spec.NATOutgoingAddress", a)?;
    }
    if let Some(a) = &spec.device_route_source_address {
        check_ip("FelixConfiguration.Spec.DeviceRouteSourceAddress", a)?;
    }
    if let Some(p) = &spec.mtu_iface_pattern
        && regex::Regex::new(p).is_err()
    {
        return Err(Error::invalid(
            "FelixConfiguration.Spec.MTUIfacePattern",
            p,
            "invalid regular expression",
        ));
    }
    let levels = [
        ("LogSeverityScreen", &spec.log_severity_screen),
        ("LogSeverityFile", &spec.log_severity_file),
        ("LogSeveritySys", &spec.log_severity_sys),
    ];
    for (field, level) in levels {
        if let Some(l) = level
            && !LOG_LEVELS.contains(&l.to_ascii_lowercase().as_str())
        {
            return Err(Error::invalid(
                format!("FelixConfiguration.Spec.{field}"),
                l,
                "must be one of Debug, Info, Warning, Error, Fatal",
            ));
        }
    }
    Ok(())
}

/// Checks an IPAMConfiguration: singleton `default`, cross-field rules.
pub fn validate_ipam_config(meta: &ObjectMeta, spec: &IPAMConfigurationSpec) -> Result<()> {
    if meta.name != "default" {
        return Err(Error::invalid(
            "Metadata.Name",
            &meta.name,
            "Cannot create an IPAMConfiguration resource with a name other than \"default\"",
        ));
    }
    if !spec.strict_affinity && !spec.auto_allocate_blocks {
        return Err(Error::invalid(
            "IPAMConfiguration.Spec",
            "",
            "Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time",
        ));
    }
    if spec.max_blocks_per_host < 0 {
        return Err(Error::invalid(
            "IPAMConfiguration.Spec.MaxBlocksPerHost",
            spec.max_blocks_per_host.to_string(),
            "MaxBlocksPerHost must not be negative",
        ));
    }
    if spec.max_blocks_per_host > 0 && !spec.strict_affinity {
        return Err(Error::invalid(
            "IPAMConfiguration.Spec.MaxBlocksPerHost",
            spec.max_blocks_per_host.to_string(),
            "MaxBlocksPerHost requires StrictAffinity to be true",
        ));
    }
    if !(0..=1200).contains(&spec.ip_cooldown_seconds) {
        return Err(Error::invalid(
            "IPAMConfiguration.Spec.IPCooldownSeconds",
            spec.ip_cooldown_seconds.to_string(),
            "IPCooldownSeconds must be between 0 and 1200",
        ));
    }
    Ok(())
}

/// Checks a WorkloadEndpoint spec.
pub fn validate_wep(spec: &WorkloadEndpointSpec) -> Result<()> {
    for n in &spec.ip_networks {
        check_cidr("WorkloadEndpoint.Spec.IPNetworks", n)?;
    }
    if !spec.mac.is_empty() {
        check_mac("WorkloadEndpoint.Spec.MAC", &spec.mac)?;
    }
    if spec.interface_name.len() > 15 {
        return Err(Error::invalid(
            "WorkloadEndpoint.Spec.InterfaceName",
            &spec.interface_name,
            "interface name must be at most 15 characters",
        ));
    }
    for nat in &spec.ip_nats {
        check_ip("WorkloadEndpoint.Spec.IPNATs.InternalIP", &nat.internal_ip)?;
        check_ip("WorkloadEndpoint.Spec.IPNATs.ExternalIP", &nat.external_ip)?;
    }
    Ok(())
}

/// BFDConfiguration: a valid node selector, patterns that are a name or a prefix with one
/// trailing `*`, intervals of at least 1 ms and at most a minute (the idle interval up to
/// an hour), multipliers 1-255.
pub fn validate_bfd(spec: &crate::model::BFDConfigurationSpec) -> Result<()> {
    use std::time::Duration;
    if let Some(sel) = &spec.node_selector {
        crate::selector::Selector::parse(sel).map_err(|e| {
            Error::invalid(
                "BFDConfiguration.Spec.NodeSelector",
                sel.clone(),
                e.to_string(),
            )
        })?;
    }
    for i in &spec.interfaces {
        let field = |f: &str| format!("BFDConfiguration.Spec.Interfaces[].{f}");
        let p = &i.match_pattern;
        let stem = p.strip_suffix('*').unwrap_or(p);
        if p.is_empty() || stem.contains('*') || stem.len() > 15 || stem.contains(['/', ' ']) {
            return Err(Error::invalid(
                field("MatchPattern"),
                p.clone(),
                "must be an interface name, a prefix followed by '*', or '*'",
            ));
        }
        let bounded = [
            ("MinimumRecvInterval", i.minimum_recv_interval, 60),
            ("MinimumSendInterval", i.minimum_send_interval, 60),
            ("IdleSendInterval", i.idle_send_interval, 3600),
        ];
        for (name, d, max_secs) in bounded {
            if let Some(d) = d
                && (d.0 < Duration::from_millis(1) || d.0 > Duration::from_secs(max_secs))
            {
                return Err(Error::invalid(
                    field(name),
                    d.to_string(),
                    format!(
                        "must be between 1ms and {}",
                        GoDuration(Duration::from_secs(max_secs))
                    ),
                ));
            }
        }
        if let Some(m) = i.multiplier
            && !(1..=255).contains(&m)
        {
            return Err(Error::invalid(
                field("Multiplier"),
                m.to_string(),
                "must be between 1 and 255",
            ));
        }
    }
    Ok(())
}
