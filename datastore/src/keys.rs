//! Calico's etcdv3 key layout (reference calico.md §3.4), so `etcdctl get --prefix /calico`
//! shows what an operator of Calico expects.

use ipnet::IpNet;

/// Root of the v3 resources.
pub const RESOURCES_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
/// Root of the IPAM objects.
pub const IPAM_PREFIX: &str = "/calico/ipam/v2/";
/// Every block of both families (what [`blocks_prefix`] returns, for matching many keys
/// without building it each time).
pub const BLOCKS_PREFIX: &str = "/calico/ipam/v2/assignment/";
/// Every block affinity (what [`affinities_prefix`] returns).
pub const AFFINITIES_PREFIX: &str = "/calico/ipam/v2/host/";

/// `/calico/resources/v3/projectcalico.org/<plural>/` : every resource of a kind.
pub fn resource_prefix(plural: &str) -> String {
    format!("{RESOURCES_PREFIX}{plural}/")
}

/// Key of a cluster-scoped resource.
pub fn resource(plural: &str, name: &str) -> String {
    format!("{RESOURCES_PREFIX}{plural}/{name}")
}

/// Key of a namespaced resource (workload endpoints).
pub fn namespaced_resource(plural: &str, namespace: &str, name: &str) -> String {
    format!("{RESOURCES_PREFIX}{plural}/{namespace}/{name}")
}

/// The name form of a block CIDR in keys: `10.244.1.0/26` -> `10.244.1.0-26`.
pub fn cidr_key_part(cidr: &IpNet) -> String {
    cidr.to_string().replace('/', "-")
}

/// Parses the key form back: `10.244.1.0-26` -> `10.244.1.0/26`.
pub fn cidr_from_key_part(part: &str) -> Option<IpNet> {
    let (addr, len) = part.rsplit_once('-')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    IpNet::new(addr.parse().ok()?, len.parse().ok()?).ok()
}

fn family(cidr: &IpNet) -> &'static str {
    match cidr {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

/// `/calico/ipam/v2/assignment/ipv4/block/` : every IPv4 block.
pub fn blocks_prefix_v4() -> String {
    format!("{IPAM_PREFIX}assignment/ipv4/block/")
}

/// `/calico/ipam/v2/assignment/` : every block of both families.
pub fn blocks_prefix() -> String {
    BLOCKS_PREFIX.to_string()
}

/// Key of an allocation block.
pub fn block(cidr: &IpNet) -> String {
    format!(
        "{IPAM_PREFIX}assignment/{}/block/{}",
        family(cidr),
        cidr_key_part(cidr)
    )
}

/// The CIDR a key under [`BLOCKS_PREFIX`] names (its last segment).
pub fn parse_block(key: &str) -> Option<IpNet> {
    let rest = key.strip_prefix(BLOCKS_PREFIX)?;
    cidr_from_key_part(rest.rsplit('/').next()?)
}

/// `/calico/ipam/v2/host/` : every affinity of every host.
pub fn affinities_prefix() -> String {
    AFFINITIES_PREFIX.to_string()
}

/// `/calico/ipam/v2/host/<node>/` : every affinity of one host.
pub fn host_affinities_prefix(node: &str) -> String {
    format!("{IPAM_PREFIX}host/{node}/")
}

/// Key of a host's affinity to a block.
pub fn affinity(node: &str, cidr: &IpNet) -> String {
    format!(
        "{IPAM_PREFIX}host/{node}/{}/block/{}",
        family(cidr),
        cidr_key_part(cidr)
    )
}

/// Parses an affinity key into (node, block CIDR).
pub fn parse_affinity(key: &str) -> Option<(String, IpNet)> {
    let rest = key.strip_prefix(AFFINITIES_PREFIX)?;
    let mut parts = rest.split('/');
    let node = parts.next()?;
    let _family = parts.next()?;
    if parts.next()? != "block" {
        return None;
    }
    let cidr = cidr_from_key_part(parts.next()?)?;
    Some((node.to_string(), cidr))
}

/// `/calico/ipam/v2/handle/` : every handle.
pub fn handles_prefix() -> String {
    format!("{IPAM_PREFIX}handle/")
}

/// Key of an IPAM handle.
pub fn handle(id: &str) -> String {
    format!("{IPAM_PREFIX}handle/{id}")
}

/// Key of the IPAM configuration.
pub fn ipam_config() -> String {
    format!("{IPAM_PREFIX}config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_affinity_keys_match_calico_layout() {
        let cidr: IpNet = "192.168.161.0/26".parse().expect("cidr");
        assert_eq!(
            block(&cidr),
            "/calico/ipam/v2/assignment/ipv4/block/192.168.161.0-26"
        );
        assert_eq!(
            affinity("ubuntu-24", &cidr),
            "/calico/ipam/v2/host/ubuntu-24/ipv4/block/192.168.161.0-26"
        );
        assert_eq!(
            parse_affinity(&affinity("ubuntu-24", &cidr)),
            Some(("ubuntu-24".to_string(), cidr))
        );
    }

    #[test]
    fn block_key_parts_round_trip_and_bad_ones_are_refused() {
        for text in [
            "192.168.161.0/26",
            "10.0.0.0/31",
            "fd00:1::/122",
            "fd00:1::40/128",
        ] {
            let cidr: IpNet = text.parse().expect("cidr");
            assert_eq!(cidr_from_key_part(&cidr_key_part(&cidr)), Some(cidr));
        }
        for bad in [
            "10.0.0.0",
            "10.0.0.0-",
            "10.0.0.0-+26",
            "10.0.0.0-33",
            "x-26",
            "-26",
        ] {
            assert_eq!(cidr_from_key_part(bad), None, "{bad}");
        }
        assert!(block(&"10.0.0.0/26".parse().expect("cidr")).starts_with(BLOCKS_PREFIX));
        let v6: IpNet = "fd00::/122".parse().expect("cidr");
        assert_eq!(parse_block(&block(&v6)), Some(v6));
        assert_eq!(parse_block(&affinity("n1", &v6)), None);
        assert!(
            affinity("n1", &"10.0.0.0/26".parse().expect("cidr")).starts_with(AFFINITIES_PREFIX)
        );
    }

    #[test]
    fn resource_keys_match_calico_layout() {
        assert_eq!(
            resource("ippools", "default-ipv4-ippool"),
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        assert_eq!(
            namespaced_resource("workloadendpoints", "default", "n1-cni-abc-eth0"),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/n1-cni-abc-eth0"
        );
    }
}
