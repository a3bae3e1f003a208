//! `calicoctl ipam show [--ip=<IP> | --show-blocks] [--show-borrowed]
//! [--show-configuration]` in Calico v3.25's formats (reference calico.md §1.7).

use std::fmt::Write;
use std::net::IpAddr;

use ipam::Ipam;

use super::table::{g5, pct, render};
use super::{ShowArgs, ipam_err};
use crate::error::{CliError, CliResult};

/// Renders what `show` prints for `args`.
pub async fn show(ipam: &Ipam, args: &ShowArgs) -> CliResult<String> {
    if let Some(ip) = &args.ip {
        return show_ip(ipam, ip).await;
    }
    if args.show_configuration {
        return show_configuration(ipam).await;
    }
    if args.show_borrowed {
        return show_borrowed(ipam).await;
    }
    show_utilization(ipam, args.show_blocks).await
}

fn row(kind: &str, cidr: String, in_use: f64, capacity: f64) -> Vec<String> {
    let free = capacity - in_use;
    vec![
        kind.to_string(),
        cidr,
        g5(capacity),
        format!("{} ({}%)", g5(in_use), pct(100.0 * in_use / capacity)),
        format!("{} ({}%)", g5(free), pct(100.0 * free / capacity)),
    ]
}

async fn show_utilization(ipam: &Ipam, show_blocks: bool) -> CliResult<String> {
    let pools = ipam.pools().await.map_err(ipam_err)?;
    let blocks = ipam.blocks().await.map_err(ipam_err)?;
    let mut rows = Vec::new();
    for pool in &pools {
        let mine: Vec<_> = blocks
            .iter()
            .filter(|b| pool.cidr.contains(&b.cidr.network()))
            .collect();
        let in_use: f64 = mine.iter().map(|b| b.in_use as f64).sum();
        let host_bits = u32::from(pool.cidr.max_prefix_len() - pool.cidr.prefix_len());
        let capacity = 2f64.powi(host_bits as i32);
        rows.push(row("IP Pool", pool.cidr.to_string(), in_use, capacity));
        if show_blocks {
            for b in mine {
                rows.push(row(
                    "Block",
                    b.cidr.to_string(),
                    b.in_use as f64,
                    b.size as f64,
                ));
            }
        }
    }
    Ok(render(
        &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
        &rows,
    ))
}

async fn show_ip(ipam: &Ipam, text: &str) -> CliResult<String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| CliError::new(format!("invalid IP address: {text}")))?;
    let Some(alloc) = ipam.ip_info(ip).await.map_err(ipam_err)? else {
        return Ok(format!("IP {ip} is not currently assigned\n"));
    };
    let mut out = format!("IP {ip} is in use\n");
    if alloc.attrs.is_empty() {
        out.push_str("No attributes defined\n");
    } else {
        out.push_str("Attributes:\n");
        for (k, v) in &alloc.attrs {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    Ok(out)
}

async fn show_borrowed(ipam: &Ipam) -> CliResult<String> {
    let allocations = ipam.allocations().await.map_err(ipam_err)?;
    let mut rows = Vec::new();
    let mut without_node = 0;
    for a in &allocations {
        let Some(node) = a.node() else {
            without_node += 1;
            continue;
        };
        if !a.is_borrowed() {
            continue;
        }
        let (kind, to) = match (a.attrs.get("namespace"), a.attrs.get("pod")) {
            (Some(ns), Some(pod)) => ("pod".to_string(), format!("{ns}/{pod}")),
            _ => (
                a.attrs.get("type").cloned().unwrap_or_default(),
                node.to_string(),
            ),
        };
        rows.push(vec![
            a.ip.to_string(),
            node.to_string(),
            a.block.to_string(),
            a.block_host.clone().unwrap_or_default(),
            kind,
            to,
        ]);
    }
    let mut out = render(
        &[
            "IP",
            "BORROWING-NODE",
            "BLOCK",
            "BLOCK OWNER",
            "TYPE",
            "ALLOCATED-TO",
        ],
        &rows,
    );
    if without_node > 0 {
        let _ = writeln!(
            out,
            "Note: found {without_node} IP allocations without an explicit node association. \
             Unable to determine if they are borrowed."
        );
    }
    Ok(out)
}

async fn show_configuration(ipam: &Ipam) -> CliResult<String> {
    let c = ipam.config().await.map_err(ipam_err)?;
    Ok(render(
        &["PROPERTY", "VALUE"],
        &[
            vec!["StrictAffinity".into(), c.strict_affinity.to_string()],
            vec![
                "AutoAllocateBlocks".into(),
                c.auto_allocate_blocks.to_string(),
            ],
            vec!["MaxBlocksPerHost".into(), c.max_blocks_per_host.to_string()],
        ],
    ))
}
