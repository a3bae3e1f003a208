//! The machine-readable IPAM report (`calicoctl ipam check -o report.json`) in Calico's
//! JSON shape, and `calicoctl ipam release --from-report` over one or several of them:
//! only what every report lists as leaked is released, only while it is still leaked.
//!
//! Calico's checks come first, with its messages: the reports must come from this
//! cluster (GUID), the same calicoctl version (or `--force`), at least one must be
//! current (the ClusterInformation revision it recorded is the current one) and the data
//! store locked (`calicoctl datastore migrate lock`, or `--force`). Unlike Calico, every
//! address is checked again before it goes: same handle, same sequence number, and no
//! workload or node using it now; so a stale report can never free a live address.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use datastore::Client;
use datastore::model::ClusterInformation;
use ipam::{CheckReport, Ipam, LeakRelease};
use serde::{Deserialize, Serialize};

use super::ipam_err;
use crate::error::{CliError, CliResult};

/// The version calicoctl puts in (and expects of) a report.
pub fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// Calico's `Report`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub version: String,
    #[serde(rename = "clusterGUID", default)]
    pub cluster_guid: String,
    #[serde(rename = "datastoreLocked", default)]
    pub datastore_locked: bool,
    #[serde(rename = "clusterInformationRevision", default)]
    pub cluster_info_revision: String,
    #[serde(rename = "clusterType", default)]
    pub cluster_type: String,
    /// By address: every allocation of it (one, unless IPAM is inconsistent).
    #[serde(default)]
    pub allocations: BTreeMap<String, Vec<ReportAllocation>>,
    #[serde(
        rename = "leakedHandles",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub leaked_handles: Vec<HandleInfo>,
}

/// Calico's `Allocation` as the report carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportAllocation {
    pub ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub creation_timestamp: String,
    #[serde(default)]
    pub in_use: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub borrowed: bool,
    #[serde(default)]
    pub owners: Vec<String>,
}

/// Calico's `HandleInfo` (its fields have no JSON tags: Go's names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandleInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "UID", default)]
    pub uid: Option<String>,
    #[serde(rename = "Revision", default)]
    pub revision: String,
}

/// ClusterInformation `default`, or an empty one where no calico-node wrote it yet.
pub async fn cluster_info(ipam: &Ipam) -> CliResult<ClusterInformation> {
    let client = Client::new(ipam.datastore().clone());
    let info = client
        .try_get::<ClusterInformation>("default")
        .await
        .map_err(|e| CliError::new(datastore::client::calico_text(&e)))?;
    Ok(info.unwrap_or_else(|| ClusterInformation::new("default", Default::default())))
}

/// The report of `r`, stamped with the cluster's identity `info` (read before `r`).
pub fn build(info: &ClusterInformation, r: &CheckReport) -> Report {
    let mut owners: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for u in r.workload_ips.iter().chain(&r.tunnel_ips) {
        owners.entry(u.ip).or_default().push(u.owner.clone());
    }
    let mut allocations: BTreeMap<String, Vec<ReportAllocation>> = BTreeMap::new();
    for a in &r.allocations {
        let attr = |k: &str| a.attrs.get(k).cloned().unwrap_or_default();
        let by = owners.get(&a.ip).cloned().unwrap_or_default();
        allocations
            .entry(a.ip.to_string())
            .or_default()
            .push(ReportAllocation {
                ip: a.ip.to_string(),
                handle: a.handle.clone().unwrap_or_default(),
                sequence_number: Some(a.sequence),
                pod: attr("pod"),
                namespace: attr("namespace"),
                node: a
                    .node()
                    .or(a.block_host.as_deref())
                    .unwrap_or("")
                    .to_string(),
                kind: attr("type"),
                creation_timestamp: attr("timestamp"),
                in_use: !by.is_empty(),
                borrowed: a.is_borrowed(),
                owners: by,
            });
    }
    let leaked_handles = r
        .handles_without_ips
        .iter()
        .map(|id| HandleInfo {
            id: id.clone(),
            uid: None,
            revision: r
                .handle_revisions
                .get(id)
                .map(ToString::to_string)
                .unwrap_or_default(),
        })
        .collect();
    Report {
        version: version(),
        cluster_guid: info.spec.cluster_guid.clone(),
        datastore_locked: info.spec.datastore_ready == Some(false),
        cluster_info_revision: info.metadata.resource_version.clone().unwrap_or_default(),
        cluster_type: info.spec.cluster_type.clone(),
        allocations,
        leaked_handles,
    }
}

/// Writes the report to `path`, refusing to leave half a file behind.
pub fn write(report: &Report, path: &str) -> CliResult<()> {
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| CliError::new(format!("cannot encode the report: {e}")))?;
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CliError::new(format!("cannot write the report {path}: {e}"))
        })
}

/// An allocation leaked in every report.
#[derive(Debug, Clone, PartialEq)]
struct Leak {
    ip: IpAddr,
    handle: Option<String>,
    sequence: Option<u64>,
}

/// Calico's `mergeReports`: the allocations not in use in every report, and the leaked
/// handles with the same revision in every report. An address counts only when every
/// report saw the same allocation of it (same handle, same sequence number): one freed
/// and allocated again between two reports is a new allocation, leaked in one of them.
fn merge(reports: &[Report]) -> (Vec<Leak>, Vec<HandleInfo>) {
    let mut ips: Option<BTreeMap<IpAddr, Leak>> = None;
    let mut handles: Option<BTreeMap<String, HandleInfo>> = None;
    for r in reports {
        let mut now = BTreeMap::new();
        for a in r.allocations.values().flatten().filter(|a| !a.in_use) {
            let Ok(ip) = a.ip.parse::<IpAddr>() else {
                continue;
            };
            let leak = Leak {
                ip,
                handle: (!a.handle.is_empty()).then(|| a.handle.clone()),
                sequence: a.sequence_number,
            };
            if ips
                .as_ref()
                .is_some_and(|before| before.get(&ip) != Some(&leak))
            {
                continue;
            }
            now.insert(ip, leak);
        }
        ips = Some(now);
        let mut merged = BTreeMap::new();
        for h in &r.leaked_handles {
            let keep = match &handles {
                None => true,
                Some(before) => before.get(&h.id).is_some_and(|b| b.revision == h.revision),
            };
            if keep {
                merged.insert(h.id.clone(), h.clone());
            }
        }
        handles = Some(merged);
    }
    (
        ips.unwrap_or_default().into_values().collect(),
        handles.unwrap_or_default().into_values().collect(),
    )
}

/// `calicoctl ipam release --from-report=<file>...`.
pub async fn release_from_reports(ipam: &Ipam, files: &[String], force: bool) -> CliResult<String> {
    let info = cluster_info(ipam).await?;
    let current = info.metadata.resource_version.clone().unwrap_or_default();
    let mut out = String::new();
    let mut reports = Vec::new();
    let mut found_current = false;
    for file in files {
        let text = std::fs::read(file)
            .map_err(|e| CliError::new(format!("cannot read the report {file}: {e}")))?;
        let r: Report = serde_json::from_slice(&text)
            .map_err(|e| CliError::new(format!("{file} is not an IPAM report: {e}")))?;
        if r.cluster_guid != info.spec.cluster_guid {
            return Err(CliError::new(format!(
                "cluster does not match the provided report ({file}): mismatched cluster GUID. Refusing to release"
            )));
        }
        if r.version != version() {
            if !force {
                return Err(CliError::new(format!(
                    "the provided report ({file}) was produced using a different version ({}) of calicoctl. Refusing to release",
                    r.version
                )));
            }
            let _ = writeln!(
                out,
                "WARNING: Report was produced using a different version of calicoctl. Ignoring due to --force option"
            );
        }
        found_current |= r.cluster_info_revision == current;
        reports.push(r);
    }
    if !found_current {
        return Err(CliError::new(
            "the provided reports are all stale - at least one should be up-to-date. Please generate a new report while the data store is locked and try again",
        ));
    }
    if info.spec.datastore_ready != Some(false) {
        if !force {
            return Err(CliError::new(
                "data store is not locked. Either lock the data store, or re-run with --force",
            ));
        }
        let _ = writeln!(
            out,
            "WARNING: Data store is not locked. Ignoring due to --force option"
        );
    }
    let (leaks, handles) = merge(&reports);
    let mut failures = 0;
    if leaks.is_empty() {
        let _ = writeln!(out, "Report didn't contain any leaked IPs to clean up.");
    } else {
        let _ = writeln!(out, "Releasing {} old IPs...", leaks.len());
        let (mut released, mut gone, mut reused, mut in_use) = (0, 0, 0, 0);
        let mut failed = Vec::new();
        for l in &leaks {
            // One failure does not stop the rest: the tally says what was done.
            match ipam
                .release_if_still_leaked(l.ip, l.handle.as_deref(), l.sequence)
                .await
            {
                Ok(LeakRelease::Released) => released += 1,
                Ok(LeakRelease::AlreadyFree) => gone += 1,
                Ok(LeakRelease::Reallocated) => reused += 1,
                Ok(LeakRelease::InUse) => in_use += 1,
                Err(e) => failed.push(format!("{}: {}", l.ip, ipam_err(e).message)),
            }
        }
        let _ = writeln!(out, "Released {released} IPs successfully");
        for f in &failed {
            let _ = writeln!(out, "Releasing {f}");
        }
        failures += failed.len();
        if gone > 0 {
            let _ = writeln!(
                out,
                "{gone} addresses marked as leaked in the report had already been cleaned up."
            );
        }
        if reused + in_use > 0 {
            let _ = writeln!(
                out,
                "{} addresses marked as leaked in the report are in use again (allocated anew or used by a workload or node) and were kept.",
                reused + in_use
            );
        }
    }
    if handles.is_empty() {
        let _ = writeln!(out, "Report didn't contain any handles to clean up.");
    } else {
        let _ = writeln!(out, "Deleting {} handles...", handles.len());
        let _ = writeln!(
            out,
            "Key: '.' = Deleted OK; 'x' = skip, handle missing/changed."
        );
        let (mut deleted, mut skipped, mut errors) = (0, 0, 0);
        let mut marks = String::new();
        for h in &handles {
            let Ok(revision) = h.revision.parse::<datastore::Revision>() else {
                skipped += 1;
                marks.push('x');
                continue;
            };
            match ipam.release_handle_if_unchanged(&h.id, revision).await {
                Ok(true) => {
                    deleted += 1;
                    marks.push('.');
                }
                Ok(false) => {
                    skipped += 1;
                    marks.push('x');
                }
                Err(e) => {
                    errors += 1;
                    let _ = write!(marks, "\nDeleting handle {} failed: {e}.\n", h.id);
                }
            }
        }
        let _ = writeln!(out, "{marks}");
        let _ = writeln!(
            out,
            "Released {deleted} handles; {skipped} skipped; {errors} errors."
        );
        failures += errors;
    }
    if failures > 0 {
        // Everything else was done and is listed; a second run retries only what failed.
        return Err(CliError::new(format!(
            "{out}{failures} releases failed (listed above); run the release again"
        )));
    }
    let _ = writeln!(out, "You may now unlock the data store.");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(ip: &str, in_use: bool, seq: u64) -> ReportAllocation {
        ReportAllocation {
            ip: ip.into(),
            handle: format!("net.{ip}"),
            sequence_number: Some(seq),
            in_use,
            ..ReportAllocation::default()
        }
    }

    fn report(allocs: Vec<ReportAllocation>, handles: &[(&str, &str)]) -> Report {
        let mut r = Report::default();
        for a in allocs {
            r.allocations.entry(a.ip.clone()).or_default().push(a);
        }
        r.leaked_handles = handles
            .iter()
            .map(|(id, rev)| HandleInfo {
                id: id.to_string(),
                uid: None,
                revision: rev.to_string(),
            })
            .collect();
        r
    }

    #[test]
    fn only_what_every_report_lists_as_leaked_is_released() {
        let first = report(
            vec![
                alloc("10.0.0.1", false, 1),
                alloc("10.0.0.2", false, 1),
                alloc("10.0.0.3", true, 1),
            ],
            &[("h1", "7"), ("h2", "8")],
        );
        let second = report(
            vec![
                alloc("10.0.0.1", false, 2),
                alloc("10.0.0.2", true, 1),
                alloc("10.0.0.3", false, 1),
            ],
            &[("h1", "7"), ("h2", "9")],
        );
        let (ips, handles) = merge(&[first.clone(), second]);
        // 10.0.0.1 was freed and allocated again between the reports (sequence 1, then
        // 2): not the same allocation, so not leaked in both.
        assert_eq!(ips, vec![]);
        let third = report(
            vec![alloc("10.0.0.1", false, 1), alloc("10.0.0.2", false, 1)],
            &[],
        );
        let (ips, _) = merge(&[first, third]);
        assert_eq!(
            ips.iter().map(|l| l.ip.to_string()).collect::<Vec<_>>(),
            vec!["10.0.0.1", "10.0.0.2"]
        );
        assert_eq!(
            handles.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            vec!["h1"]
        );
    }

    #[test]
    fn the_json_names_are_calicos() {
        let r = report(vec![alloc("10.0.0.1", false, 3)], &[("h1", "7")]);
        let v = serde_json::to_value(&r).expect("json");
        for key in [
            "version",
            "clusterGUID",
            "datastoreLocked",
            "clusterInformationRevision",
            "clusterType",
            "allocations",
            "leakedHandles",
        ] {
            assert!(v.get(key).is_some(), "{key}: {v}");
        }
        let a = &v["allocations"]["10.0.0.1"][0];
        assert_eq!(a["sequenceNumber"], 3);
        assert_eq!(a["inUse"], false);
        assert_eq!(v["leakedHandles"][0]["ID"], "h1");
        assert_eq!(v["leakedHandles"][0]["Revision"], "7");
    }
}
