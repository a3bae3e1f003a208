//! The BGP router ID: `CALICO_ROUTER_ID` as calico-node reads it (`hash`, a fixed IPv4
//! address, or unset for the node's IPv4 address). An IPv6-only node with no setting gets
//! the hashed ID: Calico leaves such a node without a router ID until the user sets
//! `CALICO_ROUTER_ID=hash`, which is the only value that works there.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// The router ID for `node` at `node_ip` (none on an IPv6-only node) under the
/// `CALICO_ROUTER_ID` setting; an error naming the variable when it is neither `hash` nor
/// an IPv4 address.
pub fn router_id(
    setting: Option<&str>,
    node: &str,
    node_ip: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, String> {
    match setting.map(str::trim) {
        None | Some("") => Ok(node_ip.unwrap_or_else(|| hashed(node))),
        Some("hash") => Ok(hashed(node)),
        Some(text) => text
            .parse()
            .map_err(|_| format!("CALICO_ROUTER_ID {text:?}: must be `hash` or an IPv4 address")),
    }
}

/// Calico's `HashToIPv4`: the first four bytes of the SHA-256 of the node name, the first
/// moved out of the multicast and reserved ranges (224-255 become 192-223).
fn hashed(node: &str) -> Ipv4Addr {
    let digest = Sha256::digest(node.as_bytes());
    let first = if digest[0] > 223 {
        digest[0] - 32
    } else {
        digest[0]
    };
    Ipv4Addr::new(first, digest[1], digest[2], digest[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 192, 0, 2);

    #[test]
    fn unset_is_the_node_ip_hash_is_calicos_and_a_fixed_id_is_kept() {
        assert_eq!(router_id(None, "kube-master", Some(NODE_IP)), Ok(NODE_IP));
        assert_eq!(
            router_id(Some(""), "kube-master", Some(NODE_IP)),
            Ok(NODE_IP)
        );
        // Calico's confd corpus, mesh/hash: kube-master hashes to 25.79.212.8.
        assert_eq!(
            router_id(Some("hash"), "kube-master", Some(NODE_IP)),
            Ok(Ipv4Addr::new(25, 79, 212, 8))
        );
        assert_eq!(
            router_id(Some("10.10.10.10"), "kube-master", Some(NODE_IP)),
            Ok(Ipv4Addr::new(10, 10, 10, 10))
        );
    }

    #[test]
    fn an_ipv6_only_node_without_a_setting_gets_the_hashed_id() {
        assert_eq!(
            router_id(None, "kube-master", None),
            Ok(Ipv4Addr::new(25, 79, 212, 8))
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_variable() {
        let err = router_id(Some("fe80::1"), "n", Some(NODE_IP)).expect_err("refused");
        assert!(err.contains("CALICO_ROUTER_ID"), "{err}");
    }

    #[test]
    fn hashed_ids_stay_out_of_multicast() {
        for i in 0..2000 {
            assert!(hashed(&format!("node-{i}")).octets()[0] <= 223);
        }
    }
}
