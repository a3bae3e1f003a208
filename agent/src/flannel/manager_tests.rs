use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use datastore::MemoryStore;

use super::*;

const PREFIX: &str = "/coreos.com/network";

fn config(json: &str) -> NetworkConfig {
    NetworkConfig::parse(json.as_bytes()).expect("test config")
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test cidr")
}

fn node_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn manager(store: &Arc<dyn Datastore>, cfg: &NetworkConfig, n: u8) -> LeaseManager {
    LeaseManager::new(
        store.clone(),
        PREFIX,
        cfg.clone(),
        LeaseAttrs::vxlan(node_ip(n), 1, [2, 0, 0, 0, 0, n]),
        LeaseTiming::default(),
    )
}

fn two_subnets() -> NetworkConfig {
    config(r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.2.0"}"#)
}

async fn stored(store: &Arc<dyn Datastore>, subnet: &Ipv4Net) -> Option<datastore::KeyValue> {
    store.get(&lease_key(PREFIX, subnet)).await.expect("get")
}

#[tokio::test]
async fn a_new_node_leases_a_subnet_in_range_with_flannels_value_and_a_ttl() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let own = manager(&store, &cfg, 1).acquire(None).await.expect("lease");
    assert!(cfg.fits(&own.subnet), "{}", own.subnet);
    assert_eq!(own.ttl, Some(Duration::from_secs(86400)));
    let kv = stored(&store, &own.subnet).await.expect("key");
    assert_eq!(kv.lease, own.lease);
    assert_eq!(
        String::from_utf8(kv.value).expect("utf8"),
        r#"{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}"#
    );
}

#[tokio::test]
async fn a_restarted_node_takes_back_its_lease_on_a_fresh_store_lease() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let first = manager(&store, &cfg, 1).acquire(None).await.expect("lease");
    let again = manager(&store, &cfg, 1).acquire(None).await.expect("lease");
    assert_eq!(again.subnet, first.subnet);
    assert_ne!(again.lease, first.lease);
    // The old store lease was revoked; the key lives on the new one.
    assert!(matches!(
        store.keep_alive(first.lease.expect("id")).await,
        Err(datastore::Error::LeaseNotFound(_))
    ));
    let kv = stored(&store, &first.subnet).await.expect("key");
    assert_eq!(kv.lease, again.lease);
    assert_eq!(
        store
            .list(&subnets_dir(PREFIX))
            .await
            .expect("list")
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn the_previous_subnet_is_preferred_when_free() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let own = manager(&store, &cfg, 1)
        .acquire(Some(net("10.244.77.0/24")))
        .await
        .expect("lease");
    assert_eq!(own.subnet, net("10.244.77.0/24"));
    // Taken by node 1: node 2 asking for it gets another one.
    let other = manager(&store, &cfg, 2)
        .acquire(Some(net("10.244.77.0/24")))
        .await
        .expect("lease");
    assert_ne!(other.subnet, own.subnet);
    // A previous subnet the config no longer allows is not used.
    let third = manager(&store, &cfg, 3)
        .acquire(Some(net("10.244.0.0/24")))
        .await
        .expect("lease");
    assert_ne!(third.subnet, net("10.244.0.0/24"));
}

#[tokio::test]
async fn an_exhausted_network_is_an_error_until_a_lease_frees_up() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let cfg = two_subnets();
    let a = manager(&store, &cfg, 1);
    let la = a.acquire(None).await.expect("first");
    let lb = manager(&store, &cfg, 2)
        .acquire(None)
        .await
        .expect("second");
    assert_ne!(la.subnet, lb.subnet);
    let c = manager(&store, &cfg, 3);
    let err = c.acquire(None).await.expect_err("exhausted");
    assert!(
        matches!(err, LeaseError::Exhausted { count: 2, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "network 10.244.0.0/16 is exhausted: all 2 subnets from 10.244.1.0 to 10.244.2.0 are leased"
    );
    a.release(&la).await.expect("release");
    let lc = c.acquire(None).await.expect("freed");
    assert_eq!(lc.subnet, la.subnet);
}

#[tokio::test]
async fn a_lease_that_no_longer_fits_the_config_is_replaced() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let old = config(r#"{"Network":"10.244.0.0/16","SubnetLen":24}"#);
    let first = manager(&store, &old, 1)
        .acquire(Some(net("10.244.5.0/24")))
        .await
        .expect("lease");
    let new = config(r#"{"Network":"10.244.0.0/16","SubnetLen":25}"#);
    let second = manager(&store, &new, 1).acquire(None).await.expect("lease");
    assert_eq!(second.subnet.prefix_len(), 25);
    assert!(stored(&store, &first.subnet).await.is_none());
}

#[tokio::test]
async fn a_reservation_is_used_as_is_and_never_expires() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let m = manager(&store, &cfg, 1);
    let attrs = LeaseAttrs::vxlan(node_ip(1), 1, [2, 0, 0, 0, 0, 1]);
    store
        .create(
            &lease_key(PREFIX, &net("10.244.9.0/24")),
            attrs.to_json(),
            None,
        )
        .await
        .expect("reserve");
    let own = m.acquire(None).await.expect("lease");
    assert_eq!((own.subnet, own.lease), (net("10.244.9.0/24"), None));
    m.renew(&own).await.expect("nothing to renew");
}

#[tokio::test]
async fn renewal_keeps_the_lease_and_reports_a_lost_one() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let m = manager(&store, &cfg, 1);
    let own = m.acquire(None).await.expect("lease");
    m.renew(&own).await.expect("renew");
    store
        .revoke_lease(own.lease.expect("id"))
        .await
        .expect("revoke");
    assert!(matches!(m.renew(&own).await, Err(LeaseError::Lost(s)) if s == own.subnet));
}

#[tokio::test]
async fn concurrent_nodes_never_share_a_subnet() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    // Exactly ten subnets for ten nodes: every pick after the first can collide.
    let cfg =
        config(r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.10.0"}"#);
    let tasks: Vec<_> = (1..=10u8)
        .map(|n| {
            let m = manager(&store, &cfg, n);
            tokio::spawn(async move { m.acquire(None).await })
        })
        .collect();
    let mut subnets = BTreeSet::new();
    for t in tasks {
        let own = t.await.expect("join").expect("lease");
        assert!(
            subnets.insert(own.subnet),
            "{} handed out twice",
            own.subnet
        );
    }
    assert_eq!(subnets.len(), 10);
}

#[test]
fn renewal_time_leaves_the_margin_or_a_third_of_short_ttls() {
    let t = LeaseTiming::default();
    assert_eq!(
        t.renew_after(Duration::from_secs(86400)),
        Duration::from_secs(82800)
    );
    assert_eq!(
        t.renew_after(Duration::from_secs(3)),
        Duration::from_secs(1)
    );
}
