//! Golden outputs of `calicoctl get` in Calico's exact layout (tabwriter minwidth 5,
//! padding 3, trailing padding, final blank line), and YAML/JSON round trips.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, doc};

fn nodes(env: &Env) {
    env.apply_ok(
        &[
            doc("Node", "node-1", "{bgp: {ipv4Address: 10.1.10.9/24}}"),
            doc("Node", "node-2", "{bgp: {ipv4Address: 10.1.10.10/24}}"),
            doc(
                "Node",
                "rr-1",
                "{bgp: {asNumber: 64600, ipv4Address: 10.1.20.1/24, ipv6Address: 'fd00::1/64', \
             routeReflectorClusterID: 244.0.0.1}}",
            ),
            doc("Node", "policy-only", "{}"),
        ]
        .join("---\n"),
    );
}

#[test]
fn get_nodes_wide_with_inherited_asn() {
    let env = Env::new();
    nodes(&env);
    let out = env.run(&["get", "nodes", "-o", "wide"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME          ASN       IPV4            IPV6         \n\
         node-1        (64512)   10.1.10.9/24                 \n\
         node-2        (64512)   10.1.10.10/24                \n\
         policy-only                                          \n\
         rr-1          64600     10.1.20.1/24    fd00::1/64   \n\n"
    );
    let out = env.run(&["get", "nodes"]);
    assert_eq!(
        out.stdout,
        "NAME          \nnode-1        \nnode-2        \npolicy-only   \nrr-1          \n\n"
    );
    // The cluster AS comes from BGPConfiguration default once it has one.
    env.apply_ok(&doc("BGPConfiguration", "default", "{asNumber: 4567}"));
    let out = env.run(&["get", "no", "node-1", "-o", "wide"]);
    assert_eq!(
        out.stdout,
        "NAME     ASN      IPV4           IPV6   \nnode-1   (4567)   10.1.10.9/24          \n\n"
    );
}

#[test]
fn get_ippool_wide_and_ps() {
    let env = Env::new();
    env.apply_ok(
        &[
            doc(
                "IPPool",
                "default-ipv4-ippool",
                "{cidr: 10.42.0.0/16, natOutgoing: true, vxlanMode: Always}",
            ),
            doc(
                "IPPool",
                "ippool-name1",
                "{cidr: 10.0.1.0/24, ipipMode: Always, nodeSelector: foo == 'bar', blockSize: 28}",
            ),
        ]
        .join("---\n"),
    );
    let out = env.run(&["get", "ippool", "-o", "wide"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME                  CIDR           NAT     IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR       \n\
         default-ipv4-ippool   10.42.0.0/16   true    Never      Always      false      false              all()          \n\
         ippool-name1          10.0.1.0/24    false   Always     Never       false      false              foo == 'bar'   \n\n"
    );
    let out = env.run(&["get", "pools"]);
    assert_eq!(
        out.stdout,
        "NAME                  CIDR           SELECTOR       \n\
         default-ipv4-ippool   10.42.0.0/16   all()          \n\
         ippool-name1          10.0.1.0/24    foo == 'bar'   \n\n"
    );
    let out = env.run(&["get", "ipp", "-o", "custom-columns=NAME,IPIPMODE"]);
    assert_eq!(
        out.stdout,
        "NAME                  IPIPMODE   \ndefault-ipv4-ippool   Never      \n\
         ippool-name1          Always     \n\n"
    );
}

#[test]
fn get_bgppeer_shows_global_node_and_selector_peers() {
    let env = Env::new();
    env.apply_ok(
        &[
            doc(
                "BGPPeer",
                "bgppeer-global-3040",
                "{peerIP: 192.20.30.40, asNumber: 64567}",
            ),
            doc(
                "BGPPeer",
                "rack1-tor",
                "{peerIP: 10.0.1.1, asNumber: 65001, nodeSelector: rack == 'rack-1'}",
            ),
            doc(
                "BGPPeer",
                "peer-with-route-reflectors",
                "{nodeSelector: all(), peerSelector: route-reflector == 'true'}",
            ),
            doc(
                "BGPPeer",
                "node1-peer",
                "{node: node-1, peerIP: '10.0.0.9:1790', asNumber: '1.10'}",
            ),
        ]
        .join("---\n"),
    );
    let out = env.run(&["get", "bgppeer"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME                         PEERIP          NODE               ASN     \n\
         bgppeer-global-3040          192.20.30.40    (global)           64567   \n\
         node1-peer                   10.0.0.9:1790   node-1             65546   \n\
         peer-with-route-reflectors                   all()              0       \n\
         rack1-tor                    10.0.1.1        rack == 'rack-1'   65001   \n\n"
    );
}

#[test]
fn get_bgpconfig() {
    let env = Env::new();
    env.apply_ok(&doc(
        "BGPConfiguration",
        "default",
        "{logSeverityScreen: Info, nodeToNodeMeshEnabled: false, asNumber: 64512}",
    ));
    env.apply_ok(&doc("BGPConfiguration", "node.rr-1", "{listenPort: 1790}"));
    let out = env.run(&["get", "bgpconfig"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME        LOGSEVERITY   MESHENABLED   ASNUMBER   \n\
         default     Info          false         64512      \n\
         node.rr-1                 -             -          \n\n"
    );
}

#[test]
fn yaml_round_trip_is_a_no_op() {
    let env = Env::new();
    nodes(&env);
    env.apply_ok(&doc(
        "IPPool",
        "pool1",
        "{cidr: 192.168.0.0/18, ipipMode: CrossSubnet}",
    ));
    env.apply_ok(&doc(
        "BGPPeer",
        "tor",
        "{peerIP: 192.20.30.40, asNumber: 64567}",
    ));
    for kind in ["ippool", "nodes", "bgppeer"] {
        let before = env.run(&["get", kind, "-o", "yaml"]);
        assert_eq!(before.code, 0);
        assert!(
            before
                .stdout
                .contains(&"List\nmetadata:\n  resourceVersion: \"".to_string())
        );
        let applied = env.stdin("apply", &before.stdout);
        assert_eq!(applied.code, 0, "{applied:?}");
        // Same spec, same resourceVersion: identical content is not rewritten.
        let after = env.run(&["get", kind, "-o", "yaml"]);
        assert_eq!(after.stdout, before.stdout, "{kind}");
    }
}

#[test]
fn json_round_trip_and_shapes() {
    let env = Env::new();
    env.apply_ok(&doc("IPPool", "pool1", "{cidr: 192.168.0.0/18}"));
    let one = env.run(&["get", "ippool", "pool1", "-o", "json"]);
    assert_eq!(one.code, 0);
    assert!(one.stdout.starts_with("{\n  \"kind\": \"IPPool\",\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"metadata\": {\n    \"name\": \"pool1\",\n"), "{}", one.stdout);
    assert!(
        one.stdout
            .contains("\"allowedUses\": [\n      \"Workload\",\n      \"Tunnel\"\n    ]")
    );
    assert!(one.stdout.ends_with("}\n"));
    let applied = env.stdin("apply", &one.stdout);
    assert_eq!(
        applied.stdout,
        "Successfully applied 1 'IPPool' resource(s)\n"
    );
    assert_eq!(
        env.run(&["get", "ippool", "pool1", "-o", "json"]).stdout,
        one.stdout
    );
    let list = env.run(&["get", "ippool", "-o", "json"]);
    assert!(list.stdout.starts_with("{\n  \"kind\": \"IPPoolList\",\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"metadata\": {\n    \"resourceVersion\": "));
    // Editing the exported YAML changes the mode: the Calico workflow of the lab transcript.
    let yaml = env.run(&["get", "ippool", "-o", "yaml"]).stdout;
    let edited = yaml.replace("ipipMode: Never", "ipipMode: Always");
    assert_eq!(env.stdin("apply", &edited).code, 0);
    let wide = env.run(&["get", "ippool", "-o", "wide"]).stdout;
    assert!(wide.contains("Always"), "{wide}");
    // --export drops cluster-specific metadata.
    let exported = env
        .run(&["get", "ippool", "pool1", "-o", "yaml", "--export"])
        .stdout;
    assert!(
        !exported.contains("resourceVersion") && !exported.contains("uid"),
        "{exported}"
    );
}

#[test]
fn success_messages_patch_delete_and_version() {
    let env = Env::new();
    let out = env.stdin(
        "create",
        &[
            doc("Node", "n1", "{}"),
            doc("IPPool", "p", "{cidr: 10.9.0.0/16}"),
        ]
        .join("---\n"),
    );
    assert_eq!(out.stdout, "Successfully created 2 resource(s)\n");
    let out = env.stdin("create", &doc("Node", "n1", "{}"));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Failed to create 'Node' resource: [resource already exists: Node(n1)]\n"
    );
    let out = env.run_with(
        &["create", "--skip-exists", "-f", "-"],
        Some(&doc("Node", "n1", "{}")),
    );
    assert_eq!(out.stdout, "Successfully created 1 'Node' resource(s)\n");
    let out = env.run(&[
        "patch",
        "node",
        "n1",
        "-p",
        r#"{"spec":{"bgp":{"routeReflectorClusterID":"244.0.0.1","ipv4Address":"10.0.0.1/24"}}}"#,
    ]);
    assert_eq!(
        out.stdout, "Successfully patched 1 'Node' resource\n",
        "{out:?}"
    );
    let out = env.run(&["get", "node", "n1", "-o", "yaml"]);
    assert!(
        out.stdout.contains("routeReflectorClusterID: 244.0.0.1"),
        "{}",
        out.stdout
    );
    let out = env.stdin(
        "replace",
        &doc("IPPool", "p", "{cidr: 10.9.0.0/16, natOutgoing: true}"),
    );
    assert_eq!(out.stdout, "Successfully replaced 1 'IPPool' resource(s)\n");
    let out = env.run(&["delete", "ippool", "p"]);
    assert_eq!(out.stdout, "Successfully deleted 1 'IPPool' resource(s)\n");
    let out = env.run(&["delete", "ippool", "p"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Failed to delete 'IPPool' resource: [resource does not exist: IPPool(p) with error: <nil>]\n"
    );
    let out = env.run(&["delete", "ippool", "p", "--skip-not-exists"]);
    assert_eq!(out.code, 0);
    let out = env.run(&["get", "ippool", "p"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "resource does not exist: IPPool(p) with error: <nil>\n"
    );
    let out = env.run(&["get", "ippool"]);
    assert_eq!(out.stdout, "NAME   CIDR   SELECTOR   \n\n");
    let out = env.run(&["version"]);
    assert!(
        out.stdout.starts_with("Client Version:    v"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\nGit commit:        "));
    assert!(
        out.stdout
            .contains("\nCluster Version:   unknown\nCluster Type:      unknown\n")
    );
}

#[test]
fn example_files_apply() {
    let env = Env::new();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
    for f in ["ippool.yaml", "bgppeer-tor.yaml", "bgpconfig-nomesh.yaml"] {
        let path = format!("{root}{f}");
        let out = env.run(&["apply", "-f", &path]);
        assert_eq!(out.code, 0, "{f}: {out:?}");
    }
    // ippool-ipip.yaml is the same pool with ipipMode Always.
    let out = env.run(&["apply", "-f", &format!("{root}ippool-ipip.yaml")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        env.run(&["get", "ippool", "-o", "wide"])
            .stdout
            .contains("   Always   ")
    );
}

#[test]
fn ipam_configuration_reaches_the_allocators_key() {
    let env = Env::new();
    env.apply_ok(&doc(
        "IPAMConfiguration",
        "default",
        "{strictAffinity: true, maxBlocksPerHost: 4}",
    ));
    let out = env.run(&["get", "ipamconfig", "-o", "wide"]);
    assert_eq!(
        out.stdout,
        "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS   MAXBLOCKSPERHOST   \n\
         default   true             true                 4                  \n\n"
    );
    // The store's files (SQLite's, and its WAL until a checkpoint) hold the key as text.
    let files: String = ["db", "db-wal"]
        .iter()
        .filter_map(|f| std::fs::read(env.dir.path().join(f)).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect();
    assert!(
        files.contains("/calico/ipam/v2/config"),
        "the key is in neither file"
    );
}
