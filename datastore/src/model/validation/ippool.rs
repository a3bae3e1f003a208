//! IPPool rules (`v3.25:libcalico-go/lib/clientv3/ippool.go validateAndSetDefaults`).

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::model::ippool::{AllowedUse, IPPool, IPPoolSpec};
use crate::model::meta::ObjectMeta;
use crate::model::validation::check_selector;

fn link_local_v4() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new_assert(
        std::net::Ipv4Addr::new(169, 254, 0, 0),
        16,
    ))
}

fn link_local_v6() -> IpNet {
    IpNet::V6(ipnet::Ipv6Net::new_assert(
        std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
    ))
}

/// True if the two networks share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks one pool on its own (defaults already applied).
pub fn validate(_meta: &ObjectMeta, spec: &IPPoolSpec) -> Result<()> {
    const CIDR: &str = "IPPool.Spec.CIDR";
    if spec.cidr.trim().is_empty() {
        return Err(Error::invalid(CIDR, "", "IPPool CIDR must be specified"));
    }
    let net = spec.network()?;
    if net.trunc() != net {
        return Err(Error::invalid(
            CIDR,
            &spec.cidr,
            "IPPool CIDR is not strictly masked",
        ));
    }
    let block = spec.effective_block_size();
    match net {
        IpNet::V4(_) if !(20..=32).contains(&block) => {
            return Err(Error::invalid(
                "IPPool.Spec.BlockSize",
                block.to_string(),
                "IPv4 block size must be between 20 and 32",
            ));
        }
        IpNet::V6(_) if !(116..=128).contains(&block) => {
            return Err(Error::invalid(
                "IPPool.Spec.BlockSize",
                block.to_string(),
                "IPv6 block size must be between 116 and 128",
            ));
        }
        _ => {}
    }
    if !spec.disabled && net.prefix_len() > block {
        return Err(Error::invalid(
            CIDR,
            &spec.cidr,
            "IP pool size is too small for use with Calico IPAM. It must be equal to or \
             greater than the block size.",
        ));
    }
    if spec.ipip_mode.encapsulates() && spec.vxlan_mode.encapsulates() {
        return Err(Error::invalid(
            "IPPool.Spec.VXLANMode",
            spec.vxlan_mode.as_str(),
            "Cannot enable both VXLAN and IPIP on the same IPPool",
        ));
    }
    if net.addr().is_ipv6() && spec.ipip_mode.encapsulates() {
        return Err(Error::invalid(
            "IPPool.Spec.IPIPMode",
            spec.ipip_mode.as_str(),
            "IPIP is not supported on an IPv6 IP pool",
        ));
    }
    match net {
        IpNet::V4(_) if overlaps(&net, &link_local_v4()) => {
            return Err(Error::invalid(
                CIDR,
                &spec.cidr,
                "IPPool CIDR overlaps with IPv4 Link Local range 169.254.0.0/16",
            ));
        }
        IpNet::V6(_) if overlaps(&net, &link_local_v6()) => {
            return Err(Error::invalid(
                CIDR,
                &spec.cidr,
                "IPPool CIDR overlaps with IPv6 Link Local range fe80::/10",
            ));
        }
        _ => {}
    }
    check_selector("IPPool.Spec.NodeSelector", &spec.node_selector)?;
    if let Some(ns) = &spec.namespace_selector {
        check_selector("IPPool.Spec.NamespaceSelector", ns)?;
    }
    if spec.allowed_uses.contains(&AllowedUse::LoadBalancer) {
        if spec.allowed_uses.len() > 1 {
            return Err(Error::invalid(
                "IPPool.Spec.AllowedUses",
                "LoadBalancer",
                "LoadBalancer cannot be combined with other allowed uses",
            ));
        }
        if spec.ipip_mode.encapsulates() || spec.vxlan_mode.encapsulates() {
            return Err(Error::invalid(
                "IPPool.Spec.AllowedUses",
                "LoadBalancer",
                "LoadBalancer IP pools cannot use IPIP or VXLAN",
            ));
        }
    }
    Ok(())
}

/// CIDR and blockSize cannot change.
pub fn validate_update(new: &IPPoolSpec, old: &IPPoolSpec) -> Result<()> {
    let same_cidr = match (new.network(), old.network()) {
        (Ok(a), Ok(b)) => a == b,
        _ => new.cidr == old.cidr,
    };
    if !same_cidr {
        return Err(Error::invalid(
            "IPPool.Spec.CIDR",
            &new.cidr,
            "IPPool CIDR cannot be modified",
        ));
    }
    if new.effective_block_size() != old.effective_block_size() {
        return Err(Error::invalid(
            "IPPool.Spec.BlockSize",
            new.effective_block_size().to_string(),
            "IPPool BlockSize cannot be modified",
        ));
    }
    Ok(())
}

/// On create: the pool must not overlap any other pool (a same-name pool is the one being
/// replaced and is skipped).
pub fn validate_overlap(meta: &ObjectMeta, spec: &IPPoolSpec, others: &[IPPool]) -> Result<()> {
    let net = spec.network()?;
    for other in others {
        if other.metadata.name == meta.name {
            continue;
        }
        let Ok(other_net) = other.spec.network() else {
            continue;
        };
        if overlaps(&net, &other_net) {
            return Err(Error::invalid(
                "IPPool.Spec.CIDR",
                &spec.cidr,
                format!(
                    "IPPool({}) CIDR overlaps with IPPool({}) CIDR {}",
                    meta.name, other.metadata.name, other.spec.cidr
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::EncapMode;
    use crate::model::resource::Resource;

    fn pool(cidr: &str) -> IPPool {
        let mut p = IPPool::new("p", IPPoolSpec::with_cidr(cidr));
        p.set_defaults();
        p
    }

    fn reason(p: &IPPool) -> String {
        match p.validate() {
            Err(Error::Invalid { reason, .. }) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_calicos() {
        let p = pool("10.1.0.0/16");
        assert_eq!(p.spec.block_size, 26);
        assert_eq!(p.spec.node_selector, "all()");
        assert_eq!(p.spec.ipip_mode, EncapMode::Never);
        assert_eq!(
            p.spec.allowed_uses,
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        );
        assert_eq!(pool("fd00::/48").spec.block_size, 122);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn cidr_rules() {
        assert_eq!(
            reason(&pool("10.0.0.1/16")),
            "IPPool CIDR is not strictly masked"
        );
        assert_eq!(
            reason(&pool("10.0.0.0/33")),
            "IPPool CIDR must be a valid subnet"
        );
        assert_eq!(reason(&pool("")), "IPPool CIDR must be specified");
        assert!(reason(&pool("169.254.0.0/16")).contains("Link Local"));
        assert!(reason(&pool("fe80::/64")).contains("fe80::/10"));
        assert!(reason(&pool("10.0.0.0/28")).contains("too small"));
    }

    #[test]
    fn block_size_and_modes() {
        let mut p = pool("10.0.0.0/16");
        p.spec.block_size = 19;
        assert_eq!(reason(&p), "IPv4 block size must be between 20 and 32");
        p.spec.block_size = 33;
        assert_eq!(reason(&p), "IPv4 block size must be between 20 and 32");
        p.spec.block_size = 26;
        p.spec.ipip_mode = EncapMode::Always;
        p.spec.vxlan_mode = EncapMode::CrossSubnet;
        assert_eq!(
            reason(&p),
            "Cannot enable both VXLAN and IPIP on the same IPPool"
        );
        let mut p6 = pool("fd00::/48");
        p6.spec.ipip_mode = EncapMode::Always;
        assert_eq!(reason(&p6), "IPIP is not supported on an IPv6 IP pool");
    }

    #[test]
    fn overlap_and_immutability() {
        let a = pool("10.0.0.0/8");
        let mut b = pool("10.1.0.0/16");
        b.metadata.name = "new".into();
        let e = b.validate_create(std::slice::from_ref(&a)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error with field IPPool.Spec.CIDR = '10.1.0.0/16' (IPPool(new) CIDR overlaps \
             with IPPool(p) CIDR 10.0.0.0/8)"
        );
        let c = pool("10.2.0.0/16");
        assert!(c.validate_update(&pool("10.1.0.0/16")).is_err());
        let mut d = pool("10.1.0.0/16");
        d.spec.block_size = 24;
        assert!(d.validate_update(&pool("10.1.0.0/16")).is_err());
    }
}
