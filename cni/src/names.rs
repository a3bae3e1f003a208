//! Calico's names: the workload id, the host-side veth (`cali` + 11 hex of sha1), the IPAM
//! handle and the WorkloadEndpoint name.

use sha1::{Digest, Sha1};

use crate::env::CniEnv;

/// The orchestrator recorded on the endpoint: `k8s` when Kubernetes args are present.
pub fn orchestrator(env: &CniEnv) -> &'static str {
    if env.k8s_pod().is_some() {
        "k8s"
    } else {
        "cni"
    }
}

/// The workload id: `<namespace>.<pod>` for a Kubernetes pod, else the container id.
pub fn workload_id(env: &CniEnv) -> String {
    match env.k8s_pod() {
        Some((ns, pod)) => format!("{ns}.{pod}"),
        None => env.container_id.clone(),
    }
}

/// The host-side veth: `cali` + the first 11 hex characters of sha1(workload id)
/// (Calico's `VethNameForWorkload`), 15 characters.
pub fn host_veth_name(workload_id: &str) -> String {
    let digest = Sha1::digest(workload_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cali{}", &hex[..11])
}

/// The IPAM handle of a pod: `<network name>.<containerID>`.
pub fn handle_id(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

fn escape_dashes(s: &str) -> String {
    s.replace('-', "--")
}

/// The WorkloadEndpoint name (Calico's `CalculateWorkloadEndpointName`):
/// `<node>-k8s-<pod>-<iface>` or `<node>-cni-<containerID>-<iface>`, each part with `-`
/// doubled.
pub fn endpoint_name(node: &str, env: &CniEnv) -> String {
    let workload = match env.k8s_pod() {
        Some((_, pod)) => pod.to_string(),
        None => env.container_id.clone(),
    };
    format!(
        "{}-{}-{}-{}",
        escape_dashes(node),
        orchestrator(env),
        escape_dashes(&workload),
        escape_dashes(&env.ifname)
    )
}

/// The namespace of the endpoint: the pod's, or `default` outside Kubernetes.
pub fn endpoint_namespace(env: &CniEnv) -> String {
    env.k8s_pod()
        .map_or_else(|| "default".to_string(), |(ns, _)| ns.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::env::Command;

    fn env(args: &[(&str, &str)]) -> CniEnv {
        CniEnv {
            command: Command::Add,
            container_id: "abc-123".into(),
            netns: None,
            ifname: "eth0".into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            path: vec![],
        }
    }

    #[test]
    fn veth_names_match_those_a_real_calico_cluster_gave_its_pods() {
        // Pod (namespace.name) -> host veth, read off `kubectl get pods -o wide` and
        // `ip addr` / `ip route` on the nodes of a real Calico cluster
        // (../shared/reference/calico-lab-transcript.md), not computed here.
        let seen_on_calico = [
            ("kube-system.coredns-74ff55c5b-wwmkq", "califee22f61266"),
            ("kube-system.coredns-74ff55c5b-rq6l6", "cali1e472607f9f"),
            (
                "kube-system.calico-kube-controllers-69496d8b75-phggg",
                "cali8de5ff87b7c",
            ),
            ("default.test-7999578869-9nc25", "calida8798d2ad7"),
            ("default.test-7999578869-9vbv6", "cali79d4f06640e"),
            ("default.test-7999578869-b26kk", "cali70df284fc76"),
        ];
        for (workload, veth) in seen_on_calico {
            assert_eq!(host_veth_name(workload), veth, "{workload}");
        }
    }

    #[test]
    fn endpoint_names_escape_dashes_like_calico() {
        let k8s = env(&[
            ("K8S_POD_NAMESPACE", "kube-system"),
            ("K8S_POD_NAME", "core-dns"),
        ]);
        assert_eq!(workload_id(&k8s), "kube-system.core-dns");
        assert_eq!(endpoint_name("node-1", &k8s), "node--1-k8s-core--dns-eth0");
        assert_eq!(endpoint_namespace(&k8s), "kube-system");
        let plain = env(&[]);
        assert_eq!(workload_id(&plain), "abc-123");
        assert_eq!(endpoint_name("n1", &plain), "n1-cni-abc--123-eth0");
        assert_eq!(
            handle_id("k8s-pod-network", "abc-123"),
            "k8s-pod-network.abc-123"
        );
    }
}
