use std::net::Ipv4Addr;

use datastore::MemoryStore;

use super::*;
use crate::flannel::desired::vtep_mac_for;
use crate::flannel::lease::LeaseAttrs;
use crate::flannel::subnet::lease_key;
use crate::liveness::Liveness;

const PREFIX: &str = "/coreos.com/network";

fn identity() -> Identity {
    Identity {
        node: "node1".into(),
        public_ip: Ipv4Addr::new(10, 0, 0, 1),
        iface: "eth0".into(),
        iface_net: "10.0.0.1/24".parse().expect("net"),
        iface_mtu: 1500,
        vtep_mac: vtep_mac_for("node1"),
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    Scratch(std::env::temp_dir().join(format!("crs-flannel-task-{name}-{}", std::process::id())))
}

fn task(
    store: &Arc<dyn Datastore>,
    dir: &Scratch,
) -> (FlannelTask, watch::Receiver<Arc<DesiredState>>) {
    let (tx, rx) = watch::channel(Arc::new(DesiredState::default()));
    let task = FlannelTask {
        store: store.clone(),
        prefix: PREFIX.into(),
        identity: identity(),
        subnet_file: dir.0.join("subnet.env"),
        mtu_file: Some(dir.0.join("mtu")),
        ip_masq: false,
        timing: LeaseTiming {
            retry: Duration::from_millis(50),
            ..LeaseTiming::default()
        },
        tx,
    };
    (task, rx)
}

fn vxlan_route_count(s: &DesiredState) -> usize {
    s.routes.len()
}

#[tokio::test]
async fn waits_for_the_config_then_leases_writes_files_and_follows_peers() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    let dir = scratch("follow");
    let (task, mut rx) = task(&store, &dir);
    let subnet_file = task.subnet_file.clone();
    let running =
        tokio::spawn(task.run(Liveness::new(Duration::from_secs(30)).heartbeat("flannel")));

    // Nothing is published before there is a config and a lease.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!rx.has_changed().expect("open"));
    store
        .create(
            &format!("{PREFIX}/config"),
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#.to_vec(),
            None,
        )
        .await
        .expect("config");
    let first = rx
        .wait_for(|s| !s.vxlan_devices.is_empty())
        .await
        .expect("published")
        .clone();
    let own = first.vxlan_devices[0].address.expect("vtep address");
    let env = SubnetEnv::read(&subnet_file).expect("subnet.env");
    assert_eq!(env.subnet.network(), own);
    assert_eq!(env.mtu, 1450);
    assert_eq!(
        std::fs::read_to_string(dir.0.join("mtu")).expect("mtu"),
        "1450\n"
    );

    // A peer joins, then leaves.
    let peer_subnet: Ipv4Net = if own == Ipv4Addr::new(10, 244, 200, 0) {
        "10.244.201.0/24"
    } else {
        "10.244.200.0/24"
    }
    .parse()
    .expect("net");
    let peer = LeaseAttrs::vxlan(Ipv4Addr::new(10, 0, 0, 2), 1, vtep_mac_for("node2"));
    store
        .create(&lease_key(PREFIX, &peer_subnet), peer.to_json(), None)
        .await
        .expect("peer");
    rx.wait_for(|s| vxlan_route_count(s) == 1)
        .await
        .expect("peer route");
    store
        .delete(&lease_key(PREFIX, &peer_subnet), None)
        .await
        .expect("peer leaves");
    rx.wait_for(|s| vxlan_route_count(s) == 0)
        .await
        .expect("peer route gone");
    running.abort();
}

#[tokio::test]
async fn a_deleted_own_lease_is_taken_again() {
    let store: Arc<dyn Datastore> = Arc::new(MemoryStore::new());
    store
        .create(
            &format!("{PREFIX}/config"),
            br#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#.to_vec(),
            None,
        )
        .await
        .expect("config");
    let dir = scratch("retake");
    let (task, mut rx) = task(&store, &dir);
    let subnet_file = task.subnet_file.clone();
    let running =
        tokio::spawn(task.run(Liveness::new(Duration::from_secs(30)).heartbeat("flannel")));
    rx.wait_for(|s| !s.managed_cidrs.is_empty())
        .await
        .expect("published");
    let subnet = SubnetEnv::read(&subnet_file).expect("subnet.env").subnet;
    let key = lease_key(PREFIX, &subnet);
    let before = store.get(&key).await.expect("get").expect("lease");
    store.delete(&key, None).await.expect("delete");
    let mut watch = store
        .watch(&key, before.mod_revision + 1)
        .await
        .expect("watch");
    // The delete, then our lease again, on the same subnet (it was free).
    let mut retaken = None;
    while let Some(ev) = watch.next().await {
        if let datastore::WatchEvent::Put(kv) = ev.expect("event") {
            retaken = Some(kv);
            break;
        }
    }
    let kv = retaken.expect("lease taken again");
    let attrs: LeaseAttrs = serde_json::from_slice(&kv.value).expect("json");
    assert_eq!(attrs, LeaseAttrs::host_gw(Ipv4Addr::new(10, 0, 0, 1)));
    assert!(kv.lease.is_some());
    running.abort();
}
