//! The flannel backend end to end (issue 7): calico-node agents in flannel mode on a
//! network-namespace lab, flannel's config put with `etcdctl`, pods wired by the Calico CNI
//! plugin from each node's leased subnet, and the kernel state a flannel user knows.
//!
//! Root and etcd are needed: `cargo build --workspace --bins && cargo test -p lab --test
//! flannel -- --ignored`. Every namespace and process is removed when a test ends, pass or
//! fail (the lab's drop guards). Waits are bounded only to end a failing test; nothing
//! asserts on speed (the latencies printed are for the README).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lab::cluster::{Cluster, FLANNEL_PREFIX, LabSpec};
use lab::wait_until;

const VXLAN: &str = r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#;
const HOST_GW: &str = r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}"#;
const WAIT: Duration = Duration::from_secs(30);

/// Labs of one process share namespace names (`crs<pid>-ctl`, ...): one lab at a time.
static LAB: Mutex<()> = Mutex::new(());

/// A lab of `n` nodes on one L2 subnet, agents not started, behind the guard that keeps
/// other tests of this binary from building theirs meanwhile. Bind both as `let (_lab, c)`
/// so the lab is torn down before the guard is released.
fn lab(n: usize) -> (MutexGuard<'static, ()>, Cluster) {
    lab_on(vec![0; n])
}

/// A lab with nodes on the given subnets (`vec![0, 0, 1]`).
fn lab_on(node_subnets: Vec<usize>) -> (MutexGuard<'static, ()>, Cluster) {
    let guard = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let mut spec = LabSpec::nodes(0);
    spec.node_subnets = node_subnets;
    spec.start_agents = false;
    (guard, Cluster::start(spec).expect("lab"))
}

fn fail(c: &Cluster, what: &str) -> ! {
    panic!("{what}\n{}", c.logs(60));
}

fn start_all(c: &mut Cluster, extra: &BTreeMap<String, String>) {
    for i in 0..c.nodes.len() {
        if let Err(e) = c.start_flannel_agent(i, extra) {
            fail(c, &format!("starting node{}: {e:#}", i + 1));
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Node `i`'s subnet from its subnet.env (`10.244.3.0/24`), waiting for the file.
fn subnet_of(c: &Cluster, i: usize) -> String {
    if !wait_until(WAIT, || c.flannel_subnet_env(i).is_some()) {
        fail(c, &format!("node{} wrote no subnet.env", i + 1));
    }
    let text = c.flannel_subnet_env(i).unwrap_or_default();
    let first = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .unwrap_or_else(|| fail(c, &format!("no FLANNEL_SUBNET in {text}")));
    let (ip, len) = first.split_once('/').unwrap_or((first, "24"));
    let base = ip.rsplit_once('.').map(|(a, _)| a).unwrap_or(ip);
    format!("{base}.0/{len}")
}

/// `10.244.3.0` of `10.244.3.0/24`.
fn base(subnet: &str) -> &str {
    subnet.split('/').next().unwrap_or(subnet)
}

/// The route lines other nodes must have to node `j`, per backend.
fn route_to(c: &Cluster, j: usize, subnet: &str, vxlan: bool) -> String {
    if vxlan {
        format!("{subnet} via {} dev flannel.1 onlink", base(subnet))
    } else {
        format!("{subnet} via {} dev eth0", c.nodes[j].ip())
    }
}

/// Waits until every node has the route to every other node.
fn wait_full_mesh(c: &Cluster, subnets: &[String], vxlan: bool) {
    for i in 0..c.nodes.len() {
        for (j, subnet) in subnets.iter().enumerate() {
            if i == j {
                continue;
            }
            let want = route_to(c, j, subnet, vxlan);
            if !wait_until(WAIT, || c.nodes[i].routes().contains(&want)) {
                fail(
                    c,
                    &format!(
                        "node{} has no route '{want}': {:#?}",
                        i + 1,
                        c.nodes[i].routes()
                    ),
                );
            }
        }
    }
}

fn all_pods_ping(c: &Cluster) {
    let n = c.pods.len();
    for a in 0..n {
        for b in 0..n {
            if a != b && !wait_until(WAIT, || c.pods_ping(a, b)) {
                fail(
                    c,
                    &format!(
                        "pod {} ({}) cannot ping pod {} ({})",
                        c.pods[a].name, c.pods[a].ip, c.pods[b].name, c.pods[b].ip
                    ),
                );
            }
        }
    }
}

fn one_pod_per_node(c: &mut Cluster, tag: &str) {
    for i in 0..c.nodes.len() {
        if let Err(e) = c.add_flannel_pod(i, &format!("{tag}{}", i + 1)) {
            fail(c, &format!("{e:#}"));
        }
    }
}

fn mac_of(link: &str) -> String {
    link.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn three_nodes_vxlan_ping_with_flannels_keys_and_kernel_state() {
    let (_lab, mut c) = lab(3);
    c.put_flannel_config(VXLAN).expect("etcdctl put");
    start_all(&mut c, &BTreeMap::new());
    let subnets: Vec<String> = (0..3).map(|i| subnet_of(&c, i)).collect();
    let distinct: std::collections::BTreeSet<&String> = subnets.iter().collect();
    assert_eq!(distinct.len(), 3, "{subnets:?}");

    for (i, subnet) in subnets.iter().enumerate() {
        // subnet.env, byte for byte.
        let first = format!("{}.1", base(subnet).rsplit_once('.').map_or("", |p| p.0));
        assert_eq!(
            c.flannel_subnet_env(i).unwrap_or_default(),
            format!(
                "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={first}/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
            )
        );
        // flannel.1 as flannel makes it.
        let node = &c.nodes[i];
        let link = node
            .ns
            .ip(&["-d", "link", "show", "flannel.1"])
            .unwrap_or_else(|e| fail(&c, &format!("node{}: {e:#}", i + 1)));
        for piece in [
            "mtu 1450".to_string(),
            "vxlan id 1 ".to_string(),
            format!("local {} ", node.ip()),
            "dev eth0 ".to_string(),
            "dstport 8472 ".to_string(),
            "nolearning".to_string(),
        ] {
            assert!(
                link.contains(&piece),
                "node{}: no '{piece}' in {link}",
                i + 1
            );
        }
        let addr = node
            .ns
            .ip(&["-4", "addr", "show", "flannel.1"])
            .expect("addr");
        assert!(
            addr.contains(&format!("inet {}/32 ", base(subnet))),
            "node{}: {addr}",
            i + 1
        );
        // The lease, in flannel's JSON, bound to a 24 h etcd lease.
        let lease = c
            .flannel_lease_of(i)
            .expect("etcdctl get")
            .unwrap_or_else(|| fail(&c, &format!("no lease for node{}", i + 1)));
        assert_eq!(lease.subnet, *subnet);
        assert_eq!(
            lease.raw,
            format!(
                r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
                node.ip(),
                mac_of(&link)
            )
        );
        let key = format!("{FLANNEL_PREFIX}/subnets/{}", subnet.replace('/', "-"));
        let json: serde_json::Value =
            serde_json::from_str(&c.etcdctl(&["get", &key, "-w", "json"]).expect("get"))
                .expect("json");
        let id = json["kvs"][0]["lease"].as_i64().expect("key has a lease");
        let ttl = c
            .etcdctl(&["lease", "timetolive", &format!("{id:x}")])
            .expect("timetolive");
        assert!(ttl.contains("granted with TTL(86400s)"), "{ttl}");
    }

    wait_full_mesh(&c, &subnets, true);
    let leases = c.flannel_leases().expect("leases");
    for i in 0..3 {
        let node = &c.nodes[i];
        let routes = node.routes();
        let neigh = node
            .ns
            .ip(&["neigh", "show", "dev", "flannel.1"])
            .expect("neigh");
        let fdb = node
            .ns
            .exec("bridge", &["fdb", "show", "dev", "flannel.1"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .expect("bridge fdb");
        for (j, subnet) in subnets.iter().enumerate() {
            if i == j {
                continue;
            }
            let lease = leases
                .iter()
                .find(|l| l.subnet == *subnet)
                .expect("lease of j");
            let mac = lease.vtep_mac();
            // No `proto`: flannel's routes are protocol boot.
            assert!(
                routes.contains(&route_to(&c, j, subnet, true)),
                "node{}: {routes:#?}",
                i + 1
            );
            assert!(
                neigh.contains(&format!("{} lladdr {mac} PERMANENT", base(subnet))),
                "node{}: {neigh}",
                i + 1
            );
            assert!(
                fdb.contains(&format!("{mac} dst {} self permanent", c.nodes[j].ip())),
                "node{}: {fdb}",
                i + 1
            );
        }
        // Nothing routed to the node's own subnet through the tunnel.
        assert!(!routes.iter().any(|r| r.starts_with(&subnets[i])));
    }

    one_pod_per_node(&mut c, "v");
    for p in &c.pods {
        let net: std::net::Ipv4Addr = base(&subnets[p.node]).parse().expect("subnet");
        let host = u32::from(p.ip).wrapping_sub(u32::from(net));
        assert!(
            (2..255).contains(&host),
            "{} is not a pod address of {}",
            p.ip,
            subnets[p.node]
        );
    }
    all_pods_ping(&c);
    // Calico's wiring in flannel mode too: /32 and 169.254.1.1.
    let pod_routes = c.pods[0].ns.ip(&["route", "show"]).expect("pod routes");
    assert!(
        pod_routes.contains("default via 169.254.1.1 dev eth0"),
        "{pod_routes}"
    );
    // Drift is repaired: a route removed by hand, then the whole device.
    let to_node2 = route_to(&c, 1, &subnets[1], true);
    c.nodes[0]
        .ns
        .ip(&["route", "del", &subnets[1], "dev", "flannel.1"])
        .expect("ip route del");
    let back = time_until(&c, "the deleted route was not put back", || {
        c.nodes[0].routes().contains(&to_node2)
    });
    println!("route deleted by hand on node1 -> back after {back:?}");
    c.nodes[0]
        .ns
        .ip(&["link", "del", "flannel.1"])
        .expect("ip link del");
    wait_full_mesh(&c, &subnets, true);
    all_pods_ping(&c);
    let out = c.calicoctl(0, &["flannel", "subnets"]).expect("calicoctl");
    let table = String::from_utf8_lossy(&out.stdout);
    println!("{table}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for subnet in &subnets {
        assert!(table.contains(subnet.as_str()), "{table}");
    }
    let p = c.pods.len() - 1;
    c.delete_flannel_pod(p).expect("CNI DEL");
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn switching_vxlan_to_host_gw_and_restarting_reprograms_cleanly_and_keeps_subnets() {
    let (_lab, mut c) = lab(3);
    c.put_flannel_config(VXLAN).expect("etcdctl put");
    start_all(&mut c, &BTreeMap::new());
    let subnets: Vec<String> = (0..3).map(|i| subnet_of(&c, i)).collect();
    wait_full_mesh(&c, &subnets, true);
    one_pod_per_node(&mut c, "s");
    all_pods_ping(&c);

    for i in 0..3 {
        c.stop_agent(i);
    }
    c.put_flannel_config(HOST_GW).expect("etcdctl put");
    start_all(&mut c, &BTreeMap::new());
    wait_full_mesh(&c, &subnets, false);
    for (i, subnet) in subnets.iter().enumerate() {
        let node = &c.nodes[i];
        if !wait_until(WAIT, || node.ns.ip(&["link", "show", "flannel.1"]).is_err()) {
            fail(&c, &format!("node{} still has flannel.1", i + 1));
        }
        let routes = node.routes();
        assert!(
            !routes.iter().any(|r| r.contains("onlink")),
            "node{}: {routes:#?}",
            i + 1
        );
        // Restart kept the subnet; subnet.env now says the host-gw MTU.
        assert_eq!(subnet_of(&c, i), *subnet);
        assert!(
            wait_until(WAIT, || c
                .flannel_subnet_env(i)
                .is_some_and(|t| t.contains("FLANNEL_MTU=1500\n"))),
            "{:?}",
            c.flannel_subnet_env(i)
        );
        let lease = c.flannel_lease_of(i).expect("get").expect("lease");
        assert_eq!(
            lease.raw,
            format!(
                r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"host-gw"}}"#,
                node.ip()
            )
        );
    }
    // The pods kept their addresses and reach each other without encapsulation.
    all_pods_ping(&c);
}

/// Polls until `check` holds; returns how long it took (for the report, not asserted).
fn time_until(c: &Cluster, what: &str, check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    if !wait_until(WAIT, check) {
        fail(c, what);
    }
    start.elapsed()
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn deleted_or_expired_leases_leave_other_nodes_and_live_nodes_take_one_again() {
    let (_lab, mut c) = lab(3);
    c.put_flannel_config(VXLAN).expect("etcdctl put");
    for i in 0..2 {
        c.start_flannel_agent(i, &BTreeMap::new()).expect("start");
    }
    // node3's lease lives 3 s unrenewed, so its expiry is quick to see.
    let short = env(&[("FLANNELD_SUBNET_LEASE_TTL", "3")]);
    c.start_flannel_agent(2, &short).expect("start node3");
    let subnets: Vec<String> = (0..3).map(|i| subnet_of(&c, i)).collect();
    wait_full_mesh(&c, &subnets, true);
    let key = |i: usize| format!("{FLANNEL_PREFIX}/subnets/{}", subnets[i].replace('/', "-"));

    // 1. node2's lease deleted while node2 runs: node2 takes one again (its subnet, still
    //    free) and the others route to it again.
    let before = c.etcdctl(&["get", &key(1), "-w", "json"]).expect("get");
    c.etcdctl(&["del", &key(1)]).expect("etcdctl del");
    let took = time_until(&c, "node2 did not take a lease again", || {
        c.etcdctl(&["get", &key(1), "-w", "json"])
            .is_ok_and(|now| now.contains("\"kvs\"") && now != before)
    });
    println!("node2 took its lease again {took:?} after the delete");
    assert_eq!(
        c.flannel_lease_of(1).expect("get").expect("lease").subnet,
        subnets[1]
    );
    wait_full_mesh(&c, &subnets, true);

    // 2. node3 crashes: its 3 s lease expires and the others drop its route.
    c.kill_agent(2);
    let to_node3 = route_to(&c, 2, &subnets[2], true);
    let gone = time_until(&c, "node3's route stayed after its lease expired", || {
        (0..2).all(|i| !c.nodes[i].routes().contains(&to_node3))
    });
    println!("node3 killed -> its route gone from node1 and node2 after {gone:?} (TTL 3 s)");
    assert!(c.flannel_lease_of(2).expect("get").is_none());
    let neigh = c.nodes[0]
        .ns
        .ip(&["neigh", "show", "dev", "flannel.1"])
        .expect("neigh");
    assert!(
        !neigh.contains(&format!("{} ", base(&subnets[2]))),
        "{neigh}"
    );
    // Restarted, it finds its subnet again through subnet.env.
    c.start_flannel_agent(2, &short).expect("restart node3");
    wait_full_mesh(&c, &subnets, true);
    assert_eq!(
        c.flannel_lease_of(2).expect("get").expect("lease").subnet,
        subnets[2]
    );

    // 3. node2 stopped (its 24 h lease stays), then its lease deleted: the others drop it.
    c.stop_agent(1);
    let to_node2 = route_to(&c, 1, &subnets[1], true);
    assert!(c.nodes[0].routes().contains(&to_node2));
    let deleted = Instant::now();
    c.etcdctl(&["del", &key(1)]).expect("etcdctl del");
    time_until(
        &c,
        "node2's route stayed after its lease was deleted",
        || {
            [0, 2]
                .iter()
                .all(|&i| !c.nodes[i].routes().contains(&to_node2))
        },
    );
    println!(
        "lease deleted (etcdctl del) -> route gone from node1's and node3's kernels within {:?}",
        deleted.elapsed()
    );
    c.start_flannel_agent(1, &BTreeMap::new())
        .expect("restart node2");
    assert_eq!(subnet_of(&c, 1), subnets[1]);
    wait_full_mesh(&c, &subnets, true);
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn a_network_with_room_for_two_makes_the_third_node_wait_and_retry() {
    let (_lab, mut c) = lab(3);
    c.put_flannel_config(
        r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.2.0", "Backend": {"Type": "vxlan"}}"#,
    )
    .expect("etcdctl put");
    for i in 0..2 {
        c.start_flannel_agent(i, &BTreeMap::new()).expect("start");
    }
    let subnets: Vec<String> = (0..2).map(|i| subnet_of(&c, i)).collect();
    // Waiting for a lease for longer than a task may go without progress is not being
    // stuck: node3 stays live.
    c.start_flannel_agent(2, &env(&[("CALICO_RS_TASK_STUCK_TIMEOUT", "2")]))
        .expect("start node3");
    if !wait_until(WAIT, || c.nodes[2].agent_log(200).contains("is exhausted")) {
        fail(&c, "node3 did not say the network is exhausted");
    }
    std::thread::sleep(Duration::from_secs(5));
    let live = c.nodes[2].health("/liveness");
    assert!(
        live.as_ref().is_some_and(|(code, _)| *code == 200),
        "node3 waiting for a lease fails liveness: {live:?}"
    );
    println!(
        "{}",
        c.nodes[2]
            .agent_log(200)
            .lines()
            .find(|l| l.contains("is exhausted"))
            .unwrap_or_default()
    );
    assert!(c.nodes[2].agent_running(), "calico-node exited");
    assert!(c.flannel_subnet_env(2).is_none());

    // node1 leaves for good: its lease is deleted and node3 gets the subnet.
    c.stop_agent(0);
    let key = format!("{FLANNEL_PREFIX}/subnets/{}", subnets[0].replace('/', "-"));
    c.etcdctl(&["del", &key]).expect("etcdctl del");
    assert_eq!(subnet_of(&c, 2), subnets[0]);
    assert!(c.nodes[2].agent_running());
    let to_node3 = route_to(&c, 2, &subnets[0], true);
    if !wait_until(WAIT, || c.nodes[1].routes().contains(&to_node3)) {
        fail(&c, "node2 has no route to node3");
    }
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn direct_routing_skips_encapsulation_only_towards_same_subnet_nodes() {
    // node1 and node2 share an L2 subnet; node3 is behind the lab's router.
    let (_lab, mut c) = lab_on(vec![0, 0, 1]);
    c.put_flannel_config(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": true}}"#,
    )
    .expect("etcdctl put");
    start_all(&mut c, &BTreeMap::new());
    let subnets: Vec<String> = (0..3).map(|i| subnet_of(&c, i)).collect();
    let want = |i: usize, j: usize| {
        let direct = c.nodes[i].subnet == c.nodes[j].subnet;
        route_to(&c, j, &subnets[j], !direct)
    };
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            let route = want(i, j);
            if !wait_until(WAIT, || c.nodes[i].routes().contains(&route)) {
                fail(
                    &c,
                    &format!("node{}: no '{route}': {:#?}", i + 1, c.nodes[i].routes()),
                );
            }
        }
    }
    one_pod_per_node(&mut c, "d");
    all_pods_ping(&c);
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn ip_masq_lets_pods_reach_hosts_outside_the_network() {
    let (_lab, mut c) = lab(2);
    c.put_flannel_config(VXLAN).expect("etcdctl put");
    start_all(&mut c, &env(&[("FLANNELD_IP_MASQ", "true")]));
    let subnets: Vec<String> = (0..2).map(|i| subnet_of(&c, i)).collect();
    assert!(
        c.flannel_subnet_env(0)
            .is_some_and(|t| t.ends_with("FLANNEL_IPMASQ=true\n"))
    );
    wait_full_mesh(&c, &subnets, true);
    one_pod_per_node(&mut c, "m");
    // The lab's router knows nothing of 10.244.0.0/16: its replies only come back to the
    // pod because the node masqueraded the request.
    let router = lab::cluster::CTL_IP;
    if !wait_until(WAIT, || c.pods[0].ns.ping(router, 1)) {
        let nat = c.nodes[0]
            .ns
            .exec("iptables-save", &["-t", "nat"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        fail(&c, &format!("pod cannot reach {router}: {nat:?}"));
    }
    let sets = c.nodes[0]
        .ns
        .exec("ipset", &["list", "cali40masq-ipam-pools"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("ipset");
    assert!(sets.contains("10.244.0.0/16"), "{sets}");
    // Pod to pod is not masqueraded and still works.
    all_pods_ping(&c);
}

/// Runs `f` on a thread inside network namespace `ns` (the lab's control namespace, where
/// etcd listens), so the test process itself never talks on the root namespace.
fn in_netns<T: Send + 'static>(ns: &lab::Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

#[test]
#[ignore = "needs root netns: cargo build --workspace --bins && cargo test -p lab --test flannel -- --ignored"]
fn ten_lease_managers_starting_at_once_never_share_a_subnet() {
    use std::sync::Arc;

    use agent::flannel::manager::{LeaseManager, LeaseTiming};
    use agent::flannel::{LeaseAttrs, NetworkConfig};
    use datastore::Datastore;
    use datastore::backend::{EtcdOptions, EtcdStore};

    let (_lab, c) = lab(0);
    let endpoint = c.etcd_endpoint();
    // Exactly ten subnets: after the first pick every node can collide with another.
    let config = NetworkConfig::parse(
        br#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.10.0"}"#,
    )
    .expect("config");
    let results = in_netns(&c.ctl, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut managers = Vec::new();
            for n in 1..=10u8 {
                // One etcd connection per node, as ten hosts would have.
                let store: Arc<dyn Datastore> = Arc::new(
                    EtcdStore::connect(EtcdOptions::new(vec![endpoint.clone()]))
                        .await
                        .expect("etcd"),
                );
                let attrs =
                    LeaseAttrs::vxlan(std::net::Ipv4Addr::new(10, 0, 0, n), 1, [2, 0, 0, 0, 0, n]);
                managers.push(LeaseManager::new(
                    store,
                    FLANNEL_PREFIX,
                    config.clone(),
                    attrs,
                    LeaseTiming::default(),
                ));
            }
            let all = managers.iter().map(|m| m.acquire(None));
            futures::future::join_all(all)
                .await
                .into_iter()
                .map(|r| {
                    r.map(|own| own.subnet.to_string())
                        .map_err(|e| e.to_string())
                })
                .collect::<Vec<_>>()
        })
    });
    let subnets: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| fail(&c, &e)))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = subnets.iter().collect();
    assert_eq!(distinct.len(), 10, "{subnets:?}");
    let stored = c.flannel_leases().expect("leases");
    assert_eq!(stored.len(), 10);
    let ips: std::collections::BTreeSet<&str> = stored.iter().map(|l| l.public_ip()).collect();
    assert_eq!(ips.len(), 10);
}
