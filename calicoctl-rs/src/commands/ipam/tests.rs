//! Golden output of `calicoctl ipam ...` on an in-memory datastore filled through the
//! `ipam` crate.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use clap::Parser;
use datastore::{Datastore, MemoryStore, keys};
use ipam::{AutoAssignArgs, Ipam};

use super::{IpamArgs, render};

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: IpamArgs,
}

async fn run(ipam: &Ipam, line: &str) -> Result<String, String> {
    let argv = std::iter::once("ipam").chain(line.split_whitespace());
    let cmd = Cmd::try_parse_from(argv).map_err(|e| e.to_string())?;
    render(ipam, &cmd.args).await.map_err(|e| e.message)
}

async fn pod(ipam: &Ipam, node: &str, name: &str) -> IpAddr {
    let attrs: BTreeMap<String, String> = [("node", node), ("namespace", "default"), ("pod", name)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args = AutoAssignArgs {
        attrs,
        ..AutoAssignArgs::one(&format!("k8s-pod-network.{name}"), node)
    };
    ipam.auto_assign(&args).await.unwrap()[0].ip
}

/// Pool 10.65.0.0/25 (two /26 blocks): three pods on node1, one on node2.
async fn lab() -> (MemoryStore, Ipam) {
    let ds = MemoryStore::new();
    ds.create(
        &keys::resource("ippools", "default-ipv4-ippool"),
        br#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"default-ipv4-ippool"},
            "spec":{"cidr":"10.65.0.0/25","blockSize":26,"nodeSelector":"all()"}}"#
            .to_vec(),
        None,
    )
    .await
    .unwrap();
    let ipam = Ipam::new(Arc::new(ds.clone()));
    for name in ["a", "b", "c"] {
        pod(&ipam, "node1", name).await;
    }
    pod(&ipam, "node2", "d").await;
    (ds, ipam)
}

#[tokio::test]
async fn show_prints_the_pool_summary() {
    let (_ds, ipam) = lab().await;
    assert_eq!(
        run(&ipam, "show").await.unwrap(),
        "\
+----------+--------------+-----------+------------+-----------+
| GROUPING |     CIDR     | IPS TOTAL | IPS IN USE | IPS FREE  |
+----------+--------------+-----------+------------+-----------+
| IP Pool  | 10.65.0.0/25 |       128 | 4 (3%)     | 124 (97%) |
+----------+--------------+-----------+------------+-----------+
"
    );
}

#[tokio::test]
async fn show_blocks_lists_each_block_under_its_pool() {
    let (_ds, ipam) = lab().await;
    // Each node's first block is where its host-seeded order starts.
    assert_eq!(
        ipam.affine_blocks("node1").await.unwrap()[0].to_string(),
        "10.65.0.64/26"
    );
    assert_eq!(
        run(&ipam, "show --show-blocks").await.unwrap(),
        "\
+----------+---------------+-----------+------------+-----------+
| GROUPING |     CIDR      | IPS TOTAL | IPS IN USE | IPS FREE  |
+----------+---------------+-----------+------------+-----------+
| IP Pool  | 10.65.0.0/25  |       128 | 4 (3%)     | 124 (97%) |
| Block    | 10.65.0.0/26  |        64 | 1 (2%)     | 63 (98%)  |
| Block    | 10.65.0.64/26 |        64 | 3 (5%)     | 61 (95%)  |
+----------+---------------+-----------+------------+-----------+
"
    );
}

#[tokio::test]
async fn show_ip_tells_whether_an_address_is_in_use() {
    let (_ds, ipam) = lab().await;
    let ip = ipam
        .ips_by_handle("k8s-pod-network.b")
        .await
        .unwrap()
        .remove(0);
    let out = run(&ipam, &format!("show --ip={ip}")).await.unwrap();
    assert_eq!(
        out,
        format!("IP {ip} is in use\nAttributes:\n  namespace: default\n  node: node1\n  pod: b\n")
    );
    assert_eq!(
        run(&ipam, "show --ip=10.65.0.127").await.unwrap(),
        "IP 10.65.0.127 is not currently assigned\n"
    );
    assert_eq!(
        run(&ipam, "show --ip=nonsense").await.unwrap_err(),
        "invalid IP address: nonsense"
    );
}

#[tokio::test]
async fn show_borrowed_lists_addresses_used_outside_their_block() {
    let (_ds, ipam) = lab().await;
    // node2 fills its block; the pool has no free block left, so node2 borrows.
    for i in 0..63 {
        pod(&ipam, "node2", &format!("fill{i}")).await;
    }
    assert_eq!(
        pod(&ipam, "node2", "borrower").await.to_string(),
        "10.65.0.67"
    );
    let want = "\
+------------+----------------+---------------+-------------+------+------------------+
|     IP     | BORROWING-NODE |     BLOCK     | BLOCK OWNER | TYPE |   ALLOCATED-TO   |
+------------+----------------+---------------+-------------+------+------------------+
| 10.65.0.67 | node2          | 10.65.0.64/26 | node1       | pod  | default/borrower |
+------------+----------------+---------------+-------------+------+------------------+
";
    assert_eq!(run(&ipam, "show --show-borrowed").await.unwrap(), want);
}

#[tokio::test]
async fn show_configuration_and_configure_strict_affinity() {
    let (_ds, ipam) = lab().await;
    assert_eq!(
        run(&ipam, "show --show-configuration").await.unwrap(),
        "\
+--------------------+-------+
|      PROPERTY      | VALUE |
+--------------------+-------+
| StrictAffinity     | false |
| AutoAllocateBlocks | true  |
| MaxBlocksPerHost   |     0 |
+--------------------+-------+
"
    );
    assert_eq!(
        run(&ipam, "configure --strictaffinity=true").await.unwrap(),
        "Successfully set StrictAffinity to: true\n"
    );
    assert!(ipam.config().await.unwrap().strict_affinity);
    assert_eq!(
        run(&ipam, "configure --strictaffinity=maybe")
            .await
            .unwrap_err(),
        "invalid value. Use true or false to set strictaffinity"
    );
}

#[tokio::test]
async fn release_frees_an_address_once() {
    let (_ds, ipam) = lab().await;
    let ip = ipam
        .ips_by_handle("k8s-pod-network.a")
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        run(&ipam, &format!("release --ip={ip}")).await.unwrap(),
        format!("Successfully released IP address {ip}\n")
    );
    assert_eq!(
        run(&ipam, &format!("release --ip={ip}")).await.unwrap_err(),
        format!("IP address {ip} is not assigned")
    );
}

#[tokio::test]
async fn check_reports_leaks_and_ends_with_the_problem_count() {
    let (ds, ipam) = lab().await;
    let out = run(&ipam, "check").await.unwrap();
    // No workload endpoint records any of the four addresses: all leaked.
    assert!(out.starts_with("Checking IPAM for inconsistencies...\n\nLoading all IPAM blocks...\nFound 2 IPAM blocks.\n"), "{out}");
    assert!(out.contains("IPAM blocks record 4 allocations.\n"));
    assert!(out.contains("  node1 has 3 allocations\n  node2 has 1 allocations\n"));
    assert!(out.contains("Node with most allocations has 3; median is 3\n"));
    assert!(out.contains("Found 4 IPs that are allocated in IPAM but not actually in use.\n"));
    assert!(
        out.contains("Found 0 handles with no matching IPs (and 4 handles with matching IPs).\n")
    );
    assert!(
        out.ends_with("Check complete; found 4 problems.\n"),
        "{out}"
    );
    // Release everything: clean.
    for h in ["a", "b", "c", "d"] {
        ipam.release_by_handle(&format!("k8s-pod-network.{h}"))
            .await
            .unwrap();
    }
    ds.create(
        &keys::handle("k8s-pod-network.ghost"),
        br#"{"block":{"10.65.0.0/26":1},"deleted":false}"#.to_vec(),
        None,
    )
    .await
    .unwrap();
    let out = run(&ipam, "check").await.unwrap();
    assert!(out.contains("  Handle k8s-pod-network.ghost has no matching IPs\n"));
    assert!(
        out.ends_with("Check complete; found 1 problems.\n"),
        "{out}"
    );
}
