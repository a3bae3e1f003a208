//! Calico's validation rules and messages (reference calico.md §2). Every failure is an
//! [`Error::Invalid`](crate::Error::Invalid) with Calico's field path, e.g.
//! `error with field IPPool.Spec.CIDR = '10.0.0.1/16' (IPPool CIDR is not strictly masked)`.
//! Each kind's rules live in its own file; this module holds the shared checks. Part of the
//! model: a resource's `validate` (in its model file) runs the rules of its kind here.

pub mod bgp;
pub mod bgpfilter;
pub mod ippool;
pub mod misc;
pub mod node;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::model::meta::ObjectMeta;
use crate::model::types::AsNumber;
use crate::selector::Selector;

const DNS1123_REASON: &str = "name must consist of lower case alphanumeric characters, '-' or \
                              '.', and must start and end with an alphanumeric character";

/// True if `s` is a DNS-1123 subdomain: at most 253 characters of `[a-z0-9.-]`, labels
/// separated by `.` each starting and ending with an alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Checks the metadata: a DNS-1123 name (`insufficient identifiers` if empty), a valid
/// namespace for namespaced kinds, label keys that selectors can address.
pub fn validate_meta(kind: &str, namespaced: bool, meta: &ObjectMeta) -> Result<()> {
    if meta.name.is_empty() {
        return Err(Error::invalid(
            "Metadata.Name",
            "",
            "insufficient identifiers, missing 'name'",
        ));
    }
    if !is_dns1123_subdomain(&meta.name) {
        return Err(Error::invalid("Metadata.Name", &meta.name, DNS1123_REASON));
    }
    if namespaced {
        let ns = meta.namespace.as_deref().unwrap_or("");
        if !ns.is_empty() && !is_dns1123_subdomain(ns) {
            return Err(Error::invalid("Metadata.Namespace", ns, DNS1123_REASON));
        }
    } else if meta.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
        return Err(Error::invalid(
            "Metadata.Namespace",
            meta.namespace.as_deref().unwrap_or(""),
            format!("namespace is not allowed on a {kind}"),
        ));
    }
    for key in meta.labels.keys() {
        let ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'));
        if !ok {
            return Err(Error::invalid(
                "Metadata.Labels",
                key,
                "invalid label key: must consist of alphanumeric characters, '/', '.', '-' or '_'",
            ));
        }
    }
    Ok(())
}

/// A selector field must parse.
pub fn check_selector(field: &str, value: &str) -> Result<()> {
    Selector::parse(value).map(|_| ()).map_err(|e| {
        Error::invalid(
            field,
            value,
            format!("invalid selector: {} at position {}", e.message, e.position),
        )
    })
}

/// AS numbers must be in 1..=4294967295.
pub fn check_as_number(field: &str, asn: AsNumber) -> Result<()> {
    if asn.0 == 0 {
        return Err(Error::invalid(
            field,
            "0",
            "AS number must be between 1 and 4294967295",
        ));
    }
    Ok(())
}

/// An IP address (v4 or v6).
pub fn check_ip(field: &str, value: &str) -> Result<IpAddr> {
    value
        .parse::<IpAddr>()
        .map_err(|_| Error::invalid(field, value, "invalid IP address"))
}

/// A CIDR in interface form (host bits allowed): `10.0.0.1/24`.
pub fn check_cidr(field: &str, value: &str) -> Result<IpNet> {
    value
        .parse::<IpNet>()
        .map_err(|_| Error::invalid(field, value, "invalid CIDR"))
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
pub fn check_mac(field: &str, value: &str) -> Result<()> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, value, "invalid MAC address"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_names() {
        for ok in ["a", "my.ippool-1", "default-ipv4-ippool", "node.n1", "0abc"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "Bad", "a_b", "-a", "a-", "a..b", ".a", "a b"] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }
}
