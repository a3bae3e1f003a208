//! Calico's BGP semantics checked against Calico's own oracle: the confd template test
//! corpus (`tests/confd-corpus`, copied from projectcalico/calico, see its `SOURCE.md`).
//!
//! For each case Calico's Go tests run against etcd, the case's `input.yaml` is applied with
//! `calicoctl apply` to a fresh store, calico-node runs as `kube-master` (10.192.0.2/16 on
//! eth0) in its own namespace, and `calicoctl node status -o json` must list exactly the
//! sessions of the golden `bird.cfg` (IPv4) and `bird6.cfg` (IPv6), field by field. Cases
//! with steps apply them to the running calico-node and check the next golden file: the
//! sessions move live.
//!
//! Every golden file must be equal: the test fails on any difference and prints them all,
//! with the count of equal files per family (the README's figure). Filter names are
//! compared as BIRD's symbols hold them (confd truncates long ones). What the filters do to
//! routes is checked by the agent's unit tests and end to end against BIRD and FRR in
//! `calico_node.rs`. Needs root: `cargo test -p lab --test confd_corpus -- --ignored`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::bins::bin;
use lab::bird_cfg::{self, BirdConfig, Session};
use lab::{Daemon, Netns};

/// What a case does after its first golden file, and the golden file that follows.
#[derive(Clone, Copy)]
enum Step {
    /// `calicoctl apply -f <dir>/input.yaml` on top of what is there.
    Apply(&'static str),
    /// `calicoctl delete <kind> <name>`.
    Delete(&'static str, &'static str),
}

struct Case {
    /// Directory (under `tests/confd-corpus`) of the `input.yaml`.
    input: &'static str,
    /// Directory of the golden files the input produces (usually `input`).
    golden: &'static str,
    /// calico-node environment the Go test sets.
    env: &'static [(&'static str, &'static str)],
    steps: &'static [(Step, &'static str)],
}

const fn case(dir: &'static str) -> Case {
    Case {
        input: dir,
        golden: dir,
        env: &[],
        steps: &[],
    }
}

/// The corpus's cases as Calico's Go tests run them against etcd (`runOneshotTests` in
/// `mesh_test.go`, `explicit_peering_test.go`, `ttl_security_test.go`,
/// `extra_oneshot_test.go`, `bgpfilter_test.go`, and the steps of `daemon_test.go`). Not
/// run, because they need what the etcd datastore does not have: the `kddOnly` cases
/// (`mesh/static-routes*`: Kubernetes Services), the password cases (Kubernetes Secrets),
/// `local_bgp_peer` (a KubeVirt workload), and `sourceaddr_gracefulrestart`,
/// `idle_peers`, `node_deletion` and the route-priority steps, whose steps are Go API
/// calls rather than corpus files.
fn cases() -> Vec<Case> {
    vec![
        case("mesh/bgp-export"),
        case("mesh/ipip-always"),
        case("mesh/ipip-cross-subnet"),
        case("mesh/ipip-off"),
        case("mesh/vxlan-always"),
        Case {
            env: &[("CALICO_ROUTER_ID", "hash")],
            ..case("mesh/hash")
        },
        Case {
            steps: &[(
                Step::Apply("mesh/communities/step2"),
                "mesh/communities/step2",
            )],
            ..case("mesh/communities")
        },
        case("mesh/restart-time"),
        case("mesh/route-reflector-mesh-enabled"),
        case("explicit_peering/global"),
        case("explicit_peering/global-external"),
        case("explicit_peering/global-ipv6"),
        case("explicit_peering/specific_node"),
        Case {
            steps: &[(
                Step::Apply("explicit_peering/selectors/step2"),
                "explicit_peering/selectors/step2",
            )],
            ..case("explicit_peering/selectors")
        },
        case("explicit_peering/route_reflector"),
        case("explicit_peering/route_reflector_v6_by_ip"),
        case("explicit_peering/keepnexthop"),
        case("explicit_peering/keepnexthop-global"),
        case("explicit_peering/local-as"),
        case("explicit_peering/local-as-global"),
        case("explicit_peering/local-as-ipv6"),
        case("explicit_peering/local-as-global-ipv6"),
        case("ttl_security/explicit_node"),
        case("ttl_security/peer_selector"),
        case("ttl_security/global"),
        case("ignored_interfaces"),
        case("reachable_by/global_peers"),
        case("reachable_by/route_reflectors"),
        case("felix_cluster_routing"),
        case("cluster_routes/default"),
        case("cluster_routes/enabled"),
        case("cluster_routes/ipip-only"),
        case("cluster_routes/noencap-only"),
        case("next_hop_mode/global_peers"),
        case("next_hop_mode/route_reflectors"),
        case("reverse_peering/manual"),
        case("reverse_peering/auto"),
        case("bgpfilter/single_filter/global_peer"),
        case("bgpfilter/single_filter/explicit_peer"),
        case("bgpfilter/multi_filter/global_peer"),
        case("bgpfilter/multi_filter/explicit_peer"),
        case("bgpfilter/node_mesh"),
        case("bgpfilter/match_operators"),
        case("bgpfilter/match_source"),
        case("bgpfilter/match_interface"),
        case("bgpfilter/filter_names"),
        case("bgpfilter/import_only/explicit_peer"),
        case("bgpfilter/import_only/global_peer"),
        case("bgpfilter/v6_only/global_peer"),
        case("bgpfilter/export_only/explicit_peer"),
        case("bgpfilter/export_only/global_peer"),
        case("bgpfilter/v4_only/explicit_peer"),
        case("bgpfilter/v4_only/global_peer"),
        case("bgpfilter/v6_only/explicit_peer"),
        case("bgpfilter/communities_and_operations"),
        case("bgpfilter/peer_type"),
        case("bgpfilter/as_path_and_priority"),
        case("bgpfilter/large_community"),
        case("bgpfilter/kubevirt_live_migration"),
        Case {
            golden: "bgpfilter/filter_deletion/step1",
            steps: &[(
                Step::Delete("bgpfilter", "test-filter"),
                "bgpfilter/filter_deletion/step2",
            )],
            ..case("bgpfilter/filter_deletion")
        },
    ]
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("confd-corpus")
}

/// The sessions a golden directory expects, both families.
fn golden(dir: &str) -> (BirdConfig, BirdConfig) {
    let read = |file: &str, family: &str| {
        let path = corpus().join(dir).join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        bird_cfg::parse(&text, family).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    (read("bird.cfg", "ipv4"), read("bird6.cfg", "ipv6"))
}

/// Every golden file of the corpus parses, with one session per `protocol bgp` block: the
/// comparison below cannot pass by reading nothing.
#[test]
fn every_golden_file_parses_into_its_sessions() {
    let mut checked = 0;
    for c in cases() {
        let mut dirs = vec![c.golden];
        dirs.extend(c.steps.iter().map(|(_, g)| *g));
        for dir in dirs {
            for file in ["bird.cfg", "bird6.cfg"] {
                let text = std::fs::read_to_string(corpus().join(dir).join(file)).expect("golden");
                let parsed = bird_cfg::parse(&text, "ipv4").expect("parses");
                assert_eq!(
                    parsed.sessions.len(),
                    text.matches("\nprotocol bgp ").count(),
                    "{dir}/{file}"
                );
                assert!(parsed.router_id.is_some(), "{dir}/{file} has a router id");
                checked += parsed.sessions.len();
            }
        }
    }
    assert!(checked > 100, "only {checked} sessions in the corpus");
}

/// The sessions `node status -o json` reports, in the golden files' terms.
fn our_sessions(status: &serde_json::Value, family: &str) -> Vec<Session> {
    let Some(peers) = status["peers"].as_array() else {
        return Vec::new();
    };
    let mut out: Vec<Session> = peers
        .iter()
        .filter(|p| p["family"] == family)
        .map(|p| {
            let mut fields = BTreeMap::new();
            for key in bird_cfg::FIELDS {
                let v = &p[*key];
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    // Filter names, as they appear in BIRD's symbols.
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| bird_cfg::bird_filter_name(i.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                fields.insert(*key, text);
            }
            Session {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                fields,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What differs between the golden file and us: one line per missing, extra or different
/// session (field by field). Empty when equal.
fn differences(want: &BirdConfig, ours: &[Session], router_id: &str, family: &str) -> Vec<String> {
    let mut out = Vec::new();
    if family == "ipv4" && want.router_id.as_deref() != Some(router_id) {
        out.push(format!(
            "router id {router_id}, Calico {}",
            want.router_id.as_deref().unwrap_or("none")
        ));
    }
    let ours: BTreeMap<&str, &Session> = ours.iter().map(|s| (s.name.as_str(), s)).collect();
    let theirs: BTreeMap<&str, &Session> =
        want.sessions.iter().map(|s| (s.name.as_str(), s)).collect();
    for (name, t) in &theirs {
        let Some(o) = ours.get(name) else {
            out.push(format!("missing {name}"));
            continue;
        };
        for (k, v) in &t.fields {
            let mine = o.fields.get(k).map(String::as_str).unwrap_or("");
            if mine != v {
                out.push(format!("{name}: {k} {mine:?}, Calico {v:?}"));
            }
        }
    }
    for name in ours.keys() {
        if !theirs.contains_key(name) {
            out.push(format!("extra {name}"));
        }
    }
    out
}

/// One case's world: a store, a run directory and a node namespace of its own.
struct Node {
    dir: tempfile::TempDir,
    ns: Netns,
    agent: Option<Daemon>,
}

impl Node {
    fn new(short: &str) -> Node {
        let ns = Netns::create(short).expect("namespace");
        // eth0's veth peer stays in the namespace with no address: sessions towards the
        // corpus's peers find a route and go nowhere, inside this namespace.
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "sink",
        ])
        .expect("eth0");
        ns.ip(&["link", "set", "sink", "up"]).expect("sink up");
        ns.ip(&["addr", "add", "10.192.0.2/16", "dev", "eth0"])
            .expect("addr");
        ns.ip(&["link", "set", "eth0", "up"]).expect("up");
        ns.ip(&["route", "add", "default", "via", "10.192.0.1"])
            .expect("default route");
        Node {
            dir: tempfile::tempdir().expect("tempdir"),
            ns,
            agent: None,
        }
    }

    fn store_env(&self) -> [(&'static str, String); 3] {
        [
            ("DATASTORE_TYPE", "local".into()),
            (
                "CALICO_DATASTORE_PATH",
                self.dir.path().join("store.db").display().to_string(),
            ),
            ("CALICO_RUN_DIR", self.dir.path().display().to_string()),
        ]
    }

    fn calicoctl(&self, args: &[&str]) -> Output {
        Command::new(bin("calicoctl").expect("calicoctl"))
            .args(args)
            .envs(self.store_env())
            .output()
            .expect("calicoctl runs")
    }

    /// `calicoctl` that must succeed; its stderr otherwise.
    fn calicoctl_ok(&self, args: &[&str]) -> Result<(), String> {
        let out = self.calicoctl(args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "calicoctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn start(&mut self, env: &[(&str, &str)]) {
        let mut all: BTreeMap<String, String> = self
            .store_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (k, v) in [
            ("NODENAME", "kube-master"),
            ("IP", "autodetect"),
            ("IP_AUTODETECTION_METHOD", "interface=eth0"),
            ("NO_DEFAULT_POOLS", "true"),
            ("CALICO_LOG_LEVEL", "info"),
        ]
        .iter()
        .chain(env)
        {
            all.insert(k.to_string(), v.to_string());
        }
        all.insert(
            "CALICO_MTU_FILE".into(),
            self.dir.path().join("mtu").display().to_string(),
        );
        let log = self.dir.path().join("calico-node.log");
        let bin = bin("calico-node").expect("calico-node");
        self.agent = Some(
            self.ns
                .spawn(&bin.to_string_lossy(), &[], &all, &log)
                .expect("calico-node starts"),
        );
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = self.calicoctl(&["node", "status", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["running"] == true && v["datastore"] == "in-sync").then_some(v)
    }

    fn log(&self) -> String {
        self.agent
            .as_ref()
            .map(|a| a.log_tail(20))
            .unwrap_or_default()
    }
}

/// The differences per family once calico-node shows `golden`: none as soon as it does,
/// else those left after 20 s.
fn settle(node: &Node, golden_dir: &str) -> [Vec<String>; 2] {
    let (v4, v6) = golden(golden_dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = match node.status() {
            Some(s) => {
                let id = s["routerID"].as_str().unwrap_or_default().to_string();
                [
                    differences(&v4, &our_sessions(&s, "ipv4"), &id, "ipv4"),
                    differences(&v6, &our_sessions(&s, "ipv6"), &id, "ipv6"),
                ]
            }
            None => [
                vec!["calico-node is not running in sync".to_string()],
                vec![],
            ],
        };
        if now.iter().all(Vec::is_empty) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kube-master's `spec.bgp.ipv6Address` in a case's input, if it has one.
fn kube_master_ipv6(input: &Path) -> Option<String> {
    let text = std::fs::read_to_string(input).ok()?;
    let docs = datastore::model::parse_documents(&text).ok()?;
    docs.into_iter().find_map(|d| match d {
        datastore::model::AnyResource::Node(n) if n.metadata.name == "kube-master" => {
            n.spec.bgp?.ipv6_address
        }
        _ => None,
    })
}

/// Runs one case: the differences at its first golden file and after each step.
fn run_case(i: usize, c: &Case) -> Vec<(String, [Vec<String>; 2])> {
    let mut node = Node::new(&format!("cfd{i}"));
    let input = corpus().join(c.input).join("input.yaml");
    if let Err(e) = node.calicoctl_ok(&["apply", "-f", &input.to_string_lossy()]) {
        // Every golden file of the case counts as differing: the total stays the same.
        return std::iter::once(c.golden)
            .chain(c.steps.iter().map(|(_, g)| *g))
            .map(|g| (g.to_string(), [vec![e.clone()], vec![e.clone()]]))
            .collect();
    }
    // kube-master's IPv6 address goes on eth0 too, as on a dual-stack node: BIRD6 listens
    // there, and so must calico-node.
    let ipv6 = kube_master_ipv6(&input);
    if let Some(v6) = &ipv6 {
        node.ns
            .ip(&["addr", "add", v6, "dev", "eth0", "nodad"])
            .expect("IPv6 address");
    }
    node.start(c.env);
    let mut first = settle(&node, c.golden);
    if let Some(v6) = &ipv6 {
        let addr = v6.split('/').next().unwrap_or_default();
        let listening = node.ns.sh("ss -ltnH").unwrap_or_default();
        if listening.contains(&format!("[{addr}]:")) {
            eprintln!("{}: calico-node listens on [{addr}]", c.input);
        } else {
            first[1].push(format!("not listening on {addr}: {}", listening.trim()));
        }
    }
    let mut results = vec![(c.golden.to_string(), first)];
    for (step, next) in c.steps {
        let applied = match step {
            Step::Apply(dir) => node.calicoctl_ok(&[
                "apply",
                "-f",
                &corpus().join(dir).join("input.yaml").to_string_lossy(),
            ]),
            Step::Delete(kind, name) => node.calicoctl_ok(&["delete", kind, name]),
        };
        let diff = match applied {
            Ok(()) => settle(&node, next),
            Err(e) => [vec![e.clone()], vec![e]],
        };
        results.push((next.to_string(), diff));
    }
    if results
        .iter()
        .any(|(_, d)| d[0].iter().any(|l| l.contains("not running")))
    {
        eprintln!("{}: calico-node log:\n{}", c.input, node.log());
    }
    results
}

#[test]
#[ignore = "needs root: network namespaces"]
fn node_status_lists_the_sessions_of_calicos_golden_bird_configs() {
    lab::remove_leftovers();
    let mut wrong = Vec::new();
    let (mut total, mut equal) = ([0usize; 2], [0usize; 2]);
    for (i, c) in cases().iter().enumerate() {
        for (golden, diffs) in run_case(i, c) {
            for (f, diff) in diffs.iter().enumerate() {
                let file = ["bird.cfg", "bird6.cfg"][f];
                total[f] += 1;
                if diff.is_empty() {
                    equal[f] += 1;
                }
                eprintln!(
                    "{golden}/{file}: {}",
                    if diff.is_empty() {
                        "equal".to_string()
                    } else {
                        diff.join("; ")
                    }
                );
                if !diff.is_empty() {
                    wrong.push(format!("{golden}/{file} differs: {}", diff.join("; ")));
                }
            }
        }
    }
    eprintln!(
        "confd corpus: bird.cfg {} of {} equal, bird6.cfg {} of {} equal",
        equal[0], total[0], equal[1], total[1]
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
