//! calico-node under faults (issue 12): a task that dies takes the process down with its
//! name, a task that is stuck fails `/liveness` and shows in `calicoctl node status`.
//! Faults are injected into the real binary with `CALICO_RS_FAILPOINTS`
//! (`agent/src/tasks/supervisor.rs`). Needs root:
//! `cargo test -p lab --test faults -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use lab::bgp_peers::{RouterKind, RouterSpec};
use lab::cluster::{Cluster, LabSpec};
use lab::tor::{TOR_PEERING, tor_spec};
use lab::wait_until;

const WAIT: Duration = Duration::from_secs(30);

/// The value of `key=...` in the log line that contains `marker` (comma-separated names).
fn logged_list(log: &str, marker: &str, key: &str) -> Vec<String> {
    let line = log
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no '{marker}' line in the log:\n{log}"));
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in: {line}"));
    value.split(',').map(str::to_string).collect()
}

/// `GET <path>` on node `i`'s health port.
fn health(c: &Cluster, i: usize, path: &str) -> Option<(u16, String)> {
    c.nodes[i].health(path)
}

/// A 2-node mesh (so the BGP task has a session), agents running.
fn lab() -> Cluster {
    Cluster::start(LabSpec::nodes(2)).expect("lab starts")
}

/// Restarts node `i`'s agent with `env` on top of the lab's.
fn restart_with(c: &mut Cluster, i: usize, env: &[(&str, &str)]) {
    c.stop_agent(i);
    let extra: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.start_agent_with(i, &extra).expect("agent starts");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn any_task_that_dies_ends_calico_node_non_zero_naming_the_task() {
    let mut c = lab();
    assert!(
        wait_until(WAIT, || c.nodes[0]
            .agent_log(usize::MAX)
            .contains("supervising tasks")),
        "{}",
        c.logs(20)
    );
    let tasks = logged_list(
        &c.nodes[0].agent_log(usize::MAX),
        "supervising tasks",
        "tasks",
    );
    println!("supervised tasks: {tasks:?}");
    for must in ["syncer", "bgp", "dataplane", "status", "health", "netlink"] {
        assert!(
            tasks.iter().any(|t| t == must),
            "{must} is not supervised: {tasks:?}"
        );
    }
    for (task, action) in tasks
        .iter()
        .flat_map(|t| [(t.clone(), "panic"), (t.clone(), "exit")])
    {
        let before = c.nodes[0].agent_log(usize::MAX).len();
        restart_with(
            &mut c,
            0,
            &[("CALICO_RS_FAILPOINTS", &format!("{task}={action}@1s"))],
        );
        let started = std::time::Instant::now();
        let ended = wait_until(WAIT, || c.nodes[0].agent_exit_status().is_some());
        // This run's lines only.
        let log = c.nodes[0]
            .agent_log(usize::MAX)
            .get(before..)
            .unwrap_or_default()
            .to_string();
        assert!(ended, "{task}={action}: calico-node still runs\n{log}");
        let status = c.nodes[0].agent_exit_status().expect("ended");
        assert!(!status.success(), "{task}={action}: exit {status}\n{log}");
        assert!(
            log.contains("a calico-node task ended") && log.contains(&format!("task={task}")),
            "{task}={action}: no log line naming the task\n{log}"
        );
        println!(
            "{task}={action}@1s: calico-node exited ({status}) {:.1} s after start",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn a_stuck_task_fails_liveness_and_readiness_and_shows_in_node_status() {
    let mut c = lab();
    assert!(
        wait_until(WAIT, || health(&c, 0, "/liveness")
            .is_some_and(|(code, _)| code == 200)),
        "never live\n{}",
        c.logs(20)
    );
    let watched = logged_list(
        &c.nodes[0].agent_log(usize::MAX),
        "supervising tasks",
        "watched",
    );
    println!("tasks with a heartbeat: {watched:?}");
    for must in ["syncer", "bgp", "dataplane", "report", "status"] {
        assert!(
            watched.iter().any(|t| t == must),
            "{must} has no heartbeat: {watched:?}"
        );
    }
    for task in &watched {
        restart_with(
            &mut c,
            0,
            &[
                ("CALICO_RS_FAILPOINTS", &format!("{task}=hang@1s")),
                ("CALICO_RS_TASK_STUCK_TIMEOUT", "2"),
            ],
        );
        let needle = format!("task {task} is stuck");
        let started = std::time::Instant::now();
        let failed = wait_until(WAIT, || {
            health(&c, 0, "/liveness")
                .is_some_and(|(code, body)| code == 503 && body.contains(&needle))
        });
        assert!(
            failed,
            "{task}: liveness still OK\n{:?}\n{}",
            health(&c, 0, "/liveness"),
            c.logs(20)
        );
        println!(
            "{task}=hang@1s: /liveness 503 \"{needle}\" {:.1} s after start",
            started.elapsed().as_secs_f64()
        );
        let ready = health(&c, 0, "/readiness").expect("readiness answers");
        assert_eq!(ready.0, 503, "{task}: still ready: {}", ready.1);
        // The status socket is served by a task of its own: it can only speak for others.
        if task != "status" {
            let out = c.calicoctl(0, &["node", "status"]).expect("calicoctl");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&needle),
                "{task}: node status says nothing:\n{text}"
            );
        }
        assert!(
            c.nodes[0].agent_running(),
            "{task}: a stuck task must not end the process"
        );
    }
    restart_with(&mut c, 0, &[]);
    assert!(
        wait_until(WAIT, || health(&c, 0, "/liveness")
            .is_some_and(|(code, _)| code == 200)),
        "live again after a clean restart"
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn a_claim_stuck_in_pending_deletion_is_repaired_and_its_block_routed_again() {
    let mut c = lab();
    let pod = c.add_pod(0, "web").expect("pod");
    let peer = c.add_pod(1, "peer").expect("pod");
    let block = IpNet::V4(Ipv4Net::new(c.pods[pod].ip, 26).expect("prefix").trunc());
    let route = format!("{block} via 10.0.0.1");
    assert!(
        wait_until(WAIT, || c.nodes[1].has_route(&route)),
        "{}",
        c.logs(20)
    );
    // A release of node1's block cut short while a pod still uses it (a crash or a
    // failed write between its steps): the claim is left pendingDeletion.
    let key = datastore::keys::affinity("node1", &block);
    c.etcdctl(&[
        "put",
        &key,
        r#"{"state":"pendingDeletion","deleted":false}"#,
    ])
    .expect("etcdctl put");
    let cut = std::time::Instant::now();
    // Such a claim is neither routed nor announced (Calico #6867)...
    assert!(
        wait_until(WAIT, || !c.nodes[1].has_route(&route)),
        "the stuck claim is still routed"
    );
    // ...until node1's GC finds it stuck and gives it back its affinity.
    assert!(
        wait_until(Duration::from_secs(60), || c.nodes[1].has_route(&route)
            && c.nodes[0].has_route(&format!("blackhole {block}"))),
        "the stuck claim was not repaired\n{}",
        c.logs(30)
    );
    println!(
        "a pendingDeletion claim over a used block: routed again {:.1} s later",
        cut.elapsed().as_secs_f64()
    );
    assert!(
        c.nodes[0]
            .agent_log(usize::MAX)
            .contains("repaired a claim of this node stuck"),
        "{}",
        c.nodes[0].agent_log(20)
    );
    let state = c
        .etcdctl(&["get", &key, "--print-value-only"])
        .expect("get");
    assert!(state.contains("confirmed"), "{state}");
    assert!(
        wait_until(WAIT, || c.pods_ping(peer, pod)),
        "{}",
        c.logs(20)
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn a_password_secret_that_cannot_be_read_keeps_the_session_down_and_says_why() {
    let mut c = lab();
    // The mesh is to be signed, but neither node has the secret file yet.
    for i in 0..2 {
        let env: BTreeMap<String, String> = BTreeMap::from([(
            "CALICO_SECRETS_DIR".to_string(),
            c.path().join(format!("secrets{i}")).display().to_string(),
        )]);
        c.stop_agent(i);
        c.start_agent_with(i, &env).expect("agent starts");
    }
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: true
  nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}
",
    )
    .expect("apply");
    let status = |i: usize| {
        let out = c.calicoctl(i, &["node", "status"]).expect("calicoctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        wait_until(WAIT, || status(0).contains("password unavailable:")),
        "{}",
        status(0)
    );
    // Never unsigned: the sessions stay down while the secret is missing.
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..2 {
        let text = status(i);
        assert!(
            !text.contains("| up "),
            "node{} peers without the password:\n{text}",
            i + 1
        );
        println!("{text}");
    }
    let out = c
        .calicoctl(0, &["node", "status", "-o", "json"])
        .expect("calicoctl");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("node status JSON");
    let held = &json["peers"][0];
    assert_eq!(held["state"], "down", "{json:#}");
    assert_eq!(held["passwordSet"], true, "{json:#}");
    assert!(
        held["info"]
            .as_str()
            .is_some_and(|i| i.starts_with("password unavailable:")),
        "{json:#}"
    );
    // The secret appears: the sessions come up, signed, without a datastore change.
    for i in 0..2 {
        let dir = c.path().join(format!("secrets{i}/bgp"));
        std::fs::create_dir_all(&dir).expect("secrets dir");
        std::fs::write(dir.join("mesh"), "s3cret\n").expect("secret");
    }
    assert!(
        wait_until(WAIT, || status(0).contains("| up ")
            && status(1).contains("| up ")),
        "{}\n{}",
        status(0),
        status(1)
    );
}

/// `calicoctl node status` of node `i` with the table's borders and line wraps removed,
/// so a long INFO cell reads as one text.
fn status_text(c: &Cluster, i: usize) -> String {
    let out = c.calicoctl(i, &["node", "status"]).expect("calicoctl");
    String::from_utf8_lossy(&out.stdout)
        .replace(['|', '+', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn a_tor_leaking_a_full_table_meets_the_import_limit() {
    let mut c = Cluster::start(LabSpec::nodes(2).env("CALICO_RS_BGP_IMPORT_LIMIT", "100"))
        .expect("lab starts");
    // The ToR leaks 1,000 host routes (a default-free table in miniature).
    let leaked: Vec<String> = (0..1_000u32)
        .map(|i| format!("172.16.{}.{}/32", i / 250, i % 250 + 1))
        .collect();
    let spec = RouterSpec {
        routes4: leaked,
        install_routes: false,
        ..tor_spec(&c)
    };
    let (_tor, _router) = c.start_tor(RouterKind::Bird, spec).expect("ToR");
    c.apply(TOR_PEERING).expect("apply");
    assert!(
        wait_until(WAIT, || status_text(&c, 0).contains(
            "Established, import limit 100 reached: further routes refused"
        )),
        "{}",
        status_text(&c, 0)
    );
    let learned = c.nodes[0]
        .routes()
        .iter()
        .filter(|r| r.contains("via 10.0.0.253"))
        .count();
    println!("ToR leaking 1000 routes, import limit 100: {learned} routes in node1's kernel");
    assert!(learned <= 100, "{learned} learned routes in the kernel");
    assert!(
        health(&c, 0, "/liveness").is_some_and(|(code, _)| code == 200),
        "calico-node stays live"
    );
    assert!(
        c.nodes[0]
            .agent_log(usize::MAX)
            .contains("import limit reached"),
        "{}",
        c.nodes[0].agent_log(20)
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn an_address_nothing_uses_is_collected_after_the_grace_period_and_a_pods_never() {
    let mut c =
        Cluster::start(LabSpec::nodes(2).env("CALICO_IPAM_LEAK_GRACE", "3")).expect("lab starts");
    let pod = c.add_pod(0, "web").expect("pod");
    let ipam_add = |c: &Cluster, container: &str, args: &str| {
        let out = c
            .cni_call(
                0,
                &lab::cni::Call {
                    plugin: "calico-ipam",
                    command: "ADD",
                    container_id: container,
                    netns: Some("/run/netns/gone"),
                    ifname: "eth0",
                    args,
                },
            )
            .expect("ipam add");
        assert!(out.success(), "{}{}", out.stdout, out.stderr);
        out.ip().expect("an address")
    };
    let check = |c: &Cluster| {
        let out = c.calicoctl(1, &["ipam", "check"]).expect("calicoctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // An address taken without a pod (no K8S_POD_* args: a reservation, not a pod's):
    // never collected by itself.
    let reserved = ipam_add(&c, "not-a-pod", "");
    // A runtime whose ADD died after IPAM: a pod's address allocated, no endpoint, no DEL.
    let leaked = ipam_add(
        &c,
        "killed-mid-add",
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=killed",
    );
    // While the datastore is locked (well within the 3 s grace), nothing is collected.
    let locked = c
        .calicoctl(1, &["datastore", "migrate", "lock"])
        .expect("calicoctl");
    assert!(locked.status.success(), "{locked:?}");
    assert!(
        check(&c).contains(&format!("{leaked} leaked")),
        "{}",
        check(&c)
    );
    // Twice the grace period, locked: still there.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        check(&c).contains(&format!("{leaked} leaked")),
        "collected while the datastore was locked:\n{}",
        check(&c)
    );
    let unlocked = c
        .calicoctl(1, &["datastore", "migrate", "unlock"])
        .expect("calicoctl");
    assert!(unlocked.status.success(), "{unlocked:?}");
    let started = std::time::Instant::now();
    assert!(
        wait_until(WAIT, || !check(&c).contains(&format!("{leaked} leaked"))),
        "the leak was not collected:\n{}\n{}",
        check(&c),
        c.logs(20)
    );
    assert!(
        check(&c).contains(&format!("{reserved} leaked")),
        "the reservation without a pod was collected:\n{}",
        check(&c)
    );
    println!(
        "a leaked address (grace 3 s, over while locked) collected {:.1} s after the unlock",
        started.elapsed().as_secs_f64()
    );
    assert!(
        c.nodes[0]
            .agent_log(usize::MAX)
            .contains("released a leaked address"),
        "{}",
        c.nodes[0].agent_log(20)
    );
    // A handle whose write landed after its ADD's DEL had looked (the three-member chaos
    // run found one): no address is held by it, `ipam check` says so, it is collected.
    let late = "/calico/ipam/v2/handle/k8s-pod-network.landed-late";
    c.etcdctl(&[
        "put",
        late,
        r#"{"block":{"10.244.0.0/26":1},"deleted":false}"#,
    ])
    .expect("etcdctl put");
    assert!(
        check(&c).contains("k8s-pod-network.landed-late has no matching IPs"),
        "{}",
        check(&c)
    );
    assert!(
        wait_until(WAIT, || !check(&c).contains("landed-late")),
        "the leaked handle was not collected:\n{}\n{}",
        check(&c),
        c.logs(20)
    );
    assert!(
        c.nodes
            .iter()
            .any(|n| n.agent_log(usize::MAX).contains("released a leaked handle")),
        "{}",
        c.logs(20)
    );
    // The pod's address, in use all along, is still allocated and answering.
    let show = c
        .calicoctl(1, &["ipam", "show", "--ip", &c.pods[pod].ip.to_string()])
        .expect("calicoctl");
    let show = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(show.contains("is in use"), "{show}");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test faults -- --ignored"]
fn garbage_in_the_datastore_is_skipped_with_its_key_and_nothing_stops() {
    let mut c = lab();
    let a = c.add_pod(0, "a").expect("pod");
    let b = c.add_pod(1, "b").expect("pod");
    assert!(wait_until(WAIT, || c.pods_ping(a, b)), "{}", c.logs(20));
    let junk: [(String, &str); 4] = [
        (datastore::keys::resource("ippools", "junk"), "{not json"),
        (
            datastore::keys::resource("ippools", "banana"),
            r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"banana"},"spec":{"cidr":"banana"}}"#,
        ),
        (
            datastore::keys::resource("bgppeers", "as-zero"),
            r#"{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"as-zero"},"spec":{"peerIP":"10.0.0.9","asNumber":0}}"#,
        ),
        (
            "/calico/ipam/v2/assignment/ipv4/block/10.99.0.0-26".to_string(),
            r#"{"cidr":"10.99.0.0/26","affinity":"host:node1","allocations":[0],"unallocated":[5000],"attributes":[]}"#,
        ),
    ];
    // Garbage over records in use: pod a's WorkloadEndpoint and the pool. The last valid
    // versions stay in force (pod a keeps its route, the pool its blocks).
    let wep_prefix = datastore::keys::resource_prefix("workloadendpoints");
    let weps = c
        .etcdctl(&["get", "--prefix", "--keys-only", &wep_prefix])
        .expect("etcdctl get");
    let pod_a_wep = weps
        .lines()
        .find(|k| k.contains("node1"))
        .expect("pod a's endpoint")
        .to_string();
    let junk: Vec<(String, &str)> = junk
        .into_iter()
        .chain([
            (pod_a_wep, "{not json"),
            (
                datastore::keys::resource("ippools", "default-ipv4-ippool"),
                r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool"},"spec":{"cidr":"banana"}}"#,
            ),
        ])
        .collect();
    for (key, value) in &junk {
        c.etcdctl(&["put", key, value]).expect("etcdctl put");
    }
    for (key, _) in &junk {
        assert!(
            wait_until(WAIT, || c.nodes[0]
                .agent_log(usize::MAX)
                .contains(key.as_str())),
            "no log line names {key}\n{}",
            c.nodes[0].agent_log(20)
        );
    }
    for i in 0..2 {
        assert!(c.nodes[i].agent_running(), "node{} stopped", i + 1);
        assert!(
            health(&c, i, "/liveness").is_some_and(|(code, _)| code == 200),
            "node{} is not live",
            i + 1
        );
    }
    assert!(
        c.nodes[0]
            .agent_log(usize::MAX)
            .contains("keeping the last valid version"),
        "{}",
        c.nodes[0].agent_log(20)
    );
    // Past the grace an unknown pod route gets: pod a's route would be gone by now had
    // its endpoint been dropped.
    std::thread::sleep(
        agent::dataplane::route_table::WORKLOAD_ROUTE_GRACE + Duration::from_secs(2),
    );
    let a_ip = c.pods[a].ip.to_string();
    assert!(
        c.nodes[0]
            .routes()
            .iter()
            .any(|r| r.starts_with(&format!("{a_ip} dev cali"))),
        "pod a lost its route: {:?}",
        c.nodes[0].routes()
    );
    assert!(c.pods_ping(a, b), "pods keep talking\n{}", c.logs(20));
    let out = c.calicoctl(0, &["ipam", "check"]).expect("calicoctl");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("10.99.0.0-26"),
        "calicoctl names the corrupt block: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
