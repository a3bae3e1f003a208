//! The runtime's environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS`, `CNI_PATH`), checked as the reference `skel` checks it: missing variables are
//! named, a container id or interface name that could escape a path or a key is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{CniError, Result};

/// The operation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Command> {
        match s {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "VERSION" => Ok(Command::Version),
            "STATUS" => Ok(Command::Status),
            other => Err(CniError::env(format!(
                "unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, STATUS or VERSION"
            ))),
        }
    }
}

/// The checked invocation environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`, e.g. `/run/netns/pod1`; optional for DEL.
    pub netns: Option<String>,
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs (`K8S_POD_NAME`, `K8S_POD_NAMESPACE`, ...).
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads the environment through `var` (the process environment in the binaries).
    pub fn from_vars(command: Command, var: impl Fn(&str) -> Option<String>) -> Result<CniEnv> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let needs_netns = matches!(command, Command::Add | Command::Check);
        let mut missing = Vec::new();
        for (name, required) in [
            ("CNI_CONTAINERID", true),
            ("CNI_NETNS", needs_netns),
            ("CNI_IFNAME", true),
            ("CNI_PATH", true),
        ] {
            if required && get(name).is_none() {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(CniError::env(format!(
                "required env variables [{}] missing",
                missing.join(",")
            )));
        }
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        validate_container_id(&container_id)?;
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        validate_ifname(&ifname)?;
        Ok(CniEnv {
            command,
            container_id,
            netns: get("CNI_NETNS"),
            ifname,
            args: parse_args(&get("CNI_ARGS").unwrap_or_default())?,
            path: get("CNI_PATH")
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        })
    }

    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME`, when a Kubernetes runtime calls.
    pub fn k8s_pod(&self) -> Option<(&str, &str)> {
        let ns = self.args.get("K8S_POD_NAMESPACE")?;
        let pod = self.args.get("K8S_POD_NAME")?;
        (!ns.is_empty() && !pod.is_empty()).then_some((ns.as_str(), pod.as_str()))
    }
}

/// The spec's rule: starts with an alphanumeric, then alphanumerics, `_`, `.`, `-`.
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            crate::error::code::INVALID_ENV,
            "invalid characters in containerID",
            id,
        ))
    }
}

/// Linux interface names: 1..=15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(CniError::new(
            crate::error::code::INVALID_ENV,
            "invalid CNI_IFNAME: 1 to 15 characters, no '/', ':' or spaces",
            name,
        ));
    }
    Ok(())
}

/// Parses `CNI_ARGS` (`K=V;K2=V2`).
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::env(format!(
                "invalid CNI_ARGS pair {pair:?}: expected KEY=VALUE"
            ))
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn missing_variables_are_named() {
        let err = CniEnv::from_vars(
            Command::Add,
            vars(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]),
        )
        .expect_err("missing");
        assert_eq!(err.code, code::INVALID_ENV);
        assert_eq!(
            err.msg,
            "required env variables [CNI_NETNS,CNI_PATH] missing"
        );
        // DEL does not need a netns.
        assert!(
            CniEnv::from_vars(
                Command::Del,
                vars(&[
                    ("CNI_CONTAINERID", "c1"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_PATH", "/opt/cni/bin")
                ]),
            )
            .is_ok()
        );
    }

    #[test]
    fn container_ids_with_path_characters_are_refused() {
        assert!(validate_container_id("abc-1_2.3").is_ok());
        for bad in ["../etc", "a/b", "-x", "", "a b"] {
            let err = validate_container_id(bad).expect_err(bad);
            assert_eq!(err.code, code::INVALID_ENV);
        }
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("sixteen-chars-xx").is_err());
    }

    #[test]
    fn k8s_args_name_the_pod() -> Result<()> {
        let env = CniEnv::from_vars(
            Command::Add,
            vars(&[
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/a:/b"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx",
                ),
            ]),
        )?;
        assert_eq!(env.k8s_pod(), Some(("default", "nginx")));
        assert_eq!(env.path.len(), 2);
        Ok(())
    }
}
