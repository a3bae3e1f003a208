//! `calicoctl ipam check`: IPAM's records against each other and against what uses the
//! addresses (workload endpoints, node tunnel addresses). Read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use datastore::keys;
use datastore::model::ipam::AffinityState;
use datastore::model::{Node, WorkloadEndpoint};
use ipnet::IpNet;

use crate::client::Ipam;
use crate::error::{Error, Result};
use crate::query::Allocation;
use crate::usage;

/// Who uses an address outside IPAM: a workload endpoint or a node's tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub ip: IpAddr,
    /// `Workload <namespace>/<name>` or `Node <name> (ipip tunnel)`.
    pub owner: String,
}

/// What uses addresses outside IPAM now ([`Ipam::usage`]).
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub workloads: Vec<InUse>,
    pub tunnels: Vec<InUse>,
    /// WorkloadEndpoints and Nodes that do not decode: what they use is unknown.
    pub unreadable: Vec<String>,
}

impl Usage {
    /// Whether anything uses `ip`; an error when that cannot be known (something that
    /// records addresses does not decode), so that nothing is released on a guess.
    pub fn uses(&self, ip: IpAddr) -> Result<bool> {
        if let Some(key) = self.unreadable.first() {
            return Err(Error::UsageUnknown(key.clone()));
        }
        Ok(self
            .workloads
            .iter()
            .chain(&self.tunnels)
            .any(|u| u.ip == ip))
    }
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
    /// WorkloadEndpoints and Nodes that do not decode (their addresses may look leaked).
    pub unreadable: Vec<String>,
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
            + self.unreadable.len()
    }
}

// ===== impl Ipam =====

impl Ipam {
    /// Every address a workload or node records now, and the keys of those that do not
    /// decode (whose addresses cannot be known).
    pub async fn usage(&self) -> Result<Usage> {
        let (wep_prefix, node_prefix) = (
            keys::resource_prefix("workloadendpoints"),
            keys::resource_prefix("nodes"),
        );
        let (weps, nodes) =
            tokio::try_join!(self.ds.list(&wep_prefix), self.ds.list(&node_prefix))?;
        let mut usage = Usage::default();
        for kv in &weps.items {
            let Ok(w) = serde_json::from_slice::<WorkloadEndpoint>(&kv.value) else {
                usage.unreadable.push(kv.key.clone());
                continue;
            };
            let owner = format!(
                "Workload {}/{}",
                w.metadata.namespace.as_deref().unwrap_or(""),
                w.metadata.name
            );
            for ip in usage::workload_addresses(&w) {
                usage.workloads.push(InUse {
                    ip,
                    owner: owner.clone(),
                });
            }
        }
        for kv in &nodes.items {
            let Ok(n) = serde_json::from_slice::<Node>(&kv.value) else {
                usage.unreadable.push(kv.key.clone());
                continue;
            };
            for (ip, what) in usage::tunnel_addresses(&n) {
                usage.tunnels.push(InUse {
                    ip,
                    owner: format!("Node {} ({what} tunnel)", n.metadata.name),
                });
            }
        }
        Ok(usage)
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
        let usage = self.usage().await?;
        report.workload_ips = usage.workloads;
        report.tunnel_ips = usage.tunnels;
        report.unreadable = usage.unreadable;

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
