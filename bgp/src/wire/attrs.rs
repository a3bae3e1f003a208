//! Path attributes as the RIB keeps them: one owned, hashable value per distinct attribute
//! set, interned by the RIB so a million routes with eight attribute sets hold eight of these.
//!
//! Attribute type codes (RFC 4271 §5, RFC 1997, RFC 4360, RFC 4456, RFC 4760, RFC 6793,
//! RFC 8092) and flag bits live here too.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flags {
    /// Optional (1) or well-known (0).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial.
    pub const PARTIAL: u8 = 0x20;
    /// Extended Length (2-octet length).
    pub const EXTENDED: u8 = 0x10;
}

/// Attribute type codes.
pub mod type_code {
    /// ORIGIN
    pub const ORIGIN: u8 = 1;
    /// AS_PATH
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC
    pub const MED: u8 = 4;
    /// LOCAL_PREF
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997)
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456)
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456)
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760)
    pub const MP_REACH: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760)
    pub const MP_UNREACH: u8 = 15;
    /// EXTENDED COMMUNITIES (RFC 4360)
    pub const EXT_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793)
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793)
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092)
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Well-known communities (RFC 1997).
pub mod community {
    /// NO_EXPORT: not advertised outside the AS (to eBGP peers).
    pub const NO_EXPORT: u32 = 0xffff_ff01;
    /// NO_ADVERTISE: not advertised to any peer.
    pub const NO_ADVERTISE: u32 = 0xffff_ff02;
    /// NO_EXPORT_SUBCONFED: treated as NO_EXPORT (no confederations here).
    pub const NO_EXPORT_SUBCONFED: u32 = 0xffff_ff03;
}

/// ORIGIN values (RFC 4271 §5.1.1); lower is preferred.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// 0: learned from an interior protocol (or configured).
    #[default]
    Igp = 0,
    /// 1: learned via EGP.
    Egp = 1,
    /// 2: learned some other way.
    Incomplete = 2,
}

impl Origin {
    /// From the wire value; `None` for anything above 2 (RFC 7606 §7.1: treat-as-withdraw).
    pub fn from_u8(v: u8) -> Option<Origin> {
        match v {
            0 => Some(Origin::Igp),
            1 => Some(Origin::Egp),
            2 => Some(Origin::Incomplete),
            _ => None,
        }
    }
}

/// A large community (RFC 8092): global administrator, two local data parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LargeCommunity(pub u32, pub u32, pub u32);

impl std::fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for LargeCommunity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let p: Vec<&str> = s.split(':').collect();
        let n = |x: &str| x.parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
        match p.as_slice() {
            [a, b, c] => Ok(LargeCommunity(n(a)?, n(b)?, n(c)?)),
            _ => Err(format!("{s:?}: a large community is A:B:C")),
        }
    }
}

/// A standard community `high:low` as its 32-bit value.
pub fn community_value(high: u16, low: u16) -> u32 {
    ((high as u32) << 16) | low as u32
}

/// Parses `"65000:100"` (or a plain 32-bit number) into a community value.
pub fn parse_community(s: &str) -> Result<u32, String> {
    match s.split_once(':') {
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
            let b: u16 = b.parse().map_err(|e| format!("{s:?}: {e}"))?;
            Ok(community_value(a, b))
        }
        None => s.parse().map_err(|e| format!("{s:?}: {e}")),
    }
}

/// An attribute this speaker does not interpret but passes on (optional transitive ones,
/// with the Partial bit set on the way out, RFC 4271 §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawAttr {
    /// Flags as received.
    pub flags: u8,
    /// Type code.
    pub type_code: u8,
    /// Value octets.
    pub value: Vec<u8>,
}

/// One distinct set of path attributes. Written by the UPDATE decoder (received routes), by
/// [`crate::OriginAttrs`] (local routes) and by export policy; interned by the RIB.
///
/// The AS_PATH is one flat AS_SEQUENCE: AS_SET and confederation segments are refused on
/// receipt (RFC 9774, treat-as-withdraw), so nothing else can get in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct PathAttrs {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH, leftmost (most recent) AS first.
    pub as_path: Arc<[u32]>,
    /// NEXT_HOP (IPv4 routes) or the MP_REACH next hop (IPv6). `None` only for local routes
    /// before export (the session's own address is used).
    pub next_hop: Option<IpAddr>,
    /// MULTI_EXIT_DISC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// LOCAL_PREF (iBGP only on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE present.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub atomic_aggregate: bool,
    /// AGGREGATOR (AS, router id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<(u32, Ipv4Addr)>,
    /// COMMUNITIES, sorted, no duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY, sorted, no duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<LargeCommunity>,
    /// EXTENDED COMMUNITIES as 64-bit values, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_communities: Vec<u64>,
    /// ORIGINATOR_ID (RFC 4456).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456), most recent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_list: Vec<Ipv4Addr>,
    /// Unrecognised optional transitive attributes, passed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<RawAttr>,
}

impl PathAttrs {
    /// AS_PATH length as the decision process counts it (RFC 4271 §9.1.2.2 a).
    pub fn as_path_len(&self) -> usize {
        self.as_path.len()
    }

    /// The neighbouring AS (leftmost in AS_PATH), `None` for an empty path (local / iBGP
    /// originated).
    pub fn neighbor_as(&self) -> Option<u32> {
        self.as_path.first().copied()
    }

    /// True when COMMUNITIES contains `c`.
    pub fn has_community(&self, c: u32) -> bool {
        self.communities.binary_search(&c).is_ok()
    }

    /// True when LARGE_COMMUNITY contains `c`.
    pub fn has_large_community(&self, c: &LargeCommunity) -> bool {
        self.large_communities.binary_search(c).is_ok()
    }
}
