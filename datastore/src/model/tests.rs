//! Every kind parses from Calico's own YAML (exact field names) and serializes back to
//! the same JSON.

#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::model::any::{AnyResource, parse_documents};

fn round_trip(yaml: &str) -> (AnyResource, serde_json::Value) {
    let docs = parse_documents(yaml).unwrap();
    assert_eq!(docs.len(), 1);
    let input: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let output = docs[0].to_value();
    assert_eq!(output, input, "fields lost or renamed");
    (docs[0].clone(), output)
}

#[test]
fn node_fields() {
    let (r, _) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: node-1\n  labels: {rack: r1}\n\
         spec:\n  bgp:\n    asNumber: 64512\n    ipv4Address: 10.244.0.1/24\n    ipv6Address: 2001:db8::1/120\n\
         \x20   ipv4IPIPTunnelAddr: 192.168.0.1\n    routeReflectorClusterID: 224.0.0.1\n\
         \x20 ipv4VXLANTunnelAddr: 10.244.1.0\n  vxlanTunnelMACAddr: 66:aa:bb:cc:dd:ee\n\
         \x20 orchRefs: [{nodeName: node-1, orchestrator: k8s}]\n  addresses: [{address: 10.244.0.1, type: InternalIP}]\n",
    );
    let AnyResource::Node(n) = r else { panic!() };
    let bgp = n.spec.bgp.as_ref().unwrap();
    assert_eq!(bgp.ipv4_addr().unwrap().to_string(), "10.244.0.1");
    assert_eq!(bgp.ipv4_net().unwrap().prefix_len(), 24);
    assert_eq!(bgp.rr_cluster_id().unwrap().to_string(), "224.0.0.1");
    assert!(r_valid(&AnyResource::Node(n)));
}

fn r_valid(r: &AnyResource) -> bool {
    let mut r = r.clone();
    r.set_defaults();
    r.validate().is_ok()
}

#[test]
fn bgp_kinds_fields() {
    let (peer, _) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: rack1-tor}\n\
         spec: {peerIP: 192.20.30.40, asNumber: 64567, nodeSelector: rack == 'rack-1', \
         password: {secretKeyRef: {name: bgp-secrets, key: rr-password}}, sourceAddress: UseNodeIP, \
         maxRestartTime: 2m0s, numAllowedLocalASNumbers: 1, ttlSecurity: 1, keepOriginalNextHop: true}\n",
    );
    assert!(r_valid(&peer));
    let (cfg, _) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n\
         spec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: true, asNumber: 64512, \
         serviceClusterIPs: [{cidr: 10.96.0.0/12}], serviceExternalIPs: [{cidr: 104.244.42.129/32}], \
         listenPort: 179, bindMode: NodeIP, nodeMeshMaxRestartTime: 2m0s, \
         communities: [{name: bgp-large-community, value: '63400:300:100'}], \
         prefixAdvertisements: [{cidr: 172.218.4.0/26, communities: [bgp-large-community, '63400:120']}]}\n",
    );
    assert!(r_valid(&cfg));
}

#[test]
fn felix_ipam_wep_clusterinfo_fields() {
    let (felix, _) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\n\
         spec: {ipipEnabled: true, ipipMTU: 1480, vxlanEnabled: false, vxlanMTU: 1450, vxlanPort: 4789, \
         vxlanVNI: 4096, mtuIfacePattern: '^eth.*', natOutgoingAddress: 10.0.0.1, routeRefreshInterval: 1m30s, \
         logSeverityScreen: Info, healthPort: 9099, prometheusMetricsPort: 9091}\n",
    );
    assert!(r_valid(&felix));
    let (ipam, _) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}\n\
         spec: {strictAffinity: true, autoAllocateBlocks: true, maxBlocksPerHost: 4}\n",
    );
    assert!(r_valid(&ipam));
    let (wep, _) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n\
         metadata: {name: node1-k8s-nginx-eth0, namespace: default}\n\
         spec: {orchestrator: k8s, workload: '', node: node1, containerID: abc, pod: nginx, endpoint: eth0, \
         ipNetworks: [10.244.1.5/32], profiles: [kns.default], interfaceName: cali1234567890a, \
         mac: 'ee:ee:ee:ee:ee:ee'}\n"
            .replace("workload: '', ", "")
            .as_str(),
    );
    assert!(r_valid(&wep));
    assert_eq!(
        wep.key(),
        "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-nginx-eth0"
    );
    let (ci, v) = round_trip(
        "apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata: {name: default}\n\
         spec: {clusterGUID: abc, clusterType: 'calico-rs,bgp', calicoVersion: v3.25.0, datastoreReady: true}\n",
    );
    assert_eq!(v["spec"]["clusterGUID"], json!("abc"));
    assert!(r_valid(&ci));
}

#[test]
fn ippool_defaults_are_persisted_and_dotted_as_numbers_accepted() {
    let mut docs = parse_documents(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.1.0.0/16}\n\
         ---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: q}\n\
         spec: {peerIP: 10.0.0.1, asNumber: '1.10'}\n",
    )
    .unwrap();
    docs[0].set_defaults();
    assert_eq!(
        docs[0].to_value()["spec"],
        json!({"cidr": "10.1.0.0/16", "vxlanMode": "Never", "ipipMode": "Never", "blockSize": 26,
               "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]})
    );
    assert_eq!(docs[1].to_value()["spec"]["asNumber"], json!(65546));
}
