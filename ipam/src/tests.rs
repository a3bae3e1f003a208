//! The IPAM algorithm end to end on the in-memory datastore: claim, fill, borrow, release
//! order, strictAffinity, maxBlocksPerHost, pool selection, exhaustion, FIFO reuse,
//! idempotent and sequence-guarded release, repair, tunnel addresses, check.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use datastore::model::IpFamily;
use datastore::model::ipam::{AffinityState, BlockAffinity, IpamConfig};
use datastore::{Datastore, MemoryStore, keys};
use ipnet::IpNet;
use serde_json::json;

use crate::{AllowedUse, AssignIpArgs, AutoAssignArgs, Error, Ipam, TunnelKind};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

async fn add_pool(ds: &MemoryStore, name: &str, spec: serde_json::Value) {
    let res = json!({"apiVersion":"projectcalico.org/v3","kind":"IPPool",
        "metadata":{"name":name},"spec":spec});
    ds.create(
        &keys::resource("ippools", name),
        res.to_string().into_bytes(),
        None,
    )
    .await
    .expect("pool written");
}

async fn add_node(ds: &MemoryStore, name: &str, labels: serde_json::Value) {
    let res = json!({"apiVersion":"projectcalico.org/v3","kind":"Node",
        "metadata":{"name":name,"labels":labels},"spec":{}});
    ds.create(
        &keys::resource("nodes", name),
        res.to_string().into_bytes(),
        None,
    )
    .await
    .expect("node written");
}

async fn setup(cidr: &str, block_size: u8) -> (MemoryStore, Ipam) {
    let ds = MemoryStore::new();
    add_pool(&ds, "pool1", json!({"cidr":cidr,"blockSize":block_size})).await;
    let ipam = Ipam::new(Arc::new(ds.clone()));
    (ds, ipam)
}

async fn one(ipam: &Ipam, handle: &str, node: &str) -> crate::Result<IpAddr> {
    let got = ipam.auto_assign(&AutoAssignArgs::one(handle, node)).await?;
    Ok(got[0].ip)
}

#[tokio::test]
async fn first_address_claims_a_block_with_a_confirmed_affinity() -> TestResult {
    let (ds, ipam) = setup("10.65.0.0/16", 26).await;
    let a = ipam
        .auto_assign(&AutoAssignArgs::one("net.c1", "node1"))
        .await?;
    assert_eq!(a.len(), 1);
    let block = a[0].block;
    assert_eq!(block.prefix_len(), 26);
    assert_eq!(
        a[0].ip,
        block.network(),
        "the first address of a fresh block"
    );
    assert_eq!(a[0].pool, "pool1");
    assert_eq!(ipam.affine_blocks("node1").await?, vec![block]);
    let aff = ds
        .get(&keys::affinity("node1", &block))
        .await?
        .ok_or("affinity")?;
    assert_eq!(
        String::from_utf8(aff.value)?,
        r#"{"state":"confirmed","deleted":false}"#
    );
    assert_eq!(ipam.ips_by_handle("net.c1").await?, vec![a[0].ip]);
    let info = ipam.ip_info(a[0].ip).await?.ok_or("allocated")?;
    assert_eq!(info.handle.as_deref(), Some("net.c1"));
    assert_eq!(info.block_host.as_deref(), Some("node1"));
    Ok(())
}

#[tokio::test]
async fn a_fresh_block_is_claimed_in_one_write_with_its_affinity() -> TestResult {
    let (ds, ipam) = setup("10.66.0.0/16", 26).await;
    let before = ds.revision().await?;
    let ip = one(&ipam, "net.c1", "node1").await?;
    let block = ipam.affine_blocks("node1").await?[0];
    let aff = ds
        .get(&keys::affinity("node1", &block))
        .await?
        .ok_or("affinity")?;
    let stored = ds.get(&keys::block(&block)).await?.ok_or("block")?;
    let handle = ds.get(&keys::handle("net.c1")).await?.ok_or("handle")?;
    // Affinity, block (holding the address) and handle born at one revision, the claim's
    // only write.
    assert_eq!(aff.create_revision, before + 1, "the claim's first write");
    for kv in [&aff, &stored, &handle] {
        assert_eq!(kv.create_revision, aff.create_revision, "{}", kv.key);
        assert_eq!(kv.mod_revision, kv.create_revision, "{} rewritten", kv.key);
    }
    assert_eq!(ds.revision().await?, before + 1, "a second write");
    assert_eq!(ipam.ips_by_handle("net.c1").await?, vec![ip]);
    Ok(())
}

/// Keeps every claim notice it is told of.
#[derive(Default)]
struct Notices(std::sync::Mutex<Vec<crate::ClaimNotice>>);

impl crate::ClaimObserver for Notices {
    fn claimed(&self, notice: &crate::ClaimNotice) {
        self.0.lock().expect("lock").push(notice.clone());
    }
}

#[tokio::test]
async fn a_claim_notice_says_what_the_claim_stored_and_at_which_revision() -> TestResult {
    let (ds, ipam) = setup("10.66.0.0/16", 26).await;
    let notices = Arc::new(Notices::default());
    let ipam = ipam.with_claim_observer(notices.clone());
    one(&ipam, "net.c1", "node1").await?;
    one(&ipam, "net.c2", "node1").await?;
    let block = ipam.affine_blocks("node1").await?[0];
    let told = notices.0.lock().expect("lock").clone();
    assert_eq!(
        told.len(),
        1,
        "one claim, one notice (the second address claims nothing)"
    );
    let aff = ds
        .get(&keys::affinity("node1", &block))
        .await?
        .ok_or("affinity")?;
    assert_eq!(told[0].revision, aff.mod_revision);
    let keys: BTreeSet<&str> = told[0].writes.iter().map(|w| w.key.as_str()).collect();
    let block_key = keys::block(&block);
    let affinity_key = keys::affinity("node1", &block);
    assert_eq!(
        keys,
        BTreeSet::from([block_key.as_str(), affinity_key.as_str()])
    );
    let affinity = told[0]
        .writes
        .iter()
        .find(|w| w.key == affinity_key)
        .ok_or("affinity written")?;
    assert_eq!(affinity.value.as_bytes(), aff.value.as_slice());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_claim_reported_failed_after_it_was_saved_is_read_back_and_kept() -> TestResult {
    let (store, ipam) = faulty_pool().await;
    // The claim with its address is one write (a block among its keys).
    store
        .lose_block_update_replies
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let ip = one(&ipam, "net.pod", "node1").await?;
    assert_one_confirmed_block_holding(&store, &ipam, ip).await?;
    assert_eq!(
        ipam.ips_by_handle("net.pod").await?,
        vec![ip],
        "taken twice"
    );
    let report = ipam.check().await?;
    assert!(report.missing_handles.is_empty(), "{report:?}");
    assert!(report.handles_without_ips.is_empty(), "{report:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_claim_of_unknown_outcome_keeps_the_handle_so_del_frees_the_address() -> TestResult {
    let (store, ipam) = faulty_pool().await;
    unknown_outcome_then_del(&store, &ipam).await?;
    let report = ipam.check().await?;
    assert!(report.allocations.is_empty(), "{report:?}");
    assert!(report.handles_without_ips.is_empty(), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_claim_without_an_address_reported_failed_after_it_was_saved_is_kept() -> TestResult {
    let (store, ipam) = faulty_pool().await;
    store
        .lose_create_all_replies
        .store(1, std::sync::atomic::Ordering::SeqCst);
    // A chosen address claims its block first, then allocates.
    let ip: IpAddr = "10.30.0.70".parse()?;
    ipam.assign_ip(&AssignIpArgs {
        ip,
        handle: "net.pod".into(),
        attrs: BTreeMap::new(),
        node: "node1".into(),
    })
    .await?;
    assert_one_confirmed_block_holding(&store, &ipam, ip).await
}

/// The one block the lost reply made is the node's, confirmed, holding `ip`.
async fn assert_one_confirmed_block_holding(
    store: &FaultyStore,
    ipam: &Ipam,
    ip: IpAddr,
) -> TestResult {
    let affine = ipam.affine_blocks("node1").await?;
    assert_eq!(affine.len(), 1, "{affine:?}");
    let block = affine[0];
    assert!(block.contains(&ip), "{ip} not in {block}");
    assert_eq!(
        affinity_state(&store.inner, "node1", &block).await,
        Some(AffinityState::Confirmed)
    );
    let blocks = store.inner.list(&keys::blocks_prefix()).await?.items.len();
    assert_eq!(blocks, 1, "a second block was claimed");
    Ok(())
}

#[tokio::test]
async fn a_node_fills_its_block_before_claiming_the_next() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/24", 26).await;
    let mut ips = BTreeSet::new();
    for i in 0..64 {
        ips.insert(one(&ipam, &format!("h{i}"), "n1").await?);
    }
    assert_eq!(ips.len(), 64);
    assert_eq!(ipam.affine_blocks("n1").await?.len(), 1);
    let ip65 = one(&ipam, "h64", "n1").await?;
    assert!(!ips.contains(&ip65));
    let blocks = ipam.affine_blocks("n1").await?;
    assert_eq!(blocks.len(), 2, "the 65th address claims a second block");
    assert!(blocks.iter().any(|b| b.contains(&ip65)));
    // Another node gets its own block.
    let other = one(&ipam, "x", "n2").await?;
    let n2 = ipam.affine_blocks("n2").await?;
    assert_eq!(n2.len(), 1);
    assert!(n2[0].contains(&other));
    Ok(())
}

#[tokio::test]
async fn borrowing_happens_only_when_no_block_is_free() -> TestResult {
    // Two /26 blocks: one for each node.
    let (_ds, ipam) = setup("10.0.0.0/25", 26).await;
    let b_ip = one(&ipam, "b0", "nodeB").await?;
    for i in 0..64 {
        one(&ipam, &format!("a{i}"), "nodeA").await?;
    }
    let a_block = ipam.affine_blocks("nodeA").await?;
    let b_block = ipam.affine_blocks("nodeB").await?;
    assert_eq!((a_block.len(), b_block.len()), (1, 1));
    assert!(b_block[0].contains(&b_ip));
    // nodeA is full and no block is left: borrow from nodeB's block.
    let got = ipam
        .auto_assign(&AutoAssignArgs {
            attrs: [("node".to_string(), "nodeA".to_string())].into(),
            ..AutoAssignArgs::one("a64", "nodeA")
        })
        .await?;
    assert!(got[0].borrowed);
    assert!(b_block[0].contains(&got[0].ip));
    assert_eq!(ipam.affine_blocks("nodeA").await?.len(), 1, "no new claim");
    let borrowed = ipam.borrowed_ips(Some("nodeA")).await?;
    assert_eq!(borrowed.len(), 1);
    assert_eq!(borrowed[0].ip, got[0].ip);
    assert_eq!(borrowed[0].block_host.as_deref(), Some("nodeB"));
    assert!(ipam.borrowed_ips(Some("nodeB")).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn strict_affinity_forbids_borrowing() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/25", 26).await;
    ipam.set_config(&IpamConfig {
        strict_affinity: true,
        ..IpamConfig::default()
    })
    .await?;
    one(&ipam, "b0", "nodeB").await?;
    for i in 0..64 {
        one(&ipam, &format!("a{i}"), "nodeA").await?;
    }
    let err = one(&ipam, "a64", "nodeA").await.expect_err("no borrowing");
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");
    assert!(ipam.ips_by_handle("a64").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn max_blocks_per_host_stops_new_claims() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/24", 26).await;
    ipam.set_config(&IpamConfig {
        strict_affinity: true,
        auto_allocate_blocks: true,
        max_blocks_per_host: 1,
    })
    .await?;
    for i in 0..64 {
        one(&ipam, &format!("a{i}"), "n1").await?;
    }
    let err = one(&ipam, "a64", "n1").await.expect_err("limit");
    assert!(matches!(err, Error::BlockLimit));
    assert_eq!(
        err.to_string(),
        "cannot allocate new block due to per host block limit"
    );
    Ok(())
}

#[tokio::test]
async fn auto_allocate_blocks_off_means_borrow_only() -> TestResult {
    let (ds, ipam) = setup("10.0.0.0/25", 26).await;
    one(&ipam, "b0", "nodeB").await?;
    ds.create(
        &keys::ipam_config(),
        br#"{"strict_affinity":false,"auto_allocate_blocks":false}"#.to_vec(),
        None,
    )
    .await?;
    let got = ipam
        .auto_assign(&AutoAssignArgs::one("a0", "nodeA"))
        .await?;
    assert!(got[0].borrowed);
    assert!(ipam.affine_blocks("nodeA").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn node_selector_chooses_the_pool() -> TestResult {
    let ds = MemoryStore::new();
    add_pool(
        &ds,
        "rack1",
        json!({"cidr":"10.1.0.0/16","nodeSelector":"rack == 'r1'"}),
    )
    .await;
    add_pool(
        &ds,
        "rack2",
        json!({"cidr":"10.2.0.0/16","nodeSelector":"rack == 'r2'"}),
    )
    .await;
    add_node(&ds, "n2", json!({"rack":"r2"})).await;
    add_node(&ds, "n3", json!({"rack":"r3"})).await;
    let ipam = Ipam::new(Arc::new(ds.clone()));
    let a = ipam.auto_assign(&AutoAssignArgs::one("h", "n2")).await?;
    assert_eq!(a[0].pool, "rack2");
    assert!(net("10.2.0.0/16").contains(&a[0].ip));
    let err = one(&ipam, "h3", "n3")
        .await
        .expect_err("no pool for rack r3");
    assert!(matches!(err, Error::NoUsablePools { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn requested_pools_restrict_and_unknown_pool_fails() -> TestResult {
    let ds = MemoryStore::new();
    add_pool(&ds, "a", json!({"cidr":"10.1.0.0/16"})).await;
    add_pool(&ds, "b", json!({"cidr":"10.2.0.0/16"})).await;
    let ipam = Ipam::new(Arc::new(ds.clone()));
    let got = ipam
        .auto_assign(&AutoAssignArgs {
            pools: vec!["10.2.0.0/16".into()],
            ..AutoAssignArgs::one("h", "n")
        })
        .await?;
    assert_eq!(got[0].pool, "b");
    let err = ipam
        .auto_assign(&AutoAssignArgs {
            pools: vec!["nope".into()],
            ..AutoAssignArgs::one("h2", "n")
        })
        .await
        .expect_err("unknown pool");
    assert!(matches!(err, Error::UnknownPool { .. }));
    assert!(ipam.ips_by_handle("h2").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn exhaustion_names_the_pools_in_calico_wording() -> TestResult {
    let (_ds, ipam) = setup("10.9.0.0/30", 30).await;
    for i in 0..4 {
        one(&ipam, &format!("h{i}"), "n1").await?;
    }
    let err = one(&ipam, "h4", "n1").await.expect_err("exhausted");
    assert_eq!(
        err.to_string(),
        "failed to request 1 IPv4 addresses. IPAM allocated only 0 \
         (No IPs available in pools: [10.9.0.0/30])"
    );
    // A multi-address request that cannot be met leaves nothing behind.
    ipam.release_by_handle("h0").await?;
    let err = ipam
        .auto_assign(&AutoAssignArgs {
            num: 2,
            ..AutoAssignArgs::one("multi", "n1")
        })
        .await
        .expect_err("only one free");
    assert!(err.to_string().contains("IPAM allocated only 1"), "{err}");
    assert!(ipam.ips_by_handle("multi").await?.is_empty());
    assert_eq!(ipam.allocations().await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn the_address_freed_longest_ago_is_reused_first() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/24", 26).await;
    let a = one(&ipam, "a", "n1").await?;
    let b = one(&ipam, "b", "n1").await?;
    let c = one(&ipam, "c", "n1").await?;
    ipam.release_by_handle("b").await?;
    ipam.release_by_handle("a").await?;
    // Never-used addresses first (they were freed "at creation"), then b, then a.
    let mut next = Vec::new();
    for i in 0..61 {
        next.push(one(&ipam, &format!("n{i}"), "n1").await?);
    }
    assert!(!next.contains(&a) && !next.contains(&b) && !next.contains(&c));
    assert_eq!(one(&ipam, "x", "n1").await?, b);
    assert_eq!(one(&ipam, "y", "n1").await?, a);
    Ok(())
}

#[tokio::test]
async fn release_is_idempotent_by_handle_and_by_ip() -> TestResult {
    let (ds, ipam) = setup("10.0.0.0/24", 26).await;
    let a = one(&ipam, "net.c1", "n1").await?;
    assert_eq!(ipam.release_by_handle("net.c1").await?, vec![a]);
    assert!(ipam.release_by_handle("net.c1").await?.is_empty());
    assert!(ds.get(&keys::handle("net.c1")).await?.is_none());
    let b = one(&ipam, "net.c2", "n1").await?;
    assert!(ipam.release_ip(b, None).await?);
    assert!(!ipam.release_ip(b, None).await?);
    assert!(
        ds.get(&keys::handle("net.c2")).await?.is_none(),
        "handle follows"
    );
    assert_eq!(
        ipam.release_ips(&[ip("10.200.0.1")]).await?,
        vec![ip("10.200.0.1")]
    );
    assert!(matches!(
        ipam.release_by_handle("../x").await,
        Err(Error::InvalidHandle(_))
    ));
    assert_eq!(ipam.check().await?.problems(), 0);
    Ok(())
}

#[tokio::test]
async fn a_stale_sequence_number_cannot_release_a_reallocated_address() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/30", 30).await;
    let a = one(&ipam, "old", "n1").await?;
    let seen = ipam.ip_info(a).await?.ok_or("allocated")?.sequence;
    ipam.release_by_handle("old").await?;
    // Use up the rest so `a` comes back to a new owner.
    for i in 0..4 {
        one(&ipam, &format!("new{i}"), "n1").await?;
    }
    let now = ipam.ip_info(a).await?.ok_or("reallocated")?;
    assert_eq!(now.handle.as_deref(), Some("new3"));
    let err = ipam.release_ip(a, Some(seen)).await.expect_err("ABA guard");
    assert!(matches!(err, Error::BadSequenceNumber { .. }));
    assert!(ipam.release_ip(a, Some(now.sequence)).await?);
    Ok(())
}

#[tokio::test]
async fn an_empty_block_without_affinity_is_deleted() -> TestResult {
    let (ds, ipam) = setup("10.0.0.0/24", 26).await;
    let a = one(&ipam, "h", "n1").await?;
    let block = ipam.affine_blocks("n1").await?[0];
    let err = ipam
        .release_block_affinity("n1", &block, true)
        .await
        .expect_err("in use");
    assert!(matches!(err, Error::BlockNotEmpty(_)));
    assert_eq!(ipam.affine_blocks("n1").await?, vec![block], "put back");
    ipam.release_block_affinity("n1", &block, false).await?;
    assert!(ipam.affine_blocks("n1").await?.is_empty());
    let blocks = ipam.blocks().await?;
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].host, None);
    ipam.release_ip(a, None).await?;
    assert!(ds.get(&keys::block(&block)).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn empty_affine_blocks_are_released_but_never_the_last() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/24", 26).await;
    for i in 0..65 {
        one(&ipam, &format!("h{i}"), "n1").await?;
    }
    for i in 0..65 {
        ipam.release_by_handle(&format!("h{i}")).await?;
    }
    assert_eq!(ipam.affine_blocks("n1").await?.len(), 2);
    let released = ipam.release_empty_affine_blocks("n1").await?;
    assert_eq!(released.len(), 1);
    let left = ipam.affine_blocks("n1").await?;
    assert_eq!(left.len(), 1);
    let err = ipam
        .release_empty_affine_block("n1", &left[0])
        .await
        .expect_err("last block");
    assert!(matches!(err, Error::LastBlock { .. }));
    assert_eq!(ipam.blocks().await?.len(), 1, "released block deleted");
    Ok(())
}

#[tokio::test]
async fn an_affinity_whose_block_is_missing_is_repaired() -> TestResult {
    let (ds, ipam) = setup("10.0.0.0/24", 26).await;
    let block = net("10.0.0.128/26");
    let aff = BlockAffinity {
        state: AffinityState::Pending,
        deleted: false,
    };
    ds.create(
        &keys::affinity("n1", &block),
        serde_json::to_vec(&aff)?,
        None,
    )
    .await?;
    let a = one(&ipam, "h", "n1").await?;
    assert!(block.contains(&a), "the crashed claim's block is used");
    assert_eq!(ipam.affine_blocks("n1").await?, vec![block]);
    assert_eq!(ipam.check().await?.affinity_problems, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_specific_address_can_be_assigned_once() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/24", 26).await;
    let args = AssignIpArgs {
        ip: ip("10.0.0.77"),
        handle: "manual".into(),
        attrs: BTreeMap::new(),
        node: "n1".into(),
    };
    ipam.assign_ip(&args).await?;
    assert_eq!(ipam.affine_blocks("n1").await?, vec![net("10.0.0.64/26")]);
    let err = ipam
        .assign_ip(&AssignIpArgs {
            handle: "other".into(),
            ..args.clone()
        })
        .await
        .expect_err("taken");
    assert!(matches!(err, Error::AlreadyAssigned(_)));
    assert!(ipam.ips_by_handle("other").await?.is_empty());
    let err = ipam
        .assign_ip(&AssignIpArgs {
            ip: ip("172.16.0.1"),
            ..args
        })
        .await
        .expect_err("no pool");
    assert!(matches!(err, Error::NotInPool(_)));
    Ok(())
}

#[tokio::test]
async fn tunnel_addresses_are_stable_and_typed() -> TestResult {
    let ds = MemoryStore::new();
    add_pool(&ds, "plain", json!({"cidr":"10.1.0.0/16"})).await;
    add_pool(
        &ds,
        "ipip",
        json!({"cidr":"10.2.0.0/16","ipipMode":"Always"}),
    )
    .await;
    let ipam = Ipam::new(Arc::new(ds.clone()));
    let t = ipam.assign_tunnel_address("n1", TunnelKind::Ipip).await?;
    assert!(net("10.2.0.0/16").contains(&t));
    assert_eq!(ipam.assign_tunnel_address("n1", TunnelKind::Ipip).await?, t);
    let info = ipam.ip_info(t).await?.ok_or("allocated")?;
    assert_eq!(info.handle.as_deref(), Some("ipip-tunnel-addr-n1"));
    assert_eq!(
        info.attrs.get("type").map(String::as_str),
        Some("ipipTunnelAddress")
    );
    let err = ipam
        .assign_tunnel_address("n1", TunnelKind::Vxlan)
        .await
        .expect_err("no vxlan pool");
    assert!(matches!(
        err,
        Error::NoUsablePools {
            usage: AllowedUse::Tunnel,
            ..
        }
    ));
    assert_eq!(
        ipam.release_tunnel_address("n1", TunnelKind::Ipip).await?,
        vec![t]
    );
    Ok(())
}

#[tokio::test]
async fn an_ipv6_vxlan_tunnel_address_comes_from_an_ipv6_vxlan_pool_only() -> TestResult {
    let ds = MemoryStore::new();
    add_pool(
        &ds,
        "vxlan4",
        json!({"cidr":"10.2.0.0/16","vxlanMode":"Always"}),
    )
    .await;
    add_pool(
        &ds,
        "vxlan6",
        json!({"cidr":"fd00:100::/48","vxlanMode":"Always"}),
    )
    .await;
    let ipam = Ipam::new(Arc::new(ds.clone()));
    let v6 = ipam
        .assign_tunnel_address("n1", TunnelKind::VxlanV6)
        .await?;
    assert!(net("fd00:100::/48").contains(&v6), "{v6}");
    let v4 = ipam.assign_tunnel_address("n1", TunnelKind::Vxlan).await?;
    assert!(net("10.2.0.0/16").contains(&v4), "{v4}");
    let info = ipam.ip_info(v6).await?.ok_or("allocated")?;
    assert_eq!(info.handle.as_deref(), Some("vxlan-v6-tunnel-addr-n1"));
    assert_eq!(
        info.attrs.get("type").map(String::as_str),
        Some("vxlanV6TunnelAddress")
    );
    // Each family's address is released by its own handle.
    assert_eq!(
        ipam.release_tunnel_address("n1", TunnelKind::VxlanV6)
            .await?,
        vec![v6]
    );
    assert!(ipam.ip_info(v4).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn check_finds_leaks_orphan_handles_and_affinity_drift() -> TestResult {
    let (ds, ipam) = setup("10.0.0.0/24", 26).await;
    let a = one(&ipam, "net.leaky", "n1").await?;
    // The handle vanishes: the allocation is leaked.
    ds.delete(&keys::handle("net.leaky"), None).await?;
    // A handle with no address.
    ds.create(
        &keys::handle("net.ghost"),
        br#"{"block":{"10.0.0.0/26":1},"deleted":false}"#.to_vec(),
        None,
    )
    .await?;
    // A confirmed affinity with no block.
    ds.create(
        &keys::affinity("n9", &net("10.0.0.192/26")),
        br#"{"state":"confirmed","deleted":false}"#.to_vec(),
        None,
    )
    .await?;
    let report = ipam.check().await?;
    assert_eq!(report.leaked.len(), 1, "no workload uses {a}");
    assert_eq!(report.missing_handles.len(), 1);
    assert_eq!(report.handles_without_ips, vec!["net.ghost".to_string()]);
    assert_eq!(report.affinity_problems.len(), 1);
    assert_eq!(report.problems(), 4);
    Ok(())
}

/// A [`MemoryStore`] that yields to the scheduler before and after every operation (so on
/// a multi-threaded runtime the read-modify-write cycles of concurrent callers interleave),
/// counts the compare-and-swap writes that lost a race and logs every key-value operation
/// (`get <key>`, `list <prefix>`, `create_all`, `update <key>`, ...).
#[derive(Clone)]
struct YieldingStore {
    inner: MemoryStore,
    lost_races: Arc<std::sync::atomic::AtomicUsize>,
    ops: Arc<std::sync::Mutex<Vec<String>>>,
}

impl YieldingStore {
    fn new(inner: MemoryStore) -> YieldingStore {
        YieldingStore {
            inner,
            lost_races: Arc::default(),
            ops: Arc::default(),
        }
    }

    fn lost_races(&self) -> usize {
        self.lost_races.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn ops(&self) -> Vec<String> {
        self.ops.lock().map(|o| o.clone()).unwrap_or_default()
    }

    async fn around<T>(
        &self,
        what: String,
        op: impl std::future::Future<Output = datastore::Result<T>>,
    ) -> datastore::Result<T> {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(what);
        }
        tokio::task::yield_now().await;
        let out = op.await;
        if matches!(
            out,
            Err(datastore::Error::Conflict { .. } | datastore::Error::AlreadyExists { .. })
        ) {
            self.lost_races
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::task::yield_now().await;
        out
    }
}

#[async_trait::async_trait]
impl Datastore for YieldingStore {
    async fn get(&self, key: &str) -> datastore::Result<Option<datastore::KeyValue>> {
        self.around(format!("get {key}"), self.inner.get(key)).await
    }
    async fn list(&self, prefix: &str) -> datastore::Result<datastore::Listing> {
        self.around(format!("list {prefix}"), self.inner.list(prefix))
            .await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<datastore::LeaseId>,
    ) -> datastore::Result<datastore::Revision> {
        self.around(
            format!("create {key}"),
            self.inner.create(key, value, lease),
        )
        .await
    }
    async fn create_all(
        &self,
        kvs: Vec<(String, Vec<u8>)>,
    ) -> datastore::Result<datastore::Revision> {
        self.around("create_all".to_string(), self.inner.create_all(kvs))
            .await
    }
    async fn put_all(&self, puts: Vec<datastore::Put>) -> datastore::Result<datastore::PutAll> {
        let keys: Vec<&str> = puts.iter().map(|p| p.key.as_str()).collect();
        let what = format!("put_all {}", keys.join(" "));
        let out = self.around(what, self.inner.put_all(puts)).await;
        if matches!(out, Ok(datastore::PutAll::Refused(_))) {
            self.lost_races
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: datastore::Revision,
        lease: Option<datastore::LeaseId>,
    ) -> datastore::Result<datastore::Revision> {
        self.around(
            format!("update {key}"),
            self.inner.update(key, value, expected, lease),
        )
        .await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<datastore::Revision>,
    ) -> datastore::Result<datastore::KeyValue> {
        self.around(format!("delete {key}"), self.inner.delete(key, expected))
            .await
    }
    async fn watch(
        &self,
        prefix: &str,
        from: datastore::Revision,
    ) -> datastore::Result<datastore::Watch> {
        self.inner.watch(prefix, from).await
    }
    async fn grant_lease(&self, ttl: std::time::Duration) -> datastore::Result<datastore::Lease> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: datastore::LeaseId) -> datastore::Result<()> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: datastore::LeaseId) -> datastore::Result<()> {
        self.inner.revoke_lease(lease).await
    }
    async fn revision(&self) -> datastore::Result<datastore::Revision> {
        self.inner.revision().await
    }
}

/// A claiming allocation takes its address in the claim's own write: after it nothing is
/// read or written (neither the new block nor the node's affinities read back, the pod's
/// new handle not looked for first), and before it the cluster's blocks are not listed (the
/// node's first block is free).
#[tokio::test]
async fn a_new_block_is_claimed_and_allocated_from_in_one_write() -> TestResult {
    let mem = MemoryStore::new();
    add_pool(&mem, "pool1", json!({"cidr":"10.10.0.0/24","blockSize":26})).await;
    let store = YieldingStore::new(mem);
    let ipam = Ipam::new(Arc::new(store.clone()));
    let ip = one(&ipam, "h1", "n1").await?;
    let ops = store.ops();
    let block = keys::block(&block_of(&ipam, ip).await);
    let claim = ops
        .iter()
        .position(|o| o.starts_with("put_all"))
        .ok_or("no claim")?;
    let after = &ops[claim..];
    assert_eq!(
        after,
        [format!(
            "put_all {} {block} /calico/ipam/v2/handle/h1",
            keys::affinity("n1", &block_of(&ipam, ip).await)
        )],
        "the claim writes affinity, block and handle at once, and nothing else"
    );
    assert!(
        !ops.contains(&"get /calico/ipam/v2/handle/h1".to_string()),
        "the new handle was read first: {ops:?}"
    );
    assert!(
        !ops.contains(&format!("list {}", keys::blocks_prefix())),
        "the blocks were listed: {ops:?}"
    );
    Ok(())
}

/// The node's first block in its order is another node's: the blind claim of it is
/// refused, the walk lists the blocks and claims the next, and the other node's block is
/// left as it was.
#[tokio::test]
async fn a_guessed_block_held_by_another_node_is_left_to_it_and_the_next_is_claimed() -> TestResult
{
    let mem = MemoryStore::new();
    add_pool(&mem, "pool1", json!({"cidr":"10.10.0.0/24","blockSize":26})).await;
    let store = YieldingStore::new(mem);
    let ipam = Ipam::new(Arc::new(store.clone()));
    let guess = crate::block::BlockOrder::new(net("10.10.0.0/24"), 26, "n1")
        .next()
        .ok_or("no block")?;
    ipam.assign_ip(&AssignIpArgs {
        ip: guess.network(),
        handle: "other-pod".into(),
        attrs: BTreeMap::new(),
        node: "other".into(),
    })
    .await?;
    let ip = one(&ipam, "h1", "n1").await?;
    assert!(!guess.contains(&ip), "{ip} in the other node's {guess}");
    let n1 = ipam.affine_blocks("n1").await?;
    assert_eq!(n1.len(), 1, "{n1:?}");
    assert!(n1[0].contains(&ip));
    let info = ipam.ip_info(guess.network()).await?.ok_or("allocated")?;
    assert_eq!(info.block_host.as_deref(), Some("other"));
    assert!(
        store
            .ops()
            .contains(&format!("list {}", keys::blocks_prefix())),
        "the refused guess did not lead to the listing"
    );
    Ok(())
}

/// A CNI ADD reads what the allocation starts from together with its own reads, then
/// allocates both families from those reads: no configuration, node or pool read again,
/// and the second family's new block claimed although the reads predate the first
/// family's claim.
#[tokio::test]
async fn both_families_allocate_from_one_set_of_reads() -> TestResult {
    let mem = MemoryStore::new();
    add_pool(&mem, "v4", json!({"cidr":"10.0.0.0/16"})).await;
    add_pool(&mem, "v6", json!({"cidr":"fd00:10::/48"})).await;
    let store = YieldingStore::new(mem);
    let ipam = Ipam::new(Arc::new(store.clone()));
    let read = ipam.read_for_assign("n1").await?;
    let first = store.ops();
    let rereads = |o: &String| {
        o.contains("/ipam/v2/config")
            || o.contains("/ippools/")
            || o.contains("/projectcalico.org/nodes/")
    };
    assert_eq!(first.iter().filter(|o| rereads(o)).count(), 3, "{first:?}");
    let v4 = ipam
        .auto_assign_from(&AutoAssignArgs::one("pod", "n1"), &read)
        .await?;
    let v6 = ipam
        .auto_assign_from(
            &AutoAssignArgs {
                family: IpFamily::V6,
                ..AutoAssignArgs::one("pod", "n1")
            },
            &read,
        )
        .await?;
    let after = store.ops()[first.len()..].to_vec();
    assert!(!after.iter().any(rereads), "read again: {after:?}");
    assert!(net("10.0.0.0/16").contains(&v4[0].ip), "{v4:?}");
    assert!(net("fd00:10::/48").contains(&v6[0].ip), "{v6:?}");
    let mut held = ipam.ips_by_handle("pod").await?;
    held.sort();
    assert_eq!(held, vec![v4[0].ip, v6[0].ip]);
    assert_eq!(ipam.host_affinities("n1").await?.len(), 2);
    Ok(())
}

/// 240 allocations at once from 4 nodes on 4 worker threads, into a pool of 64 blocks of
/// which the nodes claim, fill and (when a node's claims race) borrow: the store yields
/// around every operation, so the compare-and-swap retry paths really run (the test
/// checks that some writes lost their race).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_never_share_an_address() -> TestResult {
    let mem = MemoryStore::new();
    add_pool(&mem, "pool1", json!({"cidr":"10.10.0.0/20","blockSize":26})).await;
    let store = YieldingStore::new(mem);
    let ipam = Ipam::new(Arc::new(store.clone()));
    let mut tasks = Vec::new();
    for i in 0..240 {
        let ipam = ipam.clone();
        tasks.push(tokio::spawn(async move {
            let node = format!("node{}", i % 4);
            one(&ipam, &format!("net.c{i}"), &node)
                .await
                .map(|ip| (node, ip))
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        let (node, ip) = t.await??;
        assert!(seen.insert(ip), "{ip} handed out twice");
        let info = ipam.ip_info(ip).await?.ok_or("allocated")?;
        assert_eq!(info.block_host.as_deref(), Some(node.as_str()));
    }
    assert_eq!(seen.len(), 240);
    assert!(
        store.lost_races() > 0,
        "no compare-and-swap lost a race: the test did not exercise the retries"
    );
    let mut releases = Vec::new();
    for i in 0..240 {
        let ipam = ipam.clone();
        releases.push(tokio::spawn(async move {
            ipam.release_by_handle(&format!("net.c{i}")).await
        }));
    }
    for r in releases {
        r.await??;
    }
    let report = ipam.check().await?;
    assert_eq!(report.problems(), 0, "{report:?}");
    assert!(report.allocations.is_empty());
    Ok(())
}

/// Fewer blocks than nodes: 6 nodes race for the 4 blocks of a small pool and the losers
/// borrow from the winners' blocks; every address is still handed out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_racing_for_too_few_blocks_borrow_without_sharing_an_address() -> TestResult {
    let mem = MemoryStore::new();
    add_pool(&mem, "pool1", json!({"cidr":"10.20.0.0/26","blockSize":28})).await;
    let store = YieldingStore::new(mem);
    let ipam = Ipam::new(Arc::new(store.clone()));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let ipam = ipam.clone();
        tasks.push(tokio::spawn(async move {
            let node = format!("node{}", i % 6);
            one(&ipam, &format!("net.b{i}"), &node)
                .await
                .map(|ip| (node, ip))
        }));
    }
    let mut seen = BTreeSet::new();
    let mut borrowed = 0;
    for t in tasks {
        let (node, ip) = t.await??;
        assert!(seen.insert(ip), "{ip} handed out twice");
        let info = ipam.ip_info(ip).await?.ok_or("allocated")?;
        if info.block_host.as_deref() != Some(node.as_str()) {
            borrowed += 1;
        }
    }
    assert_eq!(seen.len(), 60);
    assert!(borrowed > 0, "6 nodes, 4 blocks: someone must borrow");
    assert!(store.lost_races() > 0, "no compare-and-swap lost a race");
    for i in 0..60 {
        ipam.release_by_handle(&format!("net.b{i}")).await?;
    }
    let report = ipam.check().await?;
    assert_eq!(report.problems(), 0, "{report:?}");
    Ok(())
}

/// A [`MemoryStore`] with injected faults: block updates whose reply is lost after they
/// were applied (an etcd timeout after the commit), and reads that fail (the store gone).
#[derive(Clone, Default)]
struct FaultyStore {
    inner: MemoryStore,
    /// The next this many block updates are applied, then reported as failed.
    lose_block_update_replies: Arc<std::sync::atomic::AtomicUsize>,
    /// The next this many reads fail.
    failing_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// Reads that fail right after a lost reply (the store went away with it).
    reads_failing_after_lost_reply: Arc<std::sync::atomic::AtomicUsize>,
    /// The next this many writes of a `confirmed` affinity fail (not applied).
    failing_confirmations: Arc<std::sync::atomic::AtomicUsize>,
    /// The next this many multi-key creates (a claim in one write) are applied, then
    /// reported as failed.
    lose_create_all_replies: Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyStore {
    /// Whether the reply to a block write that was applied is lost (and the reads that
    /// fail after it armed).
    fn lose_block_reply(&self) -> bool {
        if !take_one(&self.lose_block_update_replies) {
            return false;
        }
        let after = self
            .reads_failing_after_lost_reply
            .swap(0, std::sync::atomic::Ordering::SeqCst);
        self.failing_reads
            .store(after, std::sync::atomic::Ordering::SeqCst);
        true
    }
}

/// Takes one from `counter` if it is above zero.
fn take_one(counter: &std::sync::atomic::AtomicUsize) -> bool {
    counter
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
}

fn timeout() -> datastore::Error {
    datastore::Error::Backend("context deadline exceeded".into())
}

#[async_trait::async_trait]
impl Datastore for FaultyStore {
    async fn get(&self, key: &str) -> datastore::Result<Option<datastore::KeyValue>> {
        if take_one(&self.failing_reads) {
            return Err(timeout());
        }
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> datastore::Result<datastore::Listing> {
        self.inner.list(prefix).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<datastore::LeaseId>,
    ) -> datastore::Result<datastore::Revision> {
        self.inner.create(key, value, lease).await
    }
    async fn create_all(
        &self,
        kvs: Vec<(String, Vec<u8>)>,
    ) -> datastore::Result<datastore::Revision> {
        let applied = self.inner.create_all(kvs).await?;
        if take_one(&self.lose_create_all_replies) {
            return Err(timeout());
        }
        Ok(applied)
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: datastore::Revision,
        lease: Option<datastore::LeaseId>,
    ) -> datastore::Result<datastore::Revision> {
        let confirming = key.contains("/host/") && value.windows(9).any(|w| w == b"confirmed");
        if confirming && take_one(&self.failing_confirmations) {
            return Err(timeout());
        }
        let applied = self.inner.update(key, value, expected, lease).await?;
        if key.starts_with(&keys::blocks_prefix()) && self.lose_block_reply() {
            return Err(timeout());
        }
        Ok(applied)
    }
    async fn put_all(&self, puts: Vec<datastore::Put>) -> datastore::Result<datastore::PutAll> {
        let block = puts
            .iter()
            .any(|p| p.key.starts_with(&keys::blocks_prefix()));
        let out = self.inner.put_all(puts).await?;
        if block && matches!(out, datastore::PutAll::Written(_)) && self.lose_block_reply() {
            return Err(timeout());
        }
        Ok(out)
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<datastore::Revision>,
    ) -> datastore::Result<datastore::KeyValue> {
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        from: datastore::Revision,
    ) -> datastore::Result<datastore::Watch> {
        self.inner.watch(prefix, from).await
    }
    async fn grant_lease(&self, ttl: std::time::Duration) -> datastore::Result<datastore::Lease> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: datastore::LeaseId) -> datastore::Result<()> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: datastore::LeaseId) -> datastore::Result<()> {
        self.inner.revoke_lease(lease).await
    }
    async fn revision(&self) -> datastore::Result<datastore::Revision> {
        self.inner.revision().await
    }
}

/// A [`FaultyStore`] holding one pool, no block yet.
async fn faulty_pool() -> (FaultyStore, Ipam) {
    let store = FaultyStore::default();
    add_pool(
        &store.inner,
        "pool1",
        json!({"cidr":"10.30.0.0/24","blockSize":26}),
    )
    .await;
    let ipam = Ipam::new(Arc::new(store.clone()));
    (store, ipam)
}

async fn faulty_setup() -> (FaultyStore, Ipam) {
    let (store, ipam) = faulty_pool().await;
    // The block exists already: the allocation below is one block update.
    one(&ipam, "net.first", "node1")
        .await
        .expect("first address");
    (store, ipam)
}

#[tokio::test(start_paused = true)]
async fn a_block_write_reported_failed_after_it_was_saved_is_read_back_not_leaked() -> TestResult {
    let (store, ipam) = faulty_setup().await;
    store
        .lose_block_update_replies
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let ip = one(&ipam, "net.pod", "node1").await?;
    assert_eq!(ipam.ips_by_handle("net.pod").await?, vec![ip]);
    let report = ipam.check().await?;
    assert!(report.missing_handles.is_empty(), "{report:?}");
    assert_eq!(ipam.release_by_handle("net.pod").await?, vec![ip]);
    assert_handles_consistent_and_only_first_left(&ipam).await
}

/// One allocation for `net.pod` whose block write loses its reply while the store stays
/// unreadable for every read-back: the ADD fails as ambiguous, and the runtime's DEL then
/// frees through the handle the one address the write took. Returns the ADD's error.
async fn unknown_outcome_then_del(
    store: &FaultyStore,
    ipam: &Ipam,
) -> std::result::Result<Error, Box<dyn std::error::Error>> {
    store
        .lose_block_update_replies
        .store(1, std::sync::atomic::Ordering::SeqCst);
    store
        .reads_failing_after_lost_reply
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let err = one(ipam, "net.pod", "node1")
        .await
        .expect_err("the outcome cannot be known");
    assert!(matches!(err, Error::Ambiguous { .. }), "{err}");
    let freed = ipam.release_by_handle("net.pod").await?;
    assert_eq!(freed.len(), 1, "the address the write took is freed");
    Ok(err)
}

/// `ipam check` finds no address without its handle and no handle without addresses, and
/// only the setup's `net.first` is allocated (no workload endpoints exist here, so the
/// leak count itself is not the measure).
async fn assert_handles_consistent_and_only_first_left(ipam: &Ipam) -> TestResult {
    let report = ipam.check().await?;
    assert!(report.missing_handles.is_empty(), "{report:?}");
    assert!(report.handles_without_ips.is_empty(), "{report:?}");
    let handles: Vec<Option<&str>> = report
        .allocations
        .iter()
        .map(|a| a.handle.as_deref())
        .collect();
    assert_eq!(handles, vec![Some("net.first")]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_write_of_unknown_outcome_keeps_the_handle_so_del_frees_the_address() -> TestResult {
    let (store, ipam) = faulty_setup().await;
    let err = unknown_outcome_then_del(&store, &ipam).await?;
    assert!(err.to_string().contains("could not tell"), "{err}");
    assert_handles_consistent_and_only_first_left(&ipam).await
}

#[tokio::test]
async fn a_corrupt_block_is_an_error_naming_it_not_a_panic() -> TestResult {
    let (ds, ipam) = setup("10.40.0.0/24", 26).await;
    let first = one(&ipam, "net.a", "node1").await?;
    let cidr: IpNet = "10.40.0.0/24".parse()?;
    let block = ipam
        .blocks()
        .await?
        .into_iter()
        .find(|b| cidr.contains(&b.cidr.network()))
        .ok_or("a block")?;
    // Hand-edited: a free ordinal far outside the block.
    let key = keys::block(&block.cidr);
    let kv = ds.get(&key).await?.ok_or("block key")?;
    let mut raw: serde_json::Value = serde_json::from_slice(&kv.value)?;
    raw["unallocated"] = json!([9999, 1, 2]);
    ds.update(&key, raw.to_string().into_bytes(), kv.mod_revision, None)
        .await?;

    let err = one(&ipam, "net.b", "node1").await.expect_err("corrupt");
    let text = err.to_string();
    assert!(
        text.contains(&key) && text.contains("unallocated ordinal 9999 is outside"),
        "{text}"
    );
    assert!(ipam.release_ip(first, None).await.is_err());
    assert!(
        ipam.check()
            .await
            .is_err_and(|e| e.to_string().contains(&key))
    );
    Ok(())
}

async fn affinity_state(ds: &MemoryStore, node: &str, cidr: &IpNet) -> Option<AffinityState> {
    let kv = ds.get(&keys::affinity(node, cidr)).await.ok()??;
    serde_json::from_slice::<BlockAffinity>(&kv.value)
        .ok()
        .map(|a| a.state)
}

/// The block holding `ip`, from the listing.
async fn block_of(ipam: &Ipam, ip: IpAddr) -> IpNet {
    ipam.ip_info(ip)
        .await
        .ok()
        .flatten()
        .map(|a| a.block)
        .expect("allocated")
}

#[tokio::test(start_paused = true)]
async fn a_release_that_finds_the_block_in_use_restores_its_affinity_through_a_failed_write()
-> TestResult {
    let (store, ipam) = faulty_setup().await;
    let ip = one(&ipam, "net.pod", "node1").await?;
    let cidr = block_of(&ipam, ip).await;
    store
        .failing_confirmations
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let err = ipam
        .release_block_affinity("node1", &cidr, true)
        .await
        .expect_err("the block is in use");
    assert!(matches!(err, Error::BlockNotEmpty(_)), "{err}");
    assert_eq!(
        affinity_state(&store.inner, "node1", &cidr).await,
        Some(AffinityState::Confirmed),
        "an in-use block keeps its (routed, announced) affinity"
    );
    Ok(())
}

#[tokio::test]
async fn stuck_pending_deletion_claims_are_repaired() -> TestResult {
    let (ds, ipam) = setup("10.50.0.0/24", 26).await;
    let used = one(&ipam, "net.used", "node1").await?;
    let used_block = block_of(&ipam, used).await;
    let stuck = |cidr: IpNet| {
        let ds = ds.clone();
        async move {
            let key = keys::affinity("node1", &cidr);
            let value = json!({"state": "pendingDeletion", "deleted": false}).to_string();
            match ds.get(&key).await.expect("read") {
                Some(kv) => {
                    ds.update(&key, value.into_bytes(), kv.mod_revision, None)
                        .await
                }
                None => ds.create(&key, value.into_bytes(), None).await,
            }
            .expect("write");
        }
    };
    // In use: the affinity comes back.
    stuck(used_block).await;
    assert_eq!(
        ipam.repair_stuck_claim("node1", &used_block).await?,
        crate::StuckClaim::Restored
    );
    assert_eq!(
        affinity_state(&ds, "node1", &used_block).await,
        Some(AffinityState::Confirmed)
    );
    // Empty: the release is finished (block and affinity gone).
    let other: IpNet = "10.50.0.64/26".parse()?;
    ipam.assign_ip(&AssignIpArgs {
        ip: "10.50.0.70".parse()?,
        handle: "net.x".into(),
        attrs: BTreeMap::new(),
        node: "node1".into(),
    })
    .await?;
    ipam.release_by_handle("net.x").await?;
    stuck(other).await;
    assert_eq!(
        ipam.repair_stuck_claim("node1", &other).await?,
        crate::StuckClaim::Released
    );
    assert_eq!(affinity_state(&ds, "node1", &other).await, None);
    assert!(ds.get(&keys::block(&other)).await?.is_none());
    // Dangling (no block): removed.
    let gone: IpNet = "10.50.0.128/26".parse()?;
    stuck(gone).await;
    assert_eq!(
        ipam.repair_stuck_claim("node1", &gone).await?,
        crate::StuckClaim::Removed
    );
    assert_eq!(affinity_state(&ds, "node1", &gone).await, None);
    // Not stuck: nothing done.
    assert_eq!(
        ipam.repair_stuck_claim("node1", &used_block).await?,
        crate::StuckClaim::NotStuck
    );
    Ok(())
}

#[tokio::test]
async fn a_dual_stack_handle_gets_one_address_of_each_family_from_its_own_blocks() -> TestResult {
    let ds = MemoryStore::new();
    add_pool(&ds, "v4", json!({"cidr":"10.0.0.0/16"})).await;
    add_pool(&ds, "v6", json!({"cidr":"fd00:10::/48"})).await;
    let ipam = Ipam::new(Arc::new(ds.clone()));
    // One block per family is within maxBlocksPerHost 1: the limit counts each family.
    ipam.set_config(&IpamConfig {
        max_blocks_per_host: 1,
        ..IpamConfig::default()
    })
    .await?;
    let v4 = ipam.auto_assign(&AutoAssignArgs::one("pod", "n1")).await?;
    let v6 = ipam
        .auto_assign(&AutoAssignArgs {
            family: IpFamily::V6,
            ..AutoAssignArgs::one("pod", "n1")
        })
        .await?;
    assert_eq!((v4.len(), v6.len()), (1, 1));
    assert!(net("10.0.0.0/16").contains(&v4[0].ip), "{:?}", v4[0]);
    assert!(net("fd00:10::/48").contains(&v6[0].ip), "{:?}", v6[0]);
    assert_eq!(v6[0].block.prefix_len(), 122);
    let block = ds.get(&keys::block(&v6[0].block)).await?;
    assert!(block.is_some(), "the v6 block is stored under its own key");
    assert!(keys::block(&v6[0].block).contains("/ipv6/block/fd00:10:"));
    let affinities = ipam.host_affinities("n1").await?;
    assert_eq!(affinities.len(), 2, "{affinities:?}");
    let mut held = ipam.ips_by_handle("pod").await?;
    held.sort();
    assert_eq!(held, vec![v4[0].ip, v6[0].ip]);
    ipam.release_by_handle("pod").await?;
    assert!(ipam.ips_by_handle("pod").await?.is_empty());
    assert!(ipam.allocations().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn an_ipv6_request_without_an_ipv6_pool_says_so() -> TestResult {
    let (_ds, ipam) = setup("10.0.0.0/16", 26).await;
    let err = ipam
        .auto_assign(&AutoAssignArgs {
            family: IpFamily::V6,
            ..AutoAssignArgs::one("pod", "n1")
        })
        .await
        .expect_err("no v6 pool");
    assert!(
        err.to_string()
            .starts_with("no IPv6 pool usable for Workload addresses"),
        "{err}"
    );
    assert!(ipam.allocations().await?.is_empty());
    Ok(())
}
