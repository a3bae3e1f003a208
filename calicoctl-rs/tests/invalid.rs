//! Bad input: each case gets Calico's message on stderr, exit code 1, nothing on stdout,
//! and leaves the store exactly as it was (every document is checked before any write).

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, doc};

/// One bad input: the calicoctl arguments (stdin = `input`) and the expected stderr line.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    input: String,
    /// The whole stderr line (without newline) when `exact`, else a substring.
    expect: String,
    exact: bool,
}

fn apply(name: &'static str, input: String, expect: &str) -> Case {
    Case {
        name,
        args: &["apply", "-f", "-"],
        input,
        expect: expect.to_string(),
        exact: true,
    }
}

fn apply_contains(name: &'static str, input: String, expect: &str) -> Case {
    Case {
        exact: false,
        ..apply(name, input, expect)
    }
}

fn pool(name: &str, spec: &str) -> String {
    doc("IPPool", name, spec)
}

fn pool_err(value: &str, field: &str, reason: &str) -> String {
    format!(
        "Failed to apply 'IPPool' resource: [error with field IPPool.Spec.{field} = '{value}' ({reason})]"
    )
}

fn cases() -> Vec<Case> {
    vec![
        apply("bad CIDR", pool("p", "{cidr: 10.0.0.300/16}"),
            &pool_err("10.0.0.300/16", "CIDR", "IPPool CIDR must be a valid subnet")),
        apply("not a CIDR", pool("p", "{cidr: banana}"),
            &pool_err("banana", "CIDR", "IPPool CIDR must be a valid subnet")),
        apply("missing CIDR", pool("p", "{natOutgoing: true}"),
            &pool_err("", "CIDR", "IPPool CIDR must be specified")),
        apply("host bits set", pool("p", "{cidr: 10.1.0.1/16}"),
            &pool_err("10.1.0.1/16", "CIDR", "IPPool CIDR is not strictly masked")),
        apply("blockSize 19", pool("p", "{cidr: 10.1.0.0/16, blockSize: 19}"),
            &pool_err("19", "BlockSize", "IPv4 block size must be between 20 and 32")),
        apply("blockSize 33", pool("p", "{cidr: 10.1.0.0/16, blockSize: 33}"),
            &pool_err("33", "BlockSize", "IPv4 block size must be between 20 and 32")),
        apply("IPv6 blockSize 64", pool("p", "{cidr: 'fd00::/48', blockSize: 64}"),
            &pool_err("64", "BlockSize", "IPv6 block size must be between 116 and 128")),
        apply("pool smaller than block", pool("p", "{cidr: 10.1.0.0/28}"),
            &pool_err("10.1.0.0/28", "CIDR", "IP pool size is too small for use with Calico IPAM. It must be equal to or greater than the block size.")),
        apply("overlap with stored pool", pool("new", "{cidr: 10.100.1.0/24}"),
            &pool_err("10.100.1.0/24", "CIDR", "IPPool(new) CIDR overlaps with IPPool(default-ipv4-ippool) CIDR 10.100.0.0/16")),
        Case {
            name: "overlap between documents of one file (first one valid)",
            args: &["apply", "-f", "-"],
            input: [pool("a", "{cidr: 10.7.0.0/16}"), pool("b", "{cidr: 10.7.128.0/17}")].join("---\n"),
            expect: "Failed to apply any 'IPPool' resources: [error with field IPPool.Spec.CIDR = '10.7.128.0/17' (IPPool(b) CIDR overlaps with IPPool(a) CIDR 10.7.0.0/16)]".into(),
            exact: true,
        },
        apply("IPIP and VXLAN", pool("p", "{cidr: 10.1.0.0/16, ipipMode: Always, vxlanMode: CrossSubnet}"),
            &pool_err("CrossSubnet", "VXLANMode", "Cannot enable both VXLAN and IPIP on the same IPPool")),
        apply("IPIP on IPv6", pool("p", "{cidr: 'fd00::/48', ipipMode: Always}"),
            &pool_err("Always", "IPIPMode", "IPIP is not supported on an IPv6 IP pool")),
        apply("link local", pool("p", "{cidr: 169.254.0.0/16}"),
            &pool_err("169.254.0.0/16", "CIDR", "IPPool CIDR overlaps with IPv4 Link Local range 169.254.0.0/16")),
        apply("lowercase always", pool("p", "{cidr: 10.1.0.0/16, ipipMode: always}"),
            "Failed to execute command: error with field IPPool.Spec.IPIPMode = 'always' (must be one of: Always, CrossSubnet, Never)"),
        apply("bad vxlanMode", pool("p", "{cidr: 10.1.0.0/16, vxlanMode: cross-subnet}"),
            "Failed to execute command: error with field IPPool.Spec.VXLANMode = 'cross-subnet' (must be one of: Always, CrossSubnet, Never)"),
        apply_contains("bad node selector", pool("p", "{cidr: 10.1.0.0/16, nodeSelector: \"rack == \"}"),
            "Failed to apply 'IPPool' resource: [error with field IPPool.Spec.NodeSelector = 'rack == ' (invalid selector: expected a quoted string, found end of input at position 8)]"),
        apply_contains("selector nested too deep", pool("p", &format!("{{cidr: 10.1.0.0/16, nodeSelector: \"{}has(a){}\"}}", "(".repeat(5000), ")".repeat(5000))),
            "(invalid selector: nested deeper than 64 levels of parentheses and negations at position 64)]"),
        apply("secret name leaving the secrets dir", doc("BGPPeer", "tor", "{peerIP: 10.0.0.9, asNumber: 64567, password: {secretKeyRef: {name: '../../etc', key: shadow}}}"),
            "Failed to apply 'BGPPeer' resource: [error with field BGPPeer.Spec.Password.SecretKeyRef.Name = '../../etc' (a secret name must be a lowercase DNS-1123 subdomain (a-z, 0-9, '-' and '.'))]"),
        apply("absolute secret key", doc("BGPConfiguration", "default", "{nodeMeshPassword: {secretKeyRef: {name: bgp, key: /etc/shadow}}}"),
            "Failed to apply 'BGPConfiguration' resource: [error with field BGPConfiguration.Spec.NodeMeshPassword.SecretKeyRef.Key = '/etc/shadow' (a secret key must consist of alphanumeric characters, '-', '_' or '.' (and not be '.' or '..'))]"),
        apply("bad peerIP", doc("BGPPeer", "tor", "{peerIP: 192.20.30.400, asNumber: 64567}"),
            "Failed to apply 'BGPPeer' resource: [error with field BGPPeer.Spec.PeerIP = '192.20.30.400' (invalid peer IP: must be an IP address, IP:port or [IPv6]:port)]"),
        apply("AS 0", doc("BGPPeer", "tor", "{peerIP: 192.20.30.40, asNumber: 0}"),
            "Failed to apply 'BGPPeer' resource: [error with field BGPPeer.Spec.ASNumber = '0' (AS number must be between 1 and 4294967295)]"),
        apply_contains("AS too large", doc("BGPPeer", "tor", "{peerIP: 192.20.30.40, asNumber: 4294967296}"),
            "Failed to execute command: BGPPeer spec.asNumber: invalid AS number '4294967296'"),
        apply("node and nodeSelector", doc("BGPPeer", "tor", "{peerIP: 10.0.0.1, asNumber: 64567, node: n1, nodeSelector: all()}"),
            "Failed to apply 'BGPPeer' resource: [error with field BGPPeer.Spec.Node = 'n1' (Node field must be empty when NodeSelector is specified)]"),
        apply("peerIP and peerSelector", doc("BGPPeer", "rr", "{peerIP: 10.0.0.1, peerSelector: has(rr)}"),
            "Failed to apply 'BGPPeer' resource: [error with field BGPPeer.Spec.PeerIP = '10.0.0.1' (PeerIP field must be empty when PeerSelector is specified)]"),
        apply("asNumber with peerSelector", doc("BGPPeer", "rr", "{asNumber: 64512, peerSelector: has(rr)}"),
            "Failed to apply 'BGPPeer' resource: [error with field BGPPeer.Spec.ASNumber = '64512' (ASNumber field must be empty when PeerSelector is specified)]"),
        apply("unknown kind", doc("Pod", "x", "{}"),
            "Failed to execute command: Unknown resource type (Pod) and/or version (projectcalico.org/v3)"),
        apply("wrong apiVersion", "apiVersion: projectcalico.org/v2\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.1.0.0/16}\n".into(),
            "Failed to execute command: Unknown resource type (IPPool) and/or version (projectcalico.org/v2)"),
        apply("unknown spec field", pool("p", "{cidr: 10.1.0.0/16, ipip_mode: Always}"),
            "Failed to execute command: IPPool spec.ipip_mode: unknown field `ipip_mode`, expected one of `cidr`, `vxlanMode`, `ipipMode`, `natOutgoing`, `disabled`, `disableBGPExport`, `blockSize`, `nodeSelector`, `namespaceSelector`, `allowedUses`, `assignmentMode`"),
        apply_contains("unknown top-level field", format!("{}extra: 1\n", pool("p", "{cidr: 10.1.0.0/16}")),
            "Failed to execute command: IPPool extra: unknown field `extra`"),
        apply_contains("unknown felix field", doc("FelixConfiguration", "default", "{ipipMtu: 1400}"),
            "Failed to execute command: FelixConfiguration spec.ipipMtu: unknown field `ipipMtu`"),
        apply_contains("wrong type", pool("p", "{cidr: 10.1.0.0/16, natOutgoing: yes-please}"),
            "Failed to execute command: IPPool spec.natOutgoing: invalid type: string \"yes-please\", expected a boolean"),
        apply_contains("malformed YAML", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p\nspec: [\n".into(),
            "Failed to execute command: error parsing YAML: "),
        apply("empty file", String::new(), "No resources specified"),
        apply("only comments", "# nothing here\n---\n".into(), "No resources specified"),
        apply("bad name", pool("Bad_Name", "{cidr: 10.1.0.0/16}"),
            "Failed to apply 'IPPool' resource: [error with field Metadata.Name = 'Bad_Name' (name must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character)]"),
        apply("missing name", "apiVersion: projectcalico.org/v3\nkind: IPPool\nspec: {cidr: 10.1.0.0/16}\n".into(),
            "Failed to apply 'IPPool' resource: [error with field Metadata.Name = '' (insufficient identifiers, missing 'name')]"),
        apply("node address without prefix", doc("Node", "n2", "{bgp: {ipv4Address: 10.0.0.2}}"),
            "Failed to apply 'Node' resource: [error with field Node.Spec.BGP.IPv4Address = '10.0.0.2' (must be an IPv4 address with prefix length (CIDR form, e.g. 10.0.0.1/24))]"),
        apply("bad community", doc("BGPConfiguration", "default", "{communities: [{name: c, value: '70000:1'}], prefixAdvertisements: [{cidr: 10.0.0.0/24, communities: [c]}]}"),
            "Failed to apply 'BGPConfiguration' resource: [error with field BGPConfiguration.Spec.Communities[].Value = '70000:1' (invalid community value or format used.)]"),
        apply("mesh password with mesh off", doc("BGPConfiguration", "default", "{nodeToNodeMeshEnabled: false, nodeMeshPassword: {secretKeyRef: {name: s, key: k}}}"),
            "Failed to apply 'BGPConfiguration' resource: [error with field BGPConfiguration.Spec.NodeMeshPassword = '' (spec.NodeMeshPassword cannot be set if spec.NodeToNodeMesh is disabled)]"),
        apply("IPAM strict and auto both off", doc("IPAMConfiguration", "default", "{strictAffinity: false, autoAllocateBlocks: false}"),
            "Failed to apply 'IPAMConfiguration' resource: [error with field IPAMConfiguration.Spec = '' (Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time)]"),
        apply("CIDR cannot be modified", pool("default-ipv4-ippool", "{cidr: 10.101.0.0/16}"),
            &pool_err("10.101.0.0/16", "CIDR", "IPPool CIDR cannot be modified")),
        apply("blockSize cannot be modified", pool("default-ipv4-ippool", "{cidr: 10.100.0.0/16, blockSize: 24}"),
            &pool_err("24", "BlockSize", "IPPool BlockSize cannot be modified")),
        apply("read-only ClusterInformation", doc("ClusterInformation", "default", "{calicoVersion: v3.25.0}"),
            "Failed to apply 'ClusterInformation' resource: [operation apply is not supported on ClusterInformation: resource is readonly]"),
        Case {
            name: "bad document after good ones of another kind",
            args: &["apply", "-f", "-"],
            input: [doc("Node", "n9", "{}"), doc("BGPPeer", "x", "{peerIP: 1.2.3.4, asNumber: 0}")].join("---\n"),
            expect: "Failed to apply any resources: [error with field BGPPeer.Spec.ASNumber = '0' (AS number must be between 1 and 4294967295)]".into(),
            exact: true,
        },
        Case {
            name: "create of an existing resource",
            args: &["create", "-f", "-"],
            input: pool("default-ipv4-ippool", "{cidr: 10.100.0.0/16}"),
            expect: "Failed to create 'IPPool' resource: [resource already exists: IPPool(default-ipv4-ippool)]".into(),
            exact: true,
        },
        Case {
            name: "replace of a missing resource",
            args: &["replace", "-f", "-"],
            input: pool("ghost", "{cidr: 10.50.0.0/16}"),
            expect: "Failed to replace 'IPPool' resource: [resource does not exist: IPPool(ghost) with error: <nil>]".into(),
            exact: true,
        },
        Case {
            name: "stale resourceVersion",
            args: &["replace", "-f", "-"],
            input: "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: default-ipv4-ippool, resourceVersion: '999'}\nspec: {cidr: 10.100.0.0/16, natOutgoing: true}\n".into(),
            expect: "Failed to replace 'IPPool' resource: [update conflict: IPPool(default-ipv4-ippool): resource version '999' is out of date (latest: ".into(),
            exact: false,
        },
        Case {
            name: "missing file",
            args: &["apply", "-f", "/nonexistent/pool.yaml"],
            input: String::new(),
            expect: "Failed to execute command: open /nonexistent/pool.yaml: no such file or directory".into(),
            exact: true,
        },
        Case {
            name: "unknown kind on get",
            args: &["get", "pods"],
            input: String::new(),
            expect: "Failed to execute command: resource type 'pods' is not supported".into(),
            exact: true,
        },
        Case {
            name: "unknown output format",
            args: &["get", "ippool", "-o", "xml"],
            input: String::new(),
            expect: "unrecognized output format 'xml'".into(),
            exact: true,
        },
        Case {
            name: "bad flag",
            args: &["apply", "--frobnicate"],
            input: String::new(),
            expect: "Invalid option: 'calicoctl apply --frobnicate'. Use flag '--help' to read about a specific subcommand.".into(),
            exact: true,
        },
        Case {
            name: "patch with a bad value",
            args: &["patch", "ippool", "default-ipv4-ippool", "-p", "{\"spec\":{\"vxlanMode\":\"Always\",\"ipipMode\":\"Always\"}}"],
            input: String::new(),
            expect: "Failed to patch 'IPPool' resource: [error with field IPPool.Spec.VXLANMode = 'Always' (Cannot enable both VXLAN and IPIP on the same IPPool)]".into(),
            exact: true,
        },
        Case {
            name: "delete of ClusterInformation",
            args: &["delete", "clusterinformation", "default"],
            input: String::new(),
            expect: "Failed to delete 'ClusterInformation' resource: [operation delete is not supported on ClusterInformation: resource is readonly]".into(),
            exact: true,
        },
    ]
}

#[test]
fn invalid_inputs_fail_with_calicos_message_and_change_nothing() {
    let env = Env::new();
    env.apply_ok(
        &[
            pool(
                "default-ipv4-ippool",
                "{cidr: 10.100.0.0/16, natOutgoing: true}",
            ),
            doc("Node", "node-1", "{bgp: {ipv4Address: 10.1.10.9/24}}"),
            doc("BGPConfiguration", "default", "{asNumber: 64512}"),
        ]
        .join("---\n"),
    );
    let before = env.snapshot();
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for case in &cases {
        let out = env.run_with(case.args, Some(&case.input));
        let line = out.stderr.trim_end_matches('\n');
        let ok_msg = if case.exact {
            line == case.expect
        } else {
            line.contains(&case.expect)
        };
        if out.code != 1 || !ok_msg || !out.stdout.is_empty() {
            failures.push(format!(
                "{}: code {} stdout {:?}\n  stderr:   {line}\n  expected: {}",
                case.name, out.code, out.stdout, case.expect
            ));
        }
        let after = env.snapshot();
        if after != before {
            failures.push(format!("{}: the store changed", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
