//! The IP address family, the one place a v4 or v6 address, network or pool says which it
//! is and how Calico names it in messages ("IPv4", "IPv6").

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// Both families, IPv4 first (the order Calico reports them in).
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    pub fn of_net(net: &IpNet) -> IpFamily {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    pub fn of_addr(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The longest prefix: 32 or 128 (a host route, a pod's address).
    pub fn host_prefix_len(self) -> u8 {
        match self {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_and_an_address_say_their_family() {
        let v6: IpNet = "fd00:10::/122".parse().expect("test cidr");
        assert_eq!(IpFamily::of_net(&v6), IpFamily::V6);
        let v4: IpAddr = "10.0.0.1".parse().expect("test ip");
        assert_eq!(IpFamily::of_addr(&v4), IpFamily::V4);
        assert_eq!(IpFamily::V6.to_string(), "IPv6");
        assert_eq!(IpFamily::V6.host_prefix_len(), 128);
    }
}
