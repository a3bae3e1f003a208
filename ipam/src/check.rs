//! `calicoctl ipam check`: IPAM's records against each other and against what uses the
//! addresses (workload endpoints, node tunnel addresses). Read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use datastore::keys;
use datastore::model::ipam::AffinityState;
use ipnet::IpNet;
use serde_json::Value;

use crate::client::Ipam;
use crate::error::Result;
use crate::query::Allocation;

/// Who uses an address outside IPAM: a workload endpoint or a node's tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub ip: IpAddr,
    /// `Workload <namespace>/<name>` or `Node <name> (ipip tunnel)`.
    pub owner: String,
}

/// What `check` found. [`CheckReport::problems`] counts the inconsistencies.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub blocks: usize,
    /// Every allocation in every block.
    pub allocations: Vec<Allocation>,
    /// Enabled pools.
    pub active_pools: Vec<IpNet>,
    /// Addresses recorded by workload endpoints.
    pub workload_ips: Vec<InUse>,
    /// Tunnel addresses recorded on Nodes.
    pub tunnel_ips: Vec<InUse>,
    /// Allocated in IPAM but used by no workload endpoint or node (leaked: the workload is
    /// gone).
    pub leaked: Vec<Allocation>,
    /// In use by a workload or node but not inside an active pool.
    pub in_use_not_in_pool: Vec<InUse>,
    /// In use inside an active pool but not allocated in IPAM.
    pub in_use_not_allocated: Vec<InUse>,
    /// Handle resources whose blocks hold no address for them.
    pub handles_without_ips: Vec<String>,
    /// The revision of every handle resource, by id (a guarded delete compares it).
    pub handle_revisions: BTreeMap<String, datastore::Revision>,
    /// Handle resources that do have addresses.
    pub handles_with_ips: usize,
    /// Handles named by allocations but with no handle resource (leaked addresses).
    pub missing_handles: BTreeMap<String, Vec<IpAddr>>,
    /// Blocks and affinities out of step: a block affine to a host without that host's
    /// affinity key, or a confirmed affinity whose block is missing or is another host's.
    pub affinity_problems: Vec<String>,
}

impl CheckReport {
    /// Number of problems found.
    pub fn problems(&self) -> usize {
        self.leaked.len()
            + self.in_use_not_in_pool.len()
            + self.in_use_not_allocated.len()
            + self.handles_without_ips.len()
            + self.missing_handles.len()
            + self.affinity_problems.len()
    }
}

fn ip_of(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.parse().ok()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

// ===== impl Ipam =====

impl Ipam {
    /// Addresses WorkloadEndpoints record (`spec.ipNetworks`).
    pub async fn workload_ips(&self) -> Result<Vec<InUse>> {
        let weps = self
            .ds
            .list(&keys::resource_prefix("workloadendpoints"))
            .await?;
        let mut out = Vec::new();
        for kv in &weps.items {
            let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let owner = format!(
                "Workload {}/{}",
                str_at(&v, &["metadata", "namespace"]).unwrap_or(""),
                str_at(&v, &["metadata", "name"]).unwrap_or("")
            );
            let nets = v
                .pointer("/spec/ipNetworks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for ip in nets.iter().filter_map(Value::as_str).filter_map(ip_of) {
                out.push(InUse {
                    ip,
                    owner: owner.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Tunnel addresses Nodes record (IPIP and VXLAN).
    pub async fn tunnel_ips(&self) -> Result<Vec<InUse>> {
        let nodes = self.ds.list(&keys::resource_prefix("nodes")).await?;
        let mut out = Vec::new();
        for kv in &nodes.items {
            let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let name = str_at(&v, &["metadata", "name"]).unwrap_or("").to_string();
            for (path, what) in [
                (&["spec", "bgp", "ipv4IPIPTunnelAddr"][..], "ipip tunnel"),
                (&["spec", "ipv4VXLANTunnelAddr"][..], "vxlan tunnel"),
            ] {
                if let Some(ip) = str_at(&v, path).and_then(ip_of) {
                    out.push(InUse {
                        ip,
                        owner: format!("Node {name} ({what})"),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Every address a workload or node uses now.
    pub async fn usage(&self) -> Result<Vec<InUse>> {
        let (mut w, t) = tokio::try_join!(self.workload_ips(), self.tunnel_ips())?;
        w.extend(t);
        Ok(w)
    }

    /// Cross-checks IPAM (see [`CheckReport`]).
    pub async fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let blocks = self.all_blocks().await?;
        report.blocks = blocks.len();
        report.allocations = self.allocations().await?;
        report.active_pools = self
            .pools()
            .await?
            .iter()
            .filter(|p| !p.disabled)
            .map(|p| p.cidr)
            .collect();

        // What uses addresses outside IPAM.
        report.workload_ips = self.workload_ips().await?;
        report.tunnel_ips = self.tunnel_ips().await?;

        // Allocated but not in use; in use but not allocated.
        let in_use: BTreeSet<IpAddr> = report
            .workload_ips
            .iter()
            .chain(&report.tunnel_ips)
            .map(|u| u.ip)
            .collect();
        let allocated: BTreeSet<IpAddr> = report.allocations.iter().map(|a| a.ip).collect();
        report.leaked = report
            .allocations
            .iter()
            .filter(|a| !in_use.contains(&a.ip))
            .cloned()
            .collect();
        for u in report.workload_ips.iter().chain(&report.tunnel_ips) {
            if !report.active_pools.iter().any(|p| p.contains(&u.ip)) {
                report.in_use_not_in_pool.push(u.clone());
            } else if !allocated.contains(&u.ip) {
                report.in_use_not_allocated.push(u.clone());
            }
        }

        // Handles against allocations.
        let mut by_handle: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for a in &report.allocations {
            if let Some(h) = &a.handle {
                by_handle.entry(h.clone()).or_default().push(a.ip);
            }
        }
        let handles = self.ds.list(&keys::handles_prefix()).await?;
        let prefix = keys::handles_prefix();
        let mut handle_ids = BTreeSet::new();
        for kv in &handles.items {
            let Some(id) = kv.key.strip_prefix(&prefix) else {
                continue;
            };
            handle_ids.insert(id.to_string());
            report
                .handle_revisions
                .insert(id.to_string(), kv.mod_revision);
            if by_handle.contains_key(id) {
                report.handles_with_ips += 1;
            } else {
                report.handles_without_ips.push(id.to_string());
            }
        }
        report.missing_handles = by_handle
            .into_iter()
            .filter(|(h, _)| !handle_ids.contains(h))
            .collect();

        // Blocks against affinities.
        let affinities = self.affinities().await?;
        for b in &blocks {
            if let Some(host) = b.host()
                && !affinities
                    .iter()
                    .any(|a| a.node == host && a.cidr == b.cidr)
            {
                report.affinity_problems.push(format!(
                    "block {} is affine to host {host} but the affinity key is missing",
                    b.cidr
                ));
            }
        }
        for a in affinities
            .iter()
            .filter(|a| a.state == AffinityState::Confirmed)
        {
            match blocks.iter().find(|b| b.cidr == a.cidr) {
                None => report.affinity_problems.push(format!(
                    "host {} has a confirmed affinity to block {} but the block does not exist",
                    a.node, a.cidr
                )),
                Some(b) if b.host() != Some(a.node.as_str()) => {
                    report.affinity_problems.push(format!(
                        "host {} has a confirmed affinity to block {} but the block is affine to {}",
                        a.node,
                        a.cidr,
                        b.affinity.as_deref().unwrap_or("no one")
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(report)
    }
}
