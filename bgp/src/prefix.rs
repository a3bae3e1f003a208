//! Prefixes as compact keys: an IPv4 prefix is a `u32` and a length, an IPv6 prefix a `u128`
//! and a length, host bits always zero. The RIB keys its tables with these (no allocation
//! per route); [`ipnet::IpNet`] is only used at the API boundary.
//!
//! Also the NLRI codec (RFC 4271 §4.3 "Network Layer Reachability Information"): a length
//! octet followed by the minimum number of address octets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Address family (AFI 1 / AFI 2, SAFI 1 unicast: the only SAFI this speaker carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Afi {
    /// AFI 1, SAFI 1.
    Ipv4,
    /// AFI 2, SAFI 1.
    Ipv6,
}

impl Afi {
    /// The IANA AFI number.
    pub fn code(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
        }
    }

    /// From an (AFI, SAFI) pair; `None` for anything but IPv4/IPv6 unicast.
    pub fn from_codes(afi: u16, safi: u8) -> Option<Afi> {
        match (afi, safi) {
            (1, 1) => Some(Afi::Ipv4),
            (2, 1) => Some(Afi::Ipv6),
            _ => None,
        }
    }
}

/// Why an NLRI field could not be parsed (RFC 4271 §6.3: "Invalid Network Field").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlriError {
    /// The length octet is larger than the address width.
    BadLength(u8),
    /// The field ends inside a prefix.
    Truncated,
}

/// The operations the RIB needs from a prefix key, implemented by [`Prefix4`] and [`Prefix6`].
pub trait PrefixKey:
    Copy + Eq + Ord + std::hash::Hash + fmt::Debug + fmt::Display + Send + Sync + 'static
{
    /// The family this key belongs to.
    const AFI: Afi;
    /// A well-mixed 64-bit hash of the key (the tables use it directly).
    fn hash64(&self) -> u64;
    /// As an [`IpNet`] for the API.
    fn to_ipnet(&self) -> IpNet;
    /// The prefix length.
    fn prefix_len(&self) -> u8;
    /// Bytes this prefix takes in an NLRI field (length octet included).
    fn nlri_len(&self) -> usize {
        1 + (self.prefix_len() as usize).div_ceil(8)
    }
    /// Appends the NLRI encoding.
    fn write_nlri(&self, out: &mut Vec<u8>);
    /// Parses an NLRI field, appending to `out`.
    fn parse_nlri(buf: &[u8], out: &mut Vec<Self>) -> Result<(), NlriError>;
}

#[inline]
fn mix64(mut x: u64) -> u64 {
    // splitmix64 finaliser: every output bit depends on every input bit, so both the low
    // bits (bucket index) and the top bits (control byte) of the table hash are good.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

// ===== impl Prefix4 =====

/// An IPv4 prefix: network address as a host-order `u32` (host bits zero) and a length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix4 {
    addr: u32,
    len: u8,
}

impl Prefix4 {
    /// The prefix `addr/len` with host bits cleared; `None` when `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Prefix4> {
        Prefix4::from_bits(u32::from(addr), len)
    }

    /// Like [`Prefix4::new`] from a host-order integer.
    pub fn from_bits(addr: u32, len: u8) -> Option<Prefix4> {
        if len > 32 {
            return None;
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Some(Prefix4 {
            addr: addr & mask,
            len,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    /// The network address as an integer.
    pub fn bits(&self) -> u32 {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the default route 0.0.0.0/0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PrefixKey for Prefix4 {
    const AFI: Afi = Afi::Ipv4;

    #[inline]
    fn hash64(&self) -> u64 {
        mix64(((self.addr as u64) << 8) | self.len as u64)
    }

    fn to_ipnet(&self) -> IpNet {
        IpNet::V4(Ipv4Net::new_assert(self.addr(), self.len))
    }

    fn prefix_len(&self) -> u8 {
        self.len
    }

    #[inline]
    fn write_nlri(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        let n = (self.len as usize).div_ceil(8);
        out.extend_from_slice(&self.addr.to_be_bytes()[..n]);
    }

    #[inline]
    fn parse_nlri(buf: &[u8], out: &mut Vec<Prefix4>) -> Result<(), NlriError> {
        let mut i = 0;
        while i < buf.len() {
            let len = buf[i];
            if len > 32 {
                return Err(NlriError::BadLength(len));
            }
            let n = (len as usize).div_ceil(8);
            let Some(bytes) = buf.get(i + 1..i + 1 + n) else {
                return Err(NlriError::Truncated);
            };
            let mut a = [0u8; 4];
            a[..n].copy_from_slice(bytes);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            out.push(Prefix4 {
                addr: u32::from_be_bytes(a) & mask,
                len,
            });
            i += 1 + n;
        }
        Ok(())
    }
}

impl fmt::Display for Prefix4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Prefix4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Ipv4Net> for Prefix4 {
    fn from(n: Ipv4Net) -> Prefix4 {
        Prefix4 {
            addr: u32::from(n.network()),
            len: n.prefix_len(),
        }
    }
}

impl FromStr for Prefix4 {
    type Err = ipnet::AddrParseError;
    fn from_str(s: &str) -> Result<Prefix4, Self::Err> {
        Ok(Ipv4Net::from_str(s)?.into())
    }
}

// ===== impl Prefix6 =====

/// An IPv6 prefix: network address as a host-order `u128` (host bits zero) and a length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix6 {
    addr: u128,
    len: u8,
}

impl Prefix6 {
    /// The prefix `addr/len` with host bits cleared; `None` when `len > 128`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Prefix6> {
        if len > 128 {
            return None;
        }
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        Some(Prefix6 {
            addr: u128::from(addr) & mask,
            len,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr)
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the default route ::/0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PrefixKey for Prefix6 {
    const AFI: Afi = Afi::Ipv6;

    #[inline]
    fn hash64(&self) -> u64 {
        mix64((self.addr as u64) ^ mix64((self.addr >> 64) as u64) ^ ((self.len as u64) << 56))
    }

    fn to_ipnet(&self) -> IpNet {
        IpNet::V6(Ipv6Net::new_assert(self.addr(), self.len))
    }

    fn prefix_len(&self) -> u8 {
        self.len
    }

    fn write_nlri(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        let n = (self.len as usize).div_ceil(8);
        out.extend_from_slice(&self.addr.to_be_bytes()[..n]);
    }

    fn parse_nlri(buf: &[u8], out: &mut Vec<Prefix6>) -> Result<(), NlriError> {
        let mut i = 0;
        while i < buf.len() {
            let len = buf[i];
            if len > 128 {
                return Err(NlriError::BadLength(len));
            }
            let n = (len as usize).div_ceil(8);
            let Some(bytes) = buf.get(i + 1..i + 1 + n) else {
                return Err(NlriError::Truncated);
            };
            let mut a = [0u8; 16];
            a[..n].copy_from_slice(bytes);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            out.push(Prefix6 {
                addr: u128::from_be_bytes(a) & mask,
                len,
            });
            i += 1 + n;
        }
        Ok(())
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Ipv6Net> for Prefix6 {
    fn from(n: Ipv6Net) -> Prefix6 {
        Prefix6 {
            addr: u128::from(n.network()),
            len: n.prefix_len(),
        }
    }
}

impl FromStr for Prefix6 {
    type Err = ipnet::AddrParseError;
    fn from_str(s: &str) -> Result<Prefix6, Self::Err> {
        Ok(Ipv6Net::from_str(s)?.into())
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(Prefix4);
serde_as_string!(Prefix6);

/// A prefix of either family, for APIs that take both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    /// IPv4.
    V4(Prefix4),
    /// IPv6.
    V6(Prefix6),
}

impl From<IpNet> for Prefix {
    fn from(n: IpNet) -> Prefix {
        match n {
            IpNet::V4(n) => Prefix::V4(n.into()),
            IpNet::V6(n) => Prefix::V6(n.into()),
        }
    }
}

impl Prefix {
    /// As an [`IpNet`].
    pub fn to_ipnet(&self) -> IpNet {
        match self {
            Prefix::V4(p) => p.to_ipnet(),
            Prefix::V6(p) => p.to_ipnet(),
        }
    }
}

/// True when `ip` may be used as a BGP next hop (not unspecified, multicast or broadcast).
pub fn is_valid_next_hop(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nlri_round_trips_and_masks_host_bits() {
        let mut out = Vec::new();
        Prefix4::parse_nlri(&[24, 10, 1, 2, 0, 32, 1, 2, 3, 4, 23, 10, 0, 3], &mut out)
            .expect("valid nlri");
        assert_eq!(
            out.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["10.1.2.0/24", "0.0.0.0/0", "1.2.3.4/32", "10.0.2.0/23"]
        );
        let mut enc = Vec::new();
        for p in &out {
            p.write_nlri(&mut enc);
        }
        let mut again = Vec::new();
        Prefix4::parse_nlri(&enc, &mut again).expect("valid");
        assert_eq!(out, again);
    }

    #[test]
    fn nlri_with_length_33_is_refused() {
        let mut out = Vec::new();
        assert_eq!(
            Prefix4::parse_nlri(&[33, 1, 2, 3, 4, 5], &mut out),
            Err(NlriError::BadLength(33))
        );
    }

    #[test]
    fn truncated_nlri_is_refused() {
        let mut out = Vec::new();
        assert_eq!(
            Prefix4::parse_nlri(&[24, 10, 1], &mut out),
            Err(NlriError::Truncated)
        );
        assert_eq!(
            Prefix6::parse_nlri(&[64, 0xfd, 0, 0, 0], &mut Vec::new()),
            Err(NlriError::Truncated)
        );
    }

    #[test]
    fn ipv6_prefixes_parse_and_print() {
        let p: Prefix6 = "fd00:10::/64".parse().expect("valid");
        let mut enc = Vec::new();
        p.write_nlri(&mut enc);
        assert_eq!(enc.len(), 9);
        let mut out = Vec::new();
        Prefix6::parse_nlri(&enc, &mut out).expect("valid");
        assert_eq!(out, [p]);
        assert_eq!(p.to_string(), "fd00:10::/64");
    }
}
