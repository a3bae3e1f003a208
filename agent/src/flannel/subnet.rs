//! Subnet arithmetic and flannel's key names: `<prefix>/subnets/10.244.1.0-24`, the walk
//! over candidate subnets, overlap checks and the random pick among free ones. Pure.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// How many candidates flannel collects before picking one at random.
pub const MAX_CANDIDATES: usize = 100;

/// Number of addresses in a subnet of length `len` (`len` >= 1).
pub fn subnet_size(len: u8) -> u32 {
    1u32 << (32 - u32::from(len.clamp(1, 32)))
}

/// The key directory of the leases: `<prefix>/subnets/`.
pub fn subnets_dir(prefix: &str) -> String {
    format!("{}/subnets/", prefix.trim_end_matches('/'))
}

/// The config key: `<prefix>/config`.
pub fn config_key(prefix: &str) -> String {
    format!("{}/config", prefix.trim_end_matches('/'))
}

/// flannel's `MakeSubnetKey`: `10.244.1.0-24`.
pub fn subnet_key(subnet: &Ipv4Net) -> String {
    format!("{}-{}", subnet.network(), subnet.prefix_len())
}

/// The full key of a lease: `<prefix>/subnets/10.244.1.0-24`.
pub fn lease_key(prefix: &str, subnet: &Ipv4Net) -> String {
    format!("{}{}", subnets_dir(prefix), subnet_key(subnet))
}

/// flannel's `ParseSubnetKey`: the IPv4 subnet of `10.244.1.0-24` (a dual-stack suffix
/// `&fc00::-64` is accepted and ignored). `None` for anything else.
pub fn parse_subnet_key(name: &str) -> Option<Ipv4Net> {
    let v4 = name.split('&').next()?;
    let (ip, len) = v4.rsplit_once('-')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let net = Ipv4Net::new(ip, len).ok()?;
    (net.network() == ip).then_some(net)
}

/// The subnet a full lease key names, if it is under `<prefix>/subnets/`.
pub fn subnet_of_key(prefix: &str, key: &str) -> Option<Ipv4Net> {
    parse_subnet_key(key.strip_prefix(&subnets_dir(prefix))?)
}

/// The first usable address (`10.244.1.1` of `10.244.1.0/24`), what subnet.env's
/// `FLANNEL_SUBNET` holds.
pub fn first_usable(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
}

/// True when the two subnets share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The subnets of length `len` from `min` to `max` (network addresses, inclusive).
pub fn subnets_in(min: Ipv4Addr, max: Ipv4Addr, len: u8) -> impl Iterator<Item = Ipv4Net> {
    let step = u64::from(subnet_size(len));
    let (lo, hi) = (u64::from(u32::from(min)), u64::from(u32::from(max)));
    let count = if hi >= lo { (hi - lo) / step + 1 } else { 0 };
    (0..count).filter_map(move |i| {
        let addr = u32::try_from(lo + i * step).ok()?;
        Ipv4Net::new(Ipv4Addr::from(addr), len).ok()
    })
}

/// Up to [`MAX_CANDIDATES`] subnets from `all` (in order) that overlap nothing in `taken`.
pub fn free_candidates(all: impl Iterator<Item = Ipv4Net>, taken: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut taken: Vec<Ipv4Net> = taken.to_vec();
    taken.sort();
    all.filter(|c| !taken.iter().any(|t| overlaps(c, t)))
        .take(MAX_CANDIDATES)
        .collect()
}

/// Picks one of `candidates` with `random` (a number in `0..len`), as flannel does to keep
/// concurrent nodes from racing for the same subnet.
pub fn pick(candidates: &[Ipv4Net], random: impl FnOnce(usize) -> usize) -> Option<Ipv4Net> {
    if candidates.is_empty() {
        return None;
    }
    candidates
        .get(random(candidates.len()) % candidates.len())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test cidr")
    }

    #[test]
    fn keys_round_trip_in_flannels_format() {
        let n = net("10.244.1.0/24");
        assert_eq!(subnet_key(&n), "10.244.1.0-24");
        assert_eq!(
            lease_key("/coreos.com/network", &n),
            "/coreos.com/network/subnets/10.244.1.0-24"
        );
        assert_eq!(
            lease_key("/coreos.com/network/", &n),
            "/coreos.com/network/subnets/10.244.1.0-24"
        );
        assert_eq!(parse_subnet_key("10.244.1.0-24"), Some(n));
        assert_eq!(parse_subnet_key("10.244.1.0-24&fc00::-64"), Some(n));
        assert_eq!(
            subnet_of_key(
                "/coreos.com/network",
                "/coreos.com/network/subnets/10.5.52.0-24"
            ),
            Some(net("10.5.52.0/24"))
        );
        assert_eq!(
            config_key("/coreos.com/network"),
            "/coreos.com/network/config"
        );
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "10.244.1.0",
            "10.244.1.0-",
            "10.244.1.0-33",
            "10.244.1.5-24",
            "x-24",
            "10.244.1-24",
            "",
        ] {
            assert_eq!(parse_subnet_key(bad), None, "{bad}");
        }
        assert_eq!(subnet_of_key("/a", "/b/subnets/10.0.0.0-24"), None);
    }

    #[test]
    fn first_usable_is_dot_one() {
        assert_eq!(
            first_usable(&net("10.244.3.0/24")),
            "10.244.3.1".parse::<Ipv4Addr>().expect("ip")
        );
        assert_eq!(
            first_usable(&net("10.0.0.4/30")),
            "10.0.0.5".parse::<Ipv4Addr>().expect("ip")
        );
    }

    #[test]
    fn subnet_walk_covers_min_to_max_inclusive() {
        let all: Vec<Ipv4Net> = subnets_in(
            "10.244.1.0".parse().expect("ip"),
            "10.244.4.0".parse().expect("ip"),
            24,
        )
        .collect();
        assert_eq!(
            all,
            vec![
                net("10.244.1.0/24"),
                net("10.244.2.0/24"),
                net("10.244.3.0/24"),
                net("10.244.4.0/24")
            ]
        );
        // The very top of the address space does not overflow.
        let top: Vec<Ipv4Net> = subnets_in(
            "255.255.255.0".parse().expect("ip"),
            "255.255.255.0".parse().expect("ip"),
            24,
        )
        .collect();
        assert_eq!(top, vec![net("255.255.255.0/24")]);
        assert_eq!(
            subnets_in(
                "10.0.2.0".parse().expect("ip"),
                "10.0.1.0".parse().expect("ip"),
                24
            )
            .count(),
            0
        );
    }

    #[test]
    fn overlap_checks_both_directions() {
        assert!(overlaps(&net("10.244.0.0/23"), &net("10.244.1.0/24")));
        assert!(overlaps(&net("10.244.1.0/24"), &net("10.244.0.0/23")));
        assert!(!overlaps(&net("10.244.2.0/24"), &net("10.244.0.0/23")));
    }

    #[test]
    fn free_candidates_skip_overlapping_leases_and_stop_at_the_cap() {
        let min = "10.244.1.0".parse().expect("ip");
        let max = "10.244.4.0".parse().expect("ip");
        let taken = [net("10.244.2.0/24"), net("10.244.3.0/25")];
        assert_eq!(
            free_candidates(subnets_in(min, max, 24), &taken),
            vec![net("10.244.1.0/24"), net("10.244.4.0/24")]
        );
        let big = free_candidates(
            subnets_in(
                "10.0.0.0".parse().expect("ip"),
                "10.255.255.0".parse().expect("ip"),
                24,
            ),
            &[],
        );
        assert_eq!(big.len(), MAX_CANDIDATES);
    }

    #[test]
    fn pick_uses_the_random_index_and_handles_empty() {
        let c = [net("10.244.1.0/24"), net("10.244.4.0/24")];
        assert_eq!(pick(&c, |_| 1), Some(net("10.244.4.0/24")));
        assert_eq!(pick(&c, |n| n * 2), Some(net("10.244.1.0/24")));
        assert_eq!(pick(&[], |_| 0), None);
    }
}
