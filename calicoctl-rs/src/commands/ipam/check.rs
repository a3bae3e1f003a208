//! `calicoctl ipam check`: the report Calico prints, ending with
//! `Check complete; found N problems.`

use std::collections::BTreeMap;
use std::fmt::Write;

use ipam::Ipam;

use super::ipam_err;
use crate::error::CliResult;

/// Runs the check and renders the report; with `output`, also writes the JSON report
/// there (Calico's format, for `ipam release --from-report`).
pub async fn check(ipam: &Ipam, output: Option<&str>) -> CliResult<String> {
    // The cluster's identity is read before the data: a report whose data predates a
    // lock must not be stamped as taken under it.
    let info = match output {
        Some(_) => Some(super::report::cluster_info(ipam).await?),
        None => None,
    };
    let r = ipam.check().await.map_err(ipam_err)?;
    if let (Some(path), Some(info)) = (output, info) {
        super::report::write(&super::report::build(&info, &r), path)?;
    }
    let blocks = ipam.all_blocks().await.map_err(ipam_err)?;
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "Checking IPAM for inconsistencies...\n");
    let _ = writeln!(o, "Loading all IPAM blocks...");
    let _ = writeln!(o, "Found {} IPAM blocks.", r.blocks);
    for b in &blocks {
        let _ = writeln!(
            o,
            " IPAM block {} affinity={}:",
            b.cidr,
            b.affinity.as_deref().unwrap_or("<none>")
        );
    }
    let _ = writeln!(
        o,
        "IPAM blocks record {} allocations.\n",
        r.allocations.len()
    );
    let _ = writeln!(o, "Loading all IPAM pools...");
    for p in &r.active_pools {
        let _ = writeln!(o, "  {p}");
    }
    let _ = writeln!(o, "Found {} active IP pools.\n", r.active_pools.len());
    let _ = writeln!(o, "Loading all nodes.");
    let _ = writeln!(o, "Found {} node tunnel IPs.\n", r.tunnel_ips.len());
    let _ = writeln!(o, "Loading all workload endpoints.");
    let _ = writeln!(o, "Found {} workload IPs.", r.workload_ips.len());
    let _ = writeln!(
        o,
        "Workloads and nodes are using {} IPs.\n",
        r.workload_ips.len() + r.tunnel_ips.len()
    );

    let _ = writeln!(o, "Loading all handles");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for a in &r.allocations {
        *per_node
            .entry(a.node().unwrap_or("<unknown>").to_string())
            .or_default() += 1;
    }
    let mut top: Vec<(&String, &usize)> = per_node.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(o, "Looking for top (up to 20) nodes by allocations...");
    for (node, n) in top.iter().take(20) {
        let _ = writeln!(o, "  {node} has {n} allocations");
    }
    if !top.is_empty() {
        let mut counts: Vec<usize> = per_node.values().copied().collect();
        counts.sort_unstable();
        let _ = writeln!(
            o,
            "Node with most allocations has {}; median is {}",
            counts[counts.len() - 1],
            counts[counts.len() / 2]
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(
        o,
        "Scanning for IPs that are allocated but not actually in use..."
    );
    for a in &r.leaked {
        let _ = writeln!(
            o,
            "  {} leaked; handle {} attrs {:?}",
            a.ip,
            a.handle.as_deref().unwrap_or("<none>"),
            a.attrs
        );
    }
    let _ = writeln!(
        o,
        "Found {} IPs that are allocated in IPAM but not actually in use.",
        r.leaked.len()
    );
    let _ = writeln!(
        o,
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."
    );
    for u in &r.in_use_not_in_pool {
        let _ = writeln!(
            o,
            "  {} in use by {} is not in any active IP pool",
            u.ip, u.owner
        );
    }
    for u in &r.in_use_not_allocated {
        let _ = writeln!(
            o,
            "  {} in use by {} is in use in a pool but doesn't exist in IPAM.",
            u.ip, u.owner
        );
    }
    let _ = writeln!(
        o,
        "Found {} in-use IPs that are not in active IP pools.",
        r.in_use_not_in_pool.len()
    );
    let _ = writeln!(
        o,
        "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.\n",
        r.in_use_not_allocated.len()
    );

    let _ = writeln!(o, "Scanning for IPAM handles with no matching IPs...");
    for h in &r.handles_without_ips {
        let _ = writeln!(o, "  Handle {h} has no matching IPs");
    }
    let _ = writeln!(
        o,
        "Found {} handles with no matching IPs (and {} handles with matching IPs).\n",
        r.handles_without_ips.len(),
        r.handles_with_ips
    );
    let _ = writeln!(o, "Scanning for IPs with missing handle...");
    for (h, ips) in &r.missing_handles {
        let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            o,
            "  Handle {h} is in use in a block but doesn't exist (IPs {})",
            list.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "Found {} handles mentioned in blocks with no matching handle resource.",
        r.missing_handles.len()
    );
    if !r.affinity_problems.is_empty() {
        let _ = writeln!(o, "\nScanning block affinities...");
        for p in &r.affinity_problems {
            let _ = writeln!(o, "  {p}");
        }
        let _ = writeln!(
            o,
            "Found {} blocks and affinities out of step.",
            r.affinity_problems.len()
        );
    }
    if !r.unreadable.is_empty() {
        let _ = writeln!(o, "\nScanning for records that do not decode...");
        for key in &r.unreadable {
            let _ = writeln!(
                o,
                "  {key} does not decode: the addresses it uses are unknown (and are not released)"
            );
        }
        let _ = writeln!(
            o,
            "Found {} WorkloadEndpoints or Nodes that do not decode.",
            r.unreadable.len()
        );
    }
    let _ = writeln!(o, "Check complete; found {} problems.", r.problems());
    Ok(out)
}
