//! Configuration the embedding program hands the speaker: [`SpeakerConfig`] once at start,
//! [`PeerConfig`] per peer (added, updated and removed live), [`OriginAttrs`] per local route.
//! All of it is serde so a test or a field bug report can be replayed from JSON.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::policy::Policy;
use crate::prefix::Afi;
use crate::wire::{LargeCommunity, Origin};

/// The speaker as a whole. Written by the embedding program, read by the speaker task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeakerConfig {
    /// Our AS number (4-octet).
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where to accept BGP connections (`0.0.0.0:179`); `None`: no listener, outbound only.
    pub listen: Option<SocketAddr>,
    /// A second listener, for the sessions of the other address family (as BIRD and BIRD6
    /// each listen on their own): the node's IPv6 address next to its IPv4 one.
    pub listen_other_family: Option<SocketAddr>,
    /// Set to make this speaker a route reflector (RFC 4456) with this CLUSTER_ID.
    pub cluster_id: Option<Ipv4Addr>,
    /// Restart Time we advertise in the graceful-restart capability (RFC 4724); 0 = do not
    /// advertise graceful restart.
    pub graceful_restart_time: u16,
    /// We have just restarted and kept forwarding state: the R bit and the F bits are set so
    /// peers keep our routes while we resynchronise.
    pub restarting: bool,
    /// RFC 8212: eBGP peers without an import (export) policy get nothing accepted (sent).
    pub ebgp_requires_policy: bool,
    /// Longest wait for a restarted peer's End-of-RIB before its stale routes go (seconds).
    pub stale_path_time: u16,
    /// How many received UPDATEs at most are handled before best paths are recomputed and
    /// UPDATEs generated (batching; the batch also ends whenever the inbox runs dry).
    pub batch_updates: usize,
    /// RFC 9687 SendHoldTime (seconds): a peer that reads nothing of what we send for this
    /// long is dropped (it would otherwise hold the session, and our memory, for ever).
    /// The RFC recommends max(8 minutes, 2 x HoldTime); 0 disables it.
    pub send_hold_time: u32,
    /// Bytes waiting for one connection at which the session is reset (the next write
    /// finds the peer has not read what it was sent): a bound, plus one pass's writes, on
    /// the memory a peer that does not read can make us hold.
    pub max_send_queue: usize,
    /// Least time between two full re-advertisements for one ROUTE-REFRESH (per peer and
    /// family, milliseconds): refreshes arriving faster are coalesced into the next one.
    pub route_refresh_min_interval_ms: u64,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            local_as: 64512,
            router_id: Ipv4Addr::new(127, 0, 0, 1),
            listen: None,
            listen_other_family: None,
            cluster_id: None,
            graceful_restart_time: 120,
            restarting: false,
            ebgp_requires_policy: true,
            stale_path_time: 360,
            batch_updates: 64,
            send_hold_time: 480,
            max_send_queue: 64 << 20,
            route_refresh_min_interval_ms: 5_000,
        }
    }
}

impl SpeakerConfig {
    /// Checks values the RFCs constrain.
    pub fn validate(&self) -> Result<(), Error> {
        if self.local_as == 0 || self.local_as == 23456 {
            return Err(Error::config(
                "local_as",
                "must not be 0 or AS_TRANS (23456)",
            ));
        }
        if self.router_id.is_unspecified() {
            return Err(Error::config("router_id", "must not be 0.0.0.0 (RFC 6286)"));
        }
        if self.graceful_restart_time > 4095 {
            return Err(Error::config(
                "graceful_restart_time",
                "at most 4095 s (12 bits, RFC 4724)",
            ));
        }
        Ok(())
    }
}

/// How the NEXT_HOP of routes sent to a peer is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextHopMode {
    /// eBGP: our address (next-hop-self); iBGP: unchanged (RFC 4271 §5.1.3).
    #[default]
    Auto,
    /// Always our address.
    #[serde(rename = "self")]
    SelfAddress,
    /// Always unchanged, also towards eBGP (BIRD `next hop keep`).
    Keep,
}

/// What happens when a peer's routes pass its [`ImportLimit`] (BIRD's `import limit`
/// actions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    /// Log it, keep importing.
    Warn,
    /// Keep the session and the routes already imported, refuse new ones (until the
    /// count falls below the limit again).
    #[default]
    Block,
    /// Reset the session (Cease, Maximum Number of Prefixes Reached, RFC 4486); it comes
    /// back after the usual back-off.
    Restart,
    /// Reset the session and keep it down until the peer is reconfigured.
    Disable,
}

/// A cap on the routes imported (accepted) from one peer: a misconfigured router sending
/// a full table must not take the node down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImportLimit {
    /// Most routes accepted from the peer (both families together).
    pub max: u64,
    pub action: LimitAction,
}

/// One peer. Written by the embedding program (`add_peer` / `update_peer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerConfig {
    /// Name for status tables and logs (`Mesh_10_0_0_2`, `Global_tor`).
    pub name: String,
    /// The peer's address (the key: one peer per address).
    pub address: IpAddr,
    /// The peer's TCP port (179).
    pub port: u16,
    /// The peer's AS.
    pub remote_as: u32,
    /// Our AS on this session, when not the speaker's.
    pub local_as: Option<u32>,
    /// Source address for our connections; also our next hop towards this peer when the
    /// session has not chosen one yet.
    pub local_address: Option<IpAddr>,
    /// Never connect; wait for the peer (BIRD `passive on`).
    pub passive: bool,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<String>,
    /// GTSM (RFC 5082): the peer is at most this many hops away; we send with TTL 255 and
    /// require TTL ≥ 256 − hops.
    pub ttl_security: Option<u8>,
    /// The peer is a route-reflector client (RFC 4456).
    pub route_reflector_client: bool,
    /// Next-hop handling towards this peer.
    pub next_hop: NextHopMode,
    /// IPv6 next hop to announce for next-hop-self when the session runs over IPv4.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// How many times our own AS may appear in a received AS_PATH (BIRD `allow local as`).
    pub num_allowed_local_as: u8,
    /// Hold time we propose (seconds; 0 or ≥ 3).
    pub hold_time: u16,
    /// Keepalive interval (seconds; capped at a third of the negotiated hold time).
    pub keepalive_time: u16,
    /// ConnectRetryTime (seconds).
    pub connect_retry_time: u16,
    /// Back-off after session errors: first and longest IdleHoldTime (seconds), BIRD
    /// `error wait time`.
    pub error_wait_time: (u16, u16),
    /// Per-peer Restart Time override for our graceful-restart capability.
    pub graceful_restart_time: Option<u16>,
    /// Families offered on this session.
    pub families: Vec<Afi>,
    /// Import policy; `None` = accept all from iBGP, nothing from eBGP under RFC 8212.
    pub import: Option<Policy>,
    /// Export policy; `None` = send all to iBGP, nothing to eBGP under RFC 8212.
    pub export: Option<Policy>,
    /// Cap on the routes accepted from the peer; `None` = no cap.
    pub import_limit: Option<ImportLimit>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            name: String::new(),
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 179,
            remote_as: 0,
            local_as: None,
            local_address: None,
            passive: false,
            password: None,
            ttl_security: None,
            route_reflector_client: false,
            next_hop: NextHopMode::Auto,
            next_hop_v6: None,
            num_allowed_local_as: 0,
            hold_time: 90,
            keepalive_time: 30,
            connect_retry_time: 120,
            error_wait_time: (5, 60),
            graceful_restart_time: None,
            families: vec![Afi::Ipv4, Afi::Ipv6],
            import: None,
            export: None,
            import_limit: None,
        }
    }
}

impl PeerConfig {
    /// A peer with defaults for everything else.
    pub fn new(name: impl Into<String>, address: IpAddr, remote_as: u32) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            address,
            remote_as,
            ..PeerConfig::default()
        }
    }

    /// What identifies the peer in the speaker: its address and port.
    pub fn key(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Checks values the RFCs constrain.
    pub fn validate(&self) -> Result<(), Error> {
        let f = |what: &str| format!("peer {} {what}", self.address);
        if self.address.is_unspecified() {
            return Err(Error::config(f("address"), "must be set"));
        }
        if self.remote_as == 0 {
            return Err(Error::config(f("remote_as"), "must not be 0"));
        }
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(Error::config(f("hold_time"), "0 or at least 3 (RFC 4271)"));
        }
        if self.connect_retry_time == 0 {
            return Err(Error::config(f("connect_retry_time"), "at least 1 s"));
        }
        if self.ttl_security == Some(0) {
            return Err(Error::config(f("ttl_security"), "hops must be 1..=254"));
        }
        if self.password.as_ref().is_some_and(|p| p.len() > 80) {
            return Err(Error::config(
                f("password"),
                "at most 80 octets (TCP_MD5SIG)",
            ));
        }
        Ok(())
    }

    /// Our AS on this session.
    pub fn effective_local_as(&self, speaker_as: u32) -> u32 {
        self.local_as.unwrap_or(speaker_as)
    }

    /// True when the peer is in another AS than ours on this session.
    pub fn is_ebgp(&self, speaker_as: u32) -> bool {
        self.remote_as != self.effective_local_as(speaker_as)
    }

    /// Changes that need a new session (everything but policies, next-hop handling and the
    /// route-reflector flag, which are applied to the running session).
    pub fn needs_reset(&self, new: &PeerConfig) -> bool {
        let strip = |c: &PeerConfig| PeerConfig {
            name: String::new(),
            import: None,
            export: None,
            import_limit: None,
            next_hop: NextHopMode::Auto,
            next_hop_v6: None,
            route_reflector_client: false,
            num_allowed_local_as: 0,
            ..c.clone()
        };
        strip(self) != strip(new)
    }
}

/// Attributes of a locally originated route (`Speaker::originate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginAttrs {
    /// ORIGIN (IGP).
    pub origin: Origin,
    /// MULTI_EXIT_DISC to announce.
    pub med: Option<u32>,
    /// LOCAL_PREF towards iBGP peers (100 when unset).
    pub local_pref: Option<u32>,
    /// Standard communities.
    pub communities: Vec<u32>,
    /// Large communities.
    pub large_communities: Vec<LargeCommunity>,
    /// Next hop; `None`: our session address (next-hop-self).
    pub next_hop: Option<IpAddr>,
}
