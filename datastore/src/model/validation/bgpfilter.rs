//! BGPFilter rules: Calico's field validators (`libcalico-go/lib/validator/v3/validator.go`:
//! `netv4`/`netv6`, `bgpFilterInterface`, `bgpFilterPrefixLengthV4/V6`, community values)
//! and the CRD's rules (`api/pkg/apis/projectcalico/v3/bgpfilter.go` XValidation, with its
//! messages): cidr and matchOperator together, prefixLength only with a cidr, operations
//! only on Accept, exactly one community value, exactly one field per operation.

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::model::bgpfilter::{BGPFilterRule, BGPFilterSpec, FilterAction};
use crate::model::validation::bgp::is_community;

/// Calico's priority range (`...RoutePriority` of FelixConfiguration).
const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = 1..=2_147_483_646;
const MAX_OPERATIONS: usize = 10;
const MAX_PREPEND: usize = 10;

/// Checks every rule of every list.
pub fn validate(spec: &BGPFilterSpec) -> Result<()> {
    for (list, ipv6, rules) in spec.lists() {
        for (i, rule) in rules.iter().enumerate() {
            check_rule(&format!("BGPFilter.Spec.{list}[{i}]"), ipv6, rule)?;
        }
    }
    Ok(())
}

fn check_rule(at: &str, ipv6: bool, rule: &BGPFilterRule) -> Result<()> {
    let field = |f: &str| format!("{at}.{f}");
    if rule.action.is_none() {
        return Err(Error::invalid(field("Action"), "", "action is required"));
    }
    let max_len: i32 = if ipv6 { 128 } else { 32 };
    if !rule.cidr.is_empty() {
        let family_ok = match rule.cidr.parse::<IpNet>() {
            Ok(IpNet::V4(_)) => !ipv6,
            Ok(IpNet::V6(_)) => ipv6,
            Err(_) => false,
        };
        if !family_ok {
            let what = if ipv6 { "an IPv6 CIDR" } else { "an IPv4 CIDR" };
            return Err(Error::invalid(
                field("CIDR"),
                &rule.cidr,
                format!("must be {what}"),
            ));
        }
    }
    if rule.cidr.is_empty() != rule.match_operator.is_none() {
        return Err(Error::invalid(
            field("CIDR"),
            &rule.cidr,
            "cidr and matchOperator must both be set or both be empty",
        ));
    }
    if let Some(len) = rule.prefix_length {
        if rule.cidr.is_empty() {
            return Err(Error::invalid(
                field("PrefixLength"),
                "",
                "cidr is required when prefixLength is set",
            ));
        }
        for (name, v) in [("Min", len.min), ("Max", len.max)] {
            if let Some(v) = v
                && !(0..=max_len).contains(&v)
            {
                return Err(Error::invalid(
                    field(&format!("PrefixLength.{name}")),
                    v.to_string(),
                    format!("prefix length must be between 0 and {max_len}"),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (len.min, len.max)
            && lo > hi
        {
            return Err(Error::invalid(
                field("PrefixLength.Min"),
                lo.to_string(),
                "min must not be greater than max",
            ));
        }
    }
    if !rule.interface.is_empty() && !is_filter_interface(&rule.interface) {
        return Err(Error::invalid(
            field("Interface"),
            &rule.interface,
            "interface must be 1-15 characters of [a-zA-Z0-9_.*-]",
        ));
    }
    if let Some(c) = &rule.communities {
        match c.values.as_slice() {
            [one] => check_community(&field("Communities.Values[0]"), one)?,
            _ => {
                return Err(Error::invalid(
                    field("Communities.Values"),
                    c.values.join(","),
                    "exactly one community value must be specified",
                ));
            }
        }
    }
    if let Some(p) = rule.priority {
        check_priority(&field("Priority"), p)?;
    }
    if !rule.operations.is_empty() && rule.action != Some(FilterAction::Accept) {
        return Err(Error::invalid(
            field("Operations"),
            "",
            "operations may only be used with action Accept",
        ));
    }
    if rule.operations.len() > MAX_OPERATIONS {
        return Err(Error::invalid(
            field("Operations"),
            rule.operations.len().to_string(),
            format!("at most {MAX_OPERATIONS} operations"),
        ));
    }
    for (j, op) in rule.operations.iter().enumerate() {
        let at = field(&format!("Operations[{j}]"));
        let set = [
            op.add_community.is_some(),
            op.prepend_as_path.is_some(),
            op.set_priority.is_some(),
        ];
        if set.iter().filter(|&&s| s).count() != 1 {
            return Err(Error::invalid(
                at,
                "",
                "exactly one of addCommunity, prependASPath and setPriority must be set",
            ));
        }
        if let Some(add) = &op.add_community {
            check_community(&format!("{at}.AddCommunity.Value"), &add.value)?;
        }
        if let Some(pre) = &op.prepend_as_path
            && !(1..=MAX_PREPEND).contains(&pre.prefix.len())
        {
            return Err(Error::invalid(
                format!("{at}.PrependASPath.Prefix"),
                pre.prefix.len().to_string(),
                format!("between 1 and {MAX_PREPEND} AS numbers"),
            ));
        }
        if let Some(sp) = &op.set_priority {
            let f = format!("{at}.SetPriority.Value");
            match sp.value {
                Some(v) => check_priority(&f, v)?,
                None => return Err(Error::invalid(f, "", "value is required")),
            }
        }
    }
    Ok(())
}

/// `bgpFilterInterface`: `*` or 1-15 of `[a-zA-Z0-9_.*-]`.
fn is_filter_interface(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'*' | b'-'))
}

fn check_community(field: &str, value: &str) -> Result<()> {
    if is_community(value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            value,
            "invalid community value or format used.",
        ))
    }
}

fn check_priority(field: &str, value: i64) -> Result<()> {
    if PRIORITY_RANGE.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            value.to_string(),
            "priority must be between 1 and 2147483646",
        ))
    }
}
