//! OPEN messages (RFC 4271 §4.2) and capabilities (RFC 5492).
//!
//! Decoding is ours: zettabgp's OPEN decoder rejects a whole OPEN whose FQDN capability
//! (73, sent by FRR by default) has a non-empty domain, cannot tell a malformed capability
//! from an unknown one, and knows no RFC 9072 extended parameters. Encoding goes through
//! zettabgp (`BgpOpenMessage::encode_to`), which is correct for the capabilities we send;
//! we never advertise FQDN (its encoder writes garbage).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use zettabgp::prelude::{
    BgpCapGR, BgpCapability, BgpMessage, BgpOpenMessage, BgpSessionParams, BgpTransportMode,
};

use super::header::{MessageType, push_header};
use super::notification::{Notification, code, subcode};
use crate::prefix::Afi;

/// AS_TRANS (RFC 6793): the 2-octet "My AS" of a speaker whose AS does not fit.
pub const AS_TRANS: u16 = 23456;

/// Capability codes (IANA "Capability Codes").
pub mod cap {
    /// Multiprotocol Extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route Refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Graceful Restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// Support for 4-octet AS numbers (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
    /// ADD-PATH (RFC 7911).
    pub const ADD_PATH: u8 = 69;
    /// Enhanced Route Refresh (RFC 7313).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// Hostname (draft-walton-bgp-hostname-capability).
    pub const FQDN: u8 = 73;
}

/// The Graceful Restart capability as received (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestartCap {
    /// Restart Time in seconds (12 bits).
    pub restart_time: u16,
    /// R bit: the sender has restarted.
    pub restarting: bool,
    /// N bit (RFC 8538): graceful NOTIFICATION supported.
    pub notification: bool,
    /// Families with their F bit (forwarding state preserved).
    pub families: Vec<(Afi, bool)>,
}

/// What an OPEN's capabilities say, as far as this speaker cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Multiprotocol (AFI, SAFI) pairs announced, raw.
    pub multiprotocol: Vec<(u16, u8)>,
    /// Route Refresh (code 2, or Cisco's pre-standard 128).
    pub route_refresh: bool,
    /// Enhanced Route Refresh.
    pub enhanced_route_refresh: bool,
    /// The 4-octet AS number, when capability 65 is present.
    pub four_octet_as: Option<u32>,
    /// Graceful Restart.
    pub graceful_restart: Option<GracefulRestartCap>,
    /// ADD-PATH was offered (we do not negotiate it, so it stays off).
    pub add_path: bool,
    /// Hostname from the FQDN capability, for logs.
    pub hostname: Option<String>,
    /// Capability codes we do not interpret.
    pub other: Vec<u8>,
}

/// A decoded OPEN message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// Version (always 4 after decoding).
    pub version: u8,
    /// The 2-octet My Autonomous System field.
    pub my_as: u16,
    /// Hold Time in seconds.
    pub hold_time: u16,
    /// BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Capabilities.
    pub caps: Capabilities,
}

impl Open {
    /// The sender's AS: the 4-octet capability when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.caps.four_octet_as.unwrap_or(self.my_as as u32)
    }

    /// The unicast families offered. No multiprotocol capability at all means IPv4 unicast
    /// (RFC 4760 §8).
    pub fn families(&self) -> Vec<Afi> {
        if self.caps.multiprotocol.is_empty() {
            return vec![Afi::Ipv4];
        }
        let mut v: Vec<Afi> = self
            .caps
            .multiprotocol
            .iter()
            .filter_map(|&(a, s)| Afi::from_codes(a, s))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn malformed(data: &[u8]) -> Notification {
    Notification::open(subcode::open::UNSPECIFIC, data.to_vec())
}

/// Decodes an OPEN body (the message minus its 19-octet header; framing guaranteed at least
/// 10 octets). Errors are the NOTIFICATION to send (RFC 4271 §6.2, RFC 5492).
pub fn decode_open(body: &[u8]) -> Result<Open, Notification> {
    let bad_len = || {
        Notification::new(
            code::HEADER,
            subcode::header::BAD_LENGTH,
            ((body.len() + 19) as u16).to_be_bytes().to_vec(),
        )
    };
    if body.len() < 10 {
        return Err(bad_len());
    }
    if body[0] != 4 {
        return Err(Notification::open(
            subcode::open::UNSUPPORTED_VERSION,
            vec![0, 4],
        ));
    }
    let my_as = u16::from_be_bytes([body[1], body[2]]);
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
    let opt_len = body[9] as usize;
    let mut caps = Capabilities::default();
    // RFC 9072: a non-extended length of 255 with a first type of 255 announces extended
    // optional parameters (2-octet lengths).
    let (params, extended) = if opt_len == 255 && body.get(10) == Some(&255) {
        let Some(l) = body.get(11..13) else {
            return Err(bad_len());
        };
        let ext_len = u16::from_be_bytes([l[0], l[1]]) as usize;
        (body.get(13..13 + ext_len).ok_or_else(bad_len)?, true)
    } else {
        (body.get(10..10 + opt_len).ok_or_else(bad_len)?, false)
    };
    let consumed = if extended {
        13 + params.len()
    } else {
        10 + params.len()
    };
    if consumed != body.len() {
        return Err(bad_len());
    }
    let mut i = 0;
    while i < params.len() {
        let hdr = if extended { 3 } else { 2 };
        let Some(h) = params.get(i..i + hdr) else {
            return Err(malformed(&params[i..]));
        };
        let ptype = h[0];
        let plen = if extended {
            u16::from_be_bytes([h[1], h[2]]) as usize
        } else {
            h[1] as usize
        };
        let Some(value) = params.get(i + hdr..i + hdr + plen) else {
            return Err(malformed(&params[i..]));
        };
        if ptype != 2 {
            return Err(Notification::open(
                subcode::open::UNSUPPORTED_OPT_PARAM,
                Vec::new(),
            ));
        }
        parse_capabilities(value, &mut caps)?;
        i += hdr + plen;
    }
    Ok(Open {
        version: 4,
        my_as,
        hold_time,
        router_id,
        caps,
    })
}

fn parse_capabilities(mut buf: &[u8], caps: &mut Capabilities) -> Result<(), Notification> {
    while !buf.is_empty() {
        let Some(&[code, len]) = buf.get(..2) else {
            return Err(malformed(buf));
        };
        let Some(v) = buf.get(2..2 + len as usize) else {
            return Err(malformed(buf));
        };
        let whole = &buf[..2 + len as usize];
        match code {
            cap::MULTIPROTOCOL => {
                let &[a0, a1, _, safi] = v else {
                    return Err(malformed(whole));
                };
                caps.multiprotocol
                    .push((u16::from_be_bytes([a0, a1]), safi));
            }
            cap::ROUTE_REFRESH | 128 => caps.route_refresh = true,
            cap::ENHANCED_ROUTE_REFRESH => caps.enhanced_route_refresh = true,
            cap::FOUR_OCTET_AS => {
                let &[a, b, c, d] = v else {
                    return Err(malformed(whole));
                };
                caps.four_octet_as = Some(u32::from_be_bytes([a, b, c, d]));
            }
            cap::GRACEFUL_RESTART => {
                if v.len() < 2 || (v.len() - 2) % 4 != 0 {
                    return Err(malformed(whole));
                }
                let flags_time = u16::from_be_bytes([v[0], v[1]]);
                let families = v[2..]
                    .chunks_exact(4)
                    .filter_map(|c| {
                        Afi::from_codes(u16::from_be_bytes([c[0], c[1]]), c[2])
                            .map(|afi| (afi, c[3] & 0x80 != 0))
                    })
                    .collect();
                caps.graceful_restart = Some(GracefulRestartCap {
                    restart_time: flags_time & 0x0fff,
                    restarting: flags_time & 0x8000 != 0,
                    notification: flags_time & 0x4000 != 0,
                    families,
                });
            }
            cap::ADD_PATH => caps.add_path = true,
            cap::FQDN => {
                // hostname length, hostname, domain length, domain; lenient: it is only
                // used for log lines.
                if let Some((&hl, rest)) = v.split_first() {
                    if let Some(h) = rest.get(..hl as usize) {
                        caps.hostname = Some(String::from_utf8_lossy(h).into_owned());
                    }
                }
            }
            other => caps.other.push(other),
        }
        buf = &buf[2 + len as usize..];
    }
    Ok(())
}

/// What we put in our own OPEN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenParams {
    /// Our AS (4-octet; AS_TRANS goes in the 2-octet field when it does not fit).
    pub asn: u32,
    /// Our proposed hold time.
    pub hold_time: u16,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Families we offer.
    pub families: Vec<Afi>,
    /// Graceful restart: (restart time, R bit). `None` = no GR capability.
    pub graceful_restart: Option<(u16, bool)>,
}

fn session_params() -> BgpSessionParams {
    let mut p = BgpSessionParams::new(
        0,
        0,
        BgpTransportMode::IPv4,
        Ipv4Addr::UNSPECIFIED,
        Vec::new(),
    );
    p.fuzzy_pathid = false;
    p
}

/// Encodes our OPEN (header included) through zettabgp.
pub fn encode_open(p: &OpenParams) -> Result<Vec<u8>, crate::Error> {
    let mut caps = Vec::new();
    for afi in &p.families {
        caps.push(match afi {
            Afi::Ipv4 => BgpCapability::SafiIPv4u,
            Afi::Ipv6 => BgpCapability::SafiIPv6u,
        });
    }
    caps.push(BgpCapability::CapRR);
    caps.push(BgpCapability::CapASN32(p.asn));
    if let Some((time, restarting)) = p.graceful_restart {
        let mut afis = Vec::new();
        for afi in &p.families {
            let base = match afi {
                Afi::Ipv4 => BgpCapability::SafiIPv4u,
                Afi::Ipv6 => BgpCapability::SafiIPv6u,
            };
            // F bit: forwarding state kept across our restart (the kernel routes stay).
            afis.push(
                BgpCapGR::new_from_cap(base, restarting)
                    .map_err(|e| crate::Error::Encode(format!("{e:?}")))?,
            );
        }
        caps.push(BgpCapability::CapGR {
            restart_time: time.min(4095),
            restart_state: restarting,
            afis,
        });
    }
    let msg = BgpOpenMessage {
        as_num: p.asn,
        hold_time: p.hold_time,
        router_id: p.router_id,
        caps,
    };
    let params = session_params();
    let mut buf = vec![0u8; 512];
    let n = msg
        .encode_to(&params, &mut buf)
        .map_err(|e| crate::Error::Encode(format!("{e:?}")))?;
    let mut out = Vec::with_capacity(19 + n);
    push_header(&mut out, MessageType::Open, n);
    out.extend_from_slice(&buf[..n]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> OpenParams {
        OpenParams {
            asn: 4_200_000_001,
            hold_time: 9,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            families: vec![Afi::Ipv4, Afi::Ipv6],
            graceful_restart: Some((120, true)),
        }
    }

    #[test]
    fn our_open_decodes_back_with_every_capability() {
        let wire = encode_open(&params()).expect("encodes");
        let open = decode_open(&wire[19..]).expect("decodes");
        assert_eq!(open.my_as, AS_TRANS);
        assert_eq!(open.asn(), 4_200_000_001);
        assert_eq!(open.hold_time, 9);
        assert_eq!(open.families(), vec![Afi::Ipv4, Afi::Ipv6]);
        assert!(open.caps.route_refresh);
        let gr = open.caps.graceful_restart.expect("gr");
        assert_eq!(gr.restart_time, 120);
        assert!(gr.restarting);
        assert_eq!(gr.families, vec![(Afi::Ipv4, true), (Afi::Ipv6, true)]);
    }

    fn open_with_caps(caps: &[u8]) -> Vec<u8> {
        let mut b = vec![4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 2, (caps.len() + 2) as u8, 2];
        b.push(caps.len() as u8);
        b.extend_from_slice(caps);
        b
    }

    #[test]
    fn fqdn_capability_with_a_domain_is_accepted() {
        // FRR's hostname capability: "tor" + domain "lab".
        let body = open_with_caps(&[73, 8, 3, b't', b'o', b'r', 3, b'l', b'a', b'b']);
        let open = decode_open(&body).expect("decodes");
        assert_eq!(open.caps.hostname.as_deref(), Some("tor"));
    }

    #[test]
    fn version_3_is_unsupported_version_with_4_as_data() {
        let mut body = open_with_caps(&[]);
        body[0] = 3;
        let n = decode_open(&body).expect_err("refused");
        assert_eq!((n.code, n.subcode, n.data.clone()), (2, 1, vec![0, 4]));
    }

    #[test]
    fn unknown_optional_parameter_is_unsupported_optional_parameter() {
        let body = vec![4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 2, 3, 1, 1, 0];
        let n = decode_open(&body).expect_err("refused");
        assert_eq!((n.code, n.subcode), (2, 4));
    }

    #[test]
    fn truncated_capability_is_malformed_open() {
        let body = open_with_caps(&[65, 4, 0, 0]);
        let n = decode_open(&body).expect_err("refused");
        assert_eq!(n.code, 2);
    }

    #[test]
    fn optional_parameters_length_past_the_end_is_bad_length() {
        let mut body = open_with_caps(&[2, 0]);
        body[9] = 40;
        let n = decode_open(&body).expect_err("refused");
        assert_eq!((n.code, n.subcode), (1, 2));
    }

    #[test]
    fn no_multiprotocol_capability_means_ipv4_unicast() {
        let open = decode_open(&open_with_caps(&[65, 4, 0, 0, 0xfd, 0xe9])).expect("ok");
        assert_eq!(open.families(), vec![Afi::Ipv4]);
        assert_eq!(open.asn(), 65001);
    }
}
